//! Streams, event by event: each upstream SSE event is translated into the client's events
//! as soon as it is complete. Only a partial line is held across chunk boundaries.

use super::response::{anthropic_usage, finish_reason, now_secs, openai_usage, stop_reason};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

/// Splits an SSE byte stream into events (their `data`, lines joined by `\n`).
#[derive(Debug, Default)]
struct Events {
    partial: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

impl Events {
    fn feed(&mut self, chunk: &[u8], end: bool, mut on_event: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, &mut on_event);
            } else {
                self.partial.extend_from_slice(line);
                let whole = self.partial.split();
                self.line(&whole, &mut on_event);
            }
        }
        self.partial.extend_from_slice(rest);
        if end {
            if !self.partial.is_empty() {
                let whole = self.partial.split();
                self.line(&whole, &mut on_event);
            }
            self.line(b"", &mut on_event);
        }
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
        } else if let Some(d) = line.strip_prefix(b"data:") {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
            self.has_data = true;
        }
        // `event:`, `id:`, `retry:` and comments: the type is in the data of both APIs.
    }
}

fn write_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing a Value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

fn write_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, v);
}

/// Puts the translated bytes of a chunk in its place (nothing at all if none).
fn emit(body: &mut Option<Bytes>, out: Vec<u8>) {
    *body = (!out.is_empty()).then(|| Bytes::from(out));
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
struct ToChat {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    /// Anthropic content block index → OpenAI `tool_calls` index.
    tools: Vec<(u64, usize)>,
    /// Usage so far, Anthropic's fields.
    usage: Value,
    done: bool,
}

impl ToChat {
    fn new(model: &str, include_usage: bool) -> ToChat {
        ToChat {
            model: model.to_string(),
            include_usage,
            id: String::new(),
            created: now_secs(),
            tools: Vec::new(),
            usage: json!({}),
            done: false,
        }
    }

    fn write_chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
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

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &v["message"];
                self.id = m["id"].as_str().unwrap_or("msg").to_string();
                merge(&mut self.usage, &m["usage"]);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u64),
    /// `(OpenAI tool call index, Anthropic block index)`
    Tool(u64, u64),
}

/// OpenAI `chat.completion.chunk`s → Anthropic Messages events.
#[derive(Debug)]
pub struct OpenAiToAnthropic {
    events: Events,
    state: ToMessages,
}

impl OpenAiToAnthropic {
    pub fn new(model: &str) -> OpenAiToAnthropic {
        OpenAiToAnthropic {
            events: Events::default(),
            state: ToMessages::new(model),
        }
    }

    /// Translates one chunk of the upstream stream in place.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) {
        let mut out = Vec::new();
        let chunk = body.take().unwrap_or_default();
        let state = &mut self.state;
        self.events.feed(&chunk, end, |d| state.event(d, &mut out));
        // A stream cut before `[DONE]` but after its finish reason is still complete.
        if end && state.stop.is_some() {
            state.finish(&mut out);
        }
        emit(body, out);
    }

    /// One upstream event's data.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.state.event(data, out);
    }
}

#[derive(Debug)]
struct ToMessages {
    model: String,
    started: bool,
    next_block: u64,
    open: Open,
    stop: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
}

impl ToMessages {
    fn new(model: &str) -> ToMessages {
        ToMessages {
            model: model.to_string(),
            started: false,
            next_block: 0,
            open: Open::None,
            stop: None,
            usage: None,
            done: false,
        }
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data == b"[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if v["error"].is_object() {
            let e = &v["error"];
            let err =
                json!({"type": "error", "error": {"type": "api_error", "message": e["message"]}});
            write_event(out, "error", &err);
            return;
        }
        self.start(&v["id"], out);
        if v["usage"].is_object() {
            self.usage = Some(anthropic_usage(&v["usage"]));
        }
        let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let d = &choice["delta"];
        for key in ["content", "refusal"] {
            if let Some(t) = d[key].as_str().filter(|t| !t.is_empty()) {
                let index = self.text_block(out);
                write_event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": t}}),
                );
            }
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let n = tc["index"].as_u64().unwrap_or(0);
            let index = match self.open {
                Open::Tool(open_n, b) if open_n == n && tc["id"].is_null() => b,
                _ => {
                    self.close(out);
                    let b = self.next_block;
                    self.next_block += 1;
                    self.open = Open::Tool(n, b);
                    write_event(
                        out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": b,
                            "content_block": {"type": "tool_use", "id": tc["id"],
                                "name": tc["function"]["name"], "input": {}}}),
                    );
                    b
                }
            };
            if let Some(a) = tc["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                write_event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": a}}),
                );
            }
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(r));
            self.close(out);
        }
    }

    fn start(&mut self, id: &Value, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let msg = json!({"id": id.as_str().unwrap_or("msg"), "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}});
        write_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": msg}),
        );
    }

    /// The open text block's index, opening one if needed.
    fn text_block(&mut self, out: &mut Vec<u8>) -> u64 {
        if let Open::Text(b) = self.open {
            return b;
        }
        self.close(out);
        let b = self.next_block;
        self.next_block += 1;
        self.open = Open::Text(b);
        write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": b,
                "content_block": {"type": "text", "text": ""}}),
        );
        b
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let b = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Text(b) | Open::Tool(_, b) => b,
        };
        write_event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": b}),
        );
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.start(&Value::Null, out);
        self.close(out);
        let usage = self
            .usage
            .take()
            .unwrap_or_else(|| json!({"output_tokens": 0}));
        write_event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage}),
        );
        write_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}
