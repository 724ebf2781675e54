//! Key lookup + policy resolution with 1M keys in the snapshot; snapshot build time for
//! 100k and 1M keys. Run: `cargo bench --bench snapshot`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::time::SystemTime;
use tollgate::config::{parse_config, Config, KeyDef};
use tollgate::snapshot::{Loopback, Snapshot};

const BASE: &str = r#"
[server]
listen = ["127.0.0.1:8080"]

[[providers]]
id = "oa"
api = "openai"
base_url = "http://127.0.0.1:1"

[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "oa" }]

[[models]]
name = "gpt-4o"
targets = [{ provider = "oa" }]

[[orgs]]
id = "acme"
rpm = 100000

[[groups]]
id = "g"
org = "acme"
models = ["gpt-4o*"]
aliases = { fast = "gpt-4o-mini" }
max_tokens = 4096

[[keys]]
id = "k0"
group = "g"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn key_string(i: usize) -> String {
    format!("tg-bench{i:040}")
}

fn config_with_keys(n: usize) -> Config {
    let mut cfg = parse_config(BASE, Path::new("bench.toml")).expect("config");
    let proto = cfg.keys[0].clone();
    cfg.keys = (0..n)
        .map(|i| KeyDef {
            id: format!("k{i}").into(),
            digest: tollgate::auth::digest(key_string(i).as_bytes()),
            ..proto.clone()
        })
        .collect();
    cfg
}

fn lookup(c: &mut Criterion) {
    let cfg = config_with_keys(1_000_000);
    let snap = Snapshot::build(&cfg, &[], 1, &Loopback, &Default::default()).expect("snapshot");
    let mut req =
        pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
    req.insert_header("authorization", format!("Bearer {}", key_string(777_777)))
        .expect("hdr");
    let ip = Some("127.0.0.1".parse().expect("ip"));
    c.bench_function("auth + policy, 1M keys", |b| {
        b.iter(|| {
            let key = tollgate::auth::authenticate(&snap, black_box(&req)).expect("key");
            tollgate::policy::check_state(&key, SystemTime::now()).expect("state");
            tollgate::policy::check_ip(&key, ip).expect("ip");
            let m = tollgate::policy::resolve_model(
                &snap,
                &key,
                Some("fast"),
                tollgate::request::Route::ChatCompletions.serves(),
                ip,
            )
            .expect("model");
            tollgate::policy::check_max_tokens(&key, Some(1000)).expect("cap");
            black_box(m);
        })
    });
    let mut bad =
        pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
    bad.insert_header(
        "authorization",
        "Bearer tg-unknownunknownunknownunknownunknown00000",
    )
    .expect("hdr");
    c.bench_function("auth, unknown key, 1M keys", |b| {
        b.iter(|| black_box(tollgate::auth::authenticate(&snap, black_box(&bad)).is_err()))
    });
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot build");
    g.sample_size(10);
    for n in [100_000usize, 1_000_000] {
        let cfg = config_with_keys(n);
        g.bench_function(format!("{n} keys"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    Snapshot::build(&cfg, &[], 1, &Loopback, &Default::default()).expect("snapshot")
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
