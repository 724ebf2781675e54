//! Spend queries over a year of usage: 1,000 keys × 10 models in one group, hourly buckets
//! for the 8,760 hours up to now. Each key is active in a pseudo-random ~10 % of hours
//! (`TOLLGATE_BENCH_ACTIVE=<percent>`, 100 for every hour) and then uses all 10 models:
//! ~8.76M hourly rows at 10 %. The rows are written straight into the `usage` tree, as a
//! store from before rollups has them; opening the ledger builds the rollups
//! (the start-up migration, timed). Then by-key and the timeline (hour and day grain) over
//! the current month (the routes' default range) and over the full year, summed the way
//! `control::spend` does.
//!
//! Also: one flush with all 10,000 series dirty (the write side of the rollups).
//!
//! Run: `cargo bench --bench spend`.

#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::admission::budget::period_start;
use tollgate::policy::config::BudgetPeriod;
use tollgate::storage::ledger::{Dim, Ledger, Level, UsageKey, UsageTotals};
use tollgate::storage::Store;

const HOUR_MS: u64 = 3_600_000;
const KEYS: usize = 1_000;
const MODELS: usize = 10;
const HOURS: u64 = 8_760;
const GROUP: &str = "grp_bench";

fn active(key: usize, hour: u64, percent: u64) -> bool {
    // splitmix64 of (key, hour): deterministic, evenly spread.
    let mut z = (key as u64) << 32 ^ hour;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z % 100 < percent
}

fn build(dir: &std::path::Path, now_h: u64, percent: u64) -> Ledger {
    let store = Store::open(dir, Duration::ZERO).unwrap();
    let keys: Vec<Arc<str>> = (0..KEYS).map(|i| format!("key_{i:04}").into()).collect();
    let models: Vec<Arc<str>> = (0..MODELS).map(|i| format!("model-{i}").into()).collect();
    let group: Arc<str> = GROUP.into();
    let started = Instant::now();
    let mut rows = 0u64;
    for hour in now_h + 1 - HOURS..=now_h {
        let mut batch = Vec::new();
        for (ki, key) in keys.iter().enumerate() {
            if !active(ki, hour, percent) {
                continue;
            }
            for (mi, model) in models.iter().enumerate() {
                let k = UsageKey {
                    hour,
                    group: group.clone(),
                    key: key.clone(),
                    model: model.clone(),
                };
                let n = 1 + (hour + ki as u64 + mi as u64) % 7;
                let t = UsageTotals {
                    requests: n,
                    input_tokens: n * 900,
                    output_tokens: n * 250,
                    cost_micros: n * 1_234 + mi as u64,
                    cached_input_tokens: n * 100,
                    ..UsageTotals::default()
                };
                batch.push((k, t));
                rows += 1;
            }
        }
        store.write_usage_without_rollups(&batch).unwrap();
    }
    store.flush().unwrap();
    eprintln!(
        "spend bench: wrote {rows} hourly rows ({KEYS} keys x {MODELS} models, {percent} % of {HOURS} hours) in {:.1?}",
        started.elapsed()
    );
    let started = Instant::now();
    let ledger = Ledger::new(&store);
    eprintln!(
        "spend bench: start-up migration (rollups built from the hourly rows) took {:.1?}; rollup rows: {}",
        started.elapsed(),
        store.rollup_rows()
    );
    ledger
}

/// `GET /v1/spend/groups/{id}/by-key`'s work: per-key sums, ranked by cost.
fn by_key(l: &Ledger, from: u64, to: u64) -> Vec<(String, UsageTotals)> {
    let mut sums: HashMap<String, UsageTotals> = HashMap::new();
    l.rollup_scan(
        Dim::Key,
        GROUP,
        from,
        to,
        Level::Month,
        &mut |_, label, t| match sums.get_mut(label) {
            Some(s) => s.add(t),
            None => sums.entry(label.to_string()).or_default().add(t),
        },
    );
    let mut v: Vec<_> = sums.into_iter().collect();
    v.sort_by(|a, b| b.1.cost_micros.cmp(&a.1.cost_micros).then(a.0.cmp(&b.0)));
    v
}

/// `GET /v1/spend/groups/{id}/timeline`'s work: every bucket, empty ones too.
fn timeline(l: &Ledger, from: u64, to: u64, step: u64) -> BTreeMap<u64, UsageTotals> {
    let (from, to) = (from / step * step, to.div_ceil(step) * step);
    let mut buckets: BTreeMap<u64, UsageTotals> = (from..to)
        .step_by(step as usize)
        .map(|h| (h, UsageTotals::default()))
        .collect();
    let max = if step == 1 { Level::Hour } else { Level::Day };
    l.rollup_scan(Dim::Total, GROUP, from, to, max, &mut |h, _, t| {
        buckets.entry(h / step * step).or_default().add(t)
    });
    buckets
}

fn spend(c: &mut Criterion) {
    let percent = std::env::var("TOLLGATE_BENCH_ACTIVE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let now_h = now_ms / HOUR_MS;
    let dir = tempfile::tempdir().unwrap();
    let ledger = build(dir.path(), now_h, percent);
    // The routes' range: hours touched by [from, now].
    let to = now_h + 1;
    let month = period_start(BudgetPeriod::Monthly, now_ms) / HOUR_MS;
    let year = now_h + 1 - HOURS;

    // Exactness at bench scale: rollups against summing the hourly rows (month range).
    let started = Instant::now();
    let mut brute: HashMap<String, UsageTotals> = HashMap::new();
    for (k, t) in ledger.usage_rows(month, to) {
        brute.entry(k.key.to_string()).or_default().add(&t);
    }
    let brute_took = started.elapsed();
    let fast: HashMap<String, UsageTotals> = by_key(&ledger, month, to).into_iter().collect();
    assert_eq!(fast, brute, "rollups disagree with the hourly rows");
    eprintln!(
        "spend bench: by-key over the month by summing hourly rows (before rollups): {brute_took:.1?}"
    );

    let mut g = c.benchmark_group("spend");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (name, from) in [("month", month), ("year", year)] {
        g.bench_function(format!("by_key/{name}"), |b| {
            b.iter(|| black_box(by_key(&ledger, from, to)))
        });
        g.bench_function(format!("timeline_hour/{name}"), |b| {
            b.iter(|| black_box(timeline(&ledger, from, to, 1)))
        });
        g.bench_function(format!("timeline_day/{name}"), |b| {
            b.iter(|| black_box(timeline(&ledger, from, to, 24)))
        });
    }
    g.finish();
}

/// A flush with every one of the 10,000 series dirty (each bucket written with the rollup
/// rows it counts in, in transactions of 512 buckets), against a store holding a day.
fn flush(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), Duration::ZERO).unwrap());
    let adm = tollgate::admission::Admission::new(Arc::new(tollgate::clock::SystemClock), None, 1);
    let now_h = adm.now_ms() / HOUR_MS;
    let keys: Vec<Arc<str>> = (0..KEYS).map(|i| format!("key_{i:04}").into()).collect();
    let models: Vec<Arc<str>> = (0..MODELS).map(|i| format!("model-{i}").into()).collect();
    let group: Arc<str> = GROUP.into();
    let record_all = |hour: u64| {
        for key in &keys {
            for model in &models {
                ledger.record(
                    UsageKey {
                        hour,
                        group: group.clone(),
                        key: key.clone(),
                        model: model.clone(),
                    },
                    UsageTotals {
                        requests: 1,
                        input_tokens: 900,
                        output_tokens: 250,
                        cost_micros: 1_234,
                        cached_input_tokens: 100,
                        ..UsageTotals::default()
                    },
                );
            }
        }
    };
    for h in now_h - 23..now_h {
        record_all(h);
        ledger.flush(&adm).unwrap();
    }
    let mut g = c.benchmark_group("spend");
    g.sample_size(10);
    g.bench_function("flush_10k_dirty_buckets", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                record_all(now_h);
                let started = Instant::now();
                ledger.flush(&adm).unwrap();
                took += started.elapsed();
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, flush, spend);
criterion_main!(benches);
