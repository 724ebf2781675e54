use super::*;
use crate::request::RequestBody;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Tool calls as reassembled from a stream: (id, name, arguments JSON).
type Calls = Vec<(String, String, String)>;

fn to_messages(req: Value) -> Result<Value, GatewayError> {
    let b = RequestBody::parse(req.to_string().as_bytes())?;
    let out = chat_to_messages(b.fields(), "claude-x", 4096)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn to_chat(req: Value) -> Result<Value, GatewayError> {
    let b = RequestBody::parse(req.to_string().as_bytes())?;
    let out = messages_to_chat(b.fields(), "gpt-x")?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[test]
fn chat_request_becomes_a_messages_request() {
    let out = to_messages(json!({
        "model": "smart", "temperature": 0.5, "top_p": 0.9, "stop": "END", "user": "u-1",
        "stream": true, "stream_options": {"include_usage": true}, "seed": 3, "n": 1,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "look", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a hat"}]},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "description": "d", "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}}],
        "tool_choice": "required", "parallel_tool_calls": false,
    }))
    .unwrap();
    assert_eq!(out["model"], "claude-x");
    assert_eq!(out["max_tokens"], 4096);
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Answer in French."}])
    );
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(out["temperature"], 0.5);
    assert_eq!(out["stream"], true);
    assert!(out.get("stream_options").is_none() && out.get("seed").is_none());
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(
        m[0]["content"][1],
        json!({"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}})
    );
    assert_eq!(
        m[0]["content"][2]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
    );
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": 1}})
    );
    assert_eq!(m[1]["content"][1]["input"], json!({}));
    // Both tool results in one user turn.
    assert_eq!(m[2]["role"], "user");
    assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!(m[2]["content"][1]["content"][0]["text"], "a hat");
    assert_eq!(
        out["tools"][0]["input_schema"]["properties"]["q"]["type"],
        "integer"
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_both_ways() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    for (oa, an) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let out = to_messages(json!({"messages": [], "tools": tools, "tool_choice": oa})).unwrap();
        assert_eq!(out["tool_choice"], an);
        let back = to_chat(json!({"messages": [], "tools": [{"name": "f", "input_schema": {}}], "tool_choice": an})).unwrap();
        assert_eq!(back["tool_choice"], oa);
    }
}

#[test]
fn fields_that_change_the_answer_are_refused_by_name() {
    for (field, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("audio", json!({"voice": "alloy"})),
        ("response_format", json!({"type": "json_object"})),
        ("frequency_penalty", json!(0.5)),
        ("no_such_field", json!(1)),
    ] {
        let mut req = json!({"messages": [{"role": "user", "content": "x"}]});
        req[field] = value;
        let e = to_messages(req).unwrap_err();
        assert_eq!(e.code(), "unsupported_parameter");
        assert_eq!(e.param(), Some(field));
        let body: Value = serde_json::from_slice(&e.body(crate::config::Api::OpenAi)).unwrap();
        assert_eq!(body["error"]["param"], field);
    }
    let e = to_messages(json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})).unwrap_err();
    assert_eq!(e.param(), Some("messages[0].content[0].type"));
    for (field, value) in [
        ("top_k", json!(5)),
        (
            "thinking",
            json!({"type": "enabled", "budget_tokens": 1024}),
        ),
    ] {
        let mut req = json!({"messages": [], "max_tokens": 5});
        req[field] = value;
        assert_eq!(to_chat(req).unwrap_err().param(), Some(field));
    }
    // Defaults that change nothing pass.
    to_messages(json!({"messages": [], "n": 1, "logprobs": false, "presence_penalty": 0})).unwrap();
}

#[test]
fn messages_request_becomes_a_chat_request() {
    let out = to_chat(json!({
        "model": "x", "max_tokens": 100, "system": [{"type": "text", "text": "Be terse."}],
        "stop_sequences": ["A", "B"], "stream": true, "metadata": {"user_id": "u"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat", "is_error": true},
                {"type": "text", "text": "and?"},
            ]},
        ],
        "tools": [{"name": "look", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
    }))
    .unwrap();
    assert_eq!(out["model"], "gpt-x");
    assert_eq!(out["max_completion_tokens"], 100);
    assert_eq!(out["stop"], json!(["A", "B"]));
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["user"], "u");
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(out["tool_choice"], "auto");
    let m = out["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    assert_eq!(m[0]["content"], "Be terse.");
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,/9j/"
    );
    assert_eq!(m[2]["content"], "calling");
    assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
    assert_eq!(m[3]["tool_call_id"], "toolu_1");
    assert_eq!(m[3]["content"], "Error: a cat");
    assert_eq!(
        out["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
}

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

fn sse(events: &[Value], named: bool) -> String {
    events
        .iter()
        .map(|e| {
            if named {
                format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())
            } else {
                format!("data: {e}\n\n")
            }
        })
        .collect()
}

/// Feeds `input` in two chunks split at `at`, returns the output.
fn run(mut f: impl FnMut(&mut Option<Bytes>, bool), input: &str, at: usize) -> String {
    let (a, b) = input.split_at(at);
    let mut out = String::new();
    for (i, part) in [a, b].iter().enumerate() {
        let mut body = Some(Bytes::from(part.to_string()));
        f(&mut body, i == 1);
        out.push_str(std::str::from_utf8(&body.unwrap_or_default()).unwrap());
    }
    out
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

/// Reassembles OpenAI chunks: (text, tool calls (id, name, args), finish, usage, done).
fn assemble_openai(out: &str) -> (String, Calls, String, Option<Value>, bool) {
    let (mut text, mut calls, mut finish, mut usage, mut done) = (
        String::new(),
        Vec::<(String, String, String)>::new(),
        String::new(),
        None,
        false,
    );
    for line in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    tc["id"].as_str().unwrap().into(),
                    tc["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, calls, finish, usage, done)
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

/// Reassembles Anthropic events: (event names, text, tool uses (id, name, json), stop, usage).
fn assemble_anthropic(out: &str) -> (Vec<String>, String, Calls, String, Value) {
    let (mut names, mut text, mut tools, mut stop, mut usage) = (
        vec![],
        String::new(),
        Vec::<(String, String, String)>::new(),
        String::new(),
        Value::Null,
    );
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l.strip_prefix("event: ") else {
            continue;
        };
        let v: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["type"], name);
        names.push(name.to_string());
        match name {
            "content_block_start" if v["content_block"]["type"] == "tool_use" => tools.push((
                v["content_block"]["id"].as_str().unwrap().into(),
                v["content_block"]["name"].as_str().unwrap().into(),
                String::new(),
            )),
            "content_block_delta" => match v["delta"]["type"].as_str().unwrap() {
                "text_delta" => text.push_str(v["delta"]["text"].as_str().unwrap()),
                _ => tools
                    .last_mut()
                    .unwrap()
                    .2
                    .push_str(v["delta"]["partial_json"].as_str().unwrap()),
            },
            "message_delta" => {
                stop = v["delta"]["stop_reason"].as_str().unwrap().into();
                usage = v["usage"].clone();
            }
            _ => {}
        }
    }
    (names, text, tools, stop, usage)
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

// ---- property: arbitrary chat requests ----

#[derive(Debug, Clone)]
enum Turn {
    User(Vec<String>),
    Assistant(String, Vec<(String, Value)>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \"\\\\\n{}é😀]{1,12}"
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,5}",
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            text().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn turns() -> impl Strategy<Value = Vec<Turn>> {
    let user = prop::collection::vec(text(), 1..3).prop_map(Turn::User);
    let assistant = (
        prop_oneof![Just(String::new()), text()],
        prop::collection::vec(("[a-z]{1,6}", args()), 0..3),
    )
        .prop_map(|(t, calls)| {
            Turn::Assistant(
                if calls.is_empty() && t.is_empty() {
                    "ok".into()
                } else {
                    t
                },
                calls,
            )
        });
    prop::collection::vec(prop_oneof![user, assistant], 1..6)
}

/// The chat request for `turns`: each assistant tool call is answered by a tool message.
fn chat_request(system: &Option<String>, turns: &[Turn]) -> Value {
    let mut messages = vec![];
    if let Some(s) = system {
        messages.push(json!({"role": "system", "content": s}));
    }
    for (i, t) in turns.iter().enumerate() {
        match t {
            Turn::User(parts) => {
                let parts: Vec<Value> = parts
                    .iter()
                    .map(|p| json!({"type": "text", "text": p}))
                    .collect();
                messages.push(json!({"role": "user", "content": parts}));
            }
            Turn::Assistant(text, calls) => {
                let tc: Vec<Value> = calls.iter().enumerate().map(|(j, (name, a))| json!({"id": format!("call_{i}_{j}"), "type": "function", "function": {"name": name, "arguments": a.to_string()}})).collect();
                let mut m = json!({"role": "assistant", "content": text});
                if !tc.is_empty() {
                    m["tool_calls"] = Value::Array(tc);
                }
                messages.push(m);
                for j in 0..calls.len() {
                    messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}_{j}"), "content": format!("result {i} {j}")}));
                }
            }
        }
    }
    json!({"model": "m", "messages": messages, "max_tokens": 50,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn chat_requests_translate_to_valid_messages_requests(system in prop::option::of(text()), turns in turns()) {
        let req = chat_request(&system, &turns);
        let out = to_messages(req.clone()).unwrap();
        prop_assert_eq!(&out["max_tokens"], &json!(50));
        prop_assert_eq!(out["system"].is_array(), system.is_some());
        let msgs = out["messages"].as_array().unwrap();
        let mut open_calls: Vec<String> = vec![];
        for (i, m) in msgs.iter().enumerate() {
            let role = m["role"].as_str().unwrap();
            prop_assert!(role == "user" || role == "assistant");
            if i > 0 {
                prop_assert_ne!(&msgs[i - 1]["role"], &m["role"], "roles alternate");
            }
            let blocks = m["content"].as_array().unwrap();
            prop_assert!(!blocks.is_empty());
            // Tool results answer exactly the calls of the turn before, first in their turn.
            let results: Vec<String> = blocks.iter().filter(|b| b["type"] == "tool_result").map(|b| b["tool_use_id"].as_str().unwrap().to_string()).collect();
            prop_assert_eq!(&results, &open_calls);
            open_calls.clear();
            for b in blocks {
                match b["type"].as_str().unwrap() {
                    "text" => prop_assert!(!b["text"].as_str().unwrap().is_empty()),
                    "tool_use" => {
                        prop_assert_eq!(role, "assistant");
                        prop_assert!(b["input"].is_object());
                        open_calls.push(b["id"].as_str().unwrap().to_string());
                    }
                    "tool_result" => prop_assert_eq!(role, "user"),
                    other => prop_assert!(false, "unexpected block {}", other),
                }
            }
        }
        // And back: text, tool calls and results survive a round trip to a chat request.
        let b = RequestBody::parse(out.to_string().as_bytes()).unwrap();
        let back: Value = serde_json::from_slice(&messages_to_chat(b.fields(), "m").unwrap()).unwrap();
        let calls = |v: &Value| -> Vec<(Value, Value, Value)> {
            v["messages"].as_array().unwrap().iter()
                .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
                .map(|c| (c["id"].clone(), c["function"]["name"].clone(),
                    serde_json::from_str::<Value>(c["function"]["arguments"].as_str().unwrap()).unwrap()))
                .collect()
        };
        prop_assert_eq!(calls(&back), calls(&req));
        let tool_results = |v: &Value| -> Vec<Value> {
            v["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").map(|m| m["content"].clone()).collect()
        };
        prop_assert_eq!(tool_results(&back), tool_results(&req));
    }

    #[test]
    fn answers_round_trip_content_and_tool_calls(
        parts in prop::collection::vec(text(), 0..4),
        calls in prop::collection::vec(("[a-z]{1,6}", args()), 0..3),
        split in any::<prop::sample::Index>(),
    ) {
        let text: String = parts.concat();
        let mut content = vec![];
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for (j, (name, a)) in calls.iter().enumerate() {
            content.push(json!({"type": "tool_use", "id": format!("toolu_{j}"), "name": name, "input": a}));
        }
        let stop = if calls.is_empty() { "end_turn" } else { "tool_use" };
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 4}});
        // JSON: message -> chat.completion -> message.
        let chat = messages_json_to_chat(msg.to_string().as_bytes(), "m").unwrap();
        let back: Value = serde_json::from_slice(&chat_json_to_messages(&chat, "m").unwrap()).unwrap();
        prop_assert_eq!(&back["content"], &msg["content"]);
        prop_assert_eq!(&back["stop_reason"], &msg["stop_reason"]);
        // Streams: Anthropic events -> OpenAI chunks, cut anywhere, reassemble the same.
        let frags: Vec<String> = calls.iter().map(|(_, a)| a.to_string()).collect();
        let mut ev = vec![json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 0}}})];
        for (j, p) in parts.iter().enumerate() {
            if j == 0 { ev.push(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})); }
            ev.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}));
        }
        for (j, (name, _)) in calls.iter().enumerate() {
            let f = &frags[j];
            let mid = f.char_indices().nth(f.chars().count() / 2).map_or(0, |(i, _)| i);
            ev.push(json!({"type": "content_block_start", "index": j + 1, "content_block": {"type": "tool_use", "id": format!("toolu_{j}"), "name": name, "input": {}}}));
            ev.push(json!({"type": "content_block_delta", "index": j + 1, "delta": {"type": "input_json_delta", "partial_json": &f[..mid]}}));
            ev.push(json!({"type": "content_block_delta", "index": j + 1, "delta": {"type": "input_json_delta", "partial_json": &f[mid..]}}));
        }
        ev.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 4}}));
        ev.push(json!({"type": "message_stop"}));
        let input = sse(&ev, true);
        let at = split.index(input.len() + 1);
        let at = (0..=at).rev().find(|i| input.is_char_boundary(*i)).unwrap_or(0);
        let mut t = AnthropicToOpenAi::new("m", true);
        let out = run(|b, e| t.chunk(b, e), &input, at);
        let (stext, scalls, _, usage, done) = assemble_openai(&out);
        prop_assert_eq!(&stext, &text);
        let want: Vec<(String, String, Value)> = calls.iter().enumerate().map(|(j, (n, a))| (format!("toolu_{j}"), n.clone(), a.clone())).collect();
        let got: Vec<(String, String, Value)> = scalls.into_iter().map(|(i, n, a)| (i, n, serde_json::from_str(&a).unwrap())).collect();
        prop_assert_eq!(got, want);
        prop_assert!(done);
        prop_assert_eq!(&usage.unwrap()["completion_tokens"], &json!(4));
        // And OpenAI chunks of the same answer -> Anthropic events.
        let name_frags: Vec<(String, String, Vec<String>)> = calls.iter().enumerate().map(|(j, (n, _))| (format!("call_{j}"), n.clone(), vec![frags[j].clone()])).collect();
        let chunk = |delta: Value, finish: Value| json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        let mut oev: Vec<Value> = parts.iter().map(|p| chunk(json!({"content": p}), Value::Null)).collect();
        for (j, (id, n, fr)) in name_frags.iter().enumerate() {
            oev.push(chunk(json!({"tool_calls": [{"index": j, "id": id, "type": "function", "function": {"name": n, "arguments": fr[0]}}]}), Value::Null));
        }
        oev.push(chunk(json!({}), json!(if calls.is_empty() { "stop" } else { "tool_calls" })));
        let mut input = sse(&oev, false);
        input.push_str("data: [DONE]\n\n");
        let at = split.index(input.len() + 1);
        let at = (0..=at).rev().find(|i| input.is_char_boundary(*i)).unwrap_or(0);
        let mut t = OpenAiToAnthropic::new("m");
        let out = run(|b, e| t.chunk(b, e), &input, at);
        let (_, atext, atools, astop, _) = assemble_anthropic(&out);
        prop_assert_eq!(atext, text);
        let got: Vec<(String, Value)> = atools.into_iter().map(|(_, n, a)| (n, serde_json::from_str(&a).unwrap())).collect();
        let want: Vec<(String, Value)> = calls.iter().map(|(n, a)| (n.clone(), a.clone())).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(astop, stop);
    }
}
