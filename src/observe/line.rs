//! One request-log line (SPEC §9), serialized straight from the finished request's borrowed
//! fields into a reused buffer: no `serde_json::Value`, no per-field allocation.
//! Never the key itself: only its id.

use super::{Finished, Outcome, PROMPT_CAP};
use crate::config::LogLevel;
use crate::error::GatewayError;
use crate::request::RequestBody;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;
use std::cell::Cell;
use std::fmt::Display;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

thread_local! {
    /// The unix second of the last stamp and its `YYYY-MM-DDTHH:MM:SS`, so that a line
    /// formats a date only when the second changes.
    static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
}

/// `t` as `format_rfc3339_millis` writes it (`2026-11-25T06:25:00.123Z`).
fn stamp(t: SystemTime) -> [u8; 24] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let date = match SECOND.with(Cell::get) {
        Some((s, date)) if s == secs => date,
        _ => {
            // `YYYY-MM-DDTHH:MM:SSZ`, written into a stack buffer: no allocation, ever.
            let mut full = [0u8; 20];
            let t = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
            let _ = write!(&mut full[..], "{t}");
            let mut date = [0u8; 19];
            date.copy_from_slice(&full[..19]);
            SECOND.with(|c| c.set(Some((secs, date))));
            date
        }
    };
    let ms = d.subsec_millis();
    let mut out = [0u8; 24];
    out[..19].copy_from_slice(&date);
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
    out
}

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
    outcome: OutcomeLabel,
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

impl Serialize for OutcomeLabel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // A status is three digits: no formatter.
            Outcome::Status(c @ 100..=999) => {
                let d = [
                    b'0' + (c / 100) as u8,
                    b'0' + (c / 10 % 10) as u8,
                    b'0' + (c % 10) as u8,
                ];
                s.serialize_str(std::str::from_utf8(&d).unwrap_or_default())
            }
            _ => s.collect_str(self),
        }
    }
}

impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (target, o) in self.0 {
            seq.serialize_element(&Attempt {
                target,
                outcome: OutcomeLabel(*o),
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
        let ts = stamp(SystemTime::now());
        o.serialize_field("ts", std::str::from_utf8(&ts).unwrap_or_default())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_stamp_is_rfc3339_millis() {
        let base = UNIX_EPOCH + Duration::from_millis(1_764_051_900_000);
        for ms in [
            0u64, 1, 9, 10, 99, 100, 999, 1000, 1001, 59_999, 60_000, 86_399_999, 86_400_000,
        ] {
            for t in [
                base + Duration::from_millis(ms),
                UNIX_EPOCH + Duration::from_millis(ms),
            ] {
                assert_eq!(
                    std::str::from_utf8(&stamp(t)).unwrap_or_default(),
                    humantime::format_rfc3339_millis(t).to_string()
                );
            }
        }
        let now = SystemTime::now();
        assert_eq!(
            std::str::from_utf8(&stamp(now)).unwrap_or_default(),
            humantime::format_rfc3339_millis(now).to_string()
        );
    }
}
