//! End to end: docs/policy.md "Model limits" — a pool per model glob and layer, named in
//! refusals, matched on the catalogue name after aliases, with per-pattern inheritance
//! checked by `tollgate -t` and by the admin API.

use crate::harness::*;
use serde_json::{json, Value};

/// One org, group `g` (with `group` lines) and file key `k1` (with `key` lines); models
/// `gpt-4o` (alias `fast`), `gpt-4o-mini` and `m`; output at $1000 per million tokens.
fn policy(mock: std::net::SocketAddr, group: &str, key_lines: &str) -> String {
    format!(
        r#"
{SERVER}default_max_tokens = 100

[[providers]]
id = "oa"
api = "openai"
base_url = "http://{mock}"

[[models]]
name = "gpt-4o"
output_usd_per_mtok = 1000
targets = [{{ provider = "oa" }}]

[[models]]
name = "gpt-4o-mini"
output_usd_per_mtok = 1000
targets = [{{ provider = "oa" }}]

[[models]]
name = "m"
output_usd_per_mtok = 1000
targets = [{{ provider = "oa" }}]

[[orgs]]
id = "o"

[[groups]]
id = "g"
org = "o"
aliases = {{ fast = "gpt-4o" }}
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

fn body(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat(g: &GatewayProc, k: &str, model: &str) -> Answer {
    g.call(CHAT, k, &[], &body(model)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_is_its_own_pool_matched_after_aliases_and_named() {
    let mock = mock().await;
    let g = start_gateway(&policy(
        mock.addr(),
        "",
        r#"rpm = 5
model_limits = { "gpt-4o*" = { rpm = 2 } }"#,
    ));
    let k = key(1);
    // `fast` is gpt-4o: it counts in the gpt-4o* pool, like gpt-4o-mini.
    assert_eq!(chat(&g, &k, "fast").await.status, 200);
    assert_eq!(chat(&g, &k, "gpt-4o-mini").await.status, 200);
    let a = chat(&g, &k, "gpt-4o").await;
    assert_eq!((a.status, a.code()), (429, "rate_limit_exceeded".into()));
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(r#"key k1 model_limits "gpt-4o*" rpm 2"#),
        "{msg}"
    );
    assert!(a.header("retry-after").is_some());
    // Another model still has the key's overall pool (5, of which 2 used).
    for _ in 0..3 {
        assert_eq!(chat(&g, &k, "m").await.status, 200);
    }
    let a = chat(&g, &k, "m").await;
    assert_eq!(a.status, 429);
    assert!(a.text.contains("key k1 rpm 5"), "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pattern_budget_settles_real_cost_and_refuses() {
    let mock = mock().await;
    // Group's gpt-4o* budget: $0.05 = 50 output tokens at $1000/M.
    let g = start_gateway(&policy(
        mock.addr(),
        r#"model_limits = { "gpt-4o*" = { budget_usd = 0.05 } }"#,
        "",
    ));
    let k = key(1);
    // Each answer has 20 output tokens (real usage): $0.02 each, reserved at $0.01 (10).
    let hdr = [("x-mock-output-tokens", "20")];
    assert_eq!(g.call(CHAT, &k, &hdr, &body("gpt-4o")).await.status, 200);
    assert_eq!(g.call(CHAT, &k, &hdr, &body("gpt-4o")).await.status, 200);
    // $0.04 spent: another worst case of $0.01 fits, then $0.06 spent.
    assert_eq!(g.call(CHAT, &k, &hdr, &body("gpt-4o")).await.status, 200);
    let a = g.call(CHAT, &k, &hdr, &body("gpt-4o-mini")).await;
    assert_eq!((a.status, a.code()), (429, "budget_exceeded".into()));
    assert!(
        a.text
            .contains(r#"group g model_limits \"gpt-4o*\" budget_usd 0.05"#),
        "{}",
        a.text
    );
    // Outside the pattern: no budget.
    assert_eq!(g.call(CHAT, &k, &hdr, &body("m")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_max_tokens_refuses_and_shadow_patterns_only_report() {
    let mock = mock().await;
    let g = start_gateway(&policy(
        mock.addr(),
        "",
        r#"model_limits = { "gpt-4o*" = { max_tokens = 5 }, "m" = { rpm = { value = 1, mode = "shadow" } } }"#,
    ));
    let k = key(1);
    let a = chat(&g, &k, "gpt-4o").await;
    assert_eq!((a.status, a.code()), (400, "max_tokens_exceeded".into()));
    assert!(a.text.contains(r#"model_limits \"gpt-4o*\""#), "{}", a.text);
    assert_eq!(chat(&g, &k, "m").await.status, 200);
    let a = chat(&g, &k, "m").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let shadow = a.header("x-tollgate-shadow-limited").unwrap_or_default();
    assert!(shadow.contains(r#"model_limits "m" rpm 1"#), "{shadow}");
}

#[test]
fn the_check_refuses_a_looser_pattern_naming_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = policy(
        "127.0.0.1:9".parse().unwrap(),
        r#"rpm = 120
model_limits = { "gpt-4o*" = { rpm = 100, token_budget = 1000 } }"#,
        r#"model_limits = { "gpt-4o*" = { rpm = 150, token_budget = 2000 }, "m*" = { rpm = 130 }, "[" = { rpm = 1 }, "x" = {} }"#,
    );
    write_policy(&path, &text, free_addr(), dir.path());
    let out = check_policy(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        r#"keys[0] (k1).model_limits."gpt-4o*".rpm: 150 exceeds group g model_limits "gpt-4o*" rpm 100 (lower layers only tighten)"#,
        r#"keys[0] (k1).model_limits."gpt-4o*".rpm: 150 exceeds group g rpm 120"#,
        r#"keys[0] (k1).model_limits."gpt-4o*".token_budget: 2000 exceeds group g model_limits "gpt-4o*" token_budget 1000"#,
        r#"keys[0] (k1).model_limits."m*".rpm: 130 exceeds group g rpm 120"#,
        r#"keys[0] (k1).model_limits."[": invalid glob"#,
        r#"keys[0] (k1).model_limits."x": sets no limit"#,
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_take_model_limits_checked_against_the_group_and_enforced_at_once() {
    let mock = mock().await;
    let mut g = start_gateway_env(
        &policy(
            mock.addr(),
            r#"model_limits = { "gpt-4o*" = { rpm = 100 } }"#,
            "",
        )
        .with_admin(),
        ADMIN_ENV,
    );
    let admin = g.admin(ROOT);
    let (status, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "a", "group": "g", "model_limits": {"gpt-4o*": {"rpm": 150}}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "model_limits");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            r#"model_limits."gpt-4o*".rpm 150 exceeds group g model_limits "gpt-4o*" rpm 100"#
        ),
        "{msg}"
    );
    let (status, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "a", "group": "g", "model_limits": {"gpt-4o*": {"colour": 1}}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let made = admin
        .new_key(json!({"name": "a", "group": "g", "model_limits": {"gpt-4o*": {"rpm": 1, "budget_usd": 1}}}))
        .await;
    let (id, secret) = (
        made["id"].as_str().unwrap().to_string(),
        made["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(made["limits"]["model_limits"]["gpt-4o*"]["rpm"], 1);
    let listed = admin.ok("GET", "/v1/keys?group=g", None).await;
    let mine = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["limits"]["model_limits"]["gpt-4o*"]["rpm"], 1);
    let group = admin.ok("GET", "/v1/groups/g", None).await;
    assert_eq!(group["limits"]["model_limits"]["gpt-4o*"]["rpm"], 100);
    assert_eq!(chat(&g, &secret, "gpt-4o").await.status, 200);
    let a = chat(&g, &secret, "gpt-4o").await;
    assert_eq!(a.status, 429);
    assert!(
        a.text
            .contains(&format!(r#"key {id} model_limits \"gpt-4o*\" rpm 1"#)),
        "{}",
        a.text
    );
    // The pattern's spend (8 output tokens at $1000/M) is shown, and kept by a restart.
    let path = format!("/v1/keys/{id}");
    wait_for(std::time::Duration::from_secs(5), "model_usage", || async {
        let v = admin.ok("GET", &path, None).await;
        (v["model_usage"]["gpt-4o*"]["spend_usd"] == 0.008).then_some(())
    })
    .await;
    g.stop(libc::SIGTERM);
    g.restart(ADMIN_ENV);
    let admin = g.admin(ROOT);
    let v = admin.ok("GET", &path, None).await;
    assert_eq!(v["model_usage"]["gpt-4o*"]["spend_usd"], 0.008, "{v}");
    // A PATCH applies from the next request: the pattern is gone.
    admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"model_limits": null})),
        )
        .await;
    wait_for(
        std::time::Duration::from_secs(5),
        "the patch in force",
        || async { (chat(&g, &secret, "gpt-4o").await.status == 200).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_ceilings_cover_patterns_and_token_budgets() {
    let mock = mock().await;
    let g = start_gateway_env(
        &policy(
            mock.addr(),
            r#"self_service = { enabled = true, limits = { token_budget = 5000, model_limits = { "gpt-4o*" = { rpm = 1, budget_usd = 2 } } } }"#,
            "",
        )
        .with_admin(),
        ADMIN_ENV,
    );
    let admin = g.admin(ROOT);
    let (s, v) = admin
        .post(
            "/v1/tokens",
            json!({"name": "dev", "role": "developer", "groups": ["g"], "owner": "alice"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let dev = v["token"].as_str().unwrap().to_string();
    // Left out: the ceilings become the key's.
    let (s, v) = admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "a", "group": "g", "model_limits": {"gpt-4o*": {"tpm": 100}}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["limits"]["token_budget"], 5000);
    let p = &v["limits"]["model_limits"]["gpt-4o*"];
    assert_eq!((p["rpm"].as_u64(), p["tpm"].as_u64()), (Some(1), Some(100)));
    assert_eq!(p["budget_usd"], 2.0);
    let secret = v["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&g, &secret, "gpt-4o").await.status, 200);
    assert_eq!(chat(&g, &secret, "gpt-4o").await.status, 429);
    // Above: refused naming both values.
    let (s, v) = admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "b", "group": "g", "model_limits": {"gpt-4o*": {"rpm": 5}}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "model_limits");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"model_limits."gpt-4o*".rpm 5 exceeds the self-service ceiling model_limits "gpt-4o*" rpm 1 of group g"#),
        "{msg}"
    );
    let (s, v) = admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "c", "group": "g", "token_budget": 9000})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("token_budget")),
        "{v}"
    );
}
