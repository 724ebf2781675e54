//! End to end: docs/policy.md "Budget clamp" — a group's `budget_clamp` lowers the
//! `max_tokens` sent upstream to what the tightest budget can still pay for
//! (`x-tollgate-max-tokens`), under the name the client used, instead of refusing.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Output at $1000 per million tokens ($0.001 a token), input free; the group clamps.
fn policy(mock: std::net::SocketAddr, group: &str, key_lines: &str) -> String {
    format!(
        r#"
{SERVER}default_max_tokens = 100

[[providers]]
id = "oa"
api = "openai"
base_url = "http://{mock}"

[[providers]]
id = "an"
api = "anthropic"
base_url = "http://{mock}"

[[models]]
name = "m"
output_usd_per_mtok = 1000
targets = [{{ provider = "oa" }}]

[[models]]
name = "claude"
output_usd_per_mtok = 1000
targets = [{{ provider = "an" }}]

[[orgs]]
id = "o"

[[groups]]
id = "g"
org = "o"
budget_clamp = true
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

/// What the provider received (the mock's echo), from an OpenAI or Anthropic answer.
fn received(a: &Answer) -> Value {
    let v = a.json();
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .or_else(|| v["content"][0]["text"].as_str())
        .unwrap_or_else(|| panic!("no text: {v}"));
    serde_json::from_str(text).unwrap()
}

const ECHO: [(&str, &str); 1] = [("x-mock-echo", "1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_lowered_to_what_the_budget_pays_then_refused() {
    let mock = mock().await;
    // The key can pay 0.05 / 0.001 = 50 output tokens; the group more.
    let g = start_gateway(&policy(mock.addr(), "budget_usd = 10", "budget_usd = 0.05"));
    let k = key(1);
    let asks = |n: u64| json!({"model": "m", "max_tokens": n, "messages": [{"role": "user", "content": "hi"}]});
    // Within the budget: untouched, no header.
    let a = g.call(CHAT, &k, &ECHO, &asks(20)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-tollgate-max-tokens"), None);
    assert_eq!(received(&a)["max_tokens"], 20);
    // The echo's text is the answer: its output tokens are what the mock reports (8 by
    // default); wait until they are settled so the remaining budget is known.
    let spent = a.json()["usage"]["completion_tokens"].as_u64().unwrap();
    // Asking for 1000: sent with what is left.
    let left = 50 - spent;
    let a = wait_for(Duration::from_secs(5), "settled", || async {
        let a = g.call(CHAT, &k, &ECHO, &asks(1000)).await;
        (a.header("x-tollgate-max-tokens") == Some(&*left.to_string())).then_some(a)
    })
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(received(&a)["max_tokens"], left);
    // Spend the rest (the mock reports as many output tokens as it is told).
    let rest = 50 - spent - a.json()["usage"]["completion_tokens"].as_u64().unwrap();
    let hdr = [("x-mock-output-tokens", &*rest.to_string())];
    let a = g.call(CHAT, &k, &hdr, &asks(rest)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    // Nothing left, not even for one output token: refused.
    let a = wait_for(Duration::from_secs(5), "refused", || async {
        let a = g.call(CHAT, &k, &[], &asks(10)).await;
        (a.status == 429).then_some(a)
    })
    .await;
    assert_eq!(a.code(), "budget_exceeded");
    assert!(a.text.contains("key k1 budget_usd 0.05"), "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_the_client_used_or_the_routes_own_carries_the_cap() {
    let mock = mock().await;
    // The group's $0.04 pays 40 output tokens (input is free).
    let g = start_gateway(&policy(mock.addr(), "budget_usd = 0.04", ""));
    let k = key(1);
    // No max_tokens on chat: sent as max_completion_tokens, at most what is left (40).
    let a = g
        .call(
            CHAT,
            &k,
            &ECHO,
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-tollgate-max-tokens"), Some("40"));
    assert_eq!(received(&a)["max_tokens"], 40);
    let a = g
        .call(CHAT, &k, &ECHO, &json!({"model": "m", "max_completion_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let cap: u64 = a.header("x-tollgate-max-tokens").unwrap().parse().unwrap();
    assert!(cap < 40, "{cap}");
    assert_eq!(received(&a)["max_tokens"], cap);
    // Anthropic: max_tokens lowered in place.
    let a = g
        .call(
            MESSAGES,
            &k,
            &ECHO,
            &json!({"model": "claude", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let cap: u64 = a.header("x-tollgate-max-tokens").unwrap().parse().unwrap();
    assert!(cap < 40, "{cap}");
    assert_eq!(received(&a)["max_tokens"], cap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_clamp_the_same_request_is_refused() {
    let mock = mock().await;
    let g = start_gateway(
        &policy(mock.addr(), "budget_usd = 0.04", "").replace("budget_clamp = true", ""),
    );
    let a = g
        .call(
            CHAT,
            &key(1),
            &[],
            &json!({"model": "m", "max_tokens": 500, "messages": []}),
        )
        .await;
    assert_eq!(a.code(), "budget_exceeded", "{}", a.text);
}
