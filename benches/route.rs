//! Target choice per strategy with 2, 10 and 100 targets: ns per pick.
//! Run: `cargo bench --bench route`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::SeedableRng;
use std::hint::black_box;
use tollgate::llm::body::Serves;
use tollgate::policy::config::{parse_config, Api, Routing};
use tollgate::policy::snapshot::{Loopback, Snapshot};
use tollgate::proxy::route::health::Health;
use tollgate::proxy::route::{affinity, pick, Choice};

fn snapshot(n: usize) -> Snapshot {
    let targets: Vec<String> = (0..n)
        .map(|i| format!("{{ provider = \"p\", model = \"t{i}\", weight = {}, tags = [\"{}\"], input_usd_per_mtok = {} }}", 1 + i % 7, if i % 2 == 0 { "eu" } else { "us" }, 1 + i % 5))
        .collect();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:1\"\n[[models]]\nname = \"m\"\ntargets = [{}]\n",
        targets.join(", ")
    );
    let cfg = parse_config(&text, std::path::Path::new("bench.toml")).expect("config");
    Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Health::default(),
    )
    .expect("snapshot")
}

fn picks(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    let tags = vec!["eu".to_string()];
    for n in [2usize, 10, 100] {
        let s = snapshot(n);
        let m = s.model("m").expect("model").clone();
        for (i, t) in m.targets.iter().enumerate() {
            t.health.record_success(1_000 + i as u64 * 10);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for routing in [
            Routing::Weighted,
            Routing::Latency,
            Routing::Cost,
            Routing::Sticky,
            Routing::Tag,
        ] {
            let choice = Choice {
                providers: None,
                serves: Serves::Only(Api::OpenAi),
                routing,
                affinity: affinity(Some(b"session-42"), "k"),
                tags: &tags,
                now_ms: 1,
            };
            g.bench_with_input(BenchmarkId::new(format!("{routing:?}"), n), &n, |b, _| {
                b.iter(|| black_box(pick(&m, &[], &choice, &mut rng)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
