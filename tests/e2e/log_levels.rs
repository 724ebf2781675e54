//! End to end: the group's `log_level` (SPEC §2, §9). `metadata` logs no text, `prompt`
//! adds the request's prompt fields, `full` adds the completion text — reassembled from
//! the upstream's stream for streamed answers, also when the client got a translation.
//! No key, minted or static, and no key digest appears in any log file.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-secret-for-log-levels";

fn policy(mock: SocketAddr, admin: SocketAddr) -> String {
    let extra = format!(
        r#"
[[groups]]
id = "grp_prompt"
org = "acme"
log_level = "prompt"

[[groups]]
id = "grp_full"
org = "acme"
log_level = "full"

[[keys]]
id = "key_prompt"
group = "grp_prompt"
sha256 = "{p}"

[[keys]]
id = "key_full"
group = "grp_full"
sha256 = "{f}"
"#,
        p = sha(&key(2)),
        f = sha(&key(3)),
    );
    basic_policy(mock, &extra).with_admin(admin).replace(
        "request_log = \"off\"",
        "request_log = \"{DATA}/../requests.log\"",
    )
}

async fn log_line(g: &GatewayProc, request_id: &str) -> Value {
    wait_log_line(&g.dir.path().join("requests.log"), request_id).await
}

/// Sends a request; returns the text the client received (JSON or concatenated deltas).
async fn call(g: &GatewayProc, key: &str, path: &str, id: &str, body: Value) -> String {
    let r = client()
        .post(g.url(path))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{id}");
    if body["stream"] != true {
        let v: Value = r.json().await.unwrap();
        if let Some(t) = v["choices"][0]["message"]["content"].as_str() {
            return t.to_string();
        }
        return v["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
    }
    let mut s = r.bytes_stream();
    let mut raw = String::new();
    while let Some(c) = s.next().await {
        raw.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
    }
    raw.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .or(v["delta"]["text"].as_str())
                .map(str::to_string)
        })
        .collect()
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 12,
        "messages": [{"role": "user", "content": text}]})
}

fn messages(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "stream": stream, "max_tokens": 12,
        "system": "answer briefly", "messages": [{"role": "user", "content": text}]})
}

/// Mints a key in `group` through the admin API; returns the raw key.
async fn mint(admin: SocketAddr, group: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .request(Method::POST, format!("http://{admin}/v1/keys"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "minted", "group": group}))
            .send()
            .await;
        match r {
            Ok(r) => {
                assert_eq!(r.status().as_u16(), 201);
                let v: Value = r.json().await.unwrap();
                return v["key"].as_str().unwrap().to_string();
            }
            Err(e) => assert!(Instant::now() < deadline, "admin API down: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_and_full_log_levels_include_the_text_and_no_key() {
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    let admin = admin_addr();
    let g = start_gateway_env(&policy(mock.addr(), admin), &[("TEST_ADMIN_TOKEN", TOKEN)]);
    let minted = mint(admin, "grp_full").await;
    let (meta, prompt, full) = (key(1), key(2), key(3));

    // metadata: no text fields at all.
    call(
        &g,
        &meta,
        "/v1/chat/completions",
        "m-1",
        chat("gpt-4o-mini", "secret plans", false),
    )
    .await;
    let line = log_line(&g, "m-1").await;
    assert_eq!(line["group"], "grp_prod");
    for f in [
        "prompt",
        "completion",
        "prompt_truncated",
        "completion_truncated",
    ] {
        assert!(line.get(f).is_none(), "{f} in {line}");
    }

    // prompt: the prompt fields, no completion.
    call(
        &g,
        &prompt,
        "/v1/chat/completions",
        "p-1",
        chat("gpt-4o-mini", "zebra crossing", true),
    )
    .await;
    call(
        &g,
        &prompt,
        "/v1/messages",
        "p-2",
        messages("yak shaving", false),
    )
    .await;
    let line = log_line(&g, "p-1").await;
    let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(p["messages"][0]["content"], "zebra crossing", "{line}");
    assert!(line.get("completion").is_none(), "{line}");
    let line = log_line(&g, "p-2").await;
    let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(
        p,
        json!({"system": "answer briefly", "messages": [{"role": "user", "content": "yak shaving"}]})
    );

    // full: prompt and the completion the client received, JSON and streamed, both APIs,
    // and a chat completion served by the Anthropic target (translated back to the client).
    let cases = [
        (
            "f-chat-json",
            "/v1/chat/completions",
            chat("gpt-4o-mini", "alpha", false),
        ),
        (
            "f-chat-sse",
            "/v1/chat/completions",
            chat("gpt-4o-mini", "bravo", true),
        ),
        ("f-msg-json", "/v1/messages", messages("charlie", false)),
        ("f-msg-sse", "/v1/messages", messages("delta", true)),
        (
            "f-xlate-sse",
            "/v1/chat/completions",
            chat("claude-sonnet-4-5", "echo", true),
        ),
        (
            "f-xlate-json",
            "/v1/chat/completions",
            chat("claude-sonnet-4-5", "foxtrot", false),
        ),
    ];
    for (i, (id, path, body)) in cases.iter().enumerate() {
        // One call with the minted key, the others with the static one.
        let k = if i == 1 { &minted } else { &full };
        let got = call(&g, k, path, id, body.clone()).await;
        assert!(!got.is_empty(), "{id}: empty answer");
        let line = log_line(&g, id).await;
        assert_eq!(line["group"], "grp_full", "{line}");
        assert_eq!(line["completion"], got.as_str(), "{id}: {line}");
        let want = body["messages"][0]["content"].as_str().unwrap();
        let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
        assert_eq!(p["messages"][0]["content"], want, "{id}: {line}");
        assert!(line.get("completion_truncated").is_none());
    }

    // The whole test's log files: no key (static or minted), no key digest.
    let files = assert_no_secret_in_logs(g.dir.path(), &[&meta, &prompt, &full, &minted]);
    assert!(files >= 2, "request log and gateway log searched");
}
