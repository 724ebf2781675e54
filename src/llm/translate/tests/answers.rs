use super::*;
use serde_json::json;

#[test]
fn json_answers_both_ways() {
    let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1]}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 3}});
    let chat: Value = serde_json::from_slice(
        &messages_json_to_chat(msg.to_string().as_bytes(), "smart").unwrap(),
    )
    .unwrap();
    assert_eq!(chat["model"], "smart");
    assert_eq!(chat["object"], "chat.completion");
    let c = &chat["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], "hi");
    assert_eq!(
        c["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":[1]}"
    );
    assert_eq!(chat["usage"]["prompt_tokens"], 15);
    assert_eq!(chat["usage"]["completion_tokens"], 3);
    let back: Value =
        serde_json::from_slice(&chat_json_to_messages(chat.to_string().as_bytes(), "m").unwrap())
            .unwrap();
    assert_eq!(back["content"], msg["content"]);
    assert_eq!(back["stop_reason"], "tool_use");
    assert_eq!(back["usage"]["input_tokens"], 10);
    assert_eq!(back["usage"]["cache_read_input_tokens"], 5);
    assert!(messages_json_to_chat(b"not json", "m").is_none());
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
    ] {
        assert_eq!(response::finish_reason(stop), finish);
    }
}

#[test]
fn provider_errors_take_the_route_shape_and_status() {
    let an = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let (status, _) = response::error_status(Direction::ChatToMessages, 529);
    assert_eq!(status, 503);
    let v: Value =
        serde_json::from_slice(&error_to_route(Direction::ChatToMessages, 529, an)).unwrap();
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(v["error"]["code"], "overloaded_error");
    let oa = br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded","param":null}}"#;
    let v: Value =
        serde_json::from_slice(&error_to_route(Direction::MessagesToChat, 429, oa)).unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
    assert_eq!(
        response::error_status(Direction::MessagesToChat, 503).0,
        529
    );
    let v: Value = serde_json::from_slice(&error_to_route(
        Direction::MessagesToChat,
        502,
        b"<html>bad gateway</html>",
    ))
    .unwrap();
    assert_eq!(v["error"]["message"], "<html>bad gateway</html>");
}

fn anthropic_stream(text: &[&str], tool: Option<(&str, &str, &[&str])>, stop: &str) -> String {
    let mut ev = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    for t in text {
        ev.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}));
    }
    ev.push(json!({"type": "content_block_stop", "index": 0}));
    if let Some((id, name, frags)) = tool {
        ev.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
        for f in frags {
            ev.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": f}}));
        }
        ev.push(json!({"type": "content_block_stop", "index": 1}));
    }
    ev.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 7}}));
    ev.push(json!({"type": "message_stop"}));
    sse(&ev, true)
}

#[test]
fn anthropic_stream_to_openai_chunks_at_every_split() {
    let input = anthropic_stream(
        &["Hel", "lo"],
        Some(("toolu_9", "look", &["{\"q\":", "1}"])),
        "tool_use",
    );
    for usage in [false, true] {
        for at in 0..input.len() {
            let mut t = AnthropicToOpenAi::new("smart", usage);
            let out = run(|b, e| t.chunk(b, e), &input, at);
            let (text, calls, finish, u, done) = assemble_openai(&out);
            assert_eq!(text, "Hello");
            assert_eq!(
                calls,
                [("toolu_9".into(), "look".into(), "{\"q\":1}".into())]
            );
            assert_eq!(finish, "tool_calls");
            assert!(done);
            assert_eq!(u.is_some(), usage, "usage chunk only when asked");
            if let Some(u) = u {
                assert_eq!(u["prompt_tokens"], 12);
                assert_eq!(u["completion_tokens"], 7);
            }
            assert!(out.contains("\"model\":\"smart\""));
        }
    }
}

fn openai_stream(text: &[&str], tool: Option<(&str, &str, &[&str])>, finish: &str) -> String {
    let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "g", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null});
    let mut ev = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for t in text {
        ev.push(chunk(json!({ "content": t }), Value::Null));
    }
    if let Some((id, name, frags)) = tool {
        ev.push(chunk(json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), Value::Null));
        for f in frags {
            ev.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}),
                Value::Null,
            ));
        }
    }
    ev.push(chunk(json!({}), json!(finish)));
    ev.push(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "g", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}}));
    let mut s = sse(&ev, false);
    s.push_str("data: [DONE]\n\n");
    s
}

#[test]
fn openai_stream_to_anthropic_events_at_every_split() {
    let input = openai_stream(
        &["Hel", "lo"],
        Some(("call_1", "look", &["{\"q\"", ":1}"])),
        "tool_calls",
    );
    for at in 0..input.len() {
        let mut t = OpenAiToAnthropic::new("smart");
        let out = run(|b, e| t.chunk(b, e), &input, at);
        let (names, text, tools, stop, usage) = assemble_anthropic(&out);
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(text, "Hello");
        assert_eq!(
            tools,
            [("call_1".into(), "look".into(), "{\"q\":1}".into())]
        );
        assert_eq!(stop, "tool_use");
        assert_eq!(usage["input_tokens"], 20);
        assert_eq!(usage["output_tokens"], 6);
    }
}

#[test]
fn stream_errors_are_translated() {
    let mut t = AnthropicToOpenAi::new("m", false);
    let mut b = Some(Bytes::from("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"));
    t.chunk(&mut b, false);
    let out = String::from_utf8(b.unwrap().to_vec()).unwrap();
    assert!(
        out.starts_with("data: {\"error\":{") && out.contains("Overloaded"),
        "{out}"
    );
    let mut t = OpenAiToAnthropic::new("m");
    let mut b = Some(Bytes::from(
        "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
    ));
    t.chunk(&mut b, false);
    let out = String::from_utf8(b.unwrap().to_vec()).unwrap();
    assert!(
        out.starts_with("event: error\n") && out.contains("boom"),
        "{out}"
    );
}
