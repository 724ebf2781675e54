//! Properties checked by the fuzz targets (`fuzz/`, `cargo fuzz`, nightly) and by their
//! proptest twins (`tests/e2e/fuzz_props.rs`, stable, bounded, run by `cargo test`). Each
//! takes arbitrary bytes, must never panic, and asserts what must hold for any input.
//! Not part of the gateway's API.

use crate::llm::body::{Endpoint, RequestBody};
use crate::llm::usage::{Scanner, StreamFormat, TokenUsage};
use crate::policy::config::Api;
use crate::proxy::auth::{parse_credentials, CredentialError};
use bytes::Bytes;

/// Chunk lengths from a seed (a small LCG): the same input cut in many ways.
fn cuts(seed: u32, len: usize) -> Vec<usize> {
    let mut out = vec![];
    let mut x = seed | 1;
    let mut at = 0;
    while at < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (x >> 16) as usize % 64;
        out.push(n.min(len - at));
        at += n;
    }
    out
}

fn seed(data: &[u8]) -> (u32, &[u8]) {
    match data {
        [a, b, rest @ ..] => (u32::from(*a) << 8 | u32::from(*b), rest),
        _ => (1, data),
    }
}

/// Feeds `data` to a scanner in the given chunks; returns what the client would receive.
fn scan(format: StreamFormat, strip: bool, data: &[u8], chunks: &[usize]) -> (Vec<u8>, Scanner) {
    let mut s = Scanner::new(format, strip);
    s.collect_completion();
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for (i, n) in chunks.iter().enumerate() {
        let mut b = Some(Bytes::copy_from_slice(&data[at..at + n]));
        at += n;
        s.chunk(&mut b, i + 1 == chunks.len());
        out.extend_from_slice(&b.unwrap_or_default());
    }
    if chunks.is_empty() {
        let mut b = None;
        s.chunk(&mut b, true);
    }
    (out, s)
}

/// The SSE / JSON usage scanner (OpenAI and Anthropic streams alike): the usage found and
/// the bytes passed on do not depend on how the stream is cut into chunks; without
/// stripping, the client receives exactly the provider's bytes.
pub fn usage_scanner(data: &[u8]) {
    let (seed, data) = seed(data);
    let whole = [data.len()]
        .into_iter()
        .filter(|n| *n > 0)
        .collect::<Vec<_>>();
    let cut = cuts(seed, data.len());
    for strip in [false, true] {
        let (out_a, a) = scan(StreamFormat::Sse, strip, data, &whole);
        let (out_b, b) = scan(StreamFormat::Sse, strip, data, &cut);
        assert_eq!(
            a.usage, b.usage,
            "usage depends on chunking (strip {strip})"
        );
        assert_eq!(a.saw_done, b.saw_done);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert_eq!(
            text(&out_a),
            text(&out_b),
            "output depends on chunking (strip {strip})"
        );
        assert_eq!(out_a, out_b);
        if !strip {
            assert_eq!(text(&out_a), text(data), "the stream was altered");
        } else {
            assert!(out_a.len() <= data.len());
        }
    }
    let (out, json) = scan(StreamFormat::Json, false, data, &cut);
    assert_eq!(out, data, "a JSON body was altered");
    let _: TokenUsage = json.usage;
}

/// Request-body field extraction: any bytes either parse into a body or are refused with
/// 400 `invalid_request`; a parsed body renders (for any target model) into a JSON
/// object that parses back to the same fields, and translation never panics.
pub fn request_body(data: &[u8]) {
    let body = match RequestBody::parse(data.to_vec()) {
        Ok(b) => b,
        Err(e) => {
            assert_eq!((e.status(), e.code()), (400, "invalid_request"));
            return;
        }
    };
    if let Some(p) = body.prompt_json() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&p).is_ok(),
            "prompt_json: {p}"
        );
    }
    for ask in [false, true] {
        let out = body.render("target-\"model\"\n", ask);
        let again = RequestBody::parse(out.clone()).unwrap_or_else(|e| panic!("render: {e}"));
        assert_eq!(again.model.as_deref(), Some("target-\"model\"\n"));
        assert_eq!(again.max_tokens, body.max_tokens);
        assert_eq!(again.stream, body.stream);
        let mut keys: Vec<&str> = body.names().collect();
        if body.get("model").is_none() {
            keys.push("model");
        }
        let mut got: Vec<&str> = again.names().collect();
        if ask && body.get("stream_options").is_none() {
            got.retain(|k| *k != "stream_options");
        }
        keys.sort();
        got.sort();
        assert_eq!(keys, got);
    }
    // The client's own model: passed through or rendered, it reads back the same.
    if let Some(m) = body.model.clone() {
        let again = RequestBody::parse(body.render(&m, false)).expect("render");
        assert_eq!(again.model.as_deref(), Some(m.as_str()));
        assert!(again.names().eq(body.names()), "fields changed");
    }
    for (route, api) in [
        (Endpoint::ChatCompletions, Api::Anthropic),
        (Endpoint::Messages, Api::OpenAi),
        (Endpoint::ChatCompletions, Api::OpenAi),
        (Endpoint::Responses, Api::OpenAi),
    ] {
        if let Ok((bytes, _)) = crate::llm::translate::render(&body, route, api, "m", "m", true, 64)
        {
            assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        }
    }
}

/// The policy-file parser: any text is either a `Config` or a list of problems, never a
/// panic, and the verdict is the same every time.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    let a = crate::policy::config::parse_config(text, path);
    let b = crate::policy::config::parse_config(text, path);
    match (a, b) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => {
            assert!(!a.problems.is_empty());
            assert_eq!(a.to_string(), b.to_string());
        }
        _ => panic!("the verdict changed"),
    }
}

/// The credential parser. Input: header lines; a line starting with an odd byte is an
/// `Authorization` value, else an `x-api-key` value. A key taken is non-empty, trimmed,
/// and part of one header; the order of the headers never changes the verdict.
pub fn credentials(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let (mut auth, mut keys): (Vec<&[u8]>, Vec<&[u8]>) = (vec![], vec![]);
    for l in &lines {
        match l.split_first() {
            Some((h, rest)) if h % 2 == 1 => auth.push(rest),
            Some((_, rest)) => keys.push(rest),
            None => {}
        }
    }
    let got = parse_credentials(auth.iter().copied(), keys.iter().copied());
    let reversed = parse_credentials(auth.iter().rev().copied(), keys.iter().rev().copied());
    assert_eq!(got, reversed, "header order changed the verdict");
    if let Ok(k) = got {
        assert!(!k.is_empty());
        assert_eq!(k, k.trim_ascii());
        assert!(lines.iter().any(|l| l.windows(k.len()).any(|w| w == k)));
        // Presenting the same key once more changes nothing.
        let again = parse_credentials(auth.iter().copied(), keys.iter().copied().chain([k]));
        assert_eq!(again, Ok(k));
    } else if auth.is_empty() && keys.iter().all(|k| k.trim_ascii().is_empty()) {
        assert_eq!(got, Err(CredentialError::Missing));
    }
}
