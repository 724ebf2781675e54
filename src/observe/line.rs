//! One request-log line (SPEC §9), serialized straight from the finished request's borrowed
//! fields into a reused buffer: no `serde_json::Value`, no per-field allocation.
//! Never the key itself: only its id.

use super::{Finished, Outcome, PROMPT_CAP};
use crate::config::LogLevel;
use crate::error::GatewayError;
use crate::request::RequestBody;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;
use std::fmt::Display;
use std::sync::Arc;
use std::time::SystemTime;

/// Appends the line of `f` (JSON, no newline) to `out`.
pub fn render(f: &Finished<'_>, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every field serializes.
    let _ = serde_json::to_writer(&mut *out, &Line(f));
}

struct Line<'a, 'f>(&'a Finished<'f>);

/// A `Display` value written as a JSON string without an intermediate `String`.
struct Str<T: Display>(T);

impl<T: Display> Serialize for Str<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct Attempts<'a>(&'a [(Arc<str>, Outcome)]);

#[derive(Serialize)]
struct Attempt<'a> {
    target: &'a str,
    outcome: Str<OutcomeLabel>,
}

struct OutcomeLabel(Outcome);

impl Display for OutcomeLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Outcome::Status(s) => write!(f, "{s}"),
            o => f.write_str(o.name()),
        }
    }
}

impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (target, o) in self.0 {
            seq.serialize_element(&Attempt {
                target,
                outcome: Str(OutcomeLabel(*o)),
            })?;
        }
        seq.end()
    }
}

impl Serialize for Line<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let b = f.billed.unwrap_or_default();
        let key = f.key;
        let overhead = f
            .first_attempt_at
            .unwrap_or(f.ended)
            .saturating_duration_since(f.started);
        let duration = f.ended.saturating_duration_since(f.started);
        let mut o = s.serialize_struct("line", 23)?;
        o.serialize_field(
            "ts",
            &Str(humantime::format_rfc3339_millis(SystemTime::now())),
        )?;
        o.serialize_field("request_id", f.request_id)?;
        o.serialize_field("org", &key.map(|k| &*k.group.org.id))?;
        o.serialize_field("group", &key.map(|k| &*k.group.id))?;
        o.serialize_field("key_id", &key.map(|k| &*k.id))?;
        o.serialize_field("model", &f.model)?;
        o.serialize_field("target", &f.target)?;
        o.serialize_field("status", &f.status)?;
        o.serialize_field("code", &f.error.map(GatewayError::code))?;
        o.serialize_field(
            "fault",
            &crate::fault::Fault::of(f.error, f.status).map(crate::fault::Fault::as_str),
        )?;
        o.serialize_field("input_tokens", &b.input)?;
        o.serialize_field("output_tokens", &b.output)?;
        o.serialize_field("cost_usd", &(b.cost_micros as f64 / 1e6))?;
        o.serialize_field("duration_ms", &(duration.as_secs_f64() * 1000.0))?;
        o.serialize_field("overhead_ms", &(overhead.as_secs_f64() * 1000.0))?;
        o.serialize_field("client_ip", &f.client_ip.map(Str))?;
        o.serialize_field("stream", &f.stream)?;
        o.serialize_field("attempts", &Attempts(f.attempts))?;
        let level = key.map_or(LogLevel::Metadata, |k| k.group.log_level);
        if level != LogLevel::Metadata {
            // The prompt (`log_level = "prompt"`) and the completion (`"full"`), each capped.
            let mut prompt = f.body.and_then(RequestBody::prompt_json);
            if let Some(p) = prompt.as_mut().filter(|p| p.len() > PROMPT_CAP) {
                p.truncate(floor_char_boundary(p, PROMPT_CAP));
                o.serialize_field("prompt_truncated", &true)?;
            }
            o.serialize_field("prompt", &prompt)?;
            if level == LogLevel::Full {
                o.serialize_field("completion", &f.completion.map(|c| c.text.as_str()))?;
                if f.completion.is_some_and(|c| c.truncated) {
                    o.serialize_field("completion_truncated", &true)?;
                }
            }
        }
        o.end()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
