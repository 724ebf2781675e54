//! OpenAI `chat.completion.chunk`s → Anthropic Messages events.

use super::{emit, write_event, write_json_str, Events};
use crate::llm::translate::response::{anthropic_usage, stop_reason};
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::Write as _;

// A typed view of the frequent chunk (text only), borrowed: the hot path writes the
// client's event straight from the upstream bytes.

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
    pub(crate) fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) {
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
pub(super) struct ToMessages {
    model: String,
    started: bool,
    next_block: u64,
    open: Open,
    stop: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
}

impl ToMessages {
    pub(super) fn new(model: &str) -> ToMessages {
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
    pub(super) fn fast(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
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

    pub(super) fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
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
