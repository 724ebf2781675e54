//! Anthropic Messages request → OpenAI chat completions request.
//!
//! Like `to_messages`: `system`, `messages` and `tools` are read typed and borrowed, tool
//! inputs and schemas pass through as raw JSON, the small fields go through `Value`.

use super::{field, invalid, is_set, parse, unsupported, RequestBody, StringOr, OPENAI};
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
    content: StringOr<'a, BlockIn<'a>>,
}

#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<SourceIn<'a>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: StringOr<'a, TextIn<'a>>,
    #[serde(default)]
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct SourceIn<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

/// A text block (system prompt, tool result content).
#[derive(Deserialize)]
struct TextIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    /// `null` for an assistant turn that only calls tools.
    content: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<CallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<PartOut<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartOut<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: UrlOut<'a> },
}

#[derive(Serialize)]
struct UrlOut<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct CallOut<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    ty: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: Cow<'a, str>,
    /// The tool input's JSON text: OpenAI carries arguments as a string.
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    function: FunctionDefOut<'a>,
}

#[derive(Serialize)]
struct FunctionDefOut<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
}

/// `/v1/messages` body → `/v1/chat/completions` body for `model`. Streams ask for usage
/// (`stream_options.include_usage`), which Anthropic clients always receive.
pub fn messages_to_chat(body: &RequestBody, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut system: Option<MessageOut<'_>> = None;
    let mut messages: Vec<MessageOut<'_>> = Vec::new();
    let mut rest: Vec<(&str, Value)> = Vec::new();
    let mut tools: Option<Vec<ToolOut<'_>>> = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    let mut len = 0;
    for (k, raw) in body.fields() {
        len += raw.len();
        let typed = |e: serde_json::Error| invalid(format!("`{k}`: {e}"));
        match k {
            "model" => continue,
            "system" => {
                let text = system_text(serde_json::from_str(raw).map_err(typed)?)?;
                system = (!text.is_empty()).then(|| MessageOut {
                    role: "system",
                    content: Some(ContentOut::Text(text)),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                });
                continue;
            }
            "messages" => {
                let msgs: Vec<MessageIn<'_>> = serde_json::from_str(raw).map_err(typed)?;
                anthropic_messages(msgs, &mut messages)?;
                continue;
            }
            "tools" => {
                let list: Option<Vec<ToolIn<'_>>> = serde_json::from_str(raw).map_err(typed)?;
                tools = list.map(anthropic_tools).transpose()?;
                continue;
            }
            _ => {}
        }
        let v = parse(k, raw)?;
        match k {
            "max_tokens" if is_set(&v) => rest.push(("max_completion_tokens", v)),
            "temperature" | "top_p" if is_set(&v) => rest.push((k, v)),
            "stop_sequences" if is_set(&v) => rest.push(("stop", v)),
            "stream" => {
                if v == Value::Bool(true) {
                    rest.push(("stream", Value::Bool(true)));
                    rest.push(("stream_options", json!({"include_usage": true})));
                }
            }
            "tool_choice" if is_set(&v) => {
                parallel = v["disable_parallel_tool_use"] != Value::Bool(true);
                tool_choice = Some(openai_tool_choice(&v)?);
            }
            "metadata" => {
                if let Some(u) = v["user_id"].as_str() {
                    rest.push(("user", u.into()));
                }
            }
            "top_k" if is_set(&v) => return Err(unsupported(k, OPENAI, "no top-k sampling")),
            "thinking" if is_set(&v) && v["type"] != "disabled" => {
                return Err(unsupported(k, OPENAI, "no extended thinking"))
            }
            "container" | "mcp_servers" | "context_management" if is_set(&v) => {
                return Err(unsupported(k, OPENAI, "no counterpart"))
            }
            "max_tokens" | "temperature" | "top_p" | "stop_sequences" | "tool_choice" | "top_k"
            | "thinking" | "container" | "mcp_servers" | "context_management" | "service_tier" => {}
            _ => return Err(unsupported(k, OPENAI, "unknown field")),
        }
    }
    let mut out = Vec::with_capacity(len + len / 8 + 256);
    out.push(b'{');
    field(&mut out, "model", &model)?;
    // The system prompt comes first, wherever the client put the field.
    out.extend_from_slice(b",\"messages\":[");
    let mut first = true;
    for m in system.iter().chain(&messages) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, m).map_err(|e| invalid(e.to_string()))?;
    }
    out.push(b']');
    for (k, v) in &rest {
        field(&mut out, k, v)?;
    }
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        field(&mut out, "tools", &tools)?;
        if let Some(c) = tool_choice {
            field(&mut out, "tool_choice", &c)?;
        }
        if !parallel {
            field(&mut out, "parallel_tool_calls", &false)?;
        }
    }
    out.push(b'}');
    Ok(out)
}

/// Anthropic `system` (string or text blocks) → one system prompt.
fn system_text<'a>(v: StringOr<'a, TextIn<'a>>) -> Result<Cow<'a, str>, GatewayError> {
    match v {
        StringOr::None => Ok(Cow::Borrowed("")),
        StringOr::Text(s) => Ok(s),
        StringOr::List(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                match (b.ty.as_ref(), b.text) {
                    ("text", Some(t)) => parts.push(t),
                    _ => {
                        return Err(unsupported(
                            format!("system[{i}].type"),
                            OPENAI,
                            "text system blocks only",
                        ))
                    }
                }
            }
            Ok(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Cow::Owned(parts.join("\n\n"))
            })
        }
    }
}

fn missing(path: &str, what: &str) -> GatewayError {
    invalid(format!("`{path}`: `{what}` is required"))
}

/// Anthropic turns → OpenAI messages. A user turn's tool results become `tool` messages,
/// placed first (they must follow the assistant's tool calls).
fn anthropic_messages<'a>(
    msgs: Vec<MessageIn<'a>>,
    out: &mut Vec<MessageOut<'a>>,
) -> Result<(), GatewayError> {
    for (i, m) in msgs.into_iter().enumerate() {
        let role = match &*m.role {
            "user" => "user",
            "assistant" => "assistant",
            r => return Err(invalid(format!("`messages[{i}].role`: unknown role {r:?}"))),
        };
        let blocks = match m.content {
            StringOr::Text(s) => {
                out.push(MessageOut {
                    role,
                    content: Some(ContentOut::Text(s)),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                });
                continue;
            }
            StringOr::List(b) => b,
            StringOr::None => {
                return Err(invalid(format!(
                    "`messages[{i}].content` must be a string or an array"
                )))
            }
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for (j, b) in blocks.into_iter().enumerate() {
            let path = || format!("messages[{i}].content[{j}]");
            match (role, b.ty.as_ref()) {
                (_, "text") => {
                    let text = b.text.ok_or_else(|| missing(&path(), "text"))?;
                    parts.push(PartOut::Text { text });
                }
                ("user", "image") => {
                    let source = b.source.ok_or_else(|| missing(&path(), "source"))?;
                    parts.push(image_part(source, &path)?);
                }
                ("user", "tool_result") => out.push(tool_message(b, &path)?),
                ("assistant", "tool_use") => calls.push(CallOut {
                    id: b.id.ok_or_else(|| missing(&path(), "id"))?,
                    ty: "function",
                    function: FunctionOut {
                        name: b.name.ok_or_else(|| missing(&path(), "name"))?,
                        arguments: b.input.map_or("{}", |r| r.get()),
                    },
                }),
                // The model's own reasoning: no OpenAI model can take it back.
                ("assistant", "thinking" | "redacted_thinking") => {}
                _ => {
                    return Err(unsupported(
                        format!("{}.type", path()),
                        OPENAI,
                        "content block type without a counterpart here",
                    ))
                }
            }
        }
        if role == "assistant" {
            // OpenAI takes an assistant turn's text as one string.
            let text: String = parts
                .iter()
                .map(|p| match p {
                    PartOut::Text { text } => text.as_ref(),
                    PartOut::ImageUrl { .. } => "",
                })
                .collect();
            out.push(MessageOut {
                role,
                content: (!text.is_empty()).then_some(ContentOut::Text(Cow::Owned(text))),
                tool_calls: calls,
                tool_call_id: None,
            });
        } else if !parts.is_empty() {
            out.push(MessageOut {
                role,
                content: Some(ContentOut::Parts(parts)),
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
    }
    Ok(())
}

fn image_part<'a>(
    source: SourceIn<'a>,
    path: &dyn Fn() -> String,
) -> Result<PartOut<'a>, GatewayError> {
    let url = match source.ty.as_deref().unwrap_or("") {
        "base64" => Cow::Owned(format!(
            "data:{};base64,{}",
            source
                .media_type
                .ok_or_else(|| missing(&path(), "source.media_type"))?,
            source.data.ok_or_else(|| missing(&path(), "source.data"))?
        )),
        "url" => source.url.ok_or_else(|| missing(&path(), "source.url"))?,
        _ => {
            return Err(unsupported(
                format!("{}.source.type", path()),
                OPENAI,
                "base64 and URL images only",
            ))
        }
    };
    Ok(PartOut::ImageUrl {
        image_url: UrlOut { url },
    })
}

/// A `tool_result` block → a `tool` message. OpenAI has no error flag: an error result is
/// marked in its text.
fn tool_message<'a>(
    b: BlockIn<'a>,
    path: &dyn Fn() -> String,
) -> Result<MessageOut<'a>, GatewayError> {
    let mut text: Cow<'a, str> = match b.content {
        StringOr::None => Cow::Borrowed(""),
        StringOr::Text(s) => s,
        StringOr::List(parts) => {
            let mut t = String::new();
            for (k, p) in parts.into_iter().enumerate() {
                match (p.ty.as_ref(), p.text) {
                    ("text", Some(s)) => t.push_str(&s),
                    _ => {
                        return Err(unsupported(
                            format!("{}.content[{k}].type", path()),
                            OPENAI,
                            "text tool results only",
                        ))
                    }
                }
            }
            Cow::Owned(t)
        }
    };
    if b.is_error == Some(true) {
        text = Cow::Owned(format!("Error: {text}"));
    }
    Ok(MessageOut {
        role: "tool",
        content: Some(ContentOut::Text(text)),
        tool_calls: Vec::new(),
        tool_call_id: Some(
            b.tool_use_id
                .ok_or_else(|| missing(&path(), "tool_use_id"))?,
        ),
    })
}

fn anthropic_tools<'a>(list: Vec<ToolIn<'a>>) -> Result<Vec<ToolOut<'a>>, GatewayError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        // Server tools (web search, code execution, …) carry a versioned `type`.
        if t.ty.as_deref().is_some_and(|ty| ty != "custom") {
            return Err(unsupported(
                format!("tools[{i}].type"),
                OPENAI,
                "client tools only",
            ));
        }
        out.push(ToolOut {
            ty: "function",
            function: FunctionDefOut {
                name: t.name,
                description: t.description,
                parameters: t.input_schema,
            },
        });
    }
    Ok(out)
}

fn openai_tool_choice(c: &Value) -> Result<Value, GatewayError> {
    Ok(match c["type"].as_str() {
        Some("auto") => "auto".into(),
        Some("any") => "required".into(),
        Some("none") => "none".into(),
        Some("tool") => match c["name"].as_str() {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return Err(invalid("`tool_choice.name` must be a string".into())),
        },
        _ => {
            return Err(invalid(
                "`tool_choice.type` must be auto, any, tool or none".into(),
            ))
        }
    })
}
