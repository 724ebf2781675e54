//! Policy-file load: parse + validate a generated file of N keys (every limit type on all
//! three layers, as in `loadtest/perf.sh`), then build the snapshot from it — what
//! start-up, `tollgate -t` and a reload do. Run: `cargo bench --bench config_load`.
//! Targets (issue 11): 100k keys ≤ 1 s, 10k keys (a reload) ≤ 100 ms.
//! `TOLLGATE_BENCH_KEYS=1000000 cargo bench --bench config_load` adds a 1M-key file.

use criterion::{criterion_group, criterion_main, Criterion};
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;
use tollgate::policy::config::parse_config;
use tollgate::policy::snapshot::{Loopback, Snapshot};

const LIMITS: &str = "rpm = {r}\nrph = {r}0\nrpd = {r}00\ntpm = {t}\ntpd = {t}00\nmax_parallel = {p}\nbudget_usd = {b}\nbudget_period = \"monthly\"\n";

fn limits(r: u64, t: u64, p: u64, b: u64) -> String {
    LIMITS
        .replace("{r}", &r.to_string())
        .replace("{t}", &t.to_string())
        .replace("{p}", &p.to_string())
        .replace("{b}", &b.to_string())
}

/// A policy file of `keys` keys in 20 groups over 2 orgs.
pub fn policy_text(keys: usize) -> String {
    let mut s = String::from(
        r#"[server]
listen = ["127.0.0.1:8080"]
request_log = "off"

[[providers]]
id = "mock"
api = "openai"
base_url = "http://127.0.0.1:1"

[[models]]
name = "gpt-4o-mini"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
targets = [{ provider = "mock", model = "gpt-4o-mini", weight = 1 }, { provider = "mock", model = "gpt-4o-mini", weight = 1 }]
"#,
    );
    for o in 0..2 {
        let _ = write!(
            s,
            "\n[[orgs]]\nid = \"org{o}\"\n{}",
            limits(10_000_000, 10_000_000_000, 100_000, 10_000_000)
        );
    }
    for g in 0..20 {
        let _ = write!(
            s,
            "\n[[groups]]\nid = \"grp{g}\"\norg = \"org{}\"\nrouting = \"latency\"\nmodels = [\"gpt-*\"]\n{}",
            g % 2,
            limits(5_000_000, 5_000_000_000, 50_000, 5_000_000)
        );
    }
    let key_limits = limits(1_000_000, 1_000_000_000, 10_000, 1_000_000);
    for k in 0..keys {
        let _ = write!(
            s,
            "\n[[keys]]\nid = \"key{k}\"\nname = \"key{k}\"\ngroup = \"grp{}\"\nsha256 = \"{:064x}\"\n{key_limits}",
            k % 20,
            k as u128 * 0x9E37_79B9_7F4A_7C15_u128 + 1
        );
    }
    s
}

fn load(text: &str) -> Snapshot {
    let cfg = parse_config(text, Path::new("bench.toml")).expect("valid policy");
    Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Default::default(),
    )
    .expect("snapshot")
}

fn config_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("config_load");
    g.sample_size(10);
    let mut sizes = vec![10_000, 100_000];
    if let Some(n) = std::env::var("TOLLGATE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        sizes.push(n);
    }
    for n in sizes {
        let text = policy_text(n);
        g.bench_function(format!("parse_validate_{n}_keys"), |b| {
            b.iter(|| black_box(parse_config(black_box(&text), Path::new("bench.toml")).is_ok()))
        });
        g.bench_function(format!("parse_validate_build_{n}_keys"), |b| {
            b.iter(|| black_box(load(black_box(&text)).generation))
        });
        // What `tollgate -t` and start-up do: the file read in pieces, never whole.
        let file =
            std::env::temp_dir().join(format!("tollgate-bench-{}-{n}.toml", std::process::id()));
        std::fs::write(&file, &text).expect("write the policy file");
        g.bench_function(format!("load_file_{n}_keys"), |b| {
            b.iter(|| black_box(tollgate::policy::config::load(black_box(&file)).is_ok()))
        });
        let _ = std::fs::remove_file(&file);
    }
    g.finish();
}

criterion_group!(benches, config_load);
criterion_main!(benches);
