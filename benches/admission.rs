//! Admission (org + group + key: rpm, tpm, budget; reserve + settle) with 100k active keys,
//! and SSE usage scanning throughput. Run: `cargo bench --bench admission`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::num::NonZeroU64;
use std::sync::Arc;
use tollgate::admission::{Admission, AdmitRequest, Layer, LayerLimits, ScopeKey, Usage};
use tollgate::clock::SystemClock;
use tollgate::llm::usage::{Scanner, StreamFormat};
use tollgate::policy::config::{Budget, BudgetPeriod, Limits};

fn admission(c: &mut Criterion) {
    let adm = Arc::new(Admission::new(Arc::new(SystemClock), None, 1));
    let org = Limits {
        rpm: NonZeroU64::new(u64::MAX / 2),
        ..Default::default()
    };
    let group = Limits {
        rpm: NonZeroU64::new(u64::MAX / 2),
        tpm: NonZeroU64::new(u64::MAX / 2),
        budget: Some(Budget {
            limit_micros: u64::MAX / 2,
            period: BudgetPeriod::Monthly,
            soft_micros: None,
        }),
        ..Default::default()
    };
    let key = Limits {
        rpm: NonZeroU64::new(1_000_000),
        tpm: NonZeroU64::new(u64::MAX / 2),
        ..Default::default()
    };
    let keys: Vec<ScopeKey> = (0..100_000)
        .map(|i| ScopeKey {
            layer: Layer::Key,
            id: format!("key_{i}").into(),
        })
        .collect();
    let orgk = ScopeKey {
        layer: Layer::Org,
        id: "o".into(),
    };
    let groupk = ScopeKey {
        layer: Layer::Group,
        id: "g".into(),
    };
    let mut i = 0usize;
    let one = |i: usize| {
        let req = AdmitRequest {
            layers: [
                LayerLimits {
                    scope: orgk.clone(),
                    limits: &org,
                    alert_thresholds: &[],
                },
                LayerLimits {
                    scope: groupk.clone(),
                    limits: &group,
                    alert_thresholds: &[],
                },
                LayerLimits {
                    scope: keys[i % keys.len()].clone(),
                    limits: &key,
                    alert_thresholds: &[],
                },
            ],
            extra: vec![],
            est_tokens: 1_000,
            worst_cost_micros: 500,
            clamp: None,
        };
        adm.admit(&req).map(|r| {
            r.settle(Some(Usage {
                tokens: 300,
                cost_micros: 120,
            }))
        })
    };
    // Make all 100k keys active first, measuring what their state costs in memory.
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    };
    let before = rss();
    for k in 0..keys.len() {
        let _ = one(k);
    }
    let per_key = rss().saturating_sub(before) / keys.len() as u64;
    println!("admission state: ~{per_key} bytes per active key (rpm + tpm windows, RSS delta over 100k keys)");
    c.bench_function("admit + settle, 3 layers, 100k active keys", |b| {
        b.iter(|| {
            i += 7919;
            black_box(one(i)).ok();
        })
    });
}

fn sse_stream(events: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..events {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1000}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn scanning(c: &mut Criterion) {
    let stream = sse_stream(1000);
    // Split like a network would: 1 KiB reads.
    let chunks: Vec<bytes::Bytes> = stream
        .chunks(1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let mut g = c.benchmark_group("usage scanning");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for strip in [false, true] {
        g.bench_function(
            if strip {
                "sse, stripping injected usage chunk"
            } else {
                "sse, pass-through"
            },
            |b| {
                b.iter(|| {
                    let mut s = Scanner::new(StreamFormat::Sse, strip);
                    for (n, ch) in chunks.iter().enumerate() {
                        let mut body = Some(ch.clone());
                        s.chunk(&mut body, n + 1 == chunks.len());
                        black_box(&body);
                    }
                    assert_eq!(s.usage.output, Some(1000));
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, admission, scanning);
criterion_main!(benches);
