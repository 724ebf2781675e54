//! Allocations per request in tollgate's own steps, counted with an instrumented global
//! allocator and held under a ceiling (issue 11): auth, the body parse, the usage scan of a
//! JSON answer and the request-log line. A step that starts allocating more fails here;
//! lower a ceiling when a step gets cheaper. (Time is measured in benches, never here.)
//!
//! A test binary of its own, not a module of the end-to-end suite (`tests/e2e/`): the
//! counting allocator is global to its binary, and a region counts every allocation made
//! meanwhile by any thread, so tests running beside it there would be counted as its own.

use pingora_http::RequestHeader;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tollgate::llm::body::RequestBody;
use tollgate::llm::usage::{Scanner, StreamFormat};
use tollgate::observe::{line, Finished, Outcome};
use tollgate::policy::config::parse_config;
use tollgate::policy::snapshot::{Loopback, Snapshot};
use tollgate::proxy::auth::{authenticate, digest};
use tollgate::proxy::directory::Directory;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const POLICY: &str = r#"
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
id = "o"
rpm = 1000000
tpm = 1000000000

[[groups]]
id = "g"
org = "o"
rpm = 1000000

[[keys]]
id = "k"
group = "g"
rpm = 1000000
sha256 = "SHA"
"#;

const KEY: &str = "tg-allocations-test-key-0000000000000000";
const BODY: &[u8] =
    br#"{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#;

/// Allocations per call of `f`, over 200 calls after a warm-up.
fn allocations(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..200 {
        f();
    }
    region.change().allocations as f64 / 200.0
}

#[test]
fn allocations_per_request_stay_under_their_ceilings() {
    let sha = hex::encode(digest(KEY.as_bytes()));
    let cfg = parse_config(&POLICY.replace("SHA", &sha), Path::new("t")).expect("policy");
    let snap = Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Default::default(),
    )
    .expect("snapshot");
    let dir = Directory::default();
    let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
    req.insert_header("authorization", format!("Bearer {KEY}"))
        .expect("header");

    let auth = allocations(|| {
        let k = authenticate(&snap, &dir, &req, 1_700_000_000).expect("key");
        std::hint::black_box(k);
    });
    let parse = allocations(|| {
        std::hint::black_box(RequestBody::parse(BODY).expect("body"));
    });
    let answer = bytes::Bytes::from_static(ANSWER);
    let scan = allocations(|| {
        let mut s = Scanner::new(StreamFormat::Json, false);
        let mut chunk = Some(answer.clone());
        s.chunk(&mut chunk, true);
        assert_eq!(s.usage.output, Some(8));
    });
    let key = authenticate(&snap, &dir, &req, 1_700_000_000).expect("key");
    let body = RequestBody::parse(BODY).expect("body");
    let attempts: Vec<(Arc<str>, Outcome)> = vec![("p/gpt-4o-mini".into(), Outcome::Status(200))];
    let started = Instant::now();
    let mut out = Vec::with_capacity(1024);
    let log_line = allocations(|| {
        let f = Finished {
            request_id: "req_0123456789abcdef0123456789abcdef",
            key: Some(&key),
            model: Some("gpt-4o-mini"),
            served_model: Some("gpt-4o-mini"),
            target: Some("p/gpt-4o-mini"),
            status: 200,
            error: None,
            billed: None,
            started,
            ended: Instant::now(),
            first_attempt_at: Some(started),
            attempt_started: Some(started),
            client_ip: Some([127, 0, 0, 1].into()),
            stream: false,
            attempts: &attempts,
            shadow: &[],
            body: Some(&body),
            completion: None,
            count_tokens: false,
            quarantined: false,
            guardrails: &[],
        };
        out.clear();
        line::render(&f, &mut out);
    });
    let line_text = String::from_utf8(out.clone()).expect("utf8");
    assert!(line_text.contains("\"key_id\":\"k\""), "{line_text}");
    assert!(!line_text.contains(KEY), "the key itself is never logged");

    println!("allocations per call: auth {auth}, body parse {parse}, usage scan {scan}, log line {log_line}");
    assert!(auth <= 0.1, "auth: {auth} allocations");
    assert!(parse <= 4.0, "body parse: {parse} allocations");
    assert!(scan <= 2.0, "usage scan: {scan} allocations");
    assert!(log_line == 0.0, "log line: {log_line} allocations");
}
