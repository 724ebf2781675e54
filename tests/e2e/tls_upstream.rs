//! End to end: HTTPS providers are verified (SNI = host name, trusted CA), and a wrong
//! name or an untrusted CA fails the request with 502 `upstream_error`.

use crate::harness::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;
use std::sync::Arc;

struct Pki {
    ca_pem: String,
    leaf_pem: String,
    key_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki(server_name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tollgate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![server_name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        server: Arc::new(server),
    }
}

fn tls_policy(port: u16, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file.map_or(String::new(), |p| {
        format!("ca_file = \"{}\"\n", p.display())
    });
    format!(
        r#"
{SERVER}
[[providers]]
id = "secure"
api = "openai"
base_url = "https://localhost:{port}"
api_key_env = "TEST_PROVIDER_KEY"
connect_timeout = "2s"
{ca}
[[models]]
name = "gpt-4o-mini"
targets = [{{ provider = "secure" }}]

[[orgs]]
id = "o"

[[groups]]
id = "g"
org = "o"
retries = 0

[[keys]]
id = "k"
group = "g"
sha256 = "{sha}"
"#,
        sha = sha(&key(1))
    )
}

/// A chat completion with key(1): the status and the JSON answer.
async fn chat(g: &GatewayProc) -> (u16, serde_json::Value) {
    let a = g.call(CHAT, &key(1), &[], &chat_body("gpt-4o-mini")).await;
    (a.status, a.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_upstream_works_and_bad_certificates_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    // 1. Right name, CA trusted through the provider's ca_file: served.
    let good = pki("localhost");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &good.ca_pem).unwrap();
    let mock = MockProvider::start_tls("127.0.0.1:0", good.server.clone())
        .await
        .unwrap();
    let g = start_gateway(&tls_policy(mock.addr().port(), Some(&ca_path)));
    let (s, v) = chat(&g).await;
    assert_eq!(s, 200, "{v}\n{}", g.log_text());
    assert_eq!(
        mock.received()[0].header("authorization"),
        Some("Bearer sk-provider-secret")
    );
    drop(g);

    // 2. Certificate for another name, same trusted CA: refused.
    let wrong = pki("other.example");
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, &wrong.ca_pem).unwrap();
    let mock2 = MockProvider::start_tls("127.0.0.1:0", wrong.server.clone())
        .await
        .unwrap();
    let g = start_gateway(&tls_policy(mock2.addr().port(), Some(&wrong_ca)));
    let (s, v) = chat(&g).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(
        mock2.received().is_empty(),
        "request sent over an unverified connection"
    );
    drop(g);

    // 3. Right name but a CA nobody trusts (platform roots only): refused.
    let g = start_gateway(&tls_policy(mock.addr().port(), None));
    mock.clear_received();
    let (s, v) = chat(&g).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(
        mock.received().is_empty(),
        "request sent over an unverified connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_clients_over_https() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pki("localhost");
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &p.leaf_pem).unwrap();
    std::fs::write(&key_file, &p.key_pem).unwrap();
    let policy = basic_policy(mock.addr(), "").in_server(&format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key_file.display()
    ));
    let g = start_gateway(&policy);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/chat/completions", g.addr.port());
    let r = client
        .post(&url)
        .bearer_auth(key(1))
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/v1/models", g.addr.port())).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
}
