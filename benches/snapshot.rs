//! Key lookup + policy resolution: file keys only, and 10k file keys beside 1M API keys
//! in the directory; snapshot build time for 100k and 1M keys. Run: `cargo bench --bench snapshot`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tollgate::policy::config::{parse_config, Config, KeyDef, KeyState};
use tollgate::policy::snapshot::{Loopback, Snapshot};
use tollgate::proxy::directory::{ApiKey, ApiKeyParts, Directory};

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
            digest: tollgate::proxy::auth::digest(key_string(i).as_bytes()),
            ..proto.clone()
        })
        .collect();
    cfg
}

fn api_key(i: usize) -> Arc<ApiKey> {
    Arc::new(ApiKey::new(
        ApiKeyParts {
            id: format!("key_api{i}").into(),
            group: "g".into(),
            digest: tollgate::proxy::auth::digest(api_key_string(i).as_bytes()),
            previous: None,
            state: KeyState::Active,
            expires_at: None,
            limits: Default::default(),
            models: None,
            allowed_cidrs: None,
            owner: None,
            created_at: 0,
            secret_at: 0,
            rotation_s: None,
            guardrails: None,
            client_cert: None,
            req: None,
        },
        Default::default(),
    ))
}

fn api_key_string(i: usize) -> String {
    format!("tg-api{i:042}")
}

fn request(key: &str) -> pingora_http::RequestHeader {
    let mut req =
        pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
    req.insert_header("authorization", format!("Bearer {key}"))
        .expect("hdr");
    req
}

/// What the data plane does per request up to admission: auth, state, CIDRs, model gating.
fn auth_and_policy(snap: &Snapshot, dir: &Directory, req: &pingora_http::RequestHeader) {
    let ip = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let key =
        tollgate::proxy::auth::authenticate(snap, dir, black_box(req), 1_700_000_000).expect("key");
    let state = dir.group_state(&key.group);
    tollgate::proxy::checks::check_state(&key, state, SystemTime::now()).expect("state");
    tollgate::proxy::checks::check_ip(&key, ip).expect("ip");
    let m = tollgate::proxy::checks::resolve_model(
        snap,
        &key,
        Some("fast"),
        tollgate::llm::body::Endpoint::ChatCompletions.serves(),
        ip,
        state,
    )
    .expect("model");
    tollgate::proxy::checks::check_max_tokens(&key, Some(1000)).expect("cap");
    black_box(m);
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth + policy");
    // File keys only (the data plane before the control plane existed).
    let cfg = config_with_keys(1_000_000);
    let snap = Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Default::default(),
    )
    .expect("snapshot");
    let empty = Directory::default();
    let req = request(&key_string(777_777));
    g.bench_function("file key, 1M file keys", |b| {
        b.iter(|| auth_and_policy(&snap, &empty, &req))
    });
    drop(snap);
    let cfg = config_with_keys(10_000);
    let snap = Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Default::default(),
    )
    .expect("snapshot");
    let req = request(&key_string(7_777));
    g.bench_function("file key, 10k file keys", |b| {
        b.iter(|| auth_and_policy(&snap, &empty, &req))
    });
    // 10k file keys + 1M API keys in the directory.
    let dir = Directory::default();
    for i in 0..1_000_000 {
        dir.put(api_key(i), None);
    }
    g.bench_function("file key, 10k file + 1M API keys", |b| {
        b.iter(|| auth_and_policy(&snap, &dir, &req))
    });
    let api_req = request(&api_key_string(777_777));
    g.bench_function("API key, 10k file + 1M API keys", |b| {
        b.iter(|| auth_and_policy(&snap, &dir, &api_req))
    });
    let bad = request("tg-unknownunknownunknownunknownunknown00000");
    g.bench_function("unknown key, 10k file + 1M API keys", |b| {
        b.iter(|| {
            black_box(
                tollgate::proxy::auth::authenticate(&snap, &dir, black_box(&bad), 1_700_000_000)
                    .is_err(),
            )
        })
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot build");
    g.sample_size(10);
    for n in [100_000usize, 1_000_000] {
        let cfg = config_with_keys(n);
        g.bench_function(format!("{n} keys"), |b| {
            b.iter_batched(
                || cfg.clone(),
                |cfg| {
                    Snapshot::build(
                        cfg,
                        &Default::default(),
                        None,
                        1,
                        &Loopback,
                        &Default::default(),
                    )
                    .expect("snapshot")
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
