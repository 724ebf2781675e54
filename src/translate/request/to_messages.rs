//! OpenAI chat completions request → Anthropic Messages request.

use super::{as_array, as_str, invalid, is_set, parse, unsupported, Fields, ANTHROPIC};
use crate::error::GatewayError;
use serde_json::{json, Map, Value};

/// `/v1/chat/completions` body → `/v1/messages` body for `model`.
pub fn chat_to_messages(
    fields: &Fields,
    model: &str,
    default_max_tokens: u64,
) -> Result<Vec<u8>, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut max_tokens: Option<u64> = None;
    let mut tools: Option<Vec<Value>> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    let mut rest = Map::new();
    for (k, raw) in fields {
        let v = parse(k, raw)?;
        match k.as_str() {
            "model" => {}
            "messages" => chat_messages(&v, &mut system, &mut messages)?,
            "max_tokens" | "max_completion_tokens" => {
                max_tokens = max_tokens.max(v.as_u64());
            }
            "temperature" | "top_p" if is_set(&v) => {
                rest.insert(k.clone(), v);
            }
            "stop" => match v {
                Value::Null => {}
                Value::String(s) => {
                    rest.insert("stop_sequences".into(), json!([s]));
                }
                Value::Array(a) => {
                    rest.insert("stop_sequences".into(), Value::Array(a));
                }
                _ => return Err(invalid("`stop` must be a string or an array".into())),
            },
            "stream" => {
                rest.insert("stream".into(), Value::Bool(v == Value::Bool(true)));
            }
            "tools" if is_set(&v) => tools = Some(chat_tools(&v)?),
            "functions" if is_set(&v) => {
                let wrapped: Vec<Value> = as_array(&v, "functions")?
                    .iter()
                    .map(|f| json!({"type": "function", "function": f}))
                    .collect();
                tools = Some(chat_tools(&Value::Array(wrapped))?);
            }
            "tool_choice" | "function_call" if is_set(&v) => tool_choice = Some(v),
            "parallel_tool_calls" => parallel = v != Value::Bool(false),
            "user" if is_set(&v) => {
                rest.insert("metadata".into(), json!({ "user_id": v }));
            }
            "n" if v.as_u64().is_some_and(|n| n != 1) => {
                return Err(unsupported(k, ANTHROPIC, "one choice per request only"))
            }
            "logprobs" if v == Value::Bool(true) => {
                return Err(unsupported(k, ANTHROPIC, "no log probabilities"))
            }
            "top_logprobs" if is_set(&v) => {
                return Err(unsupported(k, ANTHROPIC, "no log probabilities"))
            }
            "frequency_penalty" | "presence_penalty" if v.as_f64().is_some_and(|x| x != 0.0) => {
                return Err(unsupported(k, ANTHROPIC, "no repetition penalties"))
            }
            "logit_bias" if v.as_object().is_some_and(|o| !o.is_empty()) => {
                return Err(unsupported(k, ANTHROPIC, "no token biases"))
            }
            "response_format" if is_set(&v) && v["type"] != "text" => {
                return Err(unsupported(k, ANTHROPIC, "no structured output mode"))
            }
            "modalities" if is_set(&v) && v != json!(["text"]) => {
                return Err(unsupported(k, ANTHROPIC, "text output only"))
            }
            "audio" | "reasoning_effort" | "verbosity" | "web_search_options" if is_set(&v) => {
                return Err(unsupported(k, ANTHROPIC, "no counterpart"))
            }
            // Transport, storage and best-effort hints: nothing in the answer depends on them.
            "n" | "logprobs" | "frequency_penalty" | "presence_penalty" | "logit_bias"
            | "response_format" | "modalities" | "audio" | "reasoning_effort" | "verbosity"
            | "web_search_options" | "temperature" | "top_p" | "tools" | "functions"
            | "tool_choice" | "function_call" | "user" | "top_logprobs" | "stream_options"
            | "seed" | "store" | "metadata" | "service_tier" | "prediction"
            | "prompt_cache_key" | "safety_identifier" => {}
            _ => return Err(unsupported(k, ANTHROPIC, "unknown field")),
        }
    }
    out.insert(
        "max_tokens".into(),
        max_tokens.unwrap_or(default_max_tokens).into(),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    out.extend(rest);
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let mut choice = match tool_choice {
            None => json!({"type": "auto"}),
            Some(c) => anthropic_tool_choice(&c)?,
        };
        if !parallel && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        out.insert("tools".into(), Value::Array(tools));
        out.insert("tool_choice".into(), choice);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| invalid(e.to_string()))
}

/// Appends `blocks` as a turn of `role`, merged into the previous turn when it has the same
/// role (Anthropic wants user and assistant turns to alternate, tool results in one turn).
fn push_turn(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(a) = last["content"].as_array_mut() {
                a.extend(blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn text_block(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| json!({"type": "text", "text": s}))
}

/// OpenAI message content (string or parts) → Anthropic blocks.
fn content_blocks(content: &Value, path: &str, images: bool) -> Result<Vec<Value>, GatewayError> {
    match content {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(text_block(s).into_iter().collect()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let ty = p["type"].as_str().unwrap_or("");
                match ty {
                    "text" => out.extend(text_block(as_str(&p["text"], path)?)),
                    "refusal" => out.extend(text_block(as_str(&p["refusal"], path)?)),
                    "image_url" if images => out.push(image_block(&p["image_url"], path)?),
                    _ => {
                        return Err(unsupported(
                            format!("{path}[{j}].type"),
                            ANTHROPIC,
                            "content part type without a counterpart here",
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(format!("`{path}` must be a string or an array"))),
    }
}

/// `image_url` (an https URL or a `data:` URL) → an Anthropic image block.
fn image_block(image: &Value, path: &str) -> Result<Value, GatewayError> {
    let url = image
        .as_str()
        .or_else(|| image["url"].as_str())
        .ok_or_else(|| invalid(format!("`{path}`: image_url.url is required")))?;
    if let Some(data_url) = url.strip_prefix("data:") {
        let Some((media_type, data)) = data_url.split_once(";base64,") else {
            return Err(unsupported(
                format!("{path}.image_url.url"),
                ANTHROPIC,
                "data URLs must be base64",
            ));
        };
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// OpenAI `messages` → Anthropic `system` blocks and turns.
fn chat_messages(
    v: &Value,
    system: &mut Vec<Value>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    // Legacy `function_call` turns carry no id: the next `function` turn answers the last one.
    let mut last_function_id = String::new();
    for (i, m) in as_array(v, "messages")?.iter().enumerate() {
        let path = format!("messages[{i}].content");
        let role = as_str(&m["role"], &format!("messages[{i}].role"))?;
        match role {
            // Anthropic has one system prompt: every system turn joins it, in order.
            "system" | "developer" => system.extend(content_blocks(&m["content"], &path, false)?),
            "user" => push_turn(out, "user", content_blocks(&m["content"], &path, true)?),
            "assistant" => {
                let mut blocks = content_blocks(&m["content"], &path, false)?;
                if let Some(calls) = m["tool_calls"].as_array() {
                    for (j, c) in calls.iter().enumerate() {
                        let p = format!("messages[{i}].tool_calls[{j}]");
                        let f = &c["function"];
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": as_str(&c["id"], &format!("{p}.id"))?,
                            "name": as_str(&f["name"], &format!("{p}.function.name"))?,
                            "input": arguments(&f["arguments"], &p)?,
                        }));
                    }
                }
                if m["function_call"].is_object() {
                    let f = &m["function_call"];
                    last_function_id = format!("call_fn_{i}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": last_function_id,
                        "name": as_str(&f["name"], &format!("messages[{i}].function_call.name"))?,
                        "input": arguments(&f["arguments"], &format!("messages[{i}].function_call"))?,
                    }));
                }
                push_turn(out, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = if role == "tool" {
                    as_str(&m["tool_call_id"], &format!("messages[{i}].tool_call_id"))?
                } else {
                    last_function_id.as_str()
                };
                let content = match &m["content"] {
                    Value::String(s) => Value::String(s.clone()),
                    c => Value::Array(content_blocks(c, &path, false)?),
                };
                push_turn(
                    out,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
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

/// A tool call's `arguments` (a JSON string) → the `input` object.
fn arguments(v: &Value, path: &str) -> Result<Value, GatewayError> {
    match v {
        Value::Null => Ok(json!({})),
        Value::String(s) if s.trim().is_empty() => Ok(json!({})),
        Value::String(s) => serde_json::from_str(s)
            .map_err(|_| invalid(format!("`{path}.function.arguments` is not valid JSON"))),
        Value::Object(_) => Ok(v.clone()),
        _ => Err(invalid(format!(
            "`{path}.function.arguments` must be a string"
        ))),
    }
}

fn chat_tools(v: &Value) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in as_array(v, "tools")?.iter().enumerate() {
        if t["type"] != "function" {
            return Err(unsupported(
                format!("tools[{i}].type"),
                ANTHROPIC,
                "function tools only",
            ));
        }
        let f = &t["function"];
        let mut tool = Map::new();
        tool.insert(
            "name".into(),
            as_str(&f["name"], &format!("tools[{i}].function.name"))?.into(),
        );
        if let Some(d) = f["description"].as_str() {
            tool.insert("description".into(), d.into());
        }
        let schema = match &f["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            p => p.clone(),
        };
        tool.insert("input_schema".into(), schema);
        out.push(Value::Object(tool));
    }
    Ok(out)
}

fn anthropic_tool_choice(c: &Value) -> Result<Value, GatewayError> {
    Ok(match c {
        Value::String(s) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(invalid(format!("`tool_choice`: unknown value {s:?}"))),
        },
        // Chat completions `{"type":"function","function":{"name":…}}`, legacy `{"name":…}`.
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f["name"].as_str())
                .or_else(|| o.get("name").and_then(Value::as_str))
                .ok_or_else(|| invalid("`tool_choice`: a function name is required".into()))?;
            json!({"type": "tool", "name": name})
        }
        _ => {
            return Err(invalid(
                "`tool_choice` must be a string or an object".into(),
            ))
        }
    })
}
