//! Anthropic Messages request → OpenAI chat completions request.

use super::{as_array, as_str, invalid, is_set, parse, unsupported, Fields, OPENAI};
use crate::error::GatewayError;
use serde_json::{json, Map, Value};

/// `/v1/messages` body → `/v1/chat/completions` body for `model`. Streams ask for usage
/// (`stream_options.include_usage`), which Anthropic clients always receive.
pub fn messages_to_chat(fields: &Fields, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut messages: Vec<Value> = Vec::new();
    let mut rest = Map::new();
    let mut tools: Option<Vec<Value>> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    for (k, raw) in fields {
        let v = parse(k, raw)?;
        match k.as_str() {
            "model" => {}
            "system" => {
                let text = system_text(&v)?;
                if !text.is_empty() {
                    messages.insert(0, json!({"role": "system", "content": text}));
                }
            }
            "messages" => anthropic_messages(&v, &mut messages)?,
            "max_tokens" if is_set(&v) => {
                rest.insert("max_completion_tokens".into(), v);
            }
            "temperature" | "top_p" if is_set(&v) => {
                rest.insert(k.clone(), v);
            }
            "stop_sequences" if is_set(&v) => {
                rest.insert("stop".into(), v);
            }
            "stream" => {
                if v == Value::Bool(true) {
                    rest.insert("stream".into(), Value::Bool(true));
                    rest.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
            "tools" if is_set(&v) => tools = Some(anthropic_tools(&v)?),
            "tool_choice" if is_set(&v) => {
                parallel = v["disable_parallel_tool_use"] != Value::Bool(true);
                tool_choice = Some(openai_tool_choice(&v)?);
            }
            "metadata" => {
                if let Some(u) = v["user_id"].as_str() {
                    rest.insert("user".into(), u.into());
                }
            }
            "top_k" if is_set(&v) => return Err(unsupported(k, OPENAI, "no top-k sampling")),
            "thinking" if is_set(&v) && v["type"] != "disabled" => {
                return Err(unsupported(k, OPENAI, "no extended thinking"))
            }
            "container" | "mcp_servers" | "context_management" if is_set(&v) => {
                return Err(unsupported(k, OPENAI, "no counterpart"))
            }
            "max_tokens" | "temperature" | "top_p" | "stop_sequences" | "tools" | "tool_choice"
            | "top_k" | "thinking" | "container" | "mcp_servers" | "context_management"
            | "service_tier" => {}
            _ => return Err(unsupported(k, OPENAI, "unknown field")),
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    out.extend(rest);
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = tool_choice {
            out.insert("tool_choice".into(), c);
        }
        if !parallel {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| invalid(e.to_string()))
}

/// Anthropic `system` (string or text blocks) → one system prompt.
fn system_text(v: &Value) -> Result<String, GatewayError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                if b["type"] != "text" {
                    return Err(unsupported(
                        format!("system[{i}].type"),
                        OPENAI,
                        "text system blocks only",
                    ));
                }
                parts.push(as_str(&b["text"], "system")?);
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(invalid("`system` must be a string or an array".into())),
    }
}

/// Anthropic turns → OpenAI messages. A user turn's tool results become `tool` messages,
/// placed first (they must follow the assistant's tool calls).
fn anthropic_messages(v: &Value, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    for (i, m) in as_array(v, "messages")?.iter().enumerate() {
        let path = format!("messages[{i}].content");
        let role = as_str(&m["role"], &format!("messages[{i}].role"))?;
        let blocks = match &m["content"] {
            Value::String(s) => {
                out.push(json!({"role": role, "content": s}));
                continue;
            }
            Value::Array(b) => b,
            _ => return Err(invalid(format!("`{path}` must be a string or an array"))),
        };
        match role {
            "user" => {
                let mut parts = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let p = format!("{path}[{j}]");
                    match b["type"].as_str().unwrap_or("") {
                        "text" => {
                            parts.push(json!({"type": "text", "text": as_str(&b["text"], &p)?}))
                        }
                        "image" => parts.push(image_part(&b["source"], &p)?),
                        "tool_result" => out.push(tool_message(b, &p)?),
                        _ => {
                            return Err(unsupported(
                                format!("{p}.type"),
                                OPENAI,
                                "content block type without a counterpart here",
                            ))
                        }
                    }
                }
                if !parts.is_empty() {
                    out.push(json!({"role": "user", "content": parts}));
                }
            }
            "assistant" => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let p = format!("{path}[{j}]");
                    match b["type"].as_str().unwrap_or("") {
                        "text" => text.push_str(as_str(&b["text"], &p)?),
                        "tool_use" => calls.push(json!({
                            "id": as_str(&b["id"], &p)?,
                            "type": "function",
                            "function": {
                                "name": as_str(&b["name"], &p)?,
                                "arguments": b["input"].to_string(),
                            },
                        })),
                        // The model's own reasoning: no OpenAI model can take it back.
                        "thinking" | "redacted_thinking" => {}
                        _ => {
                            return Err(unsupported(
                                format!("{p}.type"),
                                OPENAI,
                                "content block type without a counterpart here",
                            ))
                        }
                    }
                }
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { text.into() }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            _ => {
                return Err(invalid(format!(
                    "`messages[{i}].role`: unknown role {role:?}"
                )))
            }
        }
    }
    Ok(())
}

fn image_part(source: &Value, path: &str) -> Result<Value, GatewayError> {
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            as_str(&source["media_type"], path)?,
            as_str(&source["data"], path)?
        ),
        Some("url") => as_str(&source["url"], path)?.to_string(),
        _ => {
            return Err(unsupported(
                format!("{path}.source.type"),
                OPENAI,
                "base64 and URL images only",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool_result` block → a `tool` message. OpenAI has no error flag: an error result is
/// marked in its text.
fn tool_message(b: &Value, path: &str) -> Result<Value, GatewayError> {
    let mut text = match &b["content"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut t = String::new();
            for (k, p) in parts.iter().enumerate() {
                if p["type"] != "text" {
                    return Err(unsupported(
                        format!("{path}.content[{k}].type"),
                        OPENAI,
                        "text tool results only",
                    ));
                }
                t.push_str(as_str(&p["text"], path)?);
            }
            t
        }
        _ => {
            return Err(invalid(format!(
                "`{path}.content` must be a string or an array"
            )))
        }
    };
    if b["is_error"] == Value::Bool(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": as_str(&b["tool_use_id"], path)?, "content": text}))
}

fn anthropic_tools(v: &Value) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in as_array(v, "tools")?.iter().enumerate() {
        // Server tools (web search, code execution, …) carry a versioned `type`.
        if !(t["type"].is_null() || t["type"] == "custom") {
            return Err(unsupported(
                format!("tools[{i}].type"),
                OPENAI,
                "client tools only",
            ));
        }
        let mut f = Map::new();
        f.insert(
            "name".into(),
            as_str(&t["name"], &format!("tools[{i}].name"))?.into(),
        );
        if let Some(d) = t["description"].as_str() {
            f.insert("description".into(), d.into());
        }
        f.insert("parameters".into(), t["input_schema"].clone());
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(out)
}

fn openai_tool_choice(c: &Value) -> Result<Value, GatewayError> {
    Ok(match c["type"].as_str() {
        Some("auto") => "auto".into(),
        Some("any") => "required".into(),
        Some("none") => "none".into(),
        Some("tool") => {
            json!({"type": "function", "function": {"name": as_str(&c["name"], "tool_choice.name")?}})
        }
        _ => {
            return Err(invalid(
                "`tool_choice.type` must be auto, any, tool or none".into(),
            ))
        }
    })
}
