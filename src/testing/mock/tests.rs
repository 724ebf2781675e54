use super::*;
use tokio::io::AsyncReadExt;

async fn raw(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn chat_json_echoes_model_and_reports_usage() {
    let m = MockProvider::start("127.0.0.1:0").await.unwrap();
    let body = r#"{"model":"gpt-x","messages":[]}"#;
    let out = raw(
        m.addr(),
        &post("/v1/chat/completions", body, "x-test: 1\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("\"model\":\"gpt-x\"") && out.contains("\"completion_tokens\":8"),
        "{out}"
    );
    let got = m.received();
    assert_eq!(got[0].header("x-test"), Some("1"));
    assert_eq!(got[0].json().unwrap()["model"], "gpt-x");
    assert_eq!(m.reported_usage(), ((body.len() as u64).div_ceil(4), 8));
}

#[tokio::test]
async fn chat_stream_usage_only_when_asked() {
    let m = MockProvider::start("127.0.0.1:0").await.unwrap();
    let out = raw(
        m.addr(),
        &post(
            "/v1/chat/completions",
            r#"{"model":"a","stream":true}"#,
            "x-mock-output-tokens: 2\r\n",
        ),
    )
    .await;
    assert!(
        out.contains("text/event-stream") && out.contains("data: [DONE]"),
        "{out}"
    );
    assert!(!out.contains("\"prompt_tokens\""), "{out}");
    let out = raw(
        m.addr(),
        &post(
            "/v1/chat/completions",
            r#"{"model":"a","stream":true,"stream_options":{"include_usage":true}}"#,
            "",
        ),
    )
    .await;
    assert!(
        out.contains("\"choices\":[],") && out.contains("\"completion_tokens\":8"),
        "{out}"
    );
}

#[tokio::test]
async fn anthropic_stream_events_in_order() {
    let m = MockProvider::start("127.0.0.1:0").await.unwrap();
    let out = raw(
        m.addr(),
        &post(
            "/v1/messages",
            r#"{"model":"c","stream":true}"#,
            "x-mock-output-tokens: 3\r\n",
        ),
    )
    .await;
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(out.contains("\"output_tokens\":3"));
}

#[tokio::test]
async fn chunked_bodies_status_and_reset() {
    let m = MockProvider::start("127.0.0.1:0").await.unwrap();
    let req = "POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"inp\r\nc\r\nut\":[\"a\",1]}\r\n0\r\n\r\n";
    let out = raw(m.addr(), req).await;
    assert!(out.contains("\"object\":\"embedding\""), "{out}");
    assert_eq!(m.received()[0].body.as_ref(), br#"{"input":["a",1]}"#);
    let out = raw(
        m.addr(),
        &post("/v1/messages", "{}", "x-mock-status: 529\r\n"),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 529") && out.contains("\"type\":\"error\""),
        "{out}"
    );
    let mut s = TcpStream::connect(m.addr()).await.unwrap();
    s.write_all(post("/v1/chat/completions", "{}", "x-mock-fault: reset\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out).await;
    assert!(r.is_err() || out.is_empty(), "expected a reset");
}

#[tokio::test]
async fn tool_calls_stop_sequences_and_errors_in_each_providers_shape() {
    let m = MockProvider::start("127.0.0.1:0").await.unwrap();
    // Anthropic: a streamed tool call with input_json_delta fragments.
    let tools = r#""tools":[{"name":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"},"n":{"type":"integer"}}}}]"#;
    let out = raw(
        m.addr(),
        &post("/v1/messages", &format!(r#"{{"model":"c","stream":true,{tools},"messages":[{{"role":"user","content":"x"}}]}}"#), ""),
    )
    .await;
    assert!(
        out.contains(r#""type":"tool_use""#) && out.contains("input_json_delta"),
        "{out}"
    );
    assert!(out.contains(r#""stop_reason":"tool_use""#), "{out}");
    // OpenAI: the tool result is quoted back; a stop sequence cuts the text.
    let body =
        r#"{"model":"g","messages":[{"role":"tool","tool_call_id":"c1","content":"sunny"}]}"#;
    let out = raw(m.addr(), &post("/v1/chat/completions", body, "")).await;
    assert!(out.contains("The tool returned: sunny"), "{out}");
    let body = r#"{"model":"g","stop":"tok2","messages":[]}"#;
    let out = raw(m.addr(), &post("/v1/chat/completions", body, "")).await;
    assert!(
        out.contains(r#""content":"tok0 tok1 ""#) && out.contains(r#""completion_tokens":2"#),
        "{out}"
    );
    let body = r#"{"model":"c","stop_sequences":["tok1"],"messages":[]}"#;
    let out = raw(m.addr(), &post("/v1/messages", body, "")).await;
    assert!(
        out.contains(r#""stop_reason":"stop_sequence","stop_sequence":"tok1""#),
        "{out}"
    );
    // fail_next: the next answer only, in the provider's error shape.
    m.fail_next(529);
    let out = raw(m.addr(), &post("/v1/messages", r#"{"model":"c"}"#, "")).await;
    assert!(
        out.starts_with("HTTP/1.1 529") && out.contains(r#""type":"overloaded_error""#),
        "{out}"
    );
    let out = raw(m.addr(), &post("/v1/messages", r#"{"model":"c"}"#, "")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = raw(m.addr(), &post("/_mock/fail_next", r#"{"status":429}"#, "")).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = raw(
        m.addr(),
        &post("/v1/chat/completions", r#"{"model":"g"}"#, ""),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 429") && out.contains(r#""code":"rate_limit_exceeded""#),
        "{out}"
    );
    // Echo: what the provider received, in its own terms.
    let body = r#"{"model":"c","system":"S","messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}"#;
    let out = raw(m.addr(), &post("/v1/messages", body, "x-mock-echo: 1\r\n")).await;
    let v: serde_json::Value =
        serde_json::from_str(&out[out.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let seen: serde_json::Value =
        serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(seen["system"], "S");
    assert_eq!(seen["images"][0]["url"], "u");
}

/// `x-mock-cached-tokens`, `x-mock-cache-write-tokens`, `x-mock-reasoning-tokens`: every
/// API's answer, whole and streamed, reports them in its own fields (cache writes only
/// Anthropic, reasoning only OpenAI), and the gateway's usage reading finds them within
/// the same prompt and output totals.
#[test]
fn cache_and_reasoning_tokens_in_every_api_shape() {
    use crate::llm::usage::{Scanner, StreamFormat, TokenUsage};
    let req = serde_json::json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}});
    let cache = answers::CacheReport {
        read: 64,
        write: 16,
        reasoning: 2,
    };
    for kind in [
        Kind::Chat,
        Kind::Completions,
        Kind::Responses,
        Kind::Messages,
    ] {
        let want = if kind == Kind::Messages {
            (Some(100), Some(64), Some(16), None)
        } else {
            (Some(100), Some(64), None, Some(2))
        };
        let r = reply::plan(kind, &req, 3, false);
        let mut v = answers::json_answer(kind, "m", &req, 100, &r, true);
        answers::report_cache(kind, &mut v, cache);
        let u = TokenUsage::from_json(&v);
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.reasoning),
            want,
            "{kind:?}: {v}"
        );
        assert_eq!(u.output, Some(3), "{kind:?}");
        let mut events = answers::stream_events(kind, "m", &req, 100, &r, true);
        let mut s = Scanner::new(StreamFormat::Sse, false);
        for ev in &mut events {
            answers::report_cache_in_event(kind, ev, cache);
            let mut b = Some(Bytes::from(ev.clone()));
            s.chunk(&mut b, false);
        }
        s.chunk(&mut None, true);
        let u = s.usage;
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.reasoning),
            want,
            "{kind:?}: {events:?}"
        );
    }
}
