//! One request-log line (docs/operations.md "Request log"), serialized straight from the finished request's borrowed
//! fields into a reused buffer: no `serde_json::Value`, no per-field allocation.
//! Never the key itself: only its id.

use super::{Finished, Outcome, PROMPT_CAP};
use crate::error::GatewayError;
use crate::llm::body::RequestBody;
use crate::policy::config::LogLevel;
use std::cell::Cell;
use std::io::Write as _;
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

/// Appends the line of `f` (JSON, no newline) to `out`: written field by field, each key a
/// constant, strings escaped as `serde_json` escapes them (the test module keeps a `serde`
/// rendering of the same line and checks that both agree byte for byte).
pub fn render(f: &Finished<'_>, out: &mut Vec<u8>) {
    let b = f.billed.unwrap_or_default();
    let key = f.key;
    let overhead = f
        .first_attempt_at
        .unwrap_or(f.ended)
        .saturating_duration_since(f.started);
    let duration = f.ended.saturating_duration_since(f.started);
    out.extend_from_slice(b"{\"ts\":\"");
    // Wall time of writing the line, read directly: one vDSO read per request on the hot
    // path, where the injectable clock would add a dyn call for no decision — nothing in
    // the gateway reads `ts` back, and tests compare lines without it.
    out.extend_from_slice(&stamp(crate::clock::wall()));
    out.extend_from_slice(b"\",\"request_id\":");
    string(out, f.request_id);
    out.extend_from_slice(b",\"org\":");
    opt_string(out, key.map(|k| &*k.group.org.id));
    out.extend_from_slice(b",\"group\":");
    opt_string(out, key.map(|k| &*k.group.id));
    out.extend_from_slice(b",\"key_id\":");
    opt_string(out, key.map(|k| &*k.id));
    out.extend_from_slice(b",\"model\":");
    opt_string(out, f.model);
    out.extend_from_slice(b",\"target\":");
    opt_string(out, f.target);
    out.extend_from_slice(b",\"status\":");
    integer(out, f.status);
    out.extend_from_slice(b",\"code\":");
    opt_string(out, f.error.map(GatewayError::code));
    out.extend_from_slice(b",\"fault\":");
    opt_string(
        out,
        crate::observe::fault::Fault::of(f.error, f.status)
            .map(crate::observe::fault::Fault::as_str),
    );
    out.extend_from_slice(b",\"input_tokens\":");
    integer(out, b.input);
    out.extend_from_slice(b",\"output_tokens\":");
    integer(out, b.output);
    out.extend_from_slice(b",\"cached_input_tokens\":");
    integer(out, b.cached_input);
    out.extend_from_slice(b",\"cache_write_tokens\":");
    integer(out, b.cache_write);
    out.extend_from_slice(b",\"reasoning_tokens\":");
    integer(out, b.reasoning);
    out.extend_from_slice(b",\"cost_usd\":");
    float(out, b.cost_micros as f64 / 1e6);
    out.extend_from_slice(b",\"usage_source\":");
    match b.source {
        Some(s) => {
            out.push(b'"');
            out.extend_from_slice(s.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"duration_ms\":");
    float(out, duration.as_secs_f64() * 1000.0);
    out.extend_from_slice(b",\"overhead_ms\":");
    float(out, overhead.as_secs_f64() * 1000.0);
    out.extend_from_slice(b",\"client_ip\":");
    match f.client_ip {
        // An address's text needs no escaping; IPv4 without the formatter.
        Some(std::net::IpAddr::V4(ip)) => {
            out.push(b'"');
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                integer(out, octet);
            }
            out.push(b'"');
        }
        Some(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if f.stream {
        b",\"stream\":true,\"attempts\":["
    } else {
        b",\"stream\":false,\"attempts\":["
    });
    for (i, (target, o)) in f.attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"target\":");
        string(out, target);
        out.extend_from_slice(b",\"outcome\":\"");
        match *o {
            Outcome::Status(c) => integer(out, c),
            o => out.extend_from_slice(o.name().as_bytes()),
        }
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    if f.count_tokens {
        out.extend_from_slice(b",\"count_tokens\":true");
    }
    if !f.guardrails.is_empty() {
        out.extend_from_slice(b",\"guardrails\":[");
        for (i, t) in f.guardrails.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            string(out, &t.id);
            out.extend_from_slice(b",\"action\":");
            string(out, t.action);
            out.extend_from_slice(b",\"kinds\":[");
            for (j, k) in t.kinds.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                string(out, k);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }
    let level = f.log_level();
    if level != LogLevel::Metadata {
        // The prompt (`log_level = "prompt"`) and the completion (`"full"`), each capped.
        let mut prompt = f.body.and_then(RequestBody::prompt_json);
        if let Some(p) = prompt.as_mut().filter(|p| p.len() > PROMPT_CAP) {
            p.truncate(floor_char_boundary(p, PROMPT_CAP));
            out.extend_from_slice(b",\"prompt_truncated\":true");
        }
        out.extend_from_slice(b",\"prompt\":");
        opt_string(out, prompt.as_deref());
        if level == LogLevel::Full {
            out.extend_from_slice(b",\"completion\":");
            opt_string(out, f.completion.map(|c| c.text.as_str()));
            if f.completion.is_some_and(|c| c.truncated) {
                out.extend_from_slice(b",\"completion_truncated\":true");
            }
        }
    }
    out.push(b'}');
}

fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A number as `serde_json` writes an `f64` (shortest round-trip form; `null` if not finite).
fn float(out: &mut Vec<u8>, x: f64) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &x);
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// For each byte: 0 when it goes as it is, else the letter after the backslash (`u`: as
/// `\u00XX`). The escapes `serde_json` writes: `"`, `\\` and the control characters.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = b'u';
        c += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// How many leading bytes of `b` go as they are (no `"`, `\\` or control character),
/// eight at a time while it can.
fn clean_prefix(b: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Whether any byte of `w` is zero (exact as a yes/no).
    fn any_zero(w: u64) -> bool {
        w.wrapping_sub(ONES) & !w & HIGH != 0
    }
    let mut n = 0;
    for chunk in b.chunks_exact(8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(a);
        // A byte below 0x20 (bytes of 0x80 and up, UTF-8, have their high bit set and are
        // not counted), a quote, a backslash.
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control
            || any_zero(w ^ (ONES * u64::from(b'"')))
            || any_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        n += 8;
    }
    while n < b.len() && ESCAPE[usize::from(b[n])] == 0 {
        n += 1;
    }
    n
}

/// `s` as a JSON string, escaped as `serde_json` does; everything else (UTF-8 included)
/// as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    // Ids, names and models rarely need an escape: skip eight bytes at a time to the first.
    let clean = clean_prefix(bytes);
    out.extend_from_slice(&bytes[..clean]);
    let mut from = clean;
    for (i, &c) in bytes.iter().enumerate().skip(clean) {
        let esc = ESCAPE[usize::from(c)];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[from..i]);
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The line as the `serde` serializer wrote it before `render` wrote it by hand: the
/// reference `render` must agree with byte for byte.
#[cfg(test)]
mod reference {
    use super::*;
    use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
    use serde::Serialize;
    use std::fmt::Display;
    use std::sync::Arc;

    pub(crate) fn render(f: &Finished<'_>, out: &mut Vec<u8>) {
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

    struct Trips<'a>(&'a [crate::proxy::guard::Trip]);

    #[derive(Serialize)]
    struct TripLine<'a> {
        id: &'a str,
        action: &'a str,
        kinds: &'a [std::borrow::Cow<'static, str>],
    }

    impl Serialize for Trips<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for t in self.0 {
                seq.serialize_element(&TripLine {
                    id: &t.id,
                    action: t.action,
                    kinds: &t.kinds,
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
            let mut o = s.serialize_struct("line", 27)?;
            // As in `render`: the line's wall time, not a policy decision.
            let ts = stamp(crate::clock::wall());
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
                &crate::observe::fault::Fault::of(f.error, f.status)
                    .map(crate::observe::fault::Fault::as_str),
            )?;
            o.serialize_field("input_tokens", &b.input)?;
            o.serialize_field("output_tokens", &b.output)?;
            o.serialize_field("cached_input_tokens", &b.cached_input)?;
            o.serialize_field("cache_write_tokens", &b.cache_write)?;
            o.serialize_field("reasoning_tokens", &b.reasoning)?;
            o.serialize_field("cost_usd", &(b.cost_micros as f64 / 1e6))?;
            o.serialize_field(
                "usage_source",
                &b.source.map(crate::llm::usage::UsageSource::as_str),
            )?;
            o.serialize_field("duration_ms", &(duration.as_secs_f64() * 1000.0))?;
            o.serialize_field("overhead_ms", &(overhead.as_secs_f64() * 1000.0))?;
            o.serialize_field("client_ip", &f.client_ip.map(Str))?;
            o.serialize_field("stream", &f.stream)?;
            o.serialize_field("attempts", &Attempts(f.attempts))?;
            if f.count_tokens {
                o.serialize_field("count_tokens", &true)?;
            }
            if !f.guardrails.is_empty() {
                o.serialize_field("guardrails", &Trips(f.guardrails))?;
            }
            let level = f.log_level();
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
        let now = crate::clock::wall();
        assert_eq!(
            std::str::from_utf8(&stamp(now)).unwrap_or_default(),
            humantime::format_rfc3339_millis(now).to_string()
        );
    }

    fn snapshot() -> crate::policy::snapshot::Snapshot {
        let cfg = crate::policy::config::parse_config(
            r#"
[server]
listen = ["127.0.0.1:1"]

[[providers]]
id = "p"
api = "openai"
base_url = "http://127.0.0.1:2"

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "p" }]

[[orgs]]
id = "o\"rg"

[[groups]]
id = "g-meta"
org = "o\"rg"

[[groups]]
id = "g-prompt"
org = "o\"rg"
log_level = "prompt"

[[groups]]
id = "g-full"
org = "o\"rg"
log_level = "full"

[[keys]]
id = "k-meta"
group = "g-meta"
sha256 = "0000000000000000000000000000000000000000000000000000000000000001"

[[keys]]
id = "k-prompt"
group = "g-prompt"
sha256 = "0000000000000000000000000000000000000000000000000000000000000002"

[[keys]]
id = "k-full"
group = "g-full"
sha256 = "0000000000000000000000000000000000000000000000000000000000000003"
"#,
            std::path::Path::new("t"),
        )
        .expect("policy");
        crate::policy::snapshot::Snapshot::build(
            cfg,
            &Default::default(),
            None,
            1,
            &crate::policy::snapshot::Loopback,
            &Default::default(),
        )
        .expect("snapshot")
    }

    #[test]
    fn strings_are_escaped_as_serde_does_at_every_position() {
        let mut cases: Vec<String> = Vec::new();
        for c in (0u8..128)
            .map(char::from)
            .chain(['é', '€', '😀', '\u{2028}'])
        {
            for len in [1, 7, 8, 9, 16, 23] {
                for at in 0..len {
                    let mut t: String = "abcdefghijklmnopqrstuvw".chars().take(len).collect();
                    t.replace_range(at..=at, &c.to_string());
                    cases.push(t);
                }
            }
        }
        for t in cases {
            let mut out = Vec::new();
            super::string(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn the_hand_written_line_is_the_serde_line() {
        use crate::llm::usage::{Billed, Completion};
        use std::sync::Arc;
        use std::time::Instant;
        let snap = snapshot();
        let keys: Vec<_> = (1u8..=3)
            .map(|n| {
                let mut d = [0u8; 32];
                d[31] = n;
                snap.key(&d).expect("key").clone()
            })
            .collect();
        let body = RequestBody::parse(
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\u00e9\"\\\n\t\u0001\u001f\u007f \u2028 \ud83d\ude00"}]}"#,
        )
        .expect("body");
        let error = GatewayError::KeyDisabled("k".into());
        let trips = [
            crate::proxy::guard::Trip {
                id: "p\"ii".into(),
                action: "redact",
                kinds: vec!["email".into(), "ph\none".into()],
            },
            crate::proxy::guard::Trip {
                id: "corp".into(),
                action: "error",
                kinds: vec![],
            },
        ];
        let attempts: Vec<(Arc<str>, Outcome)> = vec![
            ("p/gpt-4o-mini".into(), Outcome::Status(503)),
            ("p/\"odd\\name\u{1}".into(), Outcome::TimedOut),
            ("p/x".into(), Outcome::ConnectFailed),
            ("p/y".into(), Outcome::ClientClosed),
            ("p/z".into(), Outcome::Status(200)),
        ];
        let completion = Completion {
            text: "answer \"quoted\"\n\u{0}é".into(),
            truncated: true,
        };
        let started = Instant::now();
        let ids = [
            "req_plain",
            "",
            "id with \"quotes\" and \\ and \u{7f} and \u{0}\u{1b}\t\r\n\u{8}\u{c} and é漢字🦀",
        ];
        let mut cases = 0;
        for key in [None, Some(&keys[0]), Some(&keys[1]), Some(&keys[2])] {
            for id in ids {
                for (status, err, billed, ip) in [
                    (
                        200u16,
                        None,
                        Some(Billed {
                            input: 12,
                            output: 8,
                            cost_micros: 7,
                            source: Some(crate::llm::usage::UsageSource::Counted),
                            ..Billed::default()
                        }),
                        Some([127, 0, 0, 1].into()),
                    ),
                    (
                        403,
                        Some(&error),
                        None,
                        Some("2001:db8::1".parse().expect("ip")),
                    ),
                    (
                        502,
                        None,
                        Some(Billed {
                            input: u64::MAX,
                            output: 0,
                            cost_micros: 123_456_789,
                            source: Some(crate::llm::usage::UsageSource::Provider),
                            ..Billed::default()
                        }),
                        Some([255, 10, 0, 199].into()),
                    ),
                    (0, None, None, None),
                ] {
                    let f = Finished {
                        request_id: id,
                        key: key.map(|k| &**k),
                        model: Some("gpt-4o-mini"),
                        served_model: None,
                        target: if err.is_some() {
                            None
                        } else {
                            Some("p/gpt-4o-mini")
                        },
                        status,
                        error: err,
                        billed,
                        started,
                        ended: started + Duration::from_micros(1_234_567),
                        first_attempt_at: Some(started + Duration::from_nanos(98_765)),
                        attempt_started: None,
                        client_ip: ip,
                        stream: status == 502,
                        attempts: if status == 0 { &[] } else { &attempts },
                        shadow: &[],
                        body: Some(&body),
                        completion: Some(&completion),
                        quarantined: status == 403,
                        guardrails: if status == 200 { &trips } else { &[] },
                        count_tokens: status == 200,
                    };
                    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
                    render(&f, &mut mine);
                    reference::render(&f, &mut theirs);
                    // The two read the clock separately: compare past the stamp.
                    assert_eq!(
                        String::from_utf8_lossy(&mine[31..]),
                        String::from_utf8_lossy(&theirs[31..])
                    );
                    assert_eq!(&mine[..7], b"{\"ts\":\"");
                    serde_json::from_slice::<serde_json::Value>(&mine).expect("valid JSON");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 48);
    }
}
