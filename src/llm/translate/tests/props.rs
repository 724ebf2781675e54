//! Property: arbitrary chat requests translate to valid Messages requests, and answers
//! round-trip content and tool calls (JSON and streams, cut anywhere).

use super::*;
use proptest::prelude::*;
use serde_json::json;

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
        let b = RequestBody::parse(out.to_string()).unwrap();
        let back: Value = serde_json::from_slice(&messages_to_chat(&b, "m").unwrap()).unwrap();
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
