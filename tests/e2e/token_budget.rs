//! End to end: docs/policy.md "Token budget" — tokens reserved then settled with the
//! provider's usage, 429 `token_budget_exceeded`, shown by the admin API, durable across
//! restarts, and bound by the layers above (`tollgate -t` and the API).

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

fn policy(mock: std::net::SocketAddr, group: &str, key_lines: &str) -> String {
    format!(
        r#"
{SERVER}default_max_tokens = 100

[[providers]]
id = "oa"
api = "openai"
base_url = "http://{mock}"

[[models]]
name = "m"
targets = [{{ provider = "oa" }}]

[[orgs]]
id = "o"

[[groups]]
id = "g"
org = "o"
{group}

[[keys]]
id = "k1"
group = "g"
sha256 = "{k1}"
{key_lines}
"#,
        k1 = sha(&key(1)),
    )
}

fn body() -> Value {
    json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

/// The key's `tokens_used` once it reads `want` (flushed every 250 ms).
async fn tokens_used(admin: &Admin, id: &str, want: u64) -> Value {
    wait_for(Duration::from_secs(5), "tokens_used", || async {
        let v = admin.ok("GET", &format!("/v1/keys/{id}"), None).await;
        (v["tokens_used"] == want).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_real_usage_refuses_and_survives_a_restart() {
    let mock = mock().await;
    let mut g = start_gateway_env(
        &policy(
            mock.addr(),
            "",
            "token_budget = 200\ntoken_budget_period = \"daily\"",
        )
        .with_admin(),
        ADMIN_ENV,
    );
    let k = key(1);
    let hdr = [("x-mock-output-tokens", "30")];
    // Each answer's real usage: the mock's prompt tokens + 30.
    let a = g.call(CHAT, &k, &hdr, &body()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let u = &a.json()["usage"];
    let per = u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap();
    assert_eq!(u["completion_tokens"], 30);
    let admin = g.admin(ROOT);
    let v = tokens_used(&admin, "k1", per).await;
    assert_eq!(v["token_budget"], 200);
    assert_eq!(v["limits"]["token_budget"], 200);
    assert_eq!(v["limits"]["token_budget_period"], "daily");
    // Settled with real usage (above the reservation): until the next one no longer fits.
    let mut used = per;
    let refused = loop {
        let a = g.call(CHAT, &k, &hdr, &body()).await;
        if a.status != 200 {
            break a;
        }
        used += per;
        assert!(used < 400, "never refused");
    };
    assert_eq!(
        (refused.status, refused.code()),
        (429, "token_budget_exceeded".into())
    );
    assert!(
        refused.text.contains("key k1 token_budget 200"),
        "{}",
        refused.text
    );
    assert!(refused.header("retry-after").is_some());
    tokens_used(&admin, "k1", used).await;
    // Shown means flushed: even a kill keeps the tokens (still refused, still shown).
    g.stop(libc::SIGKILL);
    g.restart(ADMIN_ENV);
    let admin = g.admin(ROOT);
    let v = admin.ok("GET", "/v1/keys/k1", None).await;
    assert_eq!(v["tokens_used"], used);
    let a = g.call(CHAT, &k, &hdr, &body()).await;
    assert_eq!(a.code(), "token_budget_exceeded", "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_token_budget_is_shared_and_shown() {
    let mock = mock().await;
    let g = start_gateway_env(
        &policy(mock.addr(), "token_budget = 100000", "").with_admin(),
        ADMIN_ENV,
    );
    let a = g
        .call(CHAT, &key(1), &[("x-mock-output-tokens", "7")], &body())
        .await;
    assert_eq!(a.status, 200);
    let total = a.json()["usage"]["total_tokens"].as_u64().unwrap();
    let admin = g.admin(ROOT);
    let v = wait_for(Duration::from_secs(5), "group tokens_used", || async {
        let v = admin.ok("GET", "/v1/groups/g", None).await;
        (v["tokens_used"] == total).then_some(v)
    })
    .await;
    assert_eq!(v["token_budget"], 100000);
    assert_eq!(v["limits"]["token_budget"], 100000);
}

#[test]
fn the_check_refuses_a_larger_token_budget_naming_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = policy(
        "127.0.0.1:9".parse().unwrap(),
        "token_budget = 1000",
        "token_budget = 5000\ntoken_budget_period = \"hourly\"",
    );
    write_policy(&path, &text, free_addr(), dir.path());
    let out = check_policy(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keys[0] (k1).token_budget: 5000 exceeds group g token_budget 1000 (lower layers only tighten)"),
        "{err}"
    );
    assert!(
        err.contains(
            r#"keys[0] (k1).token_budget_period: "hourly": want daily, weekly, monthly or never"#
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_larger_token_budget_and_enforces_a_patch() {
    let mock = mock().await;
    let g = start_gateway_env(
        &policy(mock.addr(), "token_budget = 1000", "").with_admin(),
        ADMIN_ENV,
    );
    let admin = g.admin(ROOT);
    let (status, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "a", "group": "g", "token_budget": 5000}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "token_budget");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("token_budget 5000 exceeds group g token_budget 1000"),
        "{msg}"
    );
    let made = admin.new_key(json!({"name": "a", "group": "g"})).await;
    let (id, secret) = (
        made["id"].as_str().unwrap().to_string(),
        made["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(g.call(CHAT, &secret, &[], &body()).await.status, 200);
    // 5 tokens: less than one request's reservation.
    admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"token_budget": 5})),
        )
        .await;
    wait_for(Duration::from_secs(5), "the patch in force", || async {
        let a = g.call(CHAT, &secret, &[], &body()).await;
        (a.code() == "token_budget_exceeded").then_some(())
    })
    .await;
}
