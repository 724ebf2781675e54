//! End to end: alert channels (docs/policy.md "Alert channels"). The same events as the
//! signed JSON webhook, shaped for Slack, Feishu and DingTalk incoming webhooks (each
//! service's signature recomputed here from its published recipe), and mailed through
//! `[smtp]` to a real SMTP server (aiosmtpd) from the durable queue: a restart while the
//! mail server is down loses nothing.

use crate::harness::receiver::Receiver;
use crate::harness::*;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FEISHU_SECRET: &str = "feishu-test-secret";
const DING_SECRET: &str = "SECding-test-secret";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_ADMIN_TOKEN", ROOT),
        ("FEISHU_SECRET", FEISHU_SECRET),
        ("DING_SECRET", DING_SECRET),
        ("TOLLGATE_WEBHOOK_RETRY_MS", "100"),
    ]
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn group(id: &str, lines: &str) -> String {
    format!("\n[[groups]]\nid = \"{id}\"\norg = \"acme\"\n{lines}\n")
}

/// The local SMTP server (aiosmtpd from the test venv), writing messages into `dir`.
struct SmtpSink {
    child: KillOnDrop,
}

fn venv_python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = p.exists()
        && std::process::Command::new(&p)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(),
            "no .venv with aiosmtpd: run scripts/setup-sdk.sh (make test does)"
        );
        eprintln!("SKIPPED mail part: no .venv with aiosmtpd (run `make test`)");
        return None;
    }
    Some(p)
}

impl SmtpSink {
    async fn start(python: &Path, port: u16, dir: &Path) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerts/smtp_sink.py");
        let child = std::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "the SMTP sink listening", || {
            std::net::TcpStream::connect(&addr).is_ok()
        })
        .await;
        SmtpSink {
            child: KillOnDrop(child),
        }
    }
}

/// The messages the sink has written.
fn mails(dir: &Path) -> Vec<Value> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push(serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_formats_are_shaped_and_signed_as_each_service_expects() {
    let mock = mock().await;
    let (slack, feishu, ding) = (
        Receiver::start(200).await,
        Receiver::start(200).await,
        Receiver::start(200).await,
    );
    // Feishu answers 200 with an error code first: not a delivery, retried.
    feishu.set_reply(json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}));
    ding.set_reply(json!({"errcode": 0, "errmsg": "ok"}));
    let extra = [
        group(
            "grp_slack",
            &format!("webhook = \"{}\"\nwebhook_format = \"slack\"", slack.url()),
        ),
        group(
            "grp_feishu",
            &format!(
                "webhook = \"{}\"\nwebhook_format = \"feishu\"\nwebhook_secret_env = \"FEISHU_SECRET\"",
                feishu.url()
            ),
        ),
        group(
            "grp_ding",
            &format!(
                "webhook = \"{}?access_token=tok\"\nwebhook_format = \"dingtalk\"\nwebhook_secret_env = \"DING_SECRET\"",
                ding.url()
            ),
        ),
    ]
    .concat();
    let policy = basic_policy(mock.addr(), &extra).with_admin();
    let g = start_gateway_env(&policy, &env());
    let admin = g.admin(ROOT);
    for grp in ["grp_slack", "grp_feishu", "grp_ding"] {
        admin
            .ok("POST", &format!("/v1/groups/{grp}/pause"), None)
            .await;
    }

    // Slack: {"text"} naming the event and the group, no signature.
    slack
        .wait(Duration::from_secs(10), "slack message", |g| !g.is_empty())
        .await;
    let s = &slack.got()[0];
    let text = s.json["text"].as_str().unwrap();
    assert!(
        text.contains("group.paused") && text.contains("grp_slack"),
        "{}",
        s.body
    );
    assert_eq!(s.json.as_object().unwrap().len(), 1, "{}", s.body);
    assert!(s.signature.is_empty());

    // DingTalk: text message; timestamp (ms) and sign in the URL, beside its own token.
    ding.wait(Duration::from_secs(10), "dingtalk message", |g| {
        !g.is_empty()
    })
    .await;
    let d = &ding.got()[0];
    assert_eq!(d.json["msgtype"], "text", "{}", d.body);
    assert!(d.json["text"]["content"]
        .as_str()
        .unwrap()
        .contains("grp_ding"));
    let q: std::collections::HashMap<String, String> = url_params(&d.query).into_iter().collect();
    assert_eq!(q["access_token"], "tok", "{}", d.query);
    let ts: u64 = q["timestamp"].parse().unwrap();
    assert!(ts.abs_diff(now_s() * 1000) < 300_000, "{ts}");
    let want = hmac_b64(
        DING_SECRET.as_bytes(),
        format!("{ts}\n{DING_SECRET}").as_bytes(),
    );
    assert_eq!(q["sign"], want, "{}", d.query);

    // Feishu: refused once (code 19021: a failure, audited), then delivered on the retry.
    feishu
        .wait(Duration::from_secs(10), "feishu attempt", |g| !g.is_empty())
        .await;
    feishu.set_reply(json!({"code": 0, "msg": "success"}));
    feishu
        .wait(Duration::from_secs(10), "feishu retry", |g| g.len() >= 2)
        .await;
    for f in feishu.got() {
        assert_eq!(f.json["msg_type"], "text", "{}", f.body);
        assert!(f.json["content"]["text"]
            .as_str()
            .unwrap()
            .contains("grp_feishu"));
        let ts: u64 = f.json["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(ts.abs_diff(now_s()) < 300, "{ts}");
        let want = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
        assert_eq!(f.json["sign"], want, "{}", f.body);
    }
    let failed = wait_for(
        Duration::from_secs(10),
        "webhook.failed for feishu",
        || async {
            let (_, v) = admin
                .get("/v1/audit?type=webhook.failed&group=grp_feishu")
                .await;
            v["data"].as_array().filter(|d| !d.is_empty()).cloned()
        },
    )
    .await;
    assert!(failed[0].to_string().contains("code 19021"), "{failed:?}");
    wait_for(
        Duration::from_secs(10),
        "webhook.delivered for feishu",
        || async {
            let (_, v) = admin
                .get("/v1/audit?type=webhook.delivered&group=grp_feishu")
                .await;
            v["data"].as_array().filter(|d| !d.is_empty()).cloned()
        },
    )
    .await;
}

/// `a=1&b=x%2By` → pairs, percent-decoded.
fn url_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_email_goes_through_smtp_and_survives_a_restart() {
    let Some(python) = venv_python() else {
        return;
    };
    let mock = mock().await;
    let port = free_port();
    let inbox = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"Tollgate <tollgate@example.com>\"\nstarttls = false\n",
        group("grp_mail", "alert_email = [\"ops@example.com\", \"fin@example.com\"]"),
    );
    let policy = basic_policy(mock.addr(), &extra).with_admin();
    let mut g = start_gateway_env(&policy, &env());
    let admin = g.admin(ROOT);

    // The mail server is down: the event stays queued (a failed attempt, retried).
    admin.ok("POST", "/v1/groups/grp_mail/pause", None).await;
    wait_for(Duration::from_secs(10), "a failed mail attempt", || async {
        let (_, v) = admin
            .get("/v1/audit?type=webhook.failed&group=grp_mail")
            .await;
        v["data"].as_array().filter(|d| !d.is_empty()).cloned()
    })
    .await;
    // A restart loses nothing: the queue is in the store.
    g.restart(&env());
    let _sink = SmtpSink::start(&python, port, inbox.path()).await;
    let got = wait_for(Duration::from_secs(20), "the mail", || async {
        let m = mails(inbox.path());
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["mail_from"], "tollgate@example.com");
    let mut to: Vec<&str> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["fin@example.com", "ops@example.com"]);
    let data = m["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: [tollgate] group.paused in group grp_mail"),
        "{data}"
    );
    assert!(data.contains("grp_mail"), "{data}");
    let admin = g.admin(ROOT);
    wait_for(
        Duration::from_secs(10),
        "webhook.delivered for the mail",
        || async {
            let (_, v) = admin
                .get("/v1/audit?type=webhook.delivered&group=grp_mail")
                .await;
            v["data"].as_array().filter(|d| !d.is_empty()).cloned()
        },
    )
    .await;
    drop(_sink.child);
}

#[test]
fn channel_settings_are_checked_at_load() {
    let mock = free_addr();
    let check = |extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        write_policy(&path, &basic_policy(mock, extra), free_addr(), dir.path());
        let out = check_policy(&path);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let hook = "webhook = \"https://hooks.example.com/x\"";
    let (ok, t) = check(&group(
        "g1",
        &format!("{hook}\nwebhook_format = \"slack\"\nwebhook_secret_env = \"S\""),
    ));
    assert!(
        !ok && t.contains("Slack incoming webhooks are not signed"),
        "{t}"
    );
    let (ok, t) = check(&group("g1", &format!("{hook}\nwebhook_format = \"teams\"")));
    assert!(
        !ok && t.contains("want json, slack, feishu or dingtalk"),
        "{t}"
    );
    let (ok, t) = check(&group("g1", "alert_email = [\"ops@example.com\"]"));
    assert!(!ok && t.contains("needs an [smtp] section"), "{t}");
    let (ok, t) = check(&format!(
        "{}\n[smtp]\nhost = \"smtp.example.com\"\nfrom = \"x@example.com\"\n",
        group("g1", "alert_email = [\"not an address\"]")
    ));
    assert!(!ok && t.contains("is not an email address"), "{t}");
    // The JSON format still needs its secret; the chat formats do not.
    let (ok, t) = check(&group("g1", hook));
    assert!(!ok && t.contains("needs webhook_secret_env"), "{t}");
    let (ok, t) = check(&format!(
        "{}{}",
        group("g1", &format!("{hook}\nwebhook_format = \"feishu\"")),
        "\n[smtp]\nhost = \"smtp.example.com\"\nfrom = \"x@example.com\"\n"
    ));
    assert!(ok, "{t}");
    // An org's own webhook takes a format too.
    let org = basic_policy(mock, "").replace(
        "id = \"acme\"\n",
        "id = \"acme\"\nwebhook = \"https://hooks.example.com/o\"\nwebhook_format = \"dingtalk\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    write_policy(&path, &org, free_addr(), dir.path());
    assert!(check_policy(&path).status.success());
}
