//! End to end: client certificates (docs/policy.md "Client certificates"). The TLS
//! listener verifies an optional client certificate against `tls.client_ca`; keys,
//! groups and orgs with `require_client_cert` refuse requests without one (403
//! `client_cert_required`), keys with `client_cert_sha256` refuse other certificates (403
//! `client_cert_mismatch`). The rules come from the file and from the admin API, under
//! "lower layers only tighten".

use crate::harness::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A CA with its key, to sign certificates with.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A certificate signed by `ca`: (certificate PEM, key PEM, SHA-256 of its DER in hex).
fn leaf(ca: &Ca, name: &str, client: bool) -> (String, String, String) {
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    if client {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let fp = hex::encode(Sha256::digest(cert.der()));
    (cert.pem(), key.serialize_pem(), fp)
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` (cert + key PEM) if given.
fn https(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn chat(client: &reqwest::Client, g: &GatewayProc, k: &str) -> Result<(u16, Value), String> {
    let url = format!("https://localhost:{}/v1/chat/completions", g.addr.port());
    let r = client
        .post(&url)
        .bearer_auth(k)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(Value::Null);
    Ok((status, v))
}

struct Setup {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
    tls_line: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("tollgate test server CA");
    let client_ca = ca("tollgate test client CA");
    let (cert, key, _) = leaf(&server_ca, "localhost", false);
    let p = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(p("cert.pem"), cert).unwrap();
    std::fs::write(p("key.pem"), key).unwrap();
    std::fs::write(p("clients-ca.pem"), client_ca.cert.pem()).unwrap();
    let tls_line = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        p("cert.pem"),
        p("key.pem"),
        p("clients-ca.pem")
    );
    Setup {
        dir,
        server_ca,
        client_ca,
        tls_line,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_matched_per_key() {
    let mock = mock().await;
    let s = setup();
    let (c1, k1, fp1) = leaf(&s.client_ca, "client-one", true);
    let (c2, k2, fp2) = leaf(&s.client_ca, "client-two", true);
    let rogue_ca = ca("not the client CA");
    let (c3, k3, _) = leaf(&rogue_ca, "rogue", true);
    let extra = format!(
        r#"
[[groups]]
id = "grp_mtls"
org = "acme"
require_client_cert = true

[[keys]]
id = "key_mtls"
group = "grp_mtls"
sha256 = "{k2}"

[[keys]]
id = "key_pinned"
group = "grp_prod"
sha256 = "{k3}"
client_cert_sha256 = ["{fp1_colons}"]
"#,
        k2 = sha(&key(2)),
        k3 = sha(&key(3)),
        // The `openssl -fingerprint` form, upper case with colons, is accepted too.
        fp1_colons = fp1
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":"),
    );
    let policy = basic_policy(mock.addr(), &extra)
        .in_server(&s.tls_line)
        .with_admin();
    let g = start_gateway_env(&policy, ADMIN_ENV);
    let ca_pem = s.server_ca.cert.pem();
    let anon = https(&ca_pem, None);
    let one = https(&ca_pem, Some((&c1, &k1)));
    let two = https(&ca_pem, Some((&c2, &k2)));
    let rogue = https(&ca_pem, Some((&c3, &k3)));

    // A key without a rule works with and without a certificate (client auth is optional).
    assert_eq!(chat(&anon, &g, &key(1)).await.unwrap().0, 200);
    assert_eq!(chat(&one, &g, &key(1)).await.unwrap().0, 200);

    // The group's rule: no certificate, 403 naming the group; a verified one, served.
    let (st, v) = chat(&anon, &g, &key(2)).await.unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("client_cert_required")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group grp_mtls"),
        "{v}"
    );
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(chat(&two, &g, &key(2)).await.unwrap().0, 200);

    // The key's pin: its certificate served, another verified one refused, none refused.
    assert_eq!(chat(&one, &g, &key(3)).await.unwrap().0, 200);
    let (st, v) = chat(&two, &g, &key(3)).await.unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("client_cert_mismatch")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&fp2),
        "{v}"
    );
    let (st, v) = chat(&anon, &g, &key(3)).await.unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("client_cert_required")),
        "{v}"
    );

    // A certificate the client CA did not sign never gets a request through.
    assert!(
        chat(&rogue, &g, &key(1)).await.is_err(),
        "handshake with an unknown CA's cert"
    );

    // Visible in the admin API.
    let admin = g.admin(ROOT);
    let (_, grp) = admin.get("/v1/groups/grp_mtls").await;
    assert_eq!(grp["require_client_cert"], true, "{grp}");
    let (_, pinned) = admin.get("/v1/keys/key_pinned").await;
    assert_eq!(pinned["client_cert_sha256"], json!([fp1]), "{pinned}");
    let (_, k) = admin.get("/v1/keys/key_mtls").await;
    assert_eq!(k["require_client_cert"], true, "{k}");

    // API keys: a key cannot turn off its group's rule (both values named).
    let (st, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "loose", "group": "grp_mtls", "require_client_cert": false}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "require_client_cert");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("false") && msg.contains("group grp_mtls require_client_cert true"),
        "{msg}"
    );
    let (st, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "bad", "group": "grp_prod", "client_cert_sha256": ["abc"]}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("client_cert_sha256")),
        "{v}"
    );

    // An API key pinned to certificate two: enforced on the next request, then re-pinned.
    let made = admin
        .new_key(json!({"name": "pinned", "group": "grp_prod", "client_cert_sha256": [fp2]}))
        .await;
    let raw = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["client_cert_sha256"], json!([fp2]));
    assert_eq!(chat(&two, &g, &raw).await.unwrap().0, 200);
    let (st, v) = chat(&one, &g, &raw).await.unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("client_cert_mismatch")),
        "{v}"
    );
    admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"client_cert_sha256": [fp1]})),
        )
        .await;
    assert_eq!(chat(&one, &g, &raw).await.unwrap().0, 200);
    let (st, _) = chat(&two, &g, &raw).await.unwrap();
    assert_eq!(st, 403);
    // Cleared: any client (certificate or not) again.
    admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"client_cert_sha256": null})),
        )
        .await;
    assert_eq!(chat(&anon, &g, &raw).await.unwrap().0, 200);
    // And one that requires a certificate of its own.
    admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"require_client_cert": true})),
        )
        .await;
    let (st, v) = chat(&anon, &g, &raw).await.unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("client_cert_required")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("key {id}")),
        "{v}"
    );
    assert_eq!(chat(&two, &g, &raw).await.unwrap().0, 200);
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rules_are_checked_at_load() {
    let mock = mock().await;
    let s = setup();
    let check = |policy: String| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        write_policy(&path, &policy, free_addr(), dir.path());
        let out = check_policy(&path);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // The org requires, the group turns it off: refused, both values named.
    let loose = basic_policy(mock.addr(), "")
        .in_server(&s.tls_line)
        .replace(
            "id = \"acme\"\n",
            "id = \"acme\"\nrequire_client_cert = true\n",
        )
        .replace(
            "id = \"grp_prod\"\n",
            "id = \"grp_prod\"\nrequire_client_cert = false\n",
        );
    let (ok, text) = check(loose);
    assert!(!ok, "{text}");
    assert!(
        text.contains("require_client_cert")
            && text.contains("false is looser than org acme require_client_cert true"),
        "{text}"
    );
    // A key turning off its group's rule.
    let key_loose = basic_policy(mock.addr(), "")
        .in_server(&s.tls_line)
        .replace(
            "id = \"grp_prod\"\n",
            "id = \"grp_prod\"\nrequire_client_cert = true\n",
        )
        .replace(
            "id = \"key_main\"\n",
            "id = \"key_main\"\nrequire_client_cert = false\n",
        );
    let (ok, text) = check(key_loose);
    assert!(
        !ok && text.contains("group grp_prod require_client_cert true"),
        "{text}"
    );
    // A bad fingerprint.
    let bad_fp = basic_policy(mock.addr(), "")
        .in_server(&s.tls_line)
        .replace(
            "id = \"key_main\"\n",
            "id = \"key_main\"\nclient_cert_sha256 = [\"12ab\"]\n",
        );
    let (ok, text) = check(bad_fp);
    assert!(
        !ok && text.contains("client_cert_sha256") && text.contains("64 hex digits"),
        "{text}"
    );
    // A rule without a client CA to verify certificates.
    let no_ca = basic_policy(mock.addr(), "").replace(
        "id = \"grp_prod\"\n",
        "id = \"grp_prod\"\nrequire_client_cert = true\n",
    );
    let (ok, text) = check(no_ca);
    assert!(!ok && text.contains("needs server.tls.client_ca"), "{text}");
    // And a good file passes.
    let good = basic_policy(mock.addr(), "")
        .in_server(&s.tls_line)
        .replace(
            "id = \"acme\"\n",
            "id = \"acme\"\nrequire_client_cert = true\n",
        );
    let (ok, text) = check(good);
    assert!(ok, "{text}");
}
