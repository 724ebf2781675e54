//! End to end: what the provider bills is what is charged (docs/billing.md). A client that
//! leaves mid-stream, an upstream cut or timed out after its first byte, an answer that
//! ends in an error event — on both APIs and translated — are charged the provider's
//! usage when it reports it, else the output counted from the streamed text; the log
//! line says which (`usage_source`), and the spend routes agree.

use crate::harness::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// `grp_cut`: a 1 s group timeout, its key key(3) (`key_cut`).
const CUT_GROUP: &str = r#"
[[groups]]
id = "grp_cut"
org = "acme"
timeout = "1s"
models = ["gpt-4o*", "claude-*"]

[[keys]]
id = "key_cut"
group = "grp_cut"
sha256 = "SHA"
"#;

fn policy(mock: std::net::SocketAddr) -> String {
    basic_policy(mock, &CUT_GROUP.replace("SHA", &sha(&key(3))))
        .with_admin()
        .with_request_log()
}

/// The four ways a stream can be served: each API, as is and translated.
const ROUTES: [(&str, &str, &str); 4] = [
    ("chat", CHAT, "gpt-4o-mini"),
    ("messages", MESSAGES, "claude-sonnet-4-5"),
    ("chat-to-anthropic", CHAT, "claude-sonnet-4-5"),
    ("messages-to-openai", MESSAGES, "gpt-4o-mini"),
];

fn stream_body(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "stream": true, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "tell me a long story about metering"}]})
}

fn micros(usd: &Value) -> u64 {
    (usd.as_f64().unwrap() * 1e6).round() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_leaves_mid_stream_pays_the_providers_reported_usage() {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    let mut cost = 0;
    for (name, path, model) in ROUTES {
        let id = format!("gone-{name}");
        let headers = [
            ("x-request-id", id.as_str()),
            ("x-mock-output-tokens", "30"),
            ("x-mock-chunk-interval-ms", "30"),
        ];
        let r = g
            .post(path, &key(1), &headers, &stream_body(model, 500))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        // Read the first events, then hang up.
        let mut s = r.bytes_stream();
        let mut seen = String::new();
        while !seen.contains("tok1") {
            seen.push_str(std::str::from_utf8(&s.next().await.unwrap().unwrap()).unwrap());
        }
        drop(s);
        let line = g.log_line(&id).await;
        assert_eq!(line["usage_source"], "provider", "{name}: {line}");
        assert_eq!(line["output_tokens"], 30, "{name}: {line}");
        assert_eq!(line["code"], "client_closed_request", "{name}: {line}");
        cost += micros(&line["cost_usd"]);
    }
    // The provider finished every answer and reported it; the gateway charged exactly that.
    let (input, output) = mock.reported_usage();
    assert_eq!(output, 4 * 30);
    let spend = g
        .admin(ROOT)
        .ok("GET", "/v1/spend/keys/key_main", None)
        .await;
    assert_eq!(spend["input_tokens"], input, "{spend}");
    assert_eq!(spend["output_tokens"], output, "{spend}");
    assert_eq!(micros(&spend["cost_usd"]), cost, "{spend}");
}

/// Sends a stream that breaks after its first events (`fault`) and returns its log line.
async fn broken(g: &GatewayProc, key: &str, name: &str, fault: &str) -> Value {
    let mut lines = vec![];
    for (route, path, model) in ROUTES {
        let id = format!("{fault}-{name}-{route}");
        let headers = [
            ("x-request-id", id.as_str()),
            ("x-mock-output-tokens", "30"),
            ("x-mock-fault", fault),
        ];
        let r = g
            .post(path, key, &headers, &stream_body(model, 500))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{id}");
        // What arrived before the break (a cut body ends the read with an error).
        let mut text = String::new();
        let mut s = r.bytes_stream();
        while let Some(Ok(c)) = s.next().await {
            text.push_str(&String::from_utf8_lossy(&c));
        }
        assert!(
            text.contains("tok0"),
            "{id}: the first tokens reached the client: {text}"
        );
        let line = g.log_line(&id).await;
        assert_eq!(line["usage_source"], "counted", "{id}: {line}");
        // "tok0 " was streamed: counted, not zero, and far below the 500 reserved.
        let out = line["output_tokens"].as_u64().unwrap();
        assert!((1..=3).contains(&out), "{id}: {line}");
        assert!(line["input_tokens"].as_u64().unwrap() > 0, "{id}: {line}");
        assert!(micros(&line["cost_usd"]) > 0, "{id}: {line}");
        lines.push(line);
    }
    lines.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_timed_out_or_failed_stream_pays_what_it_streamed() {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    // The upstream closes mid-stream; stalls past the group's 1 s timeout after its first
    // byte; ends in an error event.
    broken(&g, &key(1), "cut", "cut_mid_stream").await;
    let timed_out = broken(&g, &key(3), "stall", "stall_mid_stream").await;
    assert_eq!(timed_out["key_id"], "key_cut");
    broken(&g, &key(1), "error", "error_mid_stream").await;
    // The spend routes carry what the lines say.
    let admin = g.admin(ROOT);
    let lines: Vec<Value> = std::fs::read_to_string(g.request_log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for key_id in ["key_main", "key_cut"] {
        let mine = lines.iter().filter(|l| l["key_id"] == key_id);
        let out: u64 = mine.map(|l| l["output_tokens"].as_u64().unwrap()).sum();
        let spend = admin
            .ok("GET", &format!("/v1/spend/keys/{key_id}"), None)
            .await;
        assert_eq!(spend["output_tokens"], out, "{key_id}: {spend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_usage_is_charged_as_reserved_and_says_so() {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 700,
        "messages": [{"role": "user", "content": "x"}]});
    let a = g
        .call(
            CHAT,
            &key(1),
            &[("x-mock-omit-usage", "1"), ("x-request-id", "no-usage")],
            &body,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let line = g.log_line("no-usage").await;
    assert_eq!(line["usage_source"], "reserved", "{line}");
    assert_eq!(line["output_tokens"], 700, "{line}");
    // A stream without usage pays what it streamed: 8 tokens of "tokN ".
    let a = g
        .call(
            CHAT,
            &key(1),
            &[
                ("x-mock-omit-usage", "1"),
                ("x-request-id", "no-usage-stream"),
            ],
            &stream_body("gpt-4o-mini", 700),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let line = g.log_line("no-usage-stream").await;
    assert_eq!(line["usage_source"], "counted", "{line}");
    let out = line["output_tokens"].as_u64().unwrap();
    assert!((8..=16).contains(&out), "{line}");
    // And a whole answer is the provider's.
    let a = g
        .call(CHAT, &key(1), &[("x-request-id", "whole")], &body)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(g.log_line("whole").await["usage_source"], "provider");
}
