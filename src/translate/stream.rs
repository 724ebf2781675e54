//! Streams, event by event: each upstream SSE event is translated into the client's events
//! as soon as it is complete. Only a partial line is held across chunk boundaries.

use super::response::{anthropic_usage, finish_reason, now_secs, openai_usage, stop_reason};
use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
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

#[derive(Deserialize)]
struct ChunkLite<'a> {
    #[serde(borrow)]
    choices: Option<Vec<ChoiceLite<'a>>>,
    usage: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceLite<'a> {
    #[serde(borrow)]
    delta: Option<ContentLite<'a>>,
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ContentLite<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    refusal: Option<IgnoredAny>,
    tool_calls: Option<IgnoredAny>,
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

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
    /// Every chunk's bytes up to the delta object, known from `message_start` on.
    head: Vec<u8>,
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
    fn fast(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
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

    /// A content chunk inside an open text block; false if it needs the general path.
    fn fast(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Open::Text(index) = self.open else {
            return false;
        };
        let Ok(c) = serde_json::from_slice::<ChunkLite<'_>>(data) else {
            return false;
        };
        let choices = c.choices.unwrap_or_default();
        let [ChoiceLite {
            delta:
                Some(ContentLite {
                    content: Some(text),
                    refusal: None,
                    tool_calls: None,
                }),
            finish_reason: None,
        }] = choices.as_slice()
        else {
            return false;
        };
        if c.usage.is_some() || c.error.is_some() {
            return false;
        }
        if !text.is_empty() {
            out.extend_from_slice(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
            );
            let _ = write!(out, "{index}");
            out.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
            write_json_str(out, text);
            out.extend_from_slice(b"}}\n\n");
        }
        true
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data == b"[DONE]" {
            self.finish(out);
            return;
        }
        if self.fast(data, out) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed fast paths write exactly what the general path writes.
    #[test]
    fn fast_paths_match_the_general_path() {
        let start =
            br#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":1}}}"#;
        let tool = br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#;
        for include_usage in [false, true] {
            let mut a = ToChat::new("m \"x\"", include_usage);
            a.event(start, &mut Vec::new());
            a.event(tool, &mut Vec::new());
            for ev in [
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\u00e9 \"q\"\n"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            ] {
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                assert!(a.fast(ev.as_bytes(), &mut fast));
                let v: Value = serde_json::from_str(ev).unwrap();
                let d = &v["delta"];
                let delta = if d["type"] == "text_delta" {
                    json!({"content": d["text"]})
                } else {
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": d["partial_json"]}}]})
                };
                a.write_chunk(&mut slow, delta, None);
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap()
                );
            }
        }
        let mut b = ToMessages::new("m");
        let mut out = Vec::new();
        b.event(
            br#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#,
            &mut out,
        );
        let ev = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"h\u00e9 \"q\""},"finish_reason":null}],"usage":null}"#;
        let mut fast = Vec::new();
        assert!(b.fast(ev, &mut fast));
        let mut slow = Vec::new();
        write_event(
            &mut slow,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "hé \"q\""}}),
        );
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
        // Anything else is not taken by the fast path.
        for ev in [
            &br#"{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"#[..],
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            br#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
        ] {
            assert!(!b.fast(ev, &mut Vec::new()));
        }
    }
}
