//! What the mock says to a chat or messages request, before it is put in either wire
//! format: text, a tool call, and why it stopped. Decided from the request the way a model
//! would look at it:
//!
//! - `x-mock-echo: 1`: the text is a JSON summary of what the provider received, in its own
//!   API's terms (system prompt, roles, images, tool results, stop sequences), so a test
//!   can check what a translated request looked like;
//! - tools offered (and `tool_choice` not `none`) and the last turn is not a tool result:
//!   a call of the forced tool (else the first) with arguments made from its JSON schema;
//! - the last turn carries tool results: "The tool returned: …" quoting them;
//! - else `tok0 tok1 …`, cut before the first stop sequence it contains.

use super::kind::Kind;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    End,
    Sequence(String),
    ToolUse,
}

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments JSON, and the fragments it is streamed in.
    pub arguments: String,
    pub fragments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Reply {
    /// Text, in the pieces it is streamed in.
    pub pieces: Vec<String>,
    pub tool: Option<ToolCall>,
    pub stop: Stop,
    pub output_tokens: u32,
}

impl Reply {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
}

pub fn words(c: u32) -> Vec<String> {
    (0..c).map(|i| format!("tok{i} ")).collect()
}

/// Splits `s` into about `n` pieces on char boundaries.
fn split(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Exactly `text`, in 4-byte pieces (on char boundaries), so a test controls what the
/// answer says and how it is split over stream events.
pub fn fixed(text: &str, output_tokens: u32) -> Reply {
    let mut pieces = vec![];
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if cur.len() >= 4 {
            pieces.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    Reply {
        pieces,
        tool: None,
        stop: Stop::End,
        output_tokens,
    }
}

pub fn plan(kind: Kind, req: &Value, c: u32, echo: bool) -> Reply {
    if echo {
        let text = summary(kind, req).to_string();
        return Reply {
            pieces: split(&text, 4),
            tool: None,
            stop: Stop::End,
            output_tokens: c,
        };
    }
    let turns = req["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let last_results = tool_results(kind, turns.last());
    if last_results.is_empty() {
        if let Some(tool) = tool_to_call(kind, req) {
            return Reply {
                pieces: vec![],
                tool: Some(tool),
                stop: Stop::ToolUse,
                output_tokens: c,
            };
        }
    } else {
        let quoted: Vec<String> = last_results.iter().map(|(_, t)| t.clone()).collect();
        let text = format!("The tool returned: {}", quoted.join("; "));
        return Reply {
            pieces: text.split_inclusive(' ').map(str::to_string).collect(),
            tool: None,
            stop: Stop::End,
            output_tokens: c,
        };
    }
    let mut pieces = words(c);
    let stops = stop_sequences(kind, req);
    let text = pieces.concat();
    let first = stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|i| (i, s)))
        .min();
    let mut stop = Stop::End;
    if let Some((at, seq)) = first {
        let mut len = 0;
        let mut kept = Vec::new();
        for p in pieces {
            if len + p.len() > at {
                if at > len {
                    kept.push(p[..at - len].to_string());
                }
                break;
            }
            len += p.len();
            kept.push(p);
        }
        pieces = kept;
        stop = Stop::Sequence(seq.clone());
    }
    let output_tokens = if stop == Stop::End {
        c
    } else {
        pieces.len() as u32
    };
    Reply {
        pieces,
        tool: None,
        stop,
        output_tokens,
    }
}

fn stop_sequences(kind: Kind, req: &Value) -> Vec<String> {
    let v = if kind == Kind::Messages {
        &req["stop_sequences"]
    } else {
        &req["stop"]
    };
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// Text of a content value: a string, or the text parts/blocks of an array.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Tool results in the last turn: `(call id, text)`.
fn tool_results(kind: Kind, last: Option<&Value>) -> Vec<(String, String)> {
    let Some(m) = last else { return vec![] };
    if kind == Kind::Messages {
        m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| {
                let id = b["tool_use_id"].as_str().unwrap_or("").to_string();
                (id, text_of(&b["content"]))
            })
            .collect()
    } else if m["role"] == "tool" {
        let id = m["tool_call_id"].as_str().unwrap_or("").to_string();
        vec![(id, text_of(&m["content"]))]
    } else {
        vec![]
    }
}

/// The tool the "model" calls, if the request offers tools and does not forbid them.
fn tool_to_call(kind: Kind, req: &Value) -> Option<ToolCall> {
    let tools = req["tools"].as_array().filter(|t| !t.is_empty())?;
    let choice = &req["tool_choice"];
    let (forced, none) = if kind == Kind::Messages {
        (
            choice["name"].as_str().filter(|_| choice["type"] == "tool"),
            choice["type"] == "none",
        )
    } else {
        (choice["function"]["name"].as_str(), *choice == "none")
    };
    if none {
        return None;
    }
    let tool = tools
        .iter()
        .find(|t| forced.is_none() || name_schema(kind, t).0 == forced)?;
    let (name, schema) = name_schema(kind, tool);
    let mut args = Map::new();
    for (prop, s) in schema["properties"].as_object().into_iter().flatten() {
        let v = match s["type"].as_str() {
            Some("integer") | Some("number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => match s["enum"].as_array().and_then(|e| e.first()) {
                Some(first) => first.clone(),
                None => json!(format!("mock-{prop}")),
            },
        };
        args.insert(prop.clone(), v);
    }
    let arguments = Value::Object(args).to_string();
    let prefix = if kind == Kind::Messages {
        "toolu_mock_"
    } else {
        "call_mock_"
    };
    Some(ToolCall {
        id: format!("{prefix}{}", rand::random::<u32>()),
        name: name?.to_string(),
        fragments: split(&arguments, 3),
        arguments,
    })
}

fn name_schema(kind: Kind, t: &Value) -> (Option<&str>, &Value) {
    if kind == Kind::Messages {
        (t["name"].as_str(), &t["input_schema"])
    } else {
        (t["function"]["name"].as_str(), &t["function"]["parameters"])
    }
}

/// What the provider received, in its own API's terms (`x-mock-echo`).
fn summary(kind: Kind, req: &Value) -> Value {
    let turns = req["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let mut system = if kind == Kind::Messages {
        text_of(&req["system"])
    } else {
        String::new()
    };
    let mut roles = Vec::new();
    let mut images = Vec::new();
    let mut results = Vec::new();
    let mut calls = Vec::new();
    let mut texts = Vec::new();
    for m in turns {
        let role = m["role"].as_str().unwrap_or("");
        if role == "system" || role == "developer" {
            system.push_str(&text_of(&m["content"]));
            continue;
        }
        roles.push(role.to_string());
        texts.push(text_of(&m["content"]));
        for p in m["content"].as_array().into_iter().flatten() {
            match p["type"].as_str().unwrap_or("") {
                "image_url" => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    images.push(match url.strip_prefix("data:") {
                        Some(d) => json!({"kind": "base64", "media_type": d.split(';').next(), "bytes": d.len()}),
                        None => json!({"kind": "url", "url": url}),
                    });
                }
                "image" => {
                    let s = &p["source"];
                    images.push(if s["type"] == "base64" {
                        json!({"kind": "base64", "media_type": s["media_type"], "bytes": s["data"].as_str().map_or(0, str::len)})
                    } else {
                        json!({"kind": "url", "url": s["url"]})
                    });
                }
                "tool_use" => {
                    calls.push(json!({"id": p["id"], "name": p["name"], "input": p["input"]}))
                }
                "tool_result" => {
                    results.push(json!({"id": p["tool_use_id"], "content": text_of(&p["content"])}))
                }
                _ => {}
            }
        }
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            let input: Value =
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or(""))
                    .unwrap_or_default();
            calls.push(json!({"id": c["id"], "name": c["function"]["name"], "input": input}));
        }
        if role == "tool" {
            results.push(json!({"id": m["tool_call_id"], "content": text_of(&m["content"])}));
        }
    }
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| req[*k].as_u64());
    json!({
        "api": if kind == Kind::Messages { "anthropic" } else { "openai" },
        "system": system, "roles": roles, "texts": texts, "images": images,
        "tool_calls": calls, "tool_results": results, "stop": stop_sequences(kind, req),
        "max_tokens": max_tokens, "temperature": req["temperature"], "top_p": req["top_p"],
        "tools": req["tools"].as_array().map_or(0, Vec::len), "tool_choice": req["tool_choice"],
    })
}
