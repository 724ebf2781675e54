//! Guardrail cost on the request path: `pii` (every entity) + `secrets` + `injection` on a
//! 1.2 KB chat request (target ≤ 15 µs) and on a 100 KB one (target ≤ 1 ms), clean (the
//! common case: nothing found, nothing rewritten) and with PII to redact; and a streamed
//! answer through the response guard. Run: `cargo bench --bench guardrails`.
//!
//! Measured on the 2-core shared build VM (2026-12-07, `--measurement-time 3`):
//! chat_1k2_clean (1194 B) 7.7 µs, chat_100k_clean (99.9 KB) 616 µs, chat_1k2_redact
//! (1347 B, an email and a phone redacted, body rewritten) 16.9 µs, stream_2k_answer
//! (256 events of 8 bytes) 409 µs, i.e. 1.6 µs per event.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use tollgate::llm::body::{Endpoint, RequestBody};
use tollgate::llm::guard::{
    check_request, Action, Builtin, Format, PiiEntity, ResponseGuard, Rule,
};

// The binary's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rules() -> Vec<Arc<Rule>> {
    let rule = |id: &str, action, builtin| {
        Arc::new(Rule {
            id: id.into(),
            action,
            builtin,
        })
    };
    let r = vec![
        rule("pii", Action::Redact, Builtin::Pii(PiiEntity::ALL.to_vec())),
        rule("no-secrets", Action::Block, Builtin::Secrets),
        rule(
            "injection",
            Action::Block,
            Builtin::Injection { threshold: 0.8 },
        ),
    ];
    for x in &r {
        x.builtin.warm();
    }
    r
}

const PROSE: &str = "Our quarterly review covers the migration of the billing service to the \
new cluster, the on-call rota for December, and the open questions about retention of \
request logs. Please summarise the risks, list the owners, and suggest a timeline. ";

/// A system prompt and a few turns: about 1.2 KB of JSON.
fn chat(extra: &str, turns: usize) -> Vec<u8> {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a concise assistant for an engineering team. Answer in short bullet points."}),
    ];
    for i in 0..turns {
        messages.push(json!({"role": "user", "content": format!("{PROSE}{extra}")}));
        if i + 1 < turns {
            messages.push(json!({"role": "assistant", "content": "- Risk: cut-over downtime.\n- Owner: platform team.\n- Timeline: two sprints."}));
        }
    }
    json!({"model": "smart", "temperature": 0.2, "messages": messages})
        .to_string()
        .into_bytes()
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let small = chat("", 3);
    let big = chat("", 262);
    let pii = chat("Reach me at jane.doe@example.com or (555) 123-4567.", 3);
    eprintln!(
        "request sizes: {} B, {} B, {} B",
        small.len(),
        big.len(),
        pii.len()
    );

    let mut g = c.benchmark_group("guardrails");
    for (name, body) in [("chat_1k2_clean", &small), ("chat_100k_clean", &big)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        let mut parsed = RequestBody::parse(body.clone()).expect("body");
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    check_request(&mut parsed, Endpoint::ChatCompletions, &rules).expect("clean"),
                )
            })
        });
    }
    g.throughput(Throughput::Bytes(pii.len() as u64));
    g.bench_function("chat_1k2_redact", |b| {
        b.iter_batched(
            || RequestBody::parse(pii.clone()).expect("body"),
            |mut body| {
                black_box(
                    check_request(&mut body, Endpoint::ChatCompletions, &rules).expect("redact"),
                )
            },
            BatchSize::SmallInput,
        )
    });

    // A 2 KB answer streamed in 8-byte deltas, checked through the window.
    let text = PROSE.repeat(8);
    let mut stream = String::new();
    let chars: Vec<char> = text.chars().collect();
    for d in chars.chunks(8) {
        let d: String = d.iter().collect();
        stream += &format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]})
        );
    }
    stream += "data: [DONE]\n\n";
    let stream = Bytes::from(stream);
    let shared: Arc<[Arc<Rule>]> = rules.clone().into();
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("stream_2k_answer", |b| {
        b.iter(|| {
            let mut guard =
                ResponseGuard::new(shared.clone(), Endpoint::ChatCompletions, Format::Sse);
            let mut body = Some(stream.clone());
            guard.chunk(&mut body, true);
            black_box(body)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
