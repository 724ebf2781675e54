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
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

use crate::llm::body::RequestBody;

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

fn parse(name: &str, raw: &str) -> Result<Value, GatewayError> {
    serde_json::from_str(raw).map_err(|e| invalid(format!("`{name}`: {e}")))
}

fn is_set(v: &Value) -> bool {
    !v.is_null()
}

/// A field that is absent or null, a string, or an array of `T` (message content, system
/// prompts, tool results). Read in one pass: a long prompt is scanned once, and borrowed
/// from the client's body unless it has escapes.
#[derive(Default)]
enum StringOr<'a, T> {
    #[default]
    None,
    Text(Cow<'a, str>),
    List(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for StringOr<'a, T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = StringOr<'a, T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOr::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOr::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOr::Text(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(StringOr::None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(StringOr::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(x) = seq.next_element::<T>()? {
                    items.push(x);
                }
                Ok(StringOr::List(items))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Appends `"key":value` to an object being written (`out` starts with its `{`).
fn field(out: &mut Vec<u8>, key: &str, v: &impl Serialize) -> Result<(), GatewayError> {
    if out.len() > 1 {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, key).map_err(|e| invalid(e.to_string()))?;
    out.push(b':');
    serde_json::to_writer(&mut *out, v).map_err(|e| invalid(e.to_string()))
}

/// The first byte of a raw JSON value: which kind it is.
fn kind(raw: &str) -> u8 {
    raw.trim_start().bytes().next().unwrap_or(b'n')
}
