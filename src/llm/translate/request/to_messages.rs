//! OpenAI chat completions request → Anthropic Messages request.
//!
//! `messages` and `tools` — nearly all of a request's bytes — are read into typed views that
//! borrow from the client's body, and written out typed: strings are copied once, tool
//! schemas and arguments are passed through as raw JSON. The small fields go through
//! `serde_json::Value`.

use super::{field, invalid, is_set, kind, parse, unsupported, RequestBody, StringOr, ANTHROPIC};
use crate::error::GatewayError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: StringOr<'a, PartIn<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallIn<'a>>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function_call: Option<FunctionIn<'a>>,
}

#[derive(Deserialize)]
struct ToolCallIn<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: FunctionIn<'a>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PartIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ImageUrlIn<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    function: Option<FunctionDefIn<'a>>,
}

#[derive(Deserialize)]
struct FunctionDefIn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: Source<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: Cow<'a, str>,
        input: Json<'a>,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: ToolContent<'a>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 {
        media_type: Cow<'a, str>,
        data: Cow<'a, str>,
    },
    Url {
        url: Cow<'a, str>,
    },
}

/// JSON written as it came (borrowed or unescaped from a string), or made here.
#[derive(Serialize)]
#[serde(untagged)]
enum Json<'a> {
    Raw(&'a RawValue),
    Owned(Box<RawValue>),
    Value(Value),
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolContent<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    input_schema: Json<'a>,
}

/// `/v1/chat/completions` body → `/v1/messages` body for `model`.
pub fn chat_to_messages(
    body: &RequestBody,
    model: &str,
    default_max_tokens: u64,
) -> Result<Vec<u8>, GatewayError> {
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::new();
    let mut max_tokens: Option<u64> = None;
    let mut tools: Option<Vec<ToolOut<'_>>> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    let mut rest: Vec<(&str, Value)> = Vec::new();
    let mut len = 0;
    for (k, raw) in body.fields() {
        len += raw.len();
        match k {
            "model" => continue,
            "messages" => {
                let msgs: Vec<MessageIn<'_>> =
                    serde_json::from_str(raw).map_err(|e| invalid(format!("`messages`: {e}")))?;
                chat_messages(msgs, &mut system, &mut turns)?;
                continue;
            }
            "tools" | "functions" => {
                tools = chat_tools(k, raw)?.or(tools);
                continue;
            }
            _ => {}
        }
        let v = parse(k, raw)?;
        match k {
            "max_tokens" | "max_completion_tokens" => {
                max_tokens = max_tokens.max(v.as_u64());
            }
            "temperature" | "top_p" if is_set(&v) => rest.push((k, v)),
            "stop" => match v {
                Value::Null => {}
                Value::String(s) => rest.push(("stop_sequences", json!([s]))),
                Value::Array(a) => rest.push(("stop_sequences", Value::Array(a))),
                _ => return Err(invalid("`stop` must be a string or an array".into())),
            },
            "stream" => rest.push(("stream", Value::Bool(v == Value::Bool(true)))),
            "tool_choice" | "function_call" if is_set(&v) => tool_choice = Some(v),
            "parallel_tool_calls" => parallel = v != Value::Bool(false),
            "user" if is_set(&v) => rest.push(("metadata", json!({ "user_id": v }))),
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
            | "web_search_options" | "temperature" | "top_p" | "tool_choice" | "function_call"
            | "user" | "top_logprobs" | "stream_options" | "seed" | "store" | "metadata"
            | "service_tier" | "prediction" | "prompt_cache_key" | "safety_identifier" => {}
            _ => return Err(unsupported(k, ANTHROPIC, "unknown field")),
        }
    }
    let mut out = Vec::with_capacity(len + len / 8 + 256);
    out.push(b'{');
    field(&mut out, "model", &model)?;
    field(
        &mut out,
        "max_tokens",
        &max_tokens.unwrap_or(default_max_tokens),
    )?;
    if !system.is_empty() {
        field(&mut out, "system", &system)?;
    }
    field(&mut out, "messages", &turns)?;
    for (k, v) in &rest {
        field(&mut out, k, v)?;
    }
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let mut choice = match tool_choice {
            None => json!({"type": "auto"}),
            Some(c) => anthropic_tool_choice(&c)?,
        };
        if !parallel && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        field(&mut out, "tools", &tools)?;
        field(&mut out, "tool_choice", &choice)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Appends `blocks` as a turn of `role`, merged into the previous turn when it has the same
/// role (Anthropic wants user and assistant turns to alternate, tool results in one turn).
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn {
            role,
            content: blocks,
        }),
    }
}

fn text_block(s: Cow<'_, str>) -> Option<Block<'_>> {
    (!s.is_empty()).then_some(Block::Text { text: s })
}

/// OpenAI message content (string or parts) → Anthropic blocks. `i`: the message index.
fn content_blocks<'a>(
    content: StringOr<'a, PartIn<'a>>,
    i: usize,
    images: bool,
) -> Result<Vec<Block<'a>>, GatewayError> {
    match content {
        StringOr::None => Ok(vec![]),
        StringOr::Text(s) => Ok(text_block(s).into_iter().collect()),
        StringOr::List(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                let missing = || invalid(format!("`messages[{i}].content[{j}]`: no {}", p.ty));
                match &*p.ty {
                    "text" => out.extend(text_block(p.text.ok_or_else(missing)?)),
                    "refusal" => out.extend(text_block(p.refusal.ok_or_else(missing)?)),
                    "image_url" if images => {
                        out.push(image_block(p.image_url.ok_or_else(missing)?, i, j)?)
                    }
                    _ => {
                        return Err(unsupported(
                            format!("messages[{i}].content[{j}].type"),
                            ANTHROPIC,
                            "content part type without a counterpart here",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Splits a `data:` URL's rest (`<media type>;base64,<data>`), keeping borrowed parts
/// borrowed (image data can be megabytes).
fn split_data_url(rest: Cow<'_, str>) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    match rest {
        Cow::Borrowed(s) => {
            let (m, d) = s.split_once(";base64,")?;
            Some((Cow::Borrowed(m), Cow::Borrowed(d)))
        }
        Cow::Owned(s) => {
            let (m, d) = s.split_once(";base64,")?;
            Some((Cow::Owned(m.to_string()), Cow::Owned(d.to_string())))
        }
    }
}

/// `image_url` (a URL string or `{url, detail}`; https or `data:`) → an image block.
fn image_block(raw: &RawValue, i: usize, j: usize) -> Result<Block<'_>, GatewayError> {
    let bad =
        |e: serde_json::Error| invalid(format!("`messages[{i}].content[{j}].image_url`: {e}"));
    let url: Cow<'_, str> = if kind(raw.get()) == b'"' {
        serde_json::from_str(raw.get()).map_err(bad)?
    } else {
        serde_json::from_str::<ImageUrlIn<'_>>(raw.get())
            .map_err(bad)?
            .url
    };
    let data_url = match url {
        Cow::Borrowed(s) => s.strip_prefix("data:").map(Cow::Borrowed),
        Cow::Owned(ref s) => s.strip_prefix("data:").map(|r| Cow::Owned(r.to_string())),
    };
    let source = match data_url {
        None => Source::Url { url },
        Some(rest) => {
            let (media_type, data) = split_data_url(rest).ok_or_else(|| {
                unsupported(
                    format!("messages[{i}].content[{j}].image_url.url"),
                    ANTHROPIC,
                    "data URLs must be base64",
                )
            })?;
            Source::Base64 { media_type, data }
        }
    };
    Ok(Block::Image { source })
}

/// OpenAI `messages` → Anthropic `system` blocks and turns.
fn chat_messages<'a>(
    msgs: Vec<MessageIn<'a>>,
    system: &mut Vec<Block<'a>>,
    out: &mut Vec<Turn<'a>>,
) -> Result<(), GatewayError> {
    // Legacy `function_call` turns carry no id: the next `function` turn answers the last one.
    let mut last_function_id = String::new();
    for (i, m) in msgs.into_iter().enumerate() {
        match &*m.role {
            // Anthropic has one system prompt: every system turn joins it, in order.
            "system" | "developer" => system.extend(content_blocks(m.content, i, false)?),
            "user" => push_turn(out, "user", content_blocks(m.content, i, true)?),
            "assistant" => {
                let mut blocks = content_blocks(m.content, i, false)?;
                for (j, c) in m.tool_calls.into_iter().flatten().enumerate() {
                    let path = || format!("messages[{i}].tool_calls[{j}]");
                    blocks.push(Block::ToolUse {
                        id: c.id,
                        name: c.function.name,
                        input: arguments(c.function.arguments, path)?,
                    });
                }
                if let Some(f) = m.function_call {
                    last_function_id = format!("call_fn_{i}");
                    blocks.push(Block::ToolUse {
                        id: Cow::Owned(last_function_id.clone()),
                        name: f.name,
                        input: arguments(f.arguments, || format!("messages[{i}].function_call"))?,
                    });
                }
                push_turn(out, "assistant", blocks);
            }
            "tool" | "function" => {
                let tool_use_id = match m.tool_call_id {
                    Some(id) if m.role == "tool" => id,
                    None if m.role == "tool" => {
                        return Err(invalid(format!(
                            "`messages[{i}].tool_call_id` must be a string"
                        )))
                    }
                    _ => Cow::Owned(last_function_id.clone()),
                };
                let content = match m.content {
                    StringOr::Text(s) => ToolContent::Text(s),
                    c => ToolContent::Blocks(content_blocks(c, i, false)?),
                };
                push_turn(
                    out,
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id,
                        content,
                    }],
                );
            }
            role => {
                return Err(invalid(format!(
                    "`messages[{i}].role`: unknown role {role:?}"
                )))
            }
        }
    }
    Ok(())
}

/// A tool call's `arguments` (a JSON string) → the `input` object, as raw JSON.
fn arguments<'a>(
    raw: Option<&'a RawValue>,
    path: impl Fn() -> String,
) -> Result<Json<'a>, GatewayError> {
    let bad = || invalid(format!("`{}.function.arguments` is not valid JSON", path()));
    let Some(raw) = raw else {
        return Ok(Json::Value(json!({})));
    };
    match kind(raw.get()) {
        b'n' => Ok(Json::Value(json!({}))),
        b'{' => Ok(Json::Raw(raw)),
        b'"' => {
            let s: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
            if s.trim().is_empty() {
                return Ok(Json::Value(json!({})));
            }
            RawValue::from_string(s.into_owned())
                .map(Json::Owned)
                .map_err(|_| bad())
        }
        _ => Err(invalid(format!(
            "`{}.function.arguments` must be a string",
            path()
        ))),
    }
}

/// `tools` (or legacy `functions`) → Anthropic tools; `None` when null.
fn chat_tools<'a>(k: &str, raw: &'a str) -> Result<Option<Vec<ToolOut<'a>>>, GatewayError> {
    if kind(raw) == b'n' {
        return Ok(None);
    }
    let bad = |e: serde_json::Error| invalid(format!("`{k}`: {e}"));
    let defs: Vec<FunctionDefIn<'a>> = if k == "functions" {
        serde_json::from_str(raw).map_err(bad)?
    } else {
        let tools: Vec<ToolIn<'a>> = serde_json::from_str(raw).map_err(bad)?;
        let mut defs = Vec::with_capacity(tools.len());
        for (i, t) in tools.into_iter().enumerate() {
            match t.function {
                Some(f) if t.ty == "function" => defs.push(f),
                _ => {
                    return Err(unsupported(
                        format!("tools[{i}].type"),
                        ANTHROPIC,
                        "function tools only",
                    ))
                }
            }
        }
        defs
    };
    Ok(Some(
        defs.into_iter()
            .map(|f| ToolOut {
                name: f.name,
                description: f.description,
                input_schema: match f.parameters {
                    Some(p) if kind(p.get()) != b'n' => Json::Raw(p),
                    _ => Json::Value(json!({"type": "object", "properties": {}})),
                },
            })
            .collect(),
    ))
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
