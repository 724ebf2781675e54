//! What the mock answers, in each provider's real wire format.

pub use super::kind::Kind;
use super::reply::{Reply, Stop};
use serde_json::{json, Value};

fn now() -> u64 {
    crate::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error in the provider's own shape, with its type for the status.
pub fn error_body(kind: Option<Kind>, status: u16) -> Vec<u8> {
    let message = format!("mock error {status}");
    let v = if kind == Some(Kind::Messages) {
        let ty = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": ty, "message": message}})
    } else {
        let (ty, code) = match status {
            400 => ("invalid_request_error", Value::Null),
            401 => ("invalid_request_error", json!("invalid_api_key")),
            404 => ("invalid_request_error", json!("model_not_found")),
            429 => ("requests", json!("rate_limit_exceeded")),
            _ => ("server_error", Value::Null),
        };
        json!({"error": {"message": message, "type": ty, "code": code, "param": null}})
    };
    v.to_string().into_bytes()
}

fn finish_reason(stop: &Stop) -> &'static str {
    match stop {
        Stop::ToolUse => "tool_calls",
        _ => "stop",
    }
}

fn stop_reason(stop: &Stop) -> (&'static str, Value) {
    match stop {
        Stop::End => ("end_turn", Value::Null),
        Stop::Sequence(s) => ("stop_sequence", json!(s)),
        Stop::ToolUse => ("tool_use", Value::Null),
    }
}

/// A complete JSON answer. `usage` None = omitted.
pub fn json_answer(kind: Kind, model: &str, req: &Value, p: u64, r: &Reply, usage: bool) -> Value {
    let text: String = r.text();
    let c = r.output_tokens;
    let mut v = match kind {
        Kind::Chat => {
            let mut message = json!({"role": "assistant", "content": text});
            if let Some(t) = &r.tool {
                message["content"] = Value::Null;
                message["tool_calls"] = json!([{"id": t.id, "type": "function",
                    "function": {"name": t.name, "arguments": t.arguments}}]);
            }
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": now(), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&r.stop)}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64},
            })
        }
        Kind::Completions => json!({
            "id": "cmpl-mock", "object": "text_completion", "created": now(), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64},
        }),
        Kind::Embeddings => {
            let n = match &req["input"] {
                Value::Array(a) => a.len(),
                _ => 1,
            };
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, -0.2, 0.3, 0.0, 0.5, -0.6, 0.7, 0.05]}))
                .collect();
            json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": p, "total_tokens": p}})
        }
        Kind::Responses => response_object(model, &text, p, c, "completed"),
        Kind::Messages => {
            let mut content = vec![];
            if !text.is_empty() || r.tool.is_none() {
                content.push(json!({"type": "text", "text": text}));
            }
            if let Some(t) = &r.tool {
                let input: Value = serde_json::from_str(&t.arguments).unwrap_or_default();
                content
                    .push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": input}));
            }
            let (reason, seq) = stop_reason(&r.stop);
            json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": reason, "stop_sequence": seq,
                "usage": {"input_tokens": p, "output_tokens": c},
            })
        }
    };
    if !usage {
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
    }
    v
}

/// What an answer reports of the prompt cache and of reasoning (`x-mock-cached-tokens`,
/// `x-mock-cache-write-tokens`, `x-mock-reasoning-tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheReport {
    /// Prompt tokens read from the cache.
    pub read: u64,
    /// Prompt tokens written to the cache (Anthropic only: OpenAI does not report them).
    pub write: u64,
    /// Output tokens spent reasoning (OpenAI only: Anthropic does not report them).
    pub reasoning: u64,
}

/// Reports `r` in `v`'s usage (`usage`, `message.usage` or `response.usage`) the way each
/// API does: OpenAI adds `prompt_tokens_details.cached_tokens` within the same prompt
/// total and `completion_tokens_details.reasoning_tokens` within the same completion total
/// (Responses: `input_tokens_details`, `output_tokens_details`); Anthropic moves the cache
/// reads and writes out of `input_tokens` into `cache_read_input_tokens` and
/// `cache_creation_input_tokens`. Counts are capped at the totals.
pub fn report_cache(kind: Kind, v: &mut Value, r: CacheReport) {
    for path in ["/usage", "/message/usage", "/response/usage"] {
        let Some(u) = v.pointer_mut(path).and_then(Value::as_object_mut) else {
            continue;
        };
        let out = |u: &serde_json::Map<String, Value>, k: &str| {
            u.get(k).and_then(Value::as_u64).map(|c| r.reasoning.min(c))
        };
        if let Some(p) = u.get("prompt_tokens").and_then(Value::as_u64) {
            u.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": r.read.min(p)}),
            );
            if let Some(n) = out(u, "completion_tokens") {
                u.insert(
                    "completion_tokens_details".into(),
                    json!({"reasoning_tokens": n}),
                );
            }
        } else if let Some(p) = u.get("input_tokens").and_then(Value::as_u64) {
            if kind == Kind::Messages {
                let read = r.read.min(p);
                let write = r.write.min(p - read);
                u.insert("input_tokens".into(), json!(p - read - write));
                u.insert("cache_read_input_tokens".into(), json!(read));
                u.insert("cache_creation_input_tokens".into(), json!(write));
            } else {
                u.insert(
                    "input_tokens_details".into(),
                    json!({"cached_tokens": r.read.min(p)}),
                );
                if let Some(n) = out(u, "output_tokens") {
                    u.insert(
                        "output_tokens_details".into(),
                        json!({"reasoning_tokens": n}),
                    );
                }
            }
        }
    }
}

/// [`report_cache`] on one SSE event (`event: …` and `data: {…}` lines).
pub fn report_cache_in_event(kind: Kind, ev: &mut String, r: CacheReport) {
    let Some(start) = ev.find("data: {") else {
        return;
    };
    let end = ev[start..].find('\n').map_or(ev.len(), |i| start + i);
    let Ok(mut v) = serde_json::from_str::<Value>(&ev[start + 6..end]) else {
        return;
    };
    report_cache(kind, &mut v, r);
    ev.replace_range(start + 6..end, &v.to_string());
}

fn response_object(model: &str, text: &str, p: u64, c: u32, status: &str) -> Value {
    json!({
        "id": "resp_mock", "object": "response", "created_at": now(), "status": status, "model": model,
        "output": [{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": p, "output_tokens": c, "total_tokens": p + c as u64},
    })
}

fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// The SSE events of a streamed answer, each a complete event, in order.
pub fn stream_events(
    kind: Kind,
    model: &str,
    req: &Value,
    p: u64,
    r: &Reply,
    usage: bool,
) -> Vec<String> {
    let c = r.output_tokens;
    let include_usage = usage && req["stream_options"]["include_usage"] == Value::Bool(true);
    let created = now();
    let mut out = vec![];
    match kind {
        Kind::Chat | Kind::Embeddings => {
            let chunk = |delta: Value, finish: Value| {
                let mut v = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                if include_usage {
                    v["usage"] = Value::Null;
                }
                data(&v)
            };
            out.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            ));
            for w in &r.pieces {
                out.push(chunk(json!({ "content": w }), Value::Null));
            }
            if let Some(t) = &r.tool {
                let head = json!({"index": 0, "id": t.id, "type": "function",
                    "function": {"name": t.name, "arguments": ""}});
                out.push(chunk(json!({ "tool_calls": [head] }), Value::Null));
                for f in &t.fragments {
                    let frag = json!({"index": 0, "function": {"arguments": f}});
                    out.push(chunk(json!({ "tool_calls": [frag] }), Value::Null));
                }
            }
            out.push(chunk(json!({}), json!(finish_reason(&r.stop))));
            if include_usage {
                out.push(data(&json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64}})));
            }
            out.push("data: [DONE]\n\n".into());
        }
        Kind::Completions => {
            for w in &r.pieces {
                out.push(data(&json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": w, "finish_reason": null, "logprobs": null}]})));
            }
            out.push(data(&json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": null}]})));
            if include_usage {
                out.push(data(&json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
                    "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64}})));
            }
            out.push("data: [DONE]\n\n".into());
        }
        Kind::Responses => {
            let mut created_obj = response_object(model, "", p, 0, "in_progress");
            created_obj["usage"] = Value::Null;
            out.push(event(
                "response.created",
                &json!({"type": "response.created", "response": created_obj}),
            ));
            let mut text = String::new();
            for w in &r.pieces {
                text.push_str(w);
                out.push(event("response.output_text.delta", &json!({"type": "response.output_text.delta", "item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": w})));
            }
            let mut done = response_object(model, &text, p, c, "completed");
            if !usage {
                done["usage"] = Value::Null;
            }
            out.push(event(
                "response.completed",
                &json!({"type": "response.completed", "response": done}),
            ));
        }
        Kind::Messages => {
            let start_usage = if usage {
                json!({"input_tokens": p, "output_tokens": 1})
            } else {
                Value::Null
            };
            let mut msg = json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage});
            if !usage {
                if let Some(o) = msg.as_object_mut() {
                    o.remove("usage");
                }
            }
            out.push(event(
                "message_start",
                &json!({"type": "message_start", "message": msg}),
            ));
            let mut index = 0;
            if !r.pieces.is_empty() || r.tool.is_none() {
                out.push(event("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                out.push(event("ping", &json!({"type": "ping"})));
                for w in &r.pieces {
                    out.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
                }
                out.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                index = 1;
            }
            if let Some(t) = &r.tool {
                out.push(event("content_block_start", &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}})));
                if index == 0 {
                    out.push(event("ping", &json!({"type": "ping"})));
                }
                for f in &t.fragments {
                    out.push(event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": f}}),
                    ));
                }
                out.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
            let (reason, seq) = stop_reason(&r.stop);
            let mut delta = json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq}});
            if usage {
                delta["usage"] = json!({"output_tokens": c});
            }
            out.push(event("message_delta", &delta));
            out.push(event("message_stop", &json!({"type": "message_stop"})));
        }
    }
    out
}
