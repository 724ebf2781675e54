//! Unit and property tests of the translation: requests, answers, streams.

mod answers;
mod props;
mod request;

use super::*;
use crate::llm::body::RequestBody;
use serde_json::Value;

/// Tool calls as reassembled from a stream: (id, name, arguments JSON).
pub(crate) type Calls = Vec<(String, String, String)>;

pub(crate) fn to_messages(req: Value) -> Result<Value, GatewayError> {
    let b = RequestBody::parse(req.to_string())?;
    let out = chat_to_messages(&b, "claude-x", 4096)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub(crate) fn to_chat(req: Value) -> Result<Value, GatewayError> {
    let b = RequestBody::parse(req.to_string())?;
    let out = messages_to_chat(&b, "gpt-x")?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub(crate) fn sse(events: &[Value], named: bool) -> String {
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
pub(crate) fn run(mut f: impl FnMut(&mut Option<Bytes>, bool), input: &str, at: usize) -> String {
    let (a, b) = input.split_at(at);
    let mut out = String::new();
    for (i, part) in [a, b].iter().enumerate() {
        let mut body = Some(Bytes::from(part.to_string()));
        f(&mut body, i == 1);
        out.push_str(std::str::from_utf8(&body.unwrap_or_default()).unwrap());
    }
    out
}

/// Reassembles OpenAI chunks: (text, tool calls (id, name, args), finish, usage, done).
pub(crate) fn assemble_openai(out: &str) -> (String, Calls, String, Option<Value>, bool) {
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

/// Reassembles Anthropic events: (event names, text, tool uses (id, name, json), stop, usage).
pub(crate) fn assemble_anthropic(out: &str) -> (Vec<String>, String, Calls, String, Value) {
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
