//! Guardrails without Pingora and without config: the built-in detectors, the request's
//! texts checked and redacted in the body, and the answer checked as the client receives
//! it (JSON whole, SSE in a window that holds back at most 256 bytes of text).
//!
//! ```text
//!  detectors   pii.rs (one regex per set of entities, then Luhn / mod-97 / ranges)
//!              secrets.rs (one regex, literal prefixes)   injection.rs (aho-corasick, scored)
//!              Builtin::Regex (the file's patterns: RegexSet + one Regex each)
//!  request     request.rs: the texts the model reads → check_request (block → Err,
//!              redact → rewritten in the body, log → verdict), request_texts, replace_…
//!  answer      response.rs: ResponseGuard::chunk, like response_body_filter
//! ```
//!
//! Everything is linear in the text: finite automata only (the `regex` crate has no
//! backtracking; patterns are compiled with a size limit). Detectors' false positives
//! and misses are written down in docs/guardrails.md ("Detectors").
//!
//! Interface notes for the plumbing (as built; nothing in the agreed signatures changed):
//! - items are `pub` rather than `pub(crate)` (benches/guardrails.rs uses them);
//! - additions: `Action::as_str`, `Builtin::warm` (compile the shared automata at config
//!   load; optional), `merge`, `MAX_PATTERNS` (64: `Builtin::regex` refuses more, error
//!   index 64), `Patterns` (the compiled `Builtin::Regex` payload), `response::HOLD`;
//!   `RequestBody::replace_field` in llm/body.rs;
//! - secret kinds: openai_key, anthropic_key, aws_access_key, aws_secret_key,
//!   github_token, slack_token, google_api_key, stripe_key, private_key, jwt,
//!   bearer_token, tollgate_key (`tg-`), tollgate_admin_token (`tga-`);
//! - `check_request` runs Block rules first (a redaction never hides a block); one
//!   verdict per rule, kinds deduplicated, in the order first seen;
//! - `replace_request_texts` answers `GatewayError::Internal` when the count differs
//!   (treat as the checker failing);
//! - `ResponseGuard::chunk` with no rules passes everything through untouched.

mod injection;
mod pii;
mod request;
mod response;
mod secrets;
#[cfg(test)]
mod tests;

pub use request::{check_request, replace_request_texts, request_texts};
pub use response::{Format, ResponseGuard};

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use std::sync::Arc;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Redact,
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Log => "log",
        }
    }
}

/// The entities of the `pii` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiEntity {
    Email,
    Phone,
    CreditCard,
    Iban,
    IpAddress,
    UsSsn,
}

impl PiiEntity {
    pub const ALL: [PiiEntity; 6] = [
        PiiEntity::Email,
        PiiEntity::Phone,
        PiiEntity::CreditCard,
        PiiEntity::Iban,
        PiiEntity::IpAddress,
        PiiEntity::UsSsn,
    ];

    pub fn parse(s: &str) -> Option<PiiEntity> {
        PiiEntity::ALL.into_iter().find(|e| e.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            PiiEntity::Email => "email",
            PiiEntity::Phone => "phone",
            PiiEntity::CreditCard => "credit_card",
            PiiEntity::Iban => "iban",
            PiiEntity::IpAddress => "ip_address",
            PiiEntity::UsSsn => "us_ssn",
        }
    }
}

/// The most patterns one `regex` guardrail may have (their kinds are static names).
pub const MAX_PATTERNS: usize = 64;

/// Compiled size limit of one pattern (and of the set): a pattern like `a{1000}{1000}`
/// is refused at load instead of taking memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The kinds of `regex` hits: "pattern N".
static PATTERN_KINDS: [&str; MAX_PATTERNS] = [
    "pattern 0",
    "pattern 1",
    "pattern 2",
    "pattern 3",
    "pattern 4",
    "pattern 5",
    "pattern 6",
    "pattern 7",
    "pattern 8",
    "pattern 9",
    "pattern 10",
    "pattern 11",
    "pattern 12",
    "pattern 13",
    "pattern 14",
    "pattern 15",
    "pattern 16",
    "pattern 17",
    "pattern 18",
    "pattern 19",
    "pattern 20",
    "pattern 21",
    "pattern 22",
    "pattern 23",
    "pattern 24",
    "pattern 25",
    "pattern 26",
    "pattern 27",
    "pattern 28",
    "pattern 29",
    "pattern 30",
    "pattern 31",
    "pattern 32",
    "pattern 33",
    "pattern 34",
    "pattern 35",
    "pattern 36",
    "pattern 37",
    "pattern 38",
    "pattern 39",
    "pattern 40",
    "pattern 41",
    "pattern 42",
    "pattern 43",
    "pattern 44",
    "pattern 45",
    "pattern 46",
    "pattern 47",
    "pattern 48",
    "pattern 49",
    "pattern 50",
    "pattern 51",
    "pattern 52",
    "pattern 53",
    "pattern 54",
    "pattern 55",
    "pattern 56",
    "pattern 57",
    "pattern 58",
    "pattern 59",
    "pattern 60",
    "pattern 61",
    "pattern 62",
    "pattern 63",
];

/// The file's patterns, compiled: the set says which match, each regex where.
#[derive(Debug)]
pub struct Patterns {
    set: RegexSet,
    each: Vec<Regex>,
}

/// A built-in detector.
#[derive(Debug)]
pub enum Builtin {
    Pii(Vec<PiiEntity>),
    Secrets,
    Regex(Patterns),
    Injection { threshold: f32 },
}

impl Builtin {
    /// Compiles `regex` kind patterns; Err((index, message)) names the pattern that fails
    /// (a syntax error, or over the size limit).
    pub fn regex(patterns: &[String]) -> Result<Builtin, (usize, String)> {
        if patterns.len() > MAX_PATTERNS {
            return Err((
                MAX_PATTERNS,
                format!("at most {MAX_PATTERNS} patterns per guardrail"),
            ));
        }
        let mut each = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            let re = RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| (i, e.to_string()))?;
            each.push(re);
        }
        let set = RegexSetBuilder::new(patterns)
            .size_limit(REGEX_SIZE_LIMIT * 4)
            .dfa_size_limit(REGEX_SIZE_LIMIT * 4)
            .build()
            .map_err(|e| (0, format!("the patterns together: {e}")))?;
        Ok(Builtin::Regex(Patterns { set, each }))
    }

    /// Compiles the shared automata of this detector now, so that the first request
    /// does not pay for it (a config load may call it; optional).
    pub fn warm(&self) {
        match self {
            Builtin::Pii(entities) => pii::warm(entities),
            Builtin::Secrets => secrets::warm(),
            Builtin::Injection { .. } => injection::warm(),
            Builtin::Regex(_) => {}
        }
    }

    /// Appends every match in `text` (byte ranges; may overlap across detectors, see
    /// [`merge`]).
    pub fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        match self {
            Builtin::Pii(entities) => pii::scan(entities, text, out),
            Builtin::Secrets => secrets::scan(text, out),
            Builtin::Injection { threshold } => injection::scan(text, *threshold, out),
            Builtin::Regex(p) => {
                if p.each.len() == 1 {
                    // One pattern: the set would only repeat the search.
                    push_matches(&p.each[0], 0, text, out);
                    return;
                }
                for i in p.set.matches(text).iter() {
                    push_matches(&p.each[i], i, text, out);
                }
            }
        }
    }
}

fn push_matches(re: &Regex, i: usize, text: &str, out: &mut Vec<Hit>) {
    let kind = PATTERN_KINDS.get(i).copied().unwrap_or("pattern");
    for m in re.find_iter(text) {
        // An empty match (`a*`) has nothing to redact.
        if m.start() < m.end() {
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                kind,
            });
        }
    }
}

/// One match: a byte range of the text and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub kind: &'static str,
}

/// A configured guardrail of a built-in kind.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub action: Action,
    pub builtin: Builtin,
}

/// Evidence for the log line / metrics / audit: which rule acted how, on which kinds
/// (never the text).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub id: Arc<str>,
    pub action: Action,
    pub kinds: Vec<&'static str>,
}

/// A block: which rule and the first kind it matched.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub id: Arc<str>,
    pub kind: &'static str,
}

/// Placeholder for a kind: `[EMAIL]`, `[CREDIT_CARD]`, …, `[SECRET]` for every secret
/// kind, `[REDACTED]` for regex and injection hits.
pub fn placeholder(kind: &str) -> &'static str {
    match kind {
        "email" => "[EMAIL]",
        "phone" => "[PHONE]",
        "credit_card" => "[CREDIT_CARD]",
        "iban" => "[IBAN]",
        "ip_address" => "[IP_ADDRESS]",
        "us_ssn" => "[US_SSN]",
        "openai_key"
        | "anthropic_key"
        | "aws_access_key"
        | "aws_secret_key"
        | "github_token"
        | "slack_token"
        | "google_api_key"
        | "stripe_key"
        | "private_key"
        | "jwt"
        | "bearer_token"
        | "tollgate_key"
        | "tollgate_admin_token" => "[SECRET]",
        _ => "[REDACTED]",
    }
}

/// Sorts hits and merges the overlapping ones (the earlier keeps its kind).
pub fn merge(hits: &mut Vec<Hit>) {
    if hits.len() < 2 {
        return;
    }
    hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut w = 0;
    for r in 1..hits.len() {
        if hits[r].start < hits[w].end {
            hits[w].end = hits[w].end.max(hits[r].end);
        } else {
            w += 1;
            hits.swap(w, r);
        }
    }
    hits.truncate(w + 1);
}

/// Replaces hits by placeholders (hits in any order, overlaps merged).
pub fn redact(text: &str, hits: &[Hit]) -> String {
    let mut hits = hits.to_vec();
    merge(&mut hits);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in &hits {
        let (start, end) = (h.start.min(text.len()), h.end.min(text.len()));
        if start < at || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(placeholder(h.kind));
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Adds `kinds` to the verdict of `rule` (one verdict per rule, kinds in the order first
/// seen).
pub(crate) fn record(
    verdicts: &mut Vec<Verdict>,
    rule: &Rule,
    kinds: impl IntoIterator<Item = &'static str>,
) {
    let i = match verdicts.iter().position(|v| v.id == rule.id) {
        Some(i) => i,
        None => {
            verdicts.push(Verdict {
                id: rule.id.clone(),
                action: rule.action,
                kinds: Vec::new(),
            });
            verdicts.len() - 1
        }
    };
    for k in kinds {
        if !verdicts[i].kinds.contains(&k) {
            verdicts[i].kinds.push(k);
        }
    }
}
