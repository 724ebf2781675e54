//! The fuzz targets' properties (`tollgate::testing::fuzz`, `fuzz/`), run on stable with proptest
//! for a bounded number of cases (`TOLLGATE_FUZZ_CASES`, default 256 per target), plus a
//! replay of every seed in `fuzz/corpus/` and every saved crash in `fuzz/regressions/`.
//! Inputs are built from each format's grammar (and raw bytes), so the cases reach past
//! the first syntax check.

use crate::harness::{fuzz, turn};
use proptest::prelude::*;
use std::path::Path;

fn config() -> ProptestConfig {
    // CPU-bound: not beside a test that runs alone.
    turn::shared();
    let cases = std::env::var("TOLLGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

/// Pieces of a format, glued at random, with some random bytes among them.
fn glued(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => proptest::sample::select(pieces).prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..6),
    ];
    proptest::collection::vec(piece, 0..max).prop_map(|v| v.concat())
}

const SSE: &[&str] = &[
    "data: ",
    "data:",
    "event: message_delta\n",
    "\n",
    "\n\n",
    "\r\n",
    "[DONE]",
    "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}",
    "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}",
    "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30}}",
    "{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5}}}",
    "\"usage\"",
    ":",
    "{",
    "}",
    "\"usage\": {\"input_tokens\": 18446744073709551615}",
];

const CRED: &[&str] = &[
    "\x01Bearer ",
    "\x01bearer\t",
    "\x01BEARER ",
    "\x01Basic ",
    "\x01Bearer",
    "\x00",
    "tg-abc",
    "tg-xyz",
    " ",
    "\t",
    "\n",
];

const TOML: &[&str] = &[
    "\n[[keys]]\nid = \"k\"\ngroup = \"grp_prod\"\nsha256 = \"",
    "\n[[groups]]\nid = \"g\"\norg = \"acme\"\n",
    "rpm = { value = 5, mode = \"shadow\" }\n",
    "max_body = \"64MiB\"\n",
    "budget_usd = -1\n",
    "budget_usd = 1e400\n",
    "window = \"99999999999999999d\"\n",
    "\"",
    "[",
    "]",
    "=",
    "\n",
    "models = [\"*\", \"[\", \"{a,b\"]\n",
    "allowed_cidrs = [\"10.0.0.0/33\", \"::/0\"]\n",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: top-level fields the gateway reads (any type), others, or raw bytes.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    let name = proptest::sample::select(
        &[
            "model",
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "stream",
            "stream_options",
            "messages",
            "system",
            "tools",
            "tool_choice",
            "n",
            "input",
            "prompt",
            "x",
        ][..],
    );
    let object = proptest::collection::vec((name, json_value()), 0..8).prop_map(|fields| {
        let mut out = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{}:{v}", serde_json::Value::from(*k)));
        }
        out.push('}');
        out.into_bytes()
    });
    prop_oneof![
        6 => object,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A real policy file with random edits: truncated, cut, or with fragments put in.
fn policy_text() -> impl Strategy<Value = Vec<u8>> {
    let base = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tollgate.toml")).as_bytes();
    let edit = (0..base.len(), 0usize..3, glued(TOML, 4));
    proptest::collection::vec(edit, 1..4).prop_map(move |edits| {
        let mut text = base.to_vec();
        for (at, kind, piece) in edits {
            let at = at.min(text.len());
            match kind {
                0 => text.truncate(at),
                1 => {
                    let end = (at + piece.len() * 8).min(text.len());
                    text.drain(at..end);
                }
                _ => {
                    text.splice(at..at, piece);
                }
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn usage_scanner(seed in any::<[u8; 2]>(), body in glued(SSE, 40)) {
        fuzz::usage_scanner(&[&seed[..], &body].concat());
    }

    #[test]
    fn request_body_fields(body in request_body()) {
        fuzz::request_body(&body);
    }

    #[test]
    fn policy_parser(text in policy_text()) {
        fuzz::policy(&text);
    }

    #[test]
    fn credential_parser(lines in glued(CRED, 12)) {
        fuzz::credentials(&lines);
    }
}

/// Every seed of the cargo-fuzz corpora and every saved regression, through its property.
#[test]
fn corpora_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 4] = [
        ("usage_scanner", fuzz::usage_scanner),
        ("request_body", fuzz::request_body),
        ("policy", fuzz::policy),
        ("credentials", fuzz::credentials),
    ];
    let mut n = 0;
    for (name, check) in targets {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                check(&std::fs::read(e.path()).unwrap());
                n += 1;
            }
        }
    }
    assert!(n >= 20, "only {n} seeds found under {}", root.display());
}
