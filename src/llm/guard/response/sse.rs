//! SSE framing and what each event is, per route API; the stream's endings after a block.

use super::ResponseGuard;
use crate::llm::body::Endpoint;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use std::collections::VecDeque;

/// Where a text event's text lies in its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextAt {
    /// Chat chunk: `choices[0].delta.content`.
    ChatDelta,
    /// Completions chunk: `choices[0].text`.
    CompletionText,
    /// Responses `response.output_text.delta`: `delta`.
    ResponsesDelta,
    /// Anthropic `content_block_delta` / `text_delta`: `delta.text`.
    AnthropicDelta,
}

impl TextAt {
    fn get(self, v: &Value) -> Option<&str> {
        match self {
            TextAt::ChatDelta => v.pointer("/choices/0/delta/content"),
            TextAt::CompletionText => v.pointer("/choices/0/text"),
            TextAt::ResponsesDelta => v.get("delta"),
            TextAt::AnthropicDelta => v.pointer("/delta/text"),
        }?
        .as_str()
    }

    pub(super) fn set(self, v: &mut Value, text: String) {
        let at = match self {
            TextAt::ChatDelta => v.pointer_mut("/choices/0/delta/content"),
            TextAt::CompletionText => v.pointer_mut("/choices/0/text"),
            TextAt::ResponsesDelta => v.get_mut("delta"),
            TextAt::AnthropicDelta => v.pointer_mut("/delta/text"),
        };
        if let Some(at) = at {
            *at = Value::String(text);
        }
    }
}

/// A queued event: passed as it came, or text waiting in the window.
#[derive(Debug)]
pub(super) enum Item {
    Raw(Bytes),
    Text(TextEvent),
}

#[derive(Debug)]
pub(super) struct TextEvent {
    /// The event's lines other than `data:` (`event: …`), each ending in `\n`.
    pub(super) head: String,
    /// The client's bytes, sent as they are when the text is released whole, unchanged.
    pub(super) raw: Bytes,
    pub(super) json: Value,
    pub(super) at: TextAt,
    /// Bytes of its text still in the window.
    pub(super) len: usize,
    /// None of its text has been released yet.
    pub(super) whole: bool,
}

/// A stream's state.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// Events waiting behind held text, in order.
    pub(super) queue: VecDeque<Item>,
    /// The held text: the queued text events' remaining text, concatenated.
    pub(super) window: String,
    /// The last bytes released (before redaction): look-behind for word boundaries.
    pub(super) behind: String,
    /// A block ended the answer: only usage and the stream's end pass now.
    pub(super) blocked: bool,
    /// The first text event (chat: the id, model and created of synthesised chunks).
    pub(super) template: Option<Value>,
    /// Anthropic: the index of the content block being streamed.
    pub(super) open_block: Option<u64>,
    /// Responses: the `response` of `response.created` (to end a stream cut short).
    pub(super) created: Option<Value>,
    /// The stream's own end passed: `[DONE]`, `message_delta`, the final Responses event.
    pub(super) saw_end: bool,
    pub(super) saw_stop: bool,
    /// Bytes of `buf` already searched for an event's end.
    pub(super) searched: usize,
}

/// What an event is to the guard.
enum Kind {
    /// A text delta (released through the window); `ends` when the same event also ends
    /// the text (a chat chunk with content and a finish reason).
    Text { json: Value, at: TextAt, ends: bool },
    /// Kept behind held text but does not release it (pings, comments).
    Passive,
    /// Releases the held text first, then passes.
    Other,
    /// Carries whole texts to check (Responses `*.done` events and the final response).
    Whole(Value),
    /// OpenAI `data: [DONE]`.
    Done,
}

/// One event's `event:` name, its other lines, and its `data:` joined.
fn split(raw: &[u8]) -> (Option<&str>, String, Option<String>) {
    let text = std::str::from_utf8(raw).unwrap_or_default();
    let mut name = None;
    let mut head = String::new();
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            match &mut data {
                Some(s) => {
                    s.push('\n');
                    s.push_str(d);
                }
                None => data = Some(d.to_string()),
            }
            continue;
        }
        if let Some(n) = line.strip_prefix("event:") {
            name = Some(n.trim());
        }
        head.push_str(line);
        head.push('\n');
    }
    (name, head, data)
}

fn is_usage(v: &Value) -> bool {
    v.get("usage").is_some_and(Value::is_object)
}

impl ResponseGuard {
    /// Complete events from `buf`, each handled in order; at the end, the rest.
    pub(super) fn sse(&mut self, out: &mut BytesMut, end: bool) {
        while let Some(len) = self.next_event() {
            let raw = self.buf.split_to(len).freeze();
            self.stream.searched = 0;
            self.event(raw, out);
        }
        if end {
            if !self.buf.is_empty() {
                let raw = self.buf.split().freeze();
                self.event(raw, out);
            }
            self.release(true, out);
            self.finish(out);
        }
    }

    /// The length of the first complete event in `buf` (through its blank line).
    fn next_event(&mut self) -> Option<usize> {
        let b = &self.buf[..];
        let mut at = self.stream.searched;
        // Back to the start of the line `searched` is in: a blank line needs its `\n`
        // before it.
        while at > 0 && b[at - 1] != b'\n' {
            at -= 1;
        }
        let mut line_start = at;
        while let Some(nl) = memchr::memchr(b'\n', &b[line_start..]) {
            let line = &b[line_start..line_start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                return Some(line_start + nl + 1);
            }
            line_start += nl + 1;
        }
        self.stream.searched = b.len();
        None
    }

    fn classify(&self, name: Option<&str>, data: Option<&str>) -> Kind {
        let Some(data) = data else {
            return Kind::Passive;
        };
        if data.trim() == "[DONE]" {
            return Kind::Done;
        }
        if name == Some("ping") {
            return Kind::Passive;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return Kind::Other;
        };
        let ty = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let at = match self.endpoint {
            Endpoint::ChatCompletions => TextAt::ChatDelta,
            Endpoint::Completions => TextAt::CompletionText,
            Endpoint::Responses => match ty {
                "response.output_text.delta" => TextAt::ResponsesDelta,
                "response.output_text.done"
                | "response.content_part.done"
                | "response.output_item.done"
                | "response.completed"
                | "response.incomplete"
                | "response.failed" => return Kind::Whole(v),
                _ => return Kind::Other,
            },
            Endpoint::Messages => match ty {
                "content_block_delta" => TextAt::AnthropicDelta,
                "ping" => return Kind::Passive,
                _ => return Kind::Other,
            },
            Endpoint::Embeddings | Endpoint::ListModels | Endpoint::CountTokens => {
                return Kind::Other
            }
        };
        let one_choice = v
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(|c| c.len() == 1);
        match at.get(&v) {
            Some(t) if !t.is_empty() && one_choice => {
                let ends = v
                    .pointer("/choices/0/finish_reason")
                    .is_some_and(|f| !f.is_null())
                    || is_usage(&v);
                Kind::Text { json: v, at, ends }
            }
            _ => Kind::Other,
        }
    }

    /// One complete event.
    fn event(&mut self, raw: Bytes, out: &mut BytesMut) {
        let (name, head, data) = split(&raw);
        let kind = self.classify(name, data.as_deref());
        if self.stream.blocked {
            self.after_block(kind, raw, out);
            return;
        }
        match kind {
            Kind::Text { json, at, ends } => {
                let Some(text) = at.get(&json) else {
                    return;
                };
                self.stream.window.push_str(text);
                let len = text.len();
                if self.stream.template.is_none() {
                    self.stream.template = Some(json.clone());
                }
                self.stream
                    .queue
                    .push_back(super::sse::Item::Text(TextEvent {
                        head,
                        raw,
                        json,
                        at,
                        len,
                        whole: true,
                    }));
                self.release(ends, out);
            }
            Kind::Passive => {
                if self.stream.queue.is_empty() {
                    out.extend_from_slice(&raw);
                } else {
                    self.stream.queue.push_back(Item::Raw(raw));
                }
            }
            Kind::Other | Kind::Done => {
                self.release(true, out);
                if self.stream.blocked {
                    // The release blocked: this event is one after the block.
                    let kind = self.classify(name, data.as_deref());
                    self.after_block(kind, raw, out);
                    return;
                }
                self.track(data.as_deref());
                if matches!(kind, Kind::Done) {
                    self.stream.saw_end = true;
                }
                out.extend_from_slice(&raw);
            }
            Kind::Whole(v) => {
                self.release(true, out);
                if self.stream.blocked {
                    self.after_block(Kind::Whole(v), raw, out);
                    return;
                }
                self.whole_event(v, &head, raw, out);
            }
        }
    }

    /// Anthropic blocks opened and closed; the created Responses object.
    fn track(&mut self, data: Option<&str>) {
        let Some(data) = data else {
            return;
        };
        match self.endpoint {
            Endpoint::Messages => {
                if data.contains("\"content_block_start\"") {
                    self.stream.open_block = serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|v| v.get("index").and_then(Value::as_u64));
                } else if data.contains("\"content_block_stop\"") {
                    self.stream.open_block = None;
                } else if data.contains("\"message_delta\"") {
                    self.stream.saw_end = true;
                } else if data.contains("\"message_stop\"") {
                    self.stream.saw_stop = true;
                }
            }
            Endpoint::Responses if data.contains("\"response.created\"") => {
                self.stream.created = serde_json::from_str::<Value>(data)
                    .ok()
                    .and_then(|mut v| v.get_mut("response").map(Value::take));
            }
            _ => {}
        }
    }

    /// A Responses event carrying whole texts: checked and rewritten; a block found
    /// there (a match longer than the window) ends the stream too.
    fn whole_event(&mut self, mut v: Value, head: &str, raw: Bytes, out: &mut BytesMut) {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (changed, blocked) = match ty.as_str() {
            "response.output_text.done" => match v.get_mut("text") {
                Some(Value::String(t)) => {
                    let before = t.clone();
                    let b = self.check_whole(t);
                    (*t != before || b, b)
                }
                _ => (false, false),
            },
            "response.content_part.done" => match v.get_mut("part") {
                Some(p) => self.responses_part(p),
                None => (false, false),
            },
            "response.output_item.done" => match v.get_mut("item") {
                Some(i) => self.responses_item(i),
                None => (false, false),
            },
            // The final response.
            _ => {
                self.stream.saw_end = true;
                match v.get_mut("response") {
                    Some(r) => {
                        let b = self.responses(r);
                        (b, false)
                    }
                    None => (false, false),
                }
            }
        };
        if blocked {
            self.stream.blocked = true;
            return;
        }
        if changed {
            write_event(out, head, &v);
        } else {
            out.extend_from_slice(&raw);
        }
    }

    /// The stream after a block: usage-carrying events and the stream's own end pass
    /// (rewritten to say why it ended); everything else is dropped.
    fn after_block(&mut self, kind: Kind, raw: Bytes, out: &mut BytesMut) {
        match (self.endpoint, kind) {
            (_, Kind::Done) => {
                self.stream.saw_end = true;
                out.extend_from_slice(&raw);
            }
            (Endpoint::ChatCompletions | Endpoint::Completions, Kind::Text { mut json, .. })
                if is_usage(&json) =>
            {
                json["choices"] = json!([]);
                write_event(out, "", &json);
            }
            (Endpoint::ChatCompletions | Endpoint::Completions, Kind::Other) => {
                let (_, _, data) = split(&raw);
                let Some(mut v) = data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else {
                    return;
                };
                if !is_usage(&v) {
                    return;
                }
                if v.get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.is_empty())
                {
                    out.extend_from_slice(&raw);
                } else {
                    v["choices"] = json!([]);
                    write_event(out, "", &v);
                }
            }
            (Endpoint::Messages, Kind::Other) => {
                let (_, head, data) = split(&raw);
                let Some(mut v) = data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else {
                    return;
                };
                match v.get("type").and_then(Value::as_str) {
                    Some("message_delta") if !self.stream.saw_end => {
                        self.stream.saw_end = true;
                        v["delta"]["stop_reason"] = json!("refusal");
                        v["delta"]["stop_sequence"] = Value::Null;
                        write_event(out, &head, &v);
                    }
                    Some("message_stop") if !self.stream.saw_stop => {
                        self.end_messages(out);
                    }
                    Some("error") => out.extend_from_slice(&raw),
                    _ => {}
                }
            }
            (Endpoint::Responses, Kind::Whole(mut v)) => {
                let ty = v.get("type").and_then(Value::as_str).unwrap_or_default();
                if !matches!(
                    ty,
                    "response.completed" | "response.incomplete" | "response.failed"
                ) || self.stream.saw_end
                {
                    return;
                }
                self.stream.saw_end = true;
                if let Some(r) = v.get_mut("response") {
                    self.responses(r);
                    incomplete(r);
                }
                v["type"] = json!("response.incomplete");
                write_event(out, "event: response.incomplete\n", &v);
            }
            _ => {}
        }
    }

    /// Called once when a release finds a block: the text before the match has gone
    /// out; end the answer the route's way.
    pub(super) fn block_now(&mut self, out: &mut BytesMut) {
        self.stream.blocked = true;
        // Queued events after the block (pings) are dropped with the held text.
        self.stream.queue.clear();
        self.stream.window.clear();
        match self.endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => {
                let choice = if self.endpoint == Endpoint::ChatCompletions {
                    json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "content_filter"})
                } else {
                    json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "content_filter"})
                };
                let mut v = self.stream.template.take().unwrap_or_else(|| json!({}));
                v["choices"] = json!([choice]);
                if let Some(u) = v.get_mut("usage") {
                    *u = Value::Null;
                }
                write_event(out, "", &v);
            }
            Endpoint::Messages => {
                if let Some(i) = self.stream.open_block.take() {
                    write_event(
                        out,
                        "event: content_block_stop\n",
                        &json!({"type": "content_block_stop", "index": i}),
                    );
                }
            }
            // Responses: the final event says it (rewritten when it comes, or made up
            // at the end).
            _ => {}
        }
    }

    /// The end of a stream: a blocked stream missing its ending gets one.
    fn finish(&mut self, out: &mut BytesMut) {
        if !self.stream.blocked {
            return;
        }
        match self.endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions if !self.stream.saw_end => {
                self.stream.saw_end = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Endpoint::Messages => {
                if !self.stream.saw_end {
                    self.stream.saw_end = true;
                    write_event(
                        out,
                        "event: message_delta\n",
                        &json!({"type": "message_delta",
                            "delta": {"stop_reason": "refusal", "stop_sequence": null},
                            "usage": {"output_tokens": 0}}),
                    );
                }
                if !self.stream.saw_stop {
                    self.end_messages(out);
                }
            }
            Endpoint::Responses if !self.stream.saw_end => {
                self.stream.saw_end = true;
                let mut r = self.stream.created.take().unwrap_or_else(|| json!({}));
                if let Some(o) = r.get_mut("output") {
                    *o = json!([]);
                }
                incomplete(&mut r);
                write_event(
                    out,
                    "event: response.incomplete\n",
                    &json!({"type": "response.incomplete", "response": r}),
                );
            }
            _ => {}
        }
    }

    fn end_messages(&mut self, out: &mut BytesMut) {
        self.stream.saw_stop = true;
        write_event(
            out,
            "event: message_stop\n",
            &json!({"type": "message_stop"}),
        );
    }
}

/// A Responses object that ended on a content filter.
fn incomplete(r: &mut Value) {
    r["status"] = json!("incomplete");
    r["incomplete_details"] = json!({"reason": "content_filter"});
}

/// `head` (its lines, each ending in `\n`), then `data: <json>` and the blank line.
pub(super) fn write_event(out: &mut BytesMut, head: &str, v: &Value) {
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"data: ");
    if let Ok(s) = serde_json::to_vec(v) {
        out.extend_from_slice(&s);
    }
    out.extend_from_slice(b"\n\n");
}
