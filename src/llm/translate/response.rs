//! Whole answers: a JSON completion or message, and provider errors, into the client's API.

use super::Direction;
use serde_json::{json, Map, Value};

pub(crate) fn now_secs() -> u64 {
    crate::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`. OpenAI does not say whether a stop
/// sequence ended the answer, so `stop` is always `end_turn`.
pub(crate) fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage → OpenAI usage. Anthropic's `input_tokens` excludes cached prompt
/// tokens; OpenAI's `prompt_tokens` includes them. OpenAI has no field for cache writes:
/// they go in `prompt_tokens_details.cache_creation_tokens` (LiteLLM's name for them).
pub(crate) fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let written = n("cache_creation_input_tokens");
    let prompt = n("input_tokens") + written + cached;
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": written},
    })
}

/// OpenAI usage → Anthropic usage.
pub(crate) fn anthropic_usage(u: &Value) -> Value {
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    })
}

/// An Anthropic message → a `chat.completion`. `None` if it is not one.
pub fn messages_json_to_chat(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v["type"] != "message" {
        return None;
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in v["content"].as_array()? {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b["id"],
                "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = json!({
        "id": v["id"],
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(v["stop_reason"].as_str().unwrap_or("end_turn")),
        }],
        "usage": openai_usage(&v["usage"]),
    });
    serde_json::to_vec(&out).ok()
}

/// A `chat.completion` → an Anthropic message. `None` if it is not one.
pub fn chat_json_to_messages(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v["choices"].as_array()?.first()?;
    let msg = &choice["message"];
    let mut content = Vec::new();
    for key in ["content", "refusal"] {
        if let Some(t) = msg[key].as_str().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": t}));
        }
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        content.push(tool_use(
            &c["id"],
            &c["function"]["name"],
            c["function"]["arguments"].as_str().unwrap_or(""),
        ));
    }
    let out = json!({
        "id": v["id"],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": anthropic_usage(&v["usage"]),
    });
    serde_json::to_vec(&out).ok()
}

/// A tool call → a `tool_use` block. Arguments that are not a JSON object (a model can
/// produce broken JSON) are kept as the string they were.
pub(crate) fn tool_use(id: &Value, name: &Value, arguments: &str) -> Value {
    let input = match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => Value::Object(Map::new()),
        _ => Value::String(arguments.to_string()),
    };
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

/// The status a provider's error is answered with on the client's route: Anthropic's 529
/// (overloaded) is OpenAI's 503 and the other way round. Also the error `type`.
pub(crate) fn error_status(direction: Direction, status: u16) -> (u16, &'static str) {
    match direction {
        Direction::ChatToMessages => {
            let to = if status == 529 { 503 } else { status };
            let ty = match to {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                s if s >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            (to, ty)
        }
        Direction::MessagesToChat => match status {
            401 => (401, "authentication_error"),
            403 => (403, "permission_error"),
            404 => (404, "not_found_error"),
            413 => (413, "request_too_large"),
            429 => (429, "rate_limit_error"),
            503 | 529 => (529, "overloaded_error"),
            504 => (504, "timeout_error"),
            s if s >= 500 => (s, "api_error"),
            s => (s, "invalid_request_error"),
        },
    }
}

/// A provider's error body → the route's error shape. The provider's message is kept; its
/// own type (or code) becomes the OpenAI `code`.
pub(crate) fn error_to_route(direction: Direction, status: u16, body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let message = e["message"].as_str().map_or_else(
        || {
            let raw = String::from_utf8_lossy(body);
            let raw = raw.trim();
            if raw.is_empty() {
                format!("upstream answered {status}")
            } else {
                raw.chars().take(1000).collect()
            }
        },
        str::to_string,
    );
    let (_, ty) = error_status(direction, status);
    let out = match direction {
        Direction::ChatToMessages => {
            let code = e["type"].as_str().unwrap_or(ty);
            json!({"error": {"message": message, "type": ty, "code": code, "param": null}})
        }
        Direction::MessagesToChat => {
            json!({"type": "error", "error": {"type": ty, "message": message}})
        }
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
