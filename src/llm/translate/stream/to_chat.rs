//! Anthropic Messages events → OpenAI `chat.completion.chunk`s.

use super::{emit, write_data, write_json_str, Events};
use crate::llm::translate::response::{finish_reason, now_secs, openai_usage};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::Write as _;

// Typed views of the frequent events (text and argument deltas): borrowed, so the hot
// path writes the client's event straight from the upstream bytes. Anything else takes
// the general path through `serde_json::Value`.

#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    index: Option<u64>,
    #[serde(borrow)]
    delta: Option<DeltaLite<'a>>,
}

#[derive(Deserialize)]
struct DeltaLite<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
}

/// Anthropic Messages events → OpenAI `chat.completion.chunk`s.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    events: Events,
    state: ToChat,
}

impl AnthropicToOpenAi {
    pub fn new(model: &str, include_usage: bool) -> AnthropicToOpenAi {
        AnthropicToOpenAi {
            events: Events::default(),
            state: ToChat::new(model, include_usage),
        }
    }

    /// Translates one chunk of the upstream stream in place.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) {
        let mut out = Vec::new();
        let chunk = body.take().unwrap_or_default();
        let state = &mut self.state;
        self.events.feed(&chunk, end, |d| state.event(d, &mut out));
        emit(body, out);
    }

    /// One upstream event's data.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.state.event(data, out);
    }
}

#[derive(Debug)]
pub(super) struct ToChat {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    /// Anthropic content block index → OpenAI `tool_calls` index.
    tools: Vec<(u64, usize)>,
    /// Usage so far, Anthropic's fields.
    usage: Value,
    done: bool,
    /// Every chunk's bytes up to the delta object, known from `message_start` on.
    head: Vec<u8>,
}

impl ToChat {
    pub(super) fn new(model: &str, include_usage: bool) -> ToChat {
        ToChat {
            model: model.to_string(),
            include_usage,
            id: String::new(),
            created: now_secs(),
            tools: Vec::new(),
            usage: json!({}),
            done: false,
            head: Vec::new(),
        }
    }

    /// `head`, then `delta` written by `f`, then the rest of the chunk.
    fn write_fast(&self, out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(&self.head);
        f(out);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// Text and argument deltas; false if the event needs the general path.
    pub(super) fn fast(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.head.is_empty() {
            return false;
        }
        let Ok(e) = serde_json::from_slice::<BlockDelta<'_>>(data) else {
            return false;
        };
        let Some(d) = e.delta.filter(|_| e.ty == "content_block_delta") else {
            return false;
        };
        match (d.ty.as_deref(), d.text, d.partial_json) {
            (Some("text_delta"), Some(t), _) => self.write_fast(out, |out| {
                out.extend_from_slice(b"{\"content\":");
                write_json_str(out, &t);
                out.push(b'}');
            }),
            (Some("input_json_delta"), _, Some(p)) => {
                let block = e.index.unwrap_or(0);
                let Some(&(_, n)) = self.tools.iter().find(|(b, _)| *b == block) else {
                    return true;
                };
                self.write_fast(out, |out| {
                    out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                    let _ = write!(out, "{n}");
                    out.extend_from_slice(b",\"function\":{\"arguments\":");
                    write_json_str(out, &p);
                    out.extend_from_slice(b"}}]}");
                });
            }
            _ => return false,
        }
        true
    }

    pub(super) fn write_chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let mut v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        write_data(out, &v);
    }

    pub(super) fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.fast(data, out) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &v["message"];
                self.id = m["id"].as_str().unwrap_or("msg").to_string();
                merge(&mut self.usage, &m["usage"]);
                let head = json!({"id": self.id, "object": "chat.completion.chunk",
                    "created": self.created, "model": self.model});
                let mut h = b"data: ".to_vec();
                let _ = serde_json::to_writer(&mut h, &head);
                h.pop(); // the closing brace
                h.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
                self.head = h;
                self.write_chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tools.len();
                        self.tools.push((v["index"].as_u64().unwrap_or(0), n));
                        let call = json!({"index": n, "id": b["id"], "type": "function",
                            "function": {"name": b["name"], "arguments": ""}});
                        self.write_chunk(out, json!({"tool_calls": [call]}), None);
                    }
                    Some("text") => {
                        if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                            self.write_chunk(out, json!({ "content": t }), None);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        self.write_chunk(out, json!({"content": d["text"]}), None);
                    }
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let Some(&(_, n)) = self.tools.iter().find(|(b, _)| *b == block) else {
                            return;
                        };
                        let call =
                            json!({"index": n, "function": {"arguments": d["partial_json"]}});
                        self.write_chunk(out, json!({"tool_calls": [call]}), None);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                merge(&mut self.usage, &v["usage"]);
                let reason = v["delta"]["stop_reason"].as_str().map(finish_reason);
                if let Some(r) = reason {
                    self.write_chunk(out, json!({}), Some(r));
                }
            }
            "message_stop" => self.finish(out),
            "error" => {
                let e = &v["error"];
                let err = json!({"error": {"message": e["message"], "type": e["type"],
                    "code": e["type"], "param": null}});
                write_data(out, &err);
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.include_usage {
            let v = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": openai_usage(&self.usage),
            });
            write_data(out, &v);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

/// Later usage fields replace earlier ones (`message_delta` carries running totals).
fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            if !v.is_null() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}
