//! End to end: the group's `log_level` (docs/policy.md, §9). `metadata` logs no text, `prompt`
//! adds the request's prompt fields, `full` adds the completion text — reassembled from
//! the upstream's stream for streamed answers, also when the client got a translation.
//! No key, minted or static, and no key digest appears in any log file.

use crate::harness::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;

fn policy(mock: SocketAddr) -> String {
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
    basic_policy(mock, &extra).with_admin().with_request_log()
}

/// Sends a request; returns the text the client received (JSON or concatenated deltas).
async fn completion(g: &GatewayProc, key: &str, path: &str, id: &str, body: Value) -> String {
    let r = g
        .post(path, key, &[("x-request-id", id)], &body)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_and_full_log_levels_include_the_text_and_no_key() {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    let v = g
        .admin(ROOT)
        .new_key(json!({"name": "minted", "group": "grp_full"}))
        .await;
    let minted = v["key"].as_str().unwrap().to_string();
    let (meta, prompt, full) = (key(1), key(2), key(3));

    // metadata: no text fields at all.
    completion(
        &g,
        &meta,
        CHAT,
        "m-1",
        chat("gpt-4o-mini", "secret plans", false),
    )
    .await;
    let line = g.log_line("m-1").await;
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
    completion(
        &g,
        &prompt,
        CHAT,
        "p-1",
        chat("gpt-4o-mini", "zebra crossing", true),
    )
    .await;
    completion(&g, &prompt, MESSAGES, "p-2", messages("yak shaving", false)).await;
    let line = g.log_line("p-1").await;
    let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(p["messages"][0]["content"], "zebra crossing", "{line}");
    assert!(line.get("completion").is_none(), "{line}");
    let line = g.log_line("p-2").await;
    let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(
        p,
        json!({"system": "answer briefly", "messages": [{"role": "user", "content": "yak shaving"}]})
    );

    // full: prompt and the completion the client received, JSON and streamed, both APIs,
    // and a chat completion served by the Anthropic target (translated back to the client).
    let cases = [
        ("f-chat-json", CHAT, chat("gpt-4o-mini", "alpha", false)),
        ("f-chat-sse", CHAT, chat("gpt-4o-mini", "bravo", true)),
        ("f-msg-json", MESSAGES, messages("charlie", false)),
        ("f-msg-sse", MESSAGES, messages("delta", true)),
        ("f-xlate-sse", CHAT, chat("claude-sonnet-4-5", "echo", true)),
        (
            "f-xlate-json",
            CHAT,
            chat("claude-sonnet-4-5", "foxtrot", false),
        ),
    ];
    for (i, (id, path, body)) in cases.iter().enumerate() {
        // One call with the minted key, the others with the static one.
        let k = if i == 1 { &minted } else { &full };
        let got = completion(&g, k, path, id, body.clone()).await;
        assert!(!got.is_empty(), "{id}: empty answer");
        let line = g.log_line(id).await;
        assert_eq!(line["group"], "grp_full", "{line}");
        assert_eq!(line["completion"], got.as_str(), "{id}: {line}");
        let want = body["messages"][0]["content"].as_str().unwrap();
        let p: Value = serde_json::from_str(line["prompt"].as_str().unwrap()).unwrap();
        assert_eq!(p["messages"][0]["content"], want, "{id}: {line}");
        assert!(line.get("completion_truncated").is_none());
    }

    // The whole test's log files: no key (static or minted), no key digest.
    let files = assert_no_secret_in_logs(g.dir.path(), &[meta, prompt, full, minted]);
    assert!(files >= 2, "request log and gateway log searched");
}
