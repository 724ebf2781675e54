//! The labelled corpus (tests/data/guardrails/corpus.jsonl): each line a text (or the
//! text deltas of a stream, `events`) and the kinds it really contains. Every detector
//! runs on every line; false positives (a kind found that is not there) and false
//! negatives (a kind there that is not found) are counted per kind and must not exceed
//! the recorded numbers below — lower them when a detector improves.

use super::{injection, pii, run, secrets};
use crate::llm::body::Endpoint;
use crate::llm::guard::{Action, Hit, Rule};
use std::collections::BTreeMap;
use std::sync::Arc;

/// (kind, false positives, false negatives) allowed.
const MAXIMA: &[(&str, usize, usize)] = &[
    ("email", 1, 0),
    ("phone", 0, 1),
    ("credit_card", 0, 0),
    ("iban", 0, 1),
    ("ip_address", 1, 1),
    ("us_ssn", 0, 1),
    ("injection", 0, 0),
];

#[derive(serde::Deserialize)]
struct Line {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    kinds: Vec<String>,
}

fn rules() -> Vec<Arc<Rule>> {
    vec![
        pii(Action::Log),
        secrets(Action::Log),
        injection(Action::Log),
    ]
}

/// The kinds found in a text.
fn found_in_text(text: &str) -> Vec<&'static str> {
    let mut hits: Vec<Hit> = Vec::new();
    for r in rules() {
        r.builtin.scan(text, &mut hits);
    }
    hits.iter().map(|h| h.kind).collect()
}

/// The kinds found in a chat stream of these deltas.
fn found_in_stream(deltas: &[String]) -> Vec<&'static str> {
    let d: Vec<&str> = deltas.iter().map(String::as_str).collect();
    let input = super::response::chat_sse(&d);
    let mut g = crate::llm::guard::ResponseGuard::new(
        rules().into(),
        Endpoint::ChatCompletions,
        crate::llm::guard::Format::Sse,
    );
    run(&mut g, &[input.as_bytes()]);
    g.verdicts()
        .iter()
        .flat_map(|v| v.kinds.iter().copied())
        .collect()
}

#[test]
fn corpus_false_positives_and_negatives_do_not_regress() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/guardrails/corpus.jsonl"
    );
    let data = std::fs::read_to_string(path).expect("corpus");
    // kind -> (false positives, false negatives, expected)
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut lines = 0;
    for (n, line) in data
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: Line = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        lines += 1;
        let found = match (&l.text, &l.events) {
            (Some(t), _) => found_in_text(t),
            (None, Some(e)) => found_in_stream(e),
            _ => panic!("line {}: no text", n + 1),
        };
        for k in &found {
            if !l.kinds.iter().any(|e| e == k) {
                counts.entry(k.to_string()).or_default().0 += 1;
                eprintln!("FP {k:<14} line {}", n + 1);
            }
        }
        for k in &l.kinds {
            counts.entry(k.clone()).or_default().2 += 1;
            if !found.contains(&k.as_str()) {
                counts.entry(k.clone()).or_default().1 += 1;
                eprintln!("FN {k:<14} line {}", n + 1);
            }
        }
    }
    eprintln!("{lines} lines; kind: expected / false positives / false negatives");
    for (k, (fp, fneg, exp)) in &counts {
        eprintln!("  {k:<22} {exp:>3} {fp:>3} {fneg:>3}");
    }
    for (k, (fp, fneg, _)) in &counts {
        // Secret kinds are all allowed none.
        let (max_fp, max_fn) = MAXIMA
            .iter()
            .find(|(m, _, _)| m == k)
            .map_or((0, 0), |(_, a, b)| (*a, *b));
        assert!(
            *fp <= max_fp && *fneg <= max_fn,
            "{k}: {fp} false positives (max {max_fp}), {fneg} false negatives (max {max_fn})"
        );
    }
}
