//! `fixed_params`: fields set in the body sent upstream whatever the client sent, applied
//! after translation, in the target's own API, and only to fields that API has.
//!
//! The tables list the top-level request fields of each API as the providers' references
//! give them (OpenAI: Chat Completions, Completions, Embeddings, Responses; Anthropic:
//! Messages and count_tokens). docs/policy.md "fixed_params" shows the same table.

use crate::llm::body::{Endpoint, RequestBody};
use crate::policy::config::api_fields::{
    CHAT, COMPLETIONS, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES,
};
use crate::policy::config::Api;
use bytes::Bytes;
use serde_json::Value;

/// The upstream API an attempt speaks: the route's, or the translated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetApi {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
}

impl TargetApi {
    /// What an attempt on a target of `api` speaks for `route`.
    pub(crate) fn of(route: Endpoint, api: Api) -> Option<TargetApi> {
        Some(match (route, api) {
            (Endpoint::ChatCompletions, Api::OpenAi) | (Endpoint::Messages, Api::OpenAi) => {
                TargetApi::Chat
            }
            (Endpoint::ChatCompletions, Api::Anthropic) | (Endpoint::Messages, Api::Anthropic) => {
                TargetApi::Messages
            }
            (Endpoint::Completions, _) => TargetApi::Completions,
            (Endpoint::Embeddings, _) => TargetApi::Embeddings,
            (Endpoint::Responses, _) => TargetApi::Responses,
            (Endpoint::CountTokens, _) => TargetApi::CountTokens,
            (Endpoint::ListModels, _) => return None,
        })
    }

    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            TargetApi::Chat => CHAT,
            TargetApi::Completions => COMPLETIONS,
            TargetApi::Embeddings => EMBEDDINGS,
            TargetApi::Responses => RESPONSES,
            TargetApi::Messages => MESSAGES,
            TargetApi::CountTokens => COUNT_TOKENS,
        }
    }

    pub(crate) fn has(self, field: &str) -> bool {
        self.fields().contains(&field)
    }
}

/// The body for `api` with `fixed` set (fields `api` lacks are left out); `body` itself
/// when none applies.
pub(crate) fn apply(body: Bytes, api: TargetApi, fixed: &[(Box<str>, Value)]) -> Bytes {
    if !fixed.iter().any(|(n, _)| api.has(n)) {
        return body;
    }
    let Ok(mut parsed) = RequestBody::parse(body.clone()) else {
        return body;
    };
    let mut added = Vec::new();
    for (name, value) in fixed.iter().filter(|(n, _)| api.has(n)) {
        let Ok(v) = serde_json::to_vec(value) else {
            continue;
        };
        if !parsed.replace_field(name, &v) {
            added.push((name, v));
        }
    }
    let raw = parsed.raw_bytes();
    if added.is_empty() {
        return raw;
    }
    // Appended before the closing brace of the object.
    let end = raw.iter().rposition(|&b| b == b'}').unwrap_or(raw.len());
    let empty = raw[..end]
        .iter()
        .all(|b| b.is_ascii_whitespace() || *b == b'{');
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(&raw[..end]);
    for (i, (name, v)) in added.iter().enumerate() {
        if i > 0 || !empty {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &***name);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&raw[end..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixed(v: Value) -> Vec<(Box<str>, Value)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.clone()))
            .collect()
    }

    #[test]
    fn sets_replaces_and_skips_fields_the_api_lacks() {
        let body = Bytes::from_static(br#"{"model":"m","store":true,"messages":[]}"#);
        let f = fixed(json!({"store": false, "user": "u", "top_k": 5}));
        let out = apply(body.clone(), TargetApi::Chat, &f);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model":"m","store":false,"messages":[],"user":"u"})
        );
        let out = apply(body, TargetApi::Messages, &f);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["top_k"], 5);
        assert!(v.get("user").is_none());
        assert_eq!(
            v["store"], true,
            "not an Anthropic field: left as the client sent it"
        );
        let same = Bytes::from_static(br#"{"input":"x"}"#);
        assert_eq!(
            apply(
                same.clone(),
                TargetApi::Embeddings,
                &fixed(json!({"store": false}))
            ),
            same
        );
    }
}
