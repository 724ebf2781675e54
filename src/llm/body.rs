//! The client's request: which route it is, and the few body fields the gateway reads.
//!
//! The body is parsed once into its top-level fields with the values left raw (no deep
//! parse of a 2 MiB `messages` array), and re-rendered per upstream target with that
//! target's `model` id.

use crate::error::GatewayError;
use crate::policy::config::Api;
use bytes::Bytes;
use serde_json::value::RawValue;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    ListModels,
    /// `POST /v1/messages/count_tokens` (Anthropic): never billed.
    CountTokens,
}

impl Endpoint {
    pub(crate) fn parse(method: &http::Method, path: &str) -> Result<Endpoint, GatewayError> {
        let path = path.split('?').next().unwrap_or(path);
        let r = match (method.as_str(), path) {
            ("POST", "/v1/chat/completions") => Endpoint::ChatCompletions,
            ("POST", "/v1/completions") => Endpoint::Completions,
            ("POST", "/v1/embeddings") => Endpoint::Embeddings,
            ("POST", "/v1/responses") => Endpoint::Responses,
            ("POST", "/v1/messages") => Endpoint::Messages,
            ("POST", "/v1/messages/count_tokens") => Endpoint::CountTokens,
            ("GET", "/v1/models") => Endpoint::ListModels,
            _ => {
                return Err(GatewayError::UnknownRoute {
                    method: method.to_string(),
                    path: path.chars().take(200).collect(),
                })
            }
        };
        Ok(r)
    }

    pub(crate) fn api(self) -> Api {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// The target APIs that can serve the route: chat completions and messages are
    /// translated to the other API; the other OpenAI routes need OpenAI-style targets.
    pub fn serves(self) -> Serves {
        match self {
            // count_tokens: a model with only OpenAI-style targets is answered by estimate.
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens => Serves::Any,
            other => Serves::Only(other.api()),
        }
    }

    /// The error shape for a path, even one that is not a route.
    pub(crate) fn api_for_path(path: &str) -> Api {
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
    pub(crate) fn accepts(self, api: Api) -> bool {
        match self {
            Serves::Only(a) => a == api,
            Serves::Any => true,
        }
    }
}

/// The top-level fields that carry the prompt, in every API.
const PROMPT_FIELDS: [&str; 5] = ["system", "instructions", "messages", "prompt", "input"];

/// One top-level field: its name and where its raw value lies in the body.
#[derive(Debug)]
struct Field {
    name: Name,
    value: Range<usize>,
}

/// A field name: where it lies in the body when it has no escapes (the usual case), else
/// unescaped.
#[derive(Debug)]
enum Name {
    Span(Range<usize>),
    Owned(Box<str>),
}

/// Fields above this many are checked for duplicates with a hash set, not pairwise.
const PAIRWISE_DEDUP_MAX: usize = 32;

/// A JSON request body: the client's bytes, and where each top-level field lies in them.
/// Nothing is copied: values stay raw in the body, names are borrowed from it.
#[derive(Debug)]
pub struct RequestBody {
    raw: Bytes,
    /// In the client's order; a name sent twice keeps its first place and its last value
    /// (what every JSON parser the providers use reads).
    fields: Vec<Field>,
    /// A name was sent twice: the body must be re-rendered, never passed through.
    duplicates: bool,
    pub(crate) model: Option<String>,
    /// The largest of `max_tokens`, `max_completion_tokens`, `max_output_tokens`.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stream: bool,
}

/// Serde's view of the body: a map of borrowed names to borrowed raw values.
struct Spans<'a> {
    base: &'a [u8],
    fields: Vec<Field>,
}

impl<'de, 'a> serde::de::DeserializeSeed<'de> for Spans<'a>
where
    'a: 'de,
{
    type Value = Vec<Field>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Field>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'a> serde::de::Visitor<'de> for Spans<'a>
where
    'a: 'de,
{
    type Value = Vec<Field>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(
        mut self,
        mut map: M,
    ) -> Result<Vec<Field>, M::Error> {
        while let Some(name) = map.next_key_seed(NameSeed(self.base))? {
            let value: &'de RawValue = map.next_value()?;
            let value = span_in(self.base, value.get().as_bytes())
                .ok_or_else(|| serde::de::Error::custom("a value outside the body"))?;
            self.fields.push(Field { name, value });
        }
        Ok(self.fields)
    }
}

/// A field name, borrowed from the body when it has no escapes (no allocation).
struct NameSeed<'a>(&'a [u8]);

impl<'de, 'a> serde::de::DeserializeSeed<'de> for NameSeed<'a>
where
    'a: 'de,
{
    type Value = Name;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Name, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'a> serde::de::Visitor<'de> for NameSeed<'a>
where
    'a: 'de,
{
    type Value = Name;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Name, E> {
        Ok(match span_in(self.0, v.as_bytes()) {
            Some(r) => Name::Span(r),
            None => Name::Owned(v.into()),
        })
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(Name::Owned(v.into()))
    }
}

/// Where `part` lies in `base` (None when it is not a slice of it).
fn span_in(base: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= base.len()).then_some(start..end)
}

impl RequestBody {
    pub fn parse(bytes: impl Into<Bytes>) -> Result<RequestBody, GatewayError> {
        let raw: Bytes = bytes.into();
        let not_object = |e: serde_json::Error| {
            GatewayError::InvalidRequest(format!("request body is not a JSON object: {e}"))
        };
        let mut de = serde_json::Deserializer::from_slice(&raw);
        let spans = Spans {
            base: &raw,
            // Chat bodies have a handful of fields: one allocation.
            fields: Vec::with_capacity(8),
        };
        let fields = serde::de::DeserializeSeed::deserialize(spans, &mut de).map_err(not_object)?;
        de.end().map_err(not_object)?;
        let mut body = RequestBody {
            raw: raw.clone(),
            fields,
            duplicates: false,
            model: None,
            max_tokens: None,
            stream: false,
        };
        body.dedup();
        body.model = match body.get("model") {
            None => None,
            Some(v) => serde_json::from_slice::<Option<String>>(v)
                .map_err(|_| GatewayError::InvalidRequest("`model` must be a string".into()))?,
        };
        for name in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            if let Some(v) = body.get(name) {
                let n = serde_json::from_slice::<Option<u64>>(v).map_err(|_| {
                    GatewayError::InvalidRequest(format!("`{name}` must be a non-negative integer"))
                })?;
                body.max_tokens = body.max_tokens.max(n);
            }
        }
        body.stream = match body.get("stream") {
            None => false,
            Some(v) => serde_json::from_slice::<Option<bool>>(v)
                .map_err(|_| GatewayError::InvalidRequest("`stream` must be a boolean".into()))?
                .unwrap_or(false),
        };
        Ok(body)
    }

    /// A name sent twice keeps its first place and takes its last value.
    fn dedup(&mut self) {
        let n = self.fields.len();
        let same = |i: usize, j: usize| self.name(&self.fields[i]) == self.name(&self.fields[j]);
        self.duplicates = if n <= PAIRWISE_DEDUP_MAX {
            (1..n).any(|i| (0..i).any(|j| same(i, j)))
        } else {
            let mut seen: std::collections::HashSet<&str, crate::digest::FastHash> =
                std::collections::HashSet::with_capacity_and_hasher(n, Default::default());
            !self.fields.iter().all(|f| seen.insert(self.name(f)))
        };
        if !self.duplicates {
            return;
        }
        // Rare: each name keeps its first place and takes the value of its last occurrence.
        let mut at: std::collections::HashMap<String, usize, crate::digest::FastHash> =
            Default::default();
        let mut kept: Vec<Field> = Vec::with_capacity(n);
        for f in std::mem::take(&mut self.fields) {
            match at.get(self.name(&f)) {
                Some(&j) => kept[j].value = f.value,
                None => {
                    at.insert(self.name(&f).to_string(), kept.len());
                    kept.push(f);
                }
            }
        }
        self.fields = kept;
    }

    fn name<'s>(&'s self, f: &'s Field) -> &'s str {
        match &f.name {
            // The span was a `&str` when the parser handed it over.
            Name::Span(r) => std::str::from_utf8(&self.raw[r.clone()]).unwrap_or_default(),
            Name::Owned(n) => n,
        }
    }

    /// Whether `f` is called `name` (no UTF-8 check: byte equality says it).
    fn is_named(&self, f: &Field, name: &str) -> bool {
        match &f.name {
            Name::Span(r) => &self.raw[r.clone()] == name.as_bytes(),
            Name::Owned(n) => &**n == name,
        }
    }

    /// The body's bytes (after any replacement).
    pub(crate) fn raw_bytes(&self) -> Bytes {
        self.raw.clone()
    }

    /// A field's raw JSON value.
    fn value(&self, f: &Field) -> &[u8] {
        &self.raw[f.value.clone()]
    }

    /// Length of the body as the client sent it.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the client sent no bytes (never, for a body that parsed).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The raw JSON text of the top-level field `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| self.is_named(f, name))
            .map(|f| self.value(f))
    }

    /// Replaces the raw JSON value of the top-level field `name` (guardrails' redaction:
    /// every later rendering, translated or not, reads the new value). False when there
    /// is no such field. `value` must be one JSON value.
    pub(crate) fn replace_field(&mut self, name: &str, value: &[u8]) -> bool {
        let Some(i) = self.fields.iter().position(|f| self.is_named(f, name)) else {
            return false;
        };
        let old = self.fields[i].value.clone();
        let mut out = Vec::with_capacity(self.raw.len() - old.len() + value.len());
        out.extend_from_slice(&self.raw[..old.start]);
        out.extend_from_slice(value);
        out.extend_from_slice(&self.raw[old.end..]);
        // Spans after the old value move by the difference; those before stay.
        let shift = |x: usize| {
            if x >= old.end {
                x - old.len() + value.len()
            } else {
                x
            }
        };
        for f in &mut self.fields {
            f.value = shift(f.value.start)..shift(f.value.end);
            if let Name::Span(r) = &mut f.name {
                *r = shift(r.start)..shift(r.end);
            }
        }
        self.fields[i].value = old.start..old.start + value.len();
        self.raw = Bytes::from(out);
        true
    }

    /// Sets the top-level field `name` to the JSON value `value`: replaced where it is,
    /// else added last. `value` must be one JSON value.
    pub(crate) fn set_field(&mut self, name: &str, value: &[u8]) {
        if self.replace_field(name, value) {
            return;
        }
        let Some(close) = self.raw.iter().rposition(|&b| b == b'}') else {
            return;
        };
        let mut out = Vec::with_capacity(self.raw.len() + name.len() + value.len() + 4);
        out.extend_from_slice(&self.raw[..close]);
        if !self.fields.is_empty() {
            out.push(b',');
        }
        let name_at = out.len() + 1;
        write_json_string(&mut out, name);
        let name_end = out.len() - 1;
        out.push(b':');
        let value_at = out.len();
        out.extend_from_slice(value);
        let value_end = out.len();
        out.extend_from_slice(&self.raw[close..]);
        self.raw = Bytes::from(out);
        // Names of the constants the gateway sets need no escapes: the span is the name.
        self.fields.push(Field {
            name: Name::Span(name_at..name_end),
            value: value_at..value_end,
        });
    }

    /// The top-level field names, in the client's order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| self.name(f))
    }

    /// The top-level fields, name and raw JSON text, in the client's order (translation).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|f| {
            // Raw JSON values of a body that parsed: UTF-8.
            let v = std::str::from_utf8(self.value(f)).unwrap_or_default();
            (self.name(f), v)
        })
    }

    /// The prompt fields as the client sent them, as one JSON object (`log_level =
    /// "prompt"`): `system` and `messages` (chat, Anthropic), `instructions` and `input`
    /// (Responses, embeddings), `prompt` (completions). None when there are none.
    pub(crate) fn prompt_json(&self) -> Option<String> {
        let mut out = Vec::new();
        for f in &self.fields {
            let Some(name) = PROMPT_FIELDS.iter().find(|n| self.is_named(f, n)) else {
                continue;
            };
            out.push(if out.is_empty() { b'{' } else { b',' });
            // Field names are the constants above: no escaping needed.
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(self.value(f));
        }
        if out.is_empty() {
            return None;
        }
        out.push(b'}');
        // Raw JSON values of a body that parsed: UTF-8.
        String::from_utf8(out).ok()
    }

    /// Whether the client asked for usage in its stream (`stream_options.include_usage`).
    pub(crate) fn client_wants_stream_usage(&self) -> bool {
        self.get("stream_options")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .is_some_and(|v| v["include_usage"] == serde_json::Value::Bool(true))
    }

    /// The body for one upstream target: the same fields with `model` set to `model`, and
    /// with `stream_options.include_usage` turned on when `ask_usage` (OpenAI streams).
    /// The client's own bytes when they already say exactly that.
    pub fn render(&self, model: &str, ask_usage: bool) -> Bytes {
        if !ask_usage && !self.duplicates && self.names_model_exactly(model) {
            return self.raw.clone();
        }
        let mut out = Vec::with_capacity(self.len() + model.len() + 16);
        out.push(b'{');
        let mut first = true;
        let mut seen_model = false;
        for f in &self.fields {
            if !first {
                out.push(b',');
            }
            first = false;
            match &f.name {
                // Unescaped in the body: written as it came, quotes included.
                Name::Span(r) => out.extend_from_slice(&self.raw[r.start - 1..r.end + 1]),
                Name::Owned(n) => write_json_string(&mut out, n),
            }
            out.push(b':');
            if self.is_named(f, "model") {
                seen_model = true;
                write_json_string(&mut out, model);
            } else if ask_usage && self.is_named(f, "stream_options") {
                let mut opts =
                    serde_json::from_slice::<serde_json::Value>(self.value(f)).unwrap_or_default();
                if !opts.is_object() {
                    opts = serde_json::json!({});
                }
                opts["include_usage"] = serde_json::Value::Bool(true);
                let _ = serde_json::to_writer(&mut out, &opts);
            } else {
                out.extend_from_slice(self.value(f));
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
        if ask_usage && self.get("stream_options").is_none() {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true}");
        }
        out.push(b'}');
        Bytes::from(out)
    }

    /// The body's `model` is `model`, written without escapes (so the bytes say it too:
    /// decoded and raw text agree only when there were none).
    fn names_model_exactly(&self, model: &str) -> bool {
        self.model.as_deref() == Some(model)
            && self.get("model").is_some_and(|v| {
                v.len() == model.len() + 2 && &v[1..v.len() - 1] == model.as_bytes()
            })
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
    fn set_field_replaces_or_appends() {
        let mut b = RequestBody::parse(r#"{"model":"m","max_tokens":500}"#).unwrap();
        b.set_field("max_tokens", b"7");
        assert_eq!(
            &b.render("m", false)[..],
            br#"{"model":"m","max_tokens":7}"#
        );
        let mut b = RequestBody::parse(r#"{"model":"m" }"#).unwrap();
        b.set_field("max_completion_tokens", b"9");
        let v: serde_json::Value = serde_json::from_slice(&b.render("x", false)).unwrap();
        assert_eq!(v["max_completion_tokens"], 9);
        assert_eq!(b.get("max_completion_tokens"), Some(&b"9"[..]));
        let mut b = RequestBody::parse("{}").unwrap();
        b.set_field("max_tokens", b"3");
        assert_eq!(
            &b.render("m", false)[..],
            br#"{"max_tokens":3,"model":"m"}"#
        );
    }

    #[test]
    fn model_is_rewritten_and_everything_else_kept() {
        let b = RequestBody::parse(r#"{"model":"fast","messages":[{"role":"user","content":"hi \"x\""}],"max_tokens":5,"stream":true}"#).unwrap();
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
    fn a_body_that_already_names_the_model_is_passed_through() {
        let text = r#"{ "model" : "gpt-4o-mini", "messages": [] }"#;
        let b = RequestBody::parse(text).unwrap();
        assert_eq!(b.render("gpt-4o-mini", false), text.as_bytes());
        // Another target, usage asked for, or an escaped name: rendered.
        assert_ne!(b.render("gpt-4o", false), text.as_bytes());
        assert_ne!(b.render("gpt-4o-mini", true), text.as_bytes());
        let escaped = RequestBody::parse(r#"{"model":"gpt\u002d4o"}"#).unwrap();
        assert_eq!(escaped.model.as_deref(), Some("gpt-4o"));
        assert_eq!(
            escaped.render("gpt-4o", false),
            &br#"{"model":"gpt-4o"}"#[..]
        );
    }

    #[test]
    fn a_name_sent_twice_keeps_its_first_place_and_last_value() {
        let b =
            RequestBody::parse(r#"{"model":"cheap","max_tokens":1,"model":"dear","x":2}"#).unwrap();
        assert_eq!(b.model.as_deref(), Some("dear"));
        assert_eq!(b.names().collect::<Vec<_>>(), ["model", "max_tokens", "x"]);
        // Never the client's bytes: a provider might read the other `model`.
        assert_eq!(
            b.render("dear", false),
            &br#"{"model":"dear","max_tokens":1,"x":2}"#[..]
        );
        // Past the pairwise check too.
        let many: Vec<String> = (0..40).map(|i| format!("\"f{i}\":{i}")).collect();
        let text = format!(r#"{{"model":"a",{},"model":"b","f3":"x"}}"#, many.join(","));
        let b = RequestBody::parse(text).unwrap();
        assert_eq!(b.model.as_deref(), Some("b"));
        assert_eq!(b.names().count(), 41);
        assert_eq!(b.get("f3"), Some(&br#""x""#[..]));
        assert_eq!(b.names().next(), Some("model"));
    }

    #[test]
    fn escaped_names_are_read_and_written_escaped() {
        let b = RequestBody::parse(r#"{"mo\u0064el":"m","a\"b":1}"#).unwrap();
        assert_eq!(b.model.as_deref(), Some("m"));
        let out: serde_json::Value = serde_json::from_slice(&b.render("n", false)).unwrap();
        assert_eq!(out, serde_json::json!({"model": "n", "a\"b": 1}));
    }

    #[test]
    fn missing_model_is_added_and_bad_bodies_refused() {
        let b = RequestBody::parse(r#"{"input":"x"}"#).unwrap();
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
            r#"{"model":"m","system":"be brief","messages":[{"role":"user","content":"hi \"x\""}],"max_tokens":5}"#,
        )
        .unwrap();
        let p: serde_json::Value = serde_json::from_str(&b.prompt_json().unwrap()).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"system": "be brief", "messages": [{"role": "user", "content": "hi \"x\""}]})
        );
        let b = RequestBody::parse(r#"{"model":"m","input":["a","b"]}"#).unwrap();
        assert_eq!(b.prompt_json().unwrap(), r#"{"input":["a","b"]}"#);
        assert!(RequestBody::parse(r#"{"model":"m"}"#)
            .unwrap()
            .prompt_json()
            .is_none());
    }

    #[test]
    fn a_replaced_field_is_what_every_rendering_reads() {
        let mut b = RequestBody::parse(
            r#"{"model":"m","messages":[{"role":"user","content":"a@b.com"}],"max_tokens":5}"#,
        )
        .unwrap();
        assert!(b.replace_field("messages", br#"[{"role":"user","content":"[EMAIL]"}]"#));
        assert!(!b.replace_field("nope", b"1"));
        assert_eq!(
            b.render("m", false),
            &br#"{"model":"m","messages":[{"role":"user","content":"[EMAIL]"}],"max_tokens":5}"#[..]
        );
        assert_eq!(b.get("max_tokens"), Some(&b"5"[..]));
        assert_eq!(
            b.names().collect::<Vec<_>>(),
            ["model", "messages", "max_tokens"]
        );
    }

    #[test]
    fn usage_is_requested_for_streams() {
        let b = RequestBody::parse(r#"{"model":"m","stream":true}"#).unwrap();
        assert!(!b.client_wants_stream_usage());
        let out: serde_json::Value = serde_json::from_slice(&b.render("x", true)).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        let b = RequestBody::parse(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"other":1}}"#,
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
            Endpoint::parse(&http::Method::POST, "/v1/messages")
                .unwrap()
                .api(),
            Api::Anthropic
        );
        assert_eq!(
            Endpoint::parse(&http::Method::GET, "/v1/models?x=1").unwrap(),
            Endpoint::ListModels
        );
        assert_eq!(
            Endpoint::parse(&http::Method::GET, "/v1/chat/completions")
                .unwrap_err()
                .code(),
            "unknown_route"
        );
    }
}
