use super::{to_chat, to_messages};
use serde_json::{json, Value};

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
        let body: Value =
            serde_json::from_slice(&e.body(crate::policy::config::Api::OpenAi)).unwrap();
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
fn malformed_and_untranslatable_content_is_named() {
    let e = to_messages(json!({"messages": [{"role": "user", "content": 5}]})).unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let e = to_messages(json!({"messages": [{"role": "robot", "content": "x"}]})).unwrap_err();
    assert!(e.to_string().contains("messages[0].role"), "{e}");
    let e = to_messages(json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}))
    .unwrap_err();
    assert!(e.to_string().contains("messages[0].tool_calls[0]"), "{e}");
    let e = to_messages(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]}))
    .unwrap_err();
    assert_eq!(e.param(), Some("messages[0].content[0].image_url.url"));
    let e = to_chat(json!({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}]}]}))
    .unwrap_err();
    assert_eq!(e.param(), Some("messages[0].content[0].content[0].type"));
    let e = to_chat(json!({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {}}]}]}))
    .unwrap_err();
    assert_eq!(e.param(), Some("messages[0].content[0].type"));
    let e = to_chat(
        json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    )
    .unwrap_err();
    assert_eq!(e.param(), Some("tools[0].type"));
    let e = to_chat(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    // Escaped strings survive both ways.
    let out =
        to_messages(json!({"messages": [{"role": "user", "content": "a \"q\" \\ é\n"}]})).unwrap();
    assert_eq!(out["messages"][0]["content"][0]["text"], "a \"q\" \\ é\n");
    let out = to_chat(
        json!({"system": [{"type": "text", "text": "s1"}, {"type": "text", "text": "s2"}],
        "messages": [{"role": "user", "content": "a \"q\""}]}),
    )
    .unwrap();
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": "s1\n\ns2"})
    );
    assert_eq!(out["messages"][1]["content"], "a \"q\"");
}
