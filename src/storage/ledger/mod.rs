//! Step 7: spend and usage, in memory and flushed to the store at least every second and
//! on shutdown.
//!
//! Values are written as absolute totals (never increments), so replaying a flush after a
//! crash cannot double-count; a `kill -9` loses at most what was settled since the last
//! flush.
//!
//! What is kept: settled spend per budget period, each key's and group's spend totals,
//! hourly usage buckets per (group, key, model), and those buckets summed per key, model,
//! group and key-in-group at hour, day and month grain (see [`rollup`]), written with the
//! hourly rows, all or nothing. The encoding is [`tables`]'s, behind [`LedgerStore`].

pub(crate) mod rollup;
pub(crate) mod served;
pub(crate) mod tables;
pub use rollup::{Dim, Level};
pub use served::{ServedKey, ServedTotals};
pub(crate) use tables::LedgerStore;

use crate::admission::{Admission, Layer, ScopeKey, SpendStore};
use crate::digest::FastHash;
use crate::policy::config::BudgetPeriod;
use crate::storage::Store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tables::RollupRow;

/// Usage of one (hour, group, key, model) bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
    /// The part of `input_tokens` the provider served from its prompt cache (reported
    /// apart; priced at `cache_read_usd_per_mtok`).
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to the provider's prompt cache (Anthropic;
    /// priced at `cache_write_usd_per_mtok`).
    pub cache_write_tokens: u64,
    /// The part of `output_tokens` the model spent reasoning (priced as output).
    pub reasoning_tokens: u64,
}

impl UsageTotals {
    pub fn add(&mut self, o: &UsageTotals) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_micros += o.cost_micros;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub hour: u64,
    pub group: Arc<str>,
    pub key: Arc<str>,
    pub model: Arc<str>,
}

/// Spend of one key or group: all time, and the current day, week and month (each as
/// `(period id, micro-dollars)`, see [`crate::admission::budget::period_id`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpendTotals {
    pub(crate) all_time: u64,
    pub(crate) periods: [(u64, u64); 3],
}

const TOTAL_PERIODS: [BudgetPeriod; 3] = [
    BudgetPeriod::Daily,
    BudgetPeriod::Weekly,
    BudgetPeriod::Monthly,
];

impl SpendTotals {
    fn add(&mut self, micros: u64, now_ms: u64) {
        self.all_time += micros;
        for (slot, kind) in self.periods.iter_mut().zip(TOTAL_PERIODS) {
            let id = crate::admission::budget::period_id(kind, now_ms);
            if slot.0 != id {
                *slot = (id, 0);
            }
            slot.1 += micros;
        }
    }

    /// Spend in the current `period` (all time for `never`).
    pub(crate) fn current(&self, period: BudgetPeriod, now_ms: u64) -> u64 {
        let Some(i) = TOTAL_PERIODS.iter().position(|p| *p == period) else {
            return self.all_time;
        };
        let (id, micros) = self.periods[i];
        if id == crate::admission::budget::period_id(period, now_ms) {
            micros
        } else {
            0
        }
    }
}

/// In-memory totals: value, dirty (not yet flushed), touched since the last flush.
type TotalsMem = HashMap<(Layer, Arc<str>), (SpendTotals, bool, bool), FastHash>;

/// An hourly bucket in memory: its whole total, what the store holds for it (and the
/// rollups include), and whether `total` still has to be written.
#[derive(Debug, Clone, Copy, Default)]
struct MemBucket {
    total: UsageTotals,
    flushed: UsageTotals,
    dirty: bool,
}

/// Hourly buckets per flush transaction.
const FLUSH_CHUNK: usize = 512;

pub struct Ledger {
    store: Arc<dyn LedgerStore>,
    usage_mem: Mutex<HashMap<UsageKey, MemBucket, FastHash>>,
    totals_mem: Mutex<TotalsMem>,
    /// Held (write) while a flush moves hourly rows and rollups, and the `flushed` totals in
    /// memory with them; held (read) by a query while it reads rollups and memory, so it sees
    /// both at the same point.
    gate: RwLock<()>,
    /// The rollups cover every hourly row (built or migrated); else queries sum hourly rows.
    rollups_ready: AtomicBool,
    /// Tokens per day × provider × upstream model × org, for reconciliation.
    served: served::Served,
}

impl Ledger {
    /// A ledger on `store`. A store whose rollups are missing (written by a version without
    /// them, or a build cut short) gets them built here, once, from its hourly rows — about
    /// a second per few million rows; should that fail, spend queries sum hourly rows
    /// instead (slower, same answers) and the next start tries again.
    pub fn new(store: &Store) -> Ledger {
        Ledger::on(store.ledger(), store.served())
    }

    pub(crate) fn on(store: Arc<dyn LedgerStore>, served: Arc<dyn served::ServedStore>) -> Ledger {
        let ledger = Ledger {
            store,
            served: served::Served::new(served),
            usage_mem: Mutex::new(HashMap::default()),
            totals_mem: Mutex::new(HashMap::default()),
            gate: RwLock::new(()),
            rollups_ready: AtomicBool::new(false),
        };
        match ledger.ensure_rollups() {
            Ok(()) => ledger.rollups_ready.store(true, Ordering::Release),
            Err(e) => log::error!("usage rollups: {e}; spend queries will read hourly rows"),
        }
        ledger
    }

    /// Builds the rollups from the hourly rows unless the store says they are complete.
    fn ensure_rollups(&self) -> anyhow::Result<()> {
        if self.store.rollups_complete()? {
            return Ok(());
        }
        // Measures the build, not a time of day: `Instant`, not the clock.
        let started = std::time::Instant::now();
        let rows = self.rebuild_rollups()?;
        self.store.set_rollups_complete(true)?;
        self.store.commit()?;
        log::info!(
            "usage rollups built from {rows} hourly rows in {:.1?}",
            started.elapsed()
        );
        Ok(())
    }

    /// Clears the rollups and sums every hourly row into them again (absolute totals, so a
    /// build cut short and restarted cannot double count). Returns the rows read.
    pub(crate) fn rebuild_rollups(&self) -> anyhow::Result<u64> {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let store = &self.store;
        store.set_rollups_complete(false)?;
        store.commit()?;
        store.clear_rollups()?;
        // Rows come in hour order: a level's pending sums are complete, and written, once
        // the period of the row being read is past theirs.
        let mut pending: [HashMap<RollupRow, UsageTotals>; 3] = Default::default();
        let mut current = [u64::MAX; 3];
        let write = |m: &mut HashMap<RollupRow, UsageTotals>| -> anyhow::Result<()> {
            let rows: Vec<_> = m.drain().collect();
            store.put_rollups(&rows)
        };
        let n = store.scan_usage(&mut |key, t| {
            for (i, level) in Level::ALL.into_iter().enumerate() {
                let start = level.start(key.hour);
                if current[i] != start {
                    write(&mut pending[i])?;
                    current[i] = start;
                }
                for dim in Dim::ALL {
                    let (scope, label) = dim.of(&key);
                    pending[i]
                        .entry(RollupRow {
                            dim,
                            scope: scope.to_string(),
                            level,
                            start,
                            label: label.to_string(),
                        })
                        .or_default()
                        .add(&t);
                }
            }
            Ok(())
        })?;
        for m in pending.iter_mut() {
            write(m)?;
        }
        Ok(n)
    }

    /// Opens the store under `dir` and a ledger on it (tests, tools).
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Ledger> {
        Ok(Ledger::new(&Store::open(dir, wait)?))
    }

    fn stored_totals(&self, layer: Layer, id: &str) -> SpendTotals {
        self.store
            .totals(layer, id)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Spend of a key or group, everything settled so far (flushed or not).
    pub(crate) fn totals(&self, layer: Layer, id: &str) -> SpendTotals {
        let mem = self.totals_mem.lock().unwrap_or_else(|p| p.into_inner());
        match mem.get(&(layer, Arc::from(id))) {
            Some((t, _, _)) => *t,
            None => {
                drop(mem);
                self.stored_totals(layer, id)
            }
        }
    }

    fn add_totals(&self, layer: Layer, id: &Arc<str>, micros: u64, now_ms: u64) {
        let mut mem = self.totals_mem.lock().unwrap_or_else(|p| p.into_inner());
        let entry = mem
            .entry((layer, id.clone()))
            .or_insert_with(|| (self.stored_totals(layer, id), false, false));
        entry.0.add(micros, now_ms);
        entry.1 = true;
        entry.2 = true;
    }

    /// Adds one request's usage to its hourly bucket and to its key's and group's totals
    /// (in memory; flushed later).
    pub fn record(&self, key: UsageKey, delta: UsageTotals) {
        let now_ms = key.hour * 3_600_000 + 1;
        self.add_totals(Layer::Key, &key.key, delta.cost_micros, now_ms);
        self.add_totals(Layer::Group, &key.group, delta.cost_micros, now_ms);
        let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        let entry = mem.entry(key).or_insert_with_key(|k| {
            // Continue from what is already stored for this bucket (after a restart).
            let stored = self.store.usage(k).ok().flatten().unwrap_or_default();
            MemBucket {
                total: stored,
                flushed: stored,
                dirty: false,
            }
        });
        entry.total.add(&delta);
        entry.dirty = true;
    }

    /// Writes dirty spend and usage, then syncs to disk.
    pub fn flush(&self, admission: &Admission) -> anyhow::Result<()> {
        self.store.put_spend(&admission.take_dirty())?;
        let now_hour = admission.now_ms() / 3_600_000;
        let dirty: Vec<(UsageKey, UsageTotals)> = {
            let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
            mem.iter_mut()
                .filter(|(_, b)| b.dirty)
                .map(|(k, b)| {
                    b.dirty = false;
                    (k.clone(), b.total)
                })
                .collect()
        };
        for (i, chunk) in dirty.chunks(FLUSH_CHUNK).enumerate() {
            let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let written = self.store.put_usage(chunk);
            let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
            match written {
                Ok(()) => {
                    for (k, t) in chunk {
                        if let Some(b) = mem.get_mut(k) {
                            b.flushed = *t;
                        }
                    }
                }
                Err(_) => {
                    // This chunk and the ones after it stay dirty for the next flush.
                    for (k, _) in &dirty[i * FLUSH_CHUNK..] {
                        if let Some(b) = mem.get_mut(k) {
                            b.dirty = true;
                        }
                    }
                }
            }
            written?;
        }
        {
            let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
            // Buckets of past hours are complete once flushed.
            mem.retain(|k, b| b.dirty || k.hour + 1 >= now_hour);
        }
        {
            let mut mem = self.totals_mem.lock().unwrap_or_else(|p| p.into_inner());
            let dirty: Vec<(Layer, Arc<str>, SpendTotals)> = mem
                .iter()
                .filter(|(_, (_, dirty, _))| *dirty)
                .map(|((layer, id), (t, _, _))| (*layer, id.clone(), *t))
                .collect();
            self.store.put_totals(&dirty)?;
            for (_, dirty, _) in mem.values_mut() {
                *dirty = false;
            }
            mem.retain(|_, (_, _, touched)| std::mem::take(touched));
        }
        self.served.flush(now_hour / 24)?;
        self.store.commit()?;
        Ok(())
    }

    /// Adds one request's tokens to its day × provider × upstream model × org row (in
    /// memory; flushed with the rest).
    pub fn record_served(&self, key: ServedKey, delta: ServedTotals) {
        self.served.record(key, &delta);
    }

    /// Served rows with `from_day <= day < to_day`, flushed or not.
    pub fn served_between(&self, from_day: u64, to_day: u64) -> Vec<(ServedKey, ServedTotals)> {
        self.served.between(from_day, to_day)
    }

    /// Stored usage buckets with `from_hour <= hour < to_hour` (flushed data only).
    pub fn usage_between(&self, from_hour: u64, to_hour: u64) -> Vec<(UsageKey, UsageTotals)> {
        self.store
            .usage_between(from_hour, to_hour)
            .unwrap_or_else(|e| {
                log::error!("ledger: usage: {e}");
                vec![]
            })
    }

    /// Usage buckets with `from_hour <= hour < to_hour`: everything settled so far, flushed
    /// or not (a bucket still in memory holds its whole total and replaces the stored one).
    pub fn usage_rows(&self, from_hour: u64, to_hour: u64) -> Vec<(UsageKey, UsageTotals)> {
        let mut rows: HashMap<UsageKey, UsageTotals> =
            self.usage_between(from_hour, to_hour).into_iter().collect();
        let mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        for (k, b) in mem.iter() {
            if (from_hour..to_hour).contains(&k.hour) {
                rows.insert(k.clone(), b.total);
            }
        }
        rows.into_iter().collect()
    }

    /// Usage in `[from_hour, to_hour)` summed along `dim` within `scope` (a group, or a key
    /// for [`Dim::KeyGroups`]): `visit(start hour, label, totals)` once per row read, each
    /// row covering a whole hour, day or month (no coarser than `max`) inside the range, so
    /// the visits add up to the sum of the hourly buckets. Everything settled so far, flushed
    /// or not, like [`Ledger::usage_rows`].
    pub fn rollup_scan(
        &self,
        dim: Dim,
        scope: &str,
        from_hour: u64,
        to_hour: u64,
        max: Level,
        visit: &mut dyn FnMut(u64, &str, &UsageTotals),
    ) {
        if !self.rollups_ready.load(Ordering::Acquire) {
            for (k, t) in self.usage_rows(from_hour, to_hour) {
                let (s, label) = dim.of(&k);
                if s == scope {
                    visit(k.hour, label, &t);
                }
            }
            return;
        }
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        for run in rollup::cover(from_hour, to_hour, max) {
            if let Err(e) = self
                .store
                .scan_rollups(dim, scope, run.level, run.from, run.to, visit)
            {
                log::error!("ledger: rollups: {e}");
            }
        }
        // What memory holds beyond what the rollups include.
        let mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        for (k, b) in mem.iter() {
            if !(from_hour..to_hour).contains(&k.hour) || b.total == b.flushed {
                continue;
            }
            let (s, label) = dim.of(k);
            if s == scope {
                visit(
                    k.hour,
                    label,
                    &rollup::moved(UsageTotals::default(), &b.total, &b.flushed),
                );
            }
        }
    }

    /// Every group with usage, in id order (a skip scan over the rollups: one seek a group).
    pub(crate) fn usage_groups(&self) -> Vec<String> {
        if !self.rollups_ready.load(Ordering::Acquire) {
            let mut all: Vec<String> = self
                .usage_rows(0, u64::MAX)
                .into_iter()
                .map(|(k, _)| k.group.to_string())
                .collect();
            all.sort();
            all.dedup();
            return all;
        }
        let mut out = self.store.rollup_scopes(Dim::Total).unwrap_or_else(|e| {
            log::error!("ledger: rollups: {e}");
            vec![]
        });
        // Groups so new that all their usage is still in memory.
        let mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(mem.keys().map(|k| k.group.to_string()));
        drop(mem);
        out.sort();
        out.dedup();
        out
    }

    /// Settled spend of a scope in a period, as stored.
    pub(crate) fn stored_spend(&self, scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> u64 {
        self.store.spend(scope, kind, period).unwrap_or(0)
    }
}

impl SpendStore for Ledger {
    fn load_spend(&self, scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> u64 {
        self.stored_spend(scope, kind, period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{AdmitRequest, LayerLimits, Usage};
    use crate::clock::ManualClock;
    use crate::policy::config::{Budget, Limits};

    #[test]
    fn spend_and_usage_survive_a_reopen_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let limits = Limits {
            budget: Some(Budget {
                limit_micros: 1_000_000,
                period: BudgetPeriod::Monthly,
                soft_micros: None,
            }),
            ..Default::default()
        };
        let none = Limits::default();
        let scope = |l, id: &str| ScopeKey {
            layer: l,
            id: id.into(),
        };
        let run = |ledger: Arc<Ledger>| {
            let adm = Arc::new(Admission::new(clock.clone(), Some(ledger.clone()), 1));
            let req = AdmitRequest {
                layers: [
                    LayerLimits {
                        scope: scope(Layer::Org, "o"),
                        limits: &none,
                        alert_thresholds: &[],
                    },
                    LayerLimits {
                        scope: scope(Layer::Group, "g"),
                        limits: &limits,
                        alert_thresholds: &[],
                    },
                    LayerLimits {
                        scope: scope(Layer::Key, "k"),
                        limits: &none,
                        alert_thresholds: &[],
                    },
                ],
                extra: vec![],
                est_tokens: 10,
                worst_cost_micros: 1_000,
                clamp: None,
            };
            for _ in 0..3 {
                adm.admit(&req).unwrap().settle(Some(Usage {
                    tokens: 5,
                    cost_micros: 700,
                }));
                let key = UsageKey {
                    hour: 10,
                    group: "g".into(),
                    key: "k".into(),
                    model: "m".into(),
                };
                ledger.record(
                    key,
                    UsageTotals {
                        requests: 1,
                        input_tokens: 2,
                        output_tokens: 3,
                        cost_micros: 700,
                        cached_input_tokens: 1,
                        cache_write_tokens: 0,
                        reasoning_tokens: 0,
                    },
                );
            }
            ledger.flush(&adm).unwrap();
            ledger.flush(&adm).unwrap(); // a second flush writes the same totals again
            adm.inspect(&scope(Layer::Group, "g")).unwrap().1
        };
        let ledger = Arc::new(Ledger::open(dir.path(), Duration::ZERO).unwrap());
        assert_eq!(run(ledger.clone()), 2_100);
        drop(ledger);
        let ledger = Arc::new(Ledger::open(dir.path(), Duration::from_secs(5)).unwrap());
        assert_eq!(run(ledger.clone()), 4_200);
        let usage = ledger.usage_between(0, 100);
        assert_eq!(usage.len(), 1);
        assert_eq!(
            usage[0].1,
            UsageTotals {
                requests: 6,
                input_tokens: 12,
                output_tokens: 18,
                cost_micros: 4_200,
                cached_input_tokens: 6,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            }
        );
    }

    /// A key's spend totals roll over with the clock: a new day starts the daily figure
    /// again while the month and all time keep counting; a new month restarts the monthly
    /// one. Flushed and reopened, the same.
    #[test]
    fn spend_periods_roll_over_with_the_clock() {
        use crate::clock::Clock;
        let dir = tempfile::tempdir().unwrap();
        // 2026-01-30 12:00 UTC.
        let clock = Arc::new(ManualClock::new(1_769_774_400_000));
        let ledger = Ledger::open(dir.path(), Duration::ZERO).unwrap();
        let adm = Admission::new(clock.clone(), None, 1);
        let spend = |ledger: &Ledger, cost| {
            ledger.record(
                UsageKey {
                    hour: clock.now_ms() / 3_600_000,
                    group: "g".into(),
                    key: "k".into(),
                    model: "m".into(),
                },
                UsageTotals {
                    requests: 1,
                    cost_micros: cost,
                    ..Default::default()
                },
            );
        };
        let current = |ledger: &Ledger| {
            let t = ledger.totals(Layer::Key, "k");
            let now = clock.now_ms();
            [
                t.current(BudgetPeriod::Daily, now),
                t.current(BudgetPeriod::Monthly, now),
                t.current(BudgetPeriod::Never, now),
            ]
        };
        spend(&ledger, 100);
        assert_eq!(current(&ledger), [100, 100, 100]);
        clock.advance(24 * 3_600_000); // 2026-01-31
        assert_eq!(current(&ledger), [0, 100, 100]);
        spend(&ledger, 20);
        assert_eq!(current(&ledger), [20, 120, 120]);
        ledger.flush(&adm).unwrap();
        clock.advance(24 * 3_600_000); // 2026-02-01
        assert_eq!(current(&ledger), [0, 0, 120]);
        spend(&ledger, 3);
        ledger.flush(&adm).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(current(&ledger), [3, 3, 123]);
        clock.advance(24 * 3_600_000);
        assert_eq!(current(&ledger), [0, 3, 123]);
    }

    type Sums = std::collections::BTreeMap<(u64, String), UsageTotals>;

    /// Rollup answers, keyed by (bucket of `max`'s grain, label).
    fn by_rollup(l: &Ledger, dim: Dim, scope: &str, from: u64, to: u64, max: Level) -> Sums {
        let mut out = Sums::new();
        l.rollup_scan(dim, scope, from, to, max, &mut |h, label, t| {
            let b = if max == Level::Month { 0 } else { max.start(h) };
            out.entry((b, label.to_string())).or_default().add(t);
        });
        out.retain(|_, t| *t != UsageTotals::default());
        out
    }

    /// The same by summing hourly rows.
    fn by_hours(l: &Ledger, dim: Dim, scope: &str, from: u64, to: u64, max: Level) -> Sums {
        let mut out = Sums::new();
        for (k, t) in l.usage_rows(from, to) {
            let (s, label) = dim.of(&k);
            if s == scope {
                let b = if max == Level::Month {
                    0
                } else {
                    max.start(k.hour)
                };
                out.entry((b, label.to_string())).or_default().add(&t);
            }
        }
        out.retain(|_, t| *t != UsageTotals::default());
        out
    }

    fn check_all(
        l: &Ledger,
        ranges: &[(u64, u64)],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        for &(from, to) in ranges {
            for dim in Dim::ALL {
                let scopes: &[&str] = if dim == Dim::KeyGroups {
                    &["k0", "k1", "k2", "k3"]
                } else {
                    &["g0", "g1"]
                };
                for scope in scopes {
                    for max in Level::ALL {
                        proptest::prop_assert_eq!(
                            by_rollup(l, dim, scope, from, to, max),
                            by_hours(l, dim, scope, from, to, max),
                            "{:?} {} {}..{} {:?}",
                            dim,
                            scope,
                            from,
                            to,
                            max
                        );
                    }
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Rollup answers equal brute-force sums of the hourly rows, for random usage, flushes
        /// (replays included), ranges and grains, before and after a restart that rebuilds them.
        #[test]
        fn rollups_equal_hourly_sums(
            ops in proptest::collection::vec(
                (0u64..24 * 75, 0usize..2, 0usize..4, 0usize..3, 0u64..5_000, 0u8..4), 1..120),
            ranges in proptest::collection::vec((0u64..24 * 80, 0u64..24 * 80), 1..6),
        ) {
            // 2024-01-20 00:00 UTC: the hours cross three month boundaries.
            let base = 1_705_708_800 / 3600;
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new((base + 24 * 40) * 3_600_000));
            let ledger = Arc::new(Ledger::open(dir.path(), Duration::ZERO).unwrap());
            let adm = Admission::new(clock.clone(), Some(ledger.clone()), 1);
            for (h, g, k, m, cost, flush) in ops {
                ledger.record(
                    UsageKey {
                        hour: base + h,
                        group: format!("g{g}").into(),
                        key: format!("k{k}").into(),
                        model: format!("m{m}").into(),
                    },
                    UsageTotals { requests: 1, input_tokens: cost / 3, output_tokens: cost / 7, cost_micros: cost, cached_input_tokens: cost / 11, cache_write_tokens: cost / 13, reasoning_tokens: cost / 17 },
                );
                if flush == 0 {
                    ledger.flush(&adm).unwrap();
                }
                if flush == 1 {
                    // Replays: the same absolute totals written again move nothing.
                    let all: Vec<_> = ledger.usage_between(0, u64::MAX);
                    ledger.store.put_usage(&all).unwrap();
                }
            }
            let ranges: Vec<(u64, u64)> = ranges
                .into_iter()
                .map(|(a, b)| (base + a.min(b), base + a.max(b) + 1))
                .chain([(0, base + 24 * 100)])
                .collect();
            check_all(&ledger, &ranges)?;
            ledger.flush(&adm).unwrap();
            check_all(&ledger, &ranges)?;
            // A store from before rollups: built at start-up.
            ledger.store.set_rollups_complete(false).unwrap();
            let one = UsageTotals { requests: 1, input_tokens: 1, output_tokens: 1, cost_micros: 1, cached_input_tokens: 1, cache_write_tokens: 1, reasoning_tokens: 1 };
            let garbage = RollupRow { dim: Dim::Total, scope: "garbage".into(), level: Level::Hour, start: 0, label: String::new() };
            ledger.store.put_rollups(&[(garbage, one)]).unwrap();
            drop(adm);
            drop(ledger);
            let ledger = Ledger::open(dir.path(), Duration::from_secs(5)).unwrap();
            check_all(&ledger, &ranges)?;
            let mut left = 0;
            ledger.store.scan_rollups(Dim::Total, "garbage", Level::Hour, 0, 1, &mut |_, _, _| left += 1).unwrap();
            proptest::prop_assert_eq!(left, 0);
        }
    }
}
