//! Step 7: spend and usage, in memory and flushed to sled under `data_dir` at least every
//! second and on shutdown.
//!
//! Values are written as absolute totals (never increments), so replaying a flush after a
//! crash cannot double-count; a `kill -9` loses at most what was settled since the last
//! flush.
//!
//! Trees: `spend` — `layer \0 id \0 period-kind \0 period` -> settled micro-dollars;
//! `usage` — `hour(be) group \0 key \0 model` -> requests, input, output, cost (4 × u64 be);
//! `audit` — `ms(be) seq(be)` -> JSON event.

use crate::admission::{Admission, Layer, ScopeKey, SpendStore};
use crate::config::BudgetPeriod;
use crate::store::Store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Usage of one (hour, group, key, model) bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
}

impl UsageTotals {
    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [
            self.requests,
            self.input_tokens,
            self.output_tokens,
            self.cost_micros,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8]) -> UsageTotals {
        let f = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        UsageTotals {
            requests: f(0),
            input_tokens: f(1),
            output_tokens: f(2),
            cost_micros: f(3),
        }
    }

    pub fn add(&mut self, o: &UsageTotals) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_micros += o.cost_micros;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub hour: u64,
    pub group: Arc<str>,
    pub key: Arc<str>,
    pub model: Arc<str>,
}

impl UsageKey {
    fn to_bytes(&self) -> Vec<u8> {
        let mut k =
            Vec::with_capacity(8 + self.group.len() + self.key.len() + self.model.len() + 2);
        k.extend_from_slice(&self.hour.to_be_bytes());
        k.extend_from_slice(self.group.as_bytes());
        k.push(0);
        k.extend_from_slice(self.key.as_bytes());
        k.push(0);
        k.extend_from_slice(self.model.as_bytes());
        k
    }

    fn from_bytes(b: &[u8]) -> Option<UsageKey> {
        let hour = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let mut parts = b[8..].splitn(3, |c| *c == 0);
        let s = |p: Option<&[u8]>| {
            p.and_then(|p| std::str::from_utf8(p).ok())
                .map(Arc::<str>::from)
        };
        Some(UsageKey {
            hour,
            group: s(parts.next())?,
            key: s(parts.next())?,
            model: s(parts.next())?,
        })
    }
}

fn spend_key(scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> Vec<u8> {
    let layer = match scope.layer {
        Layer::Org => "org",
        Layer::Group => "group",
        Layer::Key => "key",
    };
    let kind = match kind {
        BudgetPeriod::Daily => "daily",
        BudgetPeriod::Weekly => "weekly",
        BudgetPeriod::Monthly => "monthly",
        BudgetPeriod::Never => "never",
    };
    format!("{layer}\0{}\0{kind}\0{period}", scope.id).into_bytes()
}

/// Spend of one key or group: all time, and the current day, week and month (each as
/// `(period id, micro-dollars)`, see [`crate::admission::budget::period_id`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendTotals {
    pub all_time: u64,
    pub periods: [(u64, u64); 3],
}

const TOTAL_PERIODS: [BudgetPeriod; 3] = [
    BudgetPeriod::Daily,
    BudgetPeriod::Weekly,
    BudgetPeriod::Monthly,
];

impl SpendTotals {
    fn to_bytes(self) -> [u8; 56] {
        let mut b = [0u8; 56];
        let vals = [
            self.all_time,
            self.periods[0].0,
            self.periods[0].1,
            self.periods[1].0,
            self.periods[1].1,
            self.periods[2].0,
            self.periods[2].1,
        ];
        for (i, v) in vals.into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8]) -> SpendTotals {
        let f = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        SpendTotals {
            all_time: f(0),
            periods: [(f(1), f(2)), (f(3), f(4)), (f(5), f(6))],
        }
    }

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
    pub fn current(&self, period: BudgetPeriod, now_ms: u64) -> u64 {
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

fn totals_key(layer: Layer, id: &str) -> Vec<u8> {
    format!("{}\0{id}", layer.as_str()).into_bytes()
}

/// In-memory totals: value, dirty (not yet flushed), touched since the last flush.
type TotalsMem = HashMap<(Layer, Arc<str>), (SpendTotals, bool, bool)>;

pub struct Ledger {
    store: Arc<Store>,
    usage_mem: Mutex<HashMap<UsageKey, (UsageTotals, bool)>>,
    totals_mem: Mutex<TotalsMem>,
    audit_seq: AtomicU64,
}

impl Ledger {
    pub fn new(store: Arc<Store>) -> Ledger {
        Ledger {
            store,
            usage_mem: Mutex::new(HashMap::new()),
            totals_mem: Mutex::new(HashMap::new()),
            audit_seq: AtomicU64::new(0),
        }
    }

    /// Opens the store under `dir` and a ledger on it (tests, tools).
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Ledger> {
        Ok(Ledger::new(Arc::new(Store::open(dir, wait)?)))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn stored_totals(&self, layer: Layer, id: &str) -> SpendTotals {
        self.store
            .totals
            .get(totals_key(layer, id))
            .ok()
            .flatten()
            .map_or_else(SpendTotals::default, |v| SpendTotals::from_bytes(&v))
    }

    /// Spend of a key or group, everything settled so far (flushed or not).
    pub fn totals(&self, layer: Layer, id: &str) -> SpendTotals {
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
            let stored = self
                .store
                .usage
                .get(k.to_bytes())
                .ok()
                .flatten()
                .map_or_else(UsageTotals::default, |v| UsageTotals::from_bytes(&v));
            (stored, false)
        });
        entry.0.add(&delta);
        entry.1 = true;
    }

    /// Writes dirty spend and usage, then syncs to disk.
    pub fn flush(&self, admission: &Admission) -> anyhow::Result<()> {
        for (scope, kind, period, spent) in admission.take_dirty() {
            self.store
                .spend
                .insert(spend_key(&scope, kind, period), &spent.to_be_bytes())?;
        }
        let now_hour = admission.now_ms() / 3_600_000;
        {
            let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
            for (k, (totals, dirty)) in mem.iter_mut() {
                if *dirty {
                    self.store.usage.insert(k.to_bytes(), &totals.to_bytes())?;
                    *dirty = false;
                }
            }
            // Buckets of past hours are complete once flushed.
            mem.retain(|k, (_, dirty)| *dirty || k.hour + 1 >= now_hour);
        }
        {
            let mut mem = self.totals_mem.lock().unwrap_or_else(|p| p.into_inner());
            for ((layer, id), (t, dirty, _)) in mem.iter_mut() {
                if *dirty {
                    self.store
                        .totals
                        .insert(totals_key(*layer, id), t.to_bytes().to_vec())?;
                    *dirty = false;
                }
            }
            mem.retain(|_, (_, _, touched)| std::mem::take(touched));
        }
        self.store.flush()?;
        Ok(())
    }

    pub fn append_audit(&self, now_ms: u64, v: &serde_json::Value) -> anyhow::Result<()> {
        let mut k = now_ms.to_be_bytes().to_vec();
        k.extend_from_slice(&self.audit_seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        self.store.audit.insert(k, serde_json::to_vec(v)?)?;
        Ok(())
    }

    /// Audit events, oldest first.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.store
            .audit
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Stored usage buckets with `from_hour <= hour < to_hour` (flushed data only).
    pub fn usage_between(&self, from_hour: u64, to_hour: u64) -> Vec<(UsageKey, UsageTotals)> {
        self.store
            .usage
            .range(from_hour.to_be_bytes()..to_hour.to_be_bytes())
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| Some((UsageKey::from_bytes(&k)?, UsageTotals::from_bytes(&v))))
            .collect()
    }

    /// Usage buckets with `from_hour <= hour < to_hour`: everything settled so far, flushed
    /// or not (a bucket still in memory holds its whole total and replaces the stored one).
    pub fn usage_rows(&self, from_hour: u64, to_hour: u64) -> Vec<(UsageKey, UsageTotals)> {
        let mut rows: HashMap<UsageKey, UsageTotals> =
            self.usage_between(from_hour, to_hour).into_iter().collect();
        let mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        for (k, (t, _)) in mem.iter() {
            if (from_hour..to_hour).contains(&k.hour) {
                rows.insert(k.clone(), *t);
            }
        }
        rows.into_iter().collect()
    }

    /// Settled spend of a scope in a period, as stored.
    pub fn stored_spend(&self, scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> u64 {
        self.store
            .spend
            .get(spend_key(scope, kind, period))
            .ok()
            .flatten()
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes)
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
    use crate::config::{Budget, Limits};

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
                est_tokens: 10,
                worst_cost_micros: 1_000,
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
                cost_micros: 4_200
            }
        );
    }
}
