//! The client's request: which route it is, and the few body fields the gateway reads.
//!
//! The body is parsed once into its top-level fields with the values left raw (no deep
//! parse of a 2 MiB `messages` array), and re-rendered per upstream target with that
//! target's `model` id.

use crate::config::Api;
use crate::error::GatewayError;
use bytes::Bytes;
use indexmap::IndexMap;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    ListModels,
}

impl Route {
    pub fn parse(method: &http::Method, path: &str) -> Result<Route, GatewayError> {
        let path = path.split('?').next().unwrap_or(path);
        let r = match (method.as_str(), path) {
            ("POST", "/v1/chat/completions") => Route::ChatCompletions,
            ("POST", "/v1/completions") => Route::Completions,
            ("POST", "/v1/embeddings") => Route::Embeddings,
            ("POST", "/v1/responses") => Route::Responses,
            ("POST", "/v1/messages") => Route::Messages,
            ("GET", "/v1/models") => Route::ListModels,
            _ => {
                return Err(GatewayError::UnknownRoute {
                    method: method.to_string(),
                    path: path.chars().take(200).collect(),
                })
            }
        };
        Ok(r)
    }

    pub fn api(self) -> Api {
        match self {
            Route::Messages => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// The target APIs that can serve the route: chat completions and messages are
    /// translated to the other API; the other OpenAI routes need OpenAI-style targets.
    pub fn serves(self) -> Serves {
        match self {
            Route::ChatCompletions | Route::Messages => Serves::Any,
            other => Serves::Only(other.api()),
        }
    }

    /// The error shape for a path, even one that is not a route.
    pub fn api_for_path(path: &str) -> Api {
        if path.starts_with("/v1/messages") {
            Api::Anthropic
        } else {
            Api::OpenAi
        }
    }
}

/// Which target APIs a route can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Only(Api),
    Any,
}

impl Serves {
    pub fn accepts(self, api: Api) -> bool {
        match self {
            Serves::Only(a) => a == api,
            Serves::Any => true,
        }
    }
}

/// The top-level fields that carry the prompt, in every API.
const PROMPT_FIELDS: [&str; 5] = ["system", "instructions", "messages", "prompt", "input"];

/// A body's top-level fields, raw, in the client's order (foldhash: the handful of lookups
/// per request are a third of the parse with SipHash).
pub type Fields = IndexMap<String, Box<RawValue>, crate::digest::FastHash>;

/// A JSON request body: top-level fields kept raw, in order.
#[derive(Debug)]
pub struct RequestBody {
    fields: Fields,
    pub model: Option<String>,
    /// The largest of `max_tokens`, `max_completion_tokens`, `max_output_tokens`.
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// Length of the body as the client sent it.
    pub len: usize,
}

impl RequestBody {
    pub fn parse(bytes: &[u8]) -> Result<RequestBody, GatewayError> {
        let fields: Fields = serde_json::from_slice(bytes).map_err(|e| {
            GatewayError::InvalidRequest(format!("request body is not a JSON object: {e}"))
        })?;
        let model = match fields.get("model") {
            None => None,
            Some(v) => match serde_json::from_str::<Option<String>>(v.get()) {
                Ok(m) => m,
                Err(_) => {
                    return Err(GatewayError::InvalidRequest(
                        "`model` must be a string".into(),
                    ))
                }
            },
        };
        let mut max_tokens = None;
        for name in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            if let Some(v) = fields.get(name) {
                match serde_json::from_str::<Option<u64>>(v.get()) {
                    Ok(n) => max_tokens = max_tokens.max(n),
                    Err(_) => {
                        return Err(GatewayError::InvalidRequest(format!(
                            "`{name}` must be a non-negative integer"
                        )))
                    }
                }
            }
        }
        let stream = match fields.get("stream") {
            None => false,
            Some(v) => serde_json::from_str::<Option<bool>>(v.get())
                .map_err(|_| GatewayError::InvalidRequest("`stream` must be a boolean".into()))?
                .unwrap_or(false),
        };
        Ok(RequestBody {
            fields,
            model,
            max_tokens,
            stream,
            len: bytes.len(),
        })
    }

    /// The top-level fields, raw, in the client's order (for translation).
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The prompt fields as the client sent them, as one JSON object (`log_level =
    /// "prompt"`): `system` and `messages` (chat, Anthropic), `instructions` and `input`
    /// (Responses, embeddings), `prompt` (completions). None when there are none.
    pub fn prompt_json(&self) -> Option<String> {
        let mut out = String::new();
        for (k, v) in self
            .fields
            .iter()
            .filter(|(k, _)| PROMPT_FIELDS.contains(&k.as_str()))
        {
            out.push(if out.is_empty() { '{' } else { ',' });
            // Field names are the constants above: no escaping needed.
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            out.push_str(v.get());
        }
        (!out.is_empty()).then(|| out + "}")
    }

    /// Whether the client asked for usage in its stream (`stream_options.include_usage`).
    pub fn client_wants_stream_usage(&self) -> bool {
        self.fields
            .get("stream_options")
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v.get()).ok())
            .is_some_and(|v| v["include_usage"] == serde_json::Value::Bool(true))
    }

    /// The body for one upstream target: the same fields with `model` set to `model`, and
    /// with `stream_options.include_usage` turned on when `ask_usage` (OpenAI streams).
    pub fn render(&self, model: &str, ask_usage: bool) -> Bytes {
        let mut out = Vec::with_capacity(self.len + model.len() + 16);
        out.push(b'{');
        let mut first = true;
        let mut seen_model = false;
        for (k, v) in &self.fields {
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_string(&mut out, k);
            out.push(b':');
            if k == "model" {
                seen_model = true;
                write_json_string(&mut out, model);
            } else if k == "stream_options" && ask_usage {
                let mut opts =
                    serde_json::from_str::<serde_json::Value>(v.get()).unwrap_or_default();
                if !opts.is_object() {
                    opts = serde_json::json!({});
                }
                opts["include_usage"] = serde_json::Value::Bool(true);
                let _ = serde_json::to_writer(&mut out, &opts);
            } else {
                out.extend_from_slice(v.get().as_bytes());
            }
        }
        if !seen_model {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"\"model\":");
            write_json_string(&mut out, model);
        }
        if ask_usage && !self.fields.contains_key("stream_options") {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true}");
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_rewritten_and_everything_else_kept() {
        let b = RequestBody::parse(br#"{"model":"fast","messages":[{"role":"user","content":"hi \"x\""}],"max_tokens":5,"stream":true}"#).unwrap();
        assert_eq!(b.model.as_deref(), Some("fast"));
        assert_eq!(b.max_tokens, Some(5));
        assert!(b.stream);
        let out: serde_json::Value =
            serde_json::from_slice(&b.render("gpt-4o-mini", false)).unwrap();
        assert_eq!(out["model"], "gpt-4o-mini");
        assert_eq!(out["messages"][0]["content"], "hi \"x\"");
        assert_eq!(out["max_tokens"], 5);
    }

    #[test]
    fn missing_model_is_added_and_bad_bodies_refused() {
        let b = RequestBody::parse(br#"{"input":"x"}"#).unwrap();
        assert!(b.model.is_none());
        let out: serde_json::Value = serde_json::from_slice(&b.render("m", false)).unwrap();
        assert_eq!(out["model"], "m");
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"model":5}"#,
            br#"{"max_tokens":-1}"#,
            b"",
        ] {
            assert_eq!(
                RequestBody::parse(bad).unwrap_err().code(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn prompt_fields_are_kept_raw() {
        let b = RequestBody::parse(
            br#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi \"x\""}],"max_tokens":5}"#,
        )
        .unwrap();
        let p: serde_json::Value = serde_json::from_str(&b.prompt_json().unwrap()).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"system": "be brief", "messages": [{"role": "user", "content": "hi \"x\""}]})
        );
        let b = RequestBody::parse(br#"{"model":"m","input":["a","b"]}"#).unwrap();
        assert_eq!(b.prompt_json().unwrap(), r#"{"input":["a","b"]}"#);
        assert!(RequestBody::parse(br#"{"model":"m"}"#)
            .unwrap()
            .prompt_json()
            .is_none());
    }

    #[test]
    fn usage_is_requested_for_streams() {
        let b = RequestBody::parse(br#"{"model":"m","stream":true}"#).unwrap();
        assert!(!b.client_wants_stream_usage());
        let out: serde_json::Value = serde_json::from_slice(&b.render("x", true)).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        let b = RequestBody::parse(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"other":1}}"#,
        )
        .unwrap();
        assert!(!b.client_wants_stream_usage());
        let out: serde_json::Value = serde_json::from_slice(&b.render("x", true)).unwrap();
        assert_eq!(
            out["stream_options"],
            serde_json::json!({"include_usage": true, "other": 1})
        );
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse(&http::Method::POST, "/v1/messages")
                .unwrap()
                .api(),
            Api::Anthropic
        );
        assert_eq!(
            Route::parse(&http::Method::GET, "/v1/models?x=1").unwrap(),
            Route::ListModels
        );
        assert_eq!(
            Route::parse(&http::Method::GET, "/v1/chat/completions")
                .unwrap_err()
                .code(),
            "unknown_route"
        );
    }
}
