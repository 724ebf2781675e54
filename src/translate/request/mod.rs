//! Request bodies: OpenAI chat completions ⇄ Anthropic Messages.
//!
//! Fields are visited in the client's order with a `match` that names every field either
//! API documents: mapped, dropped (transport only), or refused with 400
//! `unsupported_parameter` when it would change the answer and has no counterpart.
//! Unknown fields are refused too, as both providers do.

mod to_chat;
mod to_messages;

pub use to_chat::messages_to_chat;
pub use to_messages::chat_to_messages;

use crate::error::GatewayError;
use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::Value;

type Fields = IndexMap<String, Box<RawValue>>;

const ANTHROPIC: &str = "an Anthropic-style target";
const OPENAI: &str = "an OpenAI-style target";

fn unsupported(
    param: impl Into<String>,
    target: &'static str,
    reason: &'static str,
) -> GatewayError {
    GatewayError::UnsupportedParameter {
        param: param.into(),
        target,
        reason,
    }
}

fn invalid(what: String) -> GatewayError {
    GatewayError::InvalidRequest(what)
}

fn parse(name: &str, raw: &RawValue) -> Result<Value, GatewayError> {
    serde_json::from_str(raw.get()).map_err(|e| invalid(format!("`{name}`: {e}")))
}

fn is_set(v: &Value) -> bool {
    !v.is_null()
}

fn as_array<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, GatewayError> {
    v.as_array()
        .ok_or_else(|| invalid(format!("`{name}` must be an array")))
}

fn as_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, GatewayError> {
    v.as_str()
        .ok_or_else(|| invalid(format!("`{name}` must be a string")))
}
