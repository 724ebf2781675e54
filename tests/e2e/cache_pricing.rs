//! End to end: docs/policy.md "Every usage field counts" — prompt-cache reads and writes
//! and reasoning tokens, reported by the mock provider in each API's own fields (JSON and
//! streams, direct and translated), are counted and priced as the providers bill them,
//! checked to the micro-dollar against a hand computation, and reported apart in the
//! request log and the spend routes (JSON and CSV).

use crate::harness::*;
use serde_json::{json, Value};

/// gpt-4o-cached: $2.50 in, $1.25 cache reads (writes at the input price), $10 out.
/// claude-cached: $3 in, $0.30 cache reads, $3.75 cache writes, $15 out.
fn policy(mock: std::net::SocketAddr) -> String {
    basic_policy(
        mock,
        r#"
[[models]]
name = "gpt-4o-cached"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10
cache_read_usd_per_mtok = 1.25
targets = [{ provider = "oa" }]

[[models]]
name = "claude-cached"
input_usd_per_mtok = 3
output_usd_per_mtok = 15
cache_read_usd_per_mtok = 0.30
cache_write_usd_per_mtok = 3.75
targets = [{ provider = "an" }]
"#,
    )
    .with_request_log()
    .with_admin()
}

/// Prices in micro-dollars per million tokens: (input, cache read, cache write, output).
const OA: (u64, u64, u64, u64) = (2_500_000, 1_250_000, 2_500_000, 10_000_000);
const AN: (u64, u64, u64, u64) = (3_000_000, 300_000, 3_750_000, 15_000_000);

/// The bill by hand: the prompt not read from or written to the cache at the input price,
/// reads and writes at theirs, output at the output price; rounded up once.
fn by_hand(price: (u64, u64, u64, u64), input: u64, read: u64, write: u64, output: u64) -> u64 {
    let (pi, pr, pw, po) = price;
    ((input - read - write) * pi + read * pr + write * pw + output * po).div_ceil(1_000_000)
}

const READ: u64 = 64;
const WRITE: u64 = 32;
const REASONING: u64 = 5;
const OUTPUT: u64 = 20;

fn headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-mock-cached-tokens", READ.to_string()),
        ("x-mock-cache-write-tokens", WRITE.to_string()),
        ("x-mock-reasoning-tokens", REASONING.to_string()),
        ("x-mock-output-tokens", OUTPUT.to_string()),
    ]
}

/// A prompt long enough that the mock's prompt count (a token per 4 bytes of the upstream
/// body) is well over the cached tokens.
fn prompt() -> String {
    "the quick brown fox jumps over the lazy dog. ".repeat(20)
}

/// What the usage object of one SSE stream's events says (the last one that has one,
/// merged with Anthropic's `message_start`).
fn stream_usage(text: &str) -> Value {
    let mut usage = serde_json::Map::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        for u in [&v["usage"], &v["message"]["usage"]] {
            if let Some(o) = u.as_object() {
                usage.extend(o.clone());
            }
        }
    }
    Value::Object(usage)
}

struct Case {
    path: &'static str,
    model: &'static str,
    stream: bool,
}

/// Sends one request: the client's usage, and the request-log line.
async fn send(g: &GatewayProc, mock: &MockProvider, c: &Case) -> (Value, Value, u64) {
    let mut body = json!({
        "model": c.model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": prompt()}],
    });
    if c.stream {
        body["stream"] = json!(true);
        if c.path == CHAT {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    let h = headers();
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = g.call(c.path, &key(1), &h, &body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let usage = if c.stream {
        stream_usage(&a.text)
    } else {
        a.json()["usage"].clone()
    };
    let id = a.header("x-request-id").expect("x-request-id").to_string();
    // The mock's prompt count: a token per 4 bytes of what it received.
    let sent = mock.received();
    let prompt_tokens = (sent.last().expect("a request upstream").body.len() as u64).div_ceil(4);
    (usage, g.log_line(&id).await, prompt_tokens)
}

fn micros(v: &Value) -> u64 {
    (v.as_f64().expect("a number") * 1e6).round() as u64
}

#[tokio::test]
async fn cache_and_reasoning_tokens_are_priced_as_billed_and_reported_apart() {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    let mut want_oa = (0u64, 0u64, 0u64, 0u64); // cached, write, reasoning, cost
    let mut want_an = (0u64, 0u64, 0u64, 0u64);

    // OpenAI, JSON and streamed: `prompt_tokens` includes the cached tokens and
    // `completion_tokens` the reasoning ones; the mock reports no cache writes.
    for stream in [false, true] {
        let c = Case {
            path: CHAT,
            model: "gpt-4o-cached",
            stream,
        };
        let (usage, line, p) = send(&g, &mock, &c).await;
        assert_eq!(usage["prompt_tokens"], p, "{usage}");
        assert_eq!(
            usage["prompt_tokens_details"]["cached_tokens"], READ,
            "{usage}"
        );
        assert_eq!(
            usage["completion_tokens_details"]["reasoning_tokens"], REASONING,
            "{usage}"
        );
        let cost = by_hand(OA, p, READ, 0, OUTPUT);
        assert_eq!(micros(&line["cost_usd"]), cost, "stream {stream}: {line}");
        assert_eq!(line["input_tokens"], p);
        assert_eq!(line["output_tokens"], OUTPUT);
        assert_eq!(line["cached_input_tokens"], READ);
        assert_eq!(line["cache_write_tokens"], 0);
        assert_eq!(line["reasoning_tokens"], REASONING);
        want_oa = (
            want_oa.0 + READ,
            want_oa.1,
            want_oa.2 + REASONING,
            want_oa.3 + cost,
        );
    }

    // Anthropic, JSON and streamed: `input_tokens` excludes the cache reads and writes.
    for stream in [false, true] {
        let c = Case {
            path: MESSAGES,
            model: "claude-cached",
            stream,
        };
        let (usage, line, p) = send(&g, &mock, &c).await;
        assert_eq!(usage["input_tokens"], p - READ - WRITE, "{usage}");
        assert_eq!(usage["cache_read_input_tokens"], READ, "{usage}");
        assert_eq!(usage["cache_creation_input_tokens"], WRITE, "{usage}");
        let cost = by_hand(AN, p, READ, WRITE, OUTPUT);
        assert_eq!(micros(&line["cost_usd"]), cost, "stream {stream}: {line}");
        assert_eq!(line["input_tokens"], p, "every prompt token: {line}");
        assert_eq!(line["cached_input_tokens"], READ);
        assert_eq!(line["cache_write_tokens"], WRITE);
        assert_eq!(line["reasoning_tokens"], 0);
        want_an = (
            want_an.0 + READ,
            want_an.1 + WRITE,
            want_an.2,
            want_an.3 + cost,
        );
    }

    // Translated: an OpenAI client served by the Anthropic target (streamed) is billed as
    // Anthropic bills, and its usage carries the cache counts in OpenAI's shape.
    let c = Case {
        path: CHAT,
        model: "claude-cached",
        stream: true,
    };
    let (usage, line, p) = send(&g, &mock, &c).await;
    assert_eq!(usage["prompt_tokens"], p, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], READ,
        "{usage}"
    );
    assert_eq!(
        usage["prompt_tokens_details"]["cache_creation_tokens"], WRITE,
        "{usage}"
    );
    let cost = by_hand(AN, p, READ, WRITE, OUTPUT);
    assert_eq!(micros(&line["cost_usd"]), cost, "{line}");
    assert_eq!(line["cache_write_tokens"], WRITE);
    want_an = (
        want_an.0 + READ,
        want_an.1 + WRITE,
        want_an.2,
        want_an.3 + cost,
    );

    // And an Anthropic client served by the OpenAI target (JSON): OpenAI's bill, the
    // cached tokens moved out of `input_tokens` as Anthropic reports them.
    let c = Case {
        path: MESSAGES,
        model: "gpt-4o-cached",
        stream: false,
    };
    let (usage, line, p) = send(&g, &mock, &c).await;
    assert_eq!(usage["input_tokens"], p - READ, "{usage}");
    assert_eq!(usage["cache_read_input_tokens"], READ, "{usage}");
    let cost = by_hand(OA, p, READ, 0, OUTPUT);
    assert_eq!(micros(&line["cost_usd"]), cost, "{line}");
    assert_eq!(line["reasoning_tokens"], REASONING);
    want_oa = (
        want_oa.0 + READ,
        want_oa.1,
        want_oa.2 + REASONING,
        want_oa.3 + cost,
    );

    // The spend route reports the parts apart, per model, in JSON and CSV.
    let admin = g.admin(ROOT);
    let by_model = admin
        .ok("GET", "/v1/spend/groups/grp_prod/by-model", None)
        .await;
    let row = |m: &str| -> Value {
        by_model["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("{m} in {by_model}"))
    };
    for (m, (cached, write, reasoning, cost)) in
        [("gpt-4o-cached", want_oa), ("claude-cached", want_an)]
    {
        let r = row(m);
        assert_eq!(r["requests"], 3, "{r}");
        assert_eq!(r["cached_input_tokens"], cached, "{r}");
        assert_eq!(r["cache_write_tokens"], write, "{r}");
        assert_eq!(r["reasoning_tokens"], reasoning, "{r}");
        assert_eq!(micros(&r["cost_usd"]), cost, "{r}");
    }
    let csv = admin
        .text("/v1/spend/groups/grp_prod/by-model?format=csv")
        .await;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "model",
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd"
        ]
    );
    let claude: Vec<&str> = lines
        .find(|l| l.starts_with("claude-cached,"))
        .expect("claude-cached row")
        .split(',')
        .collect();
    assert_eq!(claude[3], want_an.0.to_string());
    assert_eq!(claude[4], want_an.1.to_string());
    assert_eq!(claude[6], "0");
}
