//! What the mock answers, in each provider's real wire format.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Kind {
    pub fn from_path(path: &str) -> Option<Kind> {
        Some(match path.split('?').next().unwrap_or("") {
            "/v1/chat/completions" => Kind::Chat,
            "/v1/completions" => Kind::Completions,
            "/v1/embeddings" => Kind::Embeddings,
            "/v1/responses" => Kind::Responses,
            "/v1/messages" => Kind::Messages,
            _ => return None,
        })
    }
}

fn words(c: u32) -> Vec<String> {
    (0..c).map(|i| format!("tok{i} ")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn error_body(kind: Option<Kind>, status: u16) -> Vec<u8> {
    let v = if kind == Some(Kind::Messages) {
        json!({"type": "error", "error": {"type": "api_error", "message": format!("mock error {status}")}})
    } else {
        json!({"error": {"message": format!("mock error {status}"), "type": "server_error", "code": null, "param": null}})
    };
    v.to_string().into_bytes()
}

/// A complete JSON answer. `usage` None = omitted.
pub fn json_answer(kind: Kind, model: &str, req: &Value, p: u64, c: u32, usage: bool) -> Value {
    let text: String = words(c).concat();
    let mut v = match kind {
        Kind::Chat => json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64},
        }),
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
        Kind::Messages => json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": p, "output_tokens": c},
        }),
    };
    if !usage {
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
    }
    v
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
    c: u32,
    usage: bool,
) -> Vec<String> {
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
            for w in words(c) {
                out.push(chunk(json!({"content": w}), Value::Null));
            }
            out.push(chunk(json!({}), json!("stop")));
            if include_usage {
                out.push(data(&json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c as u64}})));
            }
            out.push("data: [DONE]\n\n".into());
        }
        Kind::Completions => {
            for w in words(c) {
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
            for w in words(c) {
                text.push_str(&w);
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
            out.push(event("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            out.push(event("ping", &json!({"type": "ping"})));
            for w in words(c) {
                out.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
            }
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            let mut delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}});
            if usage {
                delta["usage"] = json!({"output_tokens": c});
            }
            out.push(event("message_delta", &delta));
            out.push(event("message_stop", &json!({"type": "message_stop"})));
        }
    }
    out
}
