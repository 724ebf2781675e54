//! Whole answers: the texts of a JSON body in the route's API, and the Responses API's
//! output items (also carried whole by its stream's `done` and final events).

use super::ResponseGuard;
use crate::llm::body::Endpoint;
use bytes::Bytes;
use serde_json::{json, Value};

impl ResponseGuard {
    /// The checked body; the client's bytes when nothing changed or it is not JSON.
    pub(super) fn json(&mut self, whole: Bytes) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(&whole) else {
            return whole;
        };
        let changed = match self.endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => self.openai_choices(&mut v),
            Endpoint::Responses => self.responses(&mut v),
            Endpoint::Messages => self.anthropic(&mut v),
            Endpoint::Embeddings | Endpoint::ListModels | Endpoint::CountTokens => false,
        };
        if !changed {
            return whole;
        }
        serde_json::to_vec(&v).map(Bytes::from).unwrap_or(whole)
    }

    /// Each choice's `message.content` (chat) or `text` (completions); a blocked choice
    /// ends with `finish_reason: "content_filter"`.
    fn openai_choices(&mut self, v: &mut Value) -> bool {
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for c in choices {
            let text = match c.get_mut("message") {
                Some(m) => m.get_mut("content"),
                None => c.get_mut("text"),
            };
            let Some(Value::String(text)) = text else {
                continue;
            };
            let before = text.len();
            let blocked = self.check_whole(text);
            changed |= blocked || text.len() != before;
            if blocked {
                c["finish_reason"] = json!("content_filter");
            }
        }
        changed
    }

    /// Anthropic `content` text blocks; a block cuts its text, drops the blocks after it,
    /// and the answer stops with `stop_reason: "refusal"`.
    fn anthropic(&mut self, v: &mut Value) -> bool {
        let Some(content) = v.get_mut("content").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        let mut blocked_at = None;
        for (i, b) in content.iter_mut().enumerate() {
            if b.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(Value::String(text)) = b.get_mut("text") else {
                continue;
            };
            let before = text.clone();
            if self.check_whole(text) {
                blocked_at = Some(i);
                break;
            }
            changed |= *text != before;
        }
        if let Some(i) = blocked_at {
            content.truncate(i + 1);
            v["stop_reason"] = json!("refusal");
            v["stop_sequence"] = Value::Null;
            return true;
        }
        changed
    }

    /// A Responses object: `output` items' `output_text` parts (and the convenience
    /// `output_text` field when present). A block cuts the text, drops what follows, and
    /// marks the response incomplete with reason `content_filter`.
    pub(super) fn responses(&mut self, v: &mut Value) -> bool {
        let mut changed = false;
        let mut blocked = false;
        if let Some(output) = v.get_mut("output").and_then(Value::as_array_mut) {
            let mut keep = output.len();
            for (i, item) in output.iter_mut().enumerate() {
                let (c, b) = self.responses_item(item);
                changed |= c;
                if b {
                    blocked = true;
                    keep = i + 1;
                    break;
                }
            }
            output.truncate(keep);
        }
        if let Some(Value::String(text)) = v.get_mut("output_text") {
            let before = text.clone();
            blocked |= self.check_whole(text);
            changed |= *text != before;
        }
        if blocked {
            v["status"] = json!("incomplete");
            v["incomplete_details"] = json!({"reason": "content_filter"});
        }
        changed || blocked
    }

    /// One output item (`message` with `content` parts): (changed, blocked).
    pub(super) fn responses_item(&mut self, item: &mut Value) -> (bool, bool) {
        let Some(parts) = item.get_mut("content").and_then(Value::as_array_mut) else {
            return (false, false);
        };
        let mut changed = false;
        for (i, p) in parts.iter_mut().enumerate() {
            let (c, b) = self.responses_part(p);
            changed |= c;
            if b {
                parts.truncate(i + 1);
                return (true, true);
            }
        }
        (changed, false)
    }

    /// One content part (`output_text`): (changed, blocked).
    pub(super) fn responses_part(&mut self, p: &mut Value) -> (bool, bool) {
        if p.get("type").and_then(Value::as_str) != Some("output_text") {
            return (false, false);
        }
        let Some(Value::String(text)) = p.get_mut("text") else {
            return (false, false);
        };
        let before = text.clone();
        let blocked = self.check_whole(text);
        (blocked || *text != before, blocked)
    }
}
