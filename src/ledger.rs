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

use crate::admission::{Admission, BudgetEvent, Layer, ScopeKey, SpendStore};
use crate::config::BudgetPeriod;
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

pub struct Ledger {
    db: sled::Db,
    spend: sled::Tree,
    usage: sled::Tree,
    audit: sled::Tree,
    usage_mem: Mutex<HashMap<UsageKey, (UsageTotals, bool)>>,
    audit_seq: AtomicU64,
}

impl Ledger {
    /// Opens (or creates) the store. sled holds an exclusive lock on the directory: while
    /// another process (an instance being upgraded) still has it, retry for `wait`.
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Ledger> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", dir.display()))?;
        let deadline = std::time::Instant::now() + wait;
        let db = loop {
            match sled::Config::new()
                .path(dir.join("ledger"))
                .flush_every_ms(None)
                .open()
            {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    log::warn!("data_dir {} busy ({e}); retrying", dir.display());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => anyhow::bail!("cannot open store in {}: {e}", dir.display()),
            }
        };
        Ok(Ledger {
            spend: db.open_tree("spend")?,
            usage: db.open_tree("usage")?,
            audit: db.open_tree("audit")?,
            db,
            usage_mem: Mutex::new(HashMap::new()),
            audit_seq: AtomicU64::new(0),
        })
    }

    /// Adds one request's usage to its hourly bucket (in memory; flushed later).
    pub fn record(&self, key: UsageKey, delta: UsageTotals) {
        let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
        let entry = mem.entry(key).or_insert_with_key(|k| {
            // Continue from what is already stored for this bucket (after a restart).
            let stored = self
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

    /// Writes dirty spend and usage, and budget events, then syncs to disk.
    pub fn flush(&self, admission: &Admission) -> anyhow::Result<()> {
        for (scope, kind, period, spent) in admission.take_dirty() {
            self.spend
                .insert(spend_key(&scope, kind, period), &spent.to_be_bytes())?;
        }
        let now_hour = admission.now_ms() / 3_600_000;
        {
            let mut mem = self.usage_mem.lock().unwrap_or_else(|p| p.into_inner());
            for (k, (totals, dirty)) in mem.iter_mut() {
                if *dirty {
                    self.usage.insert(k.to_bytes(), &totals.to_bytes())?;
                    *dirty = false;
                }
            }
            // Buckets of past hours are complete once flushed.
            mem.retain(|k, (_, dirty)| *dirty || k.hour + 1 >= now_hour);
        }
        for e in admission.take_events() {
            self.audit_budget_event(&e, admission.now_ms())?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn audit_budget_event(&self, e: &BudgetEvent, now_ms: u64) -> anyhow::Result<()> {
        log::warn!(
            "{}: {} {} spent ${} of ${} (threshold {})",
            e.event,
            e.scope.layer.as_str(),
            e.scope.id,
            crate::admission::micros_to_usd(e.spent_micros),
            crate::admission::micros_to_usd(e.limit_micros),
            e.threshold
        );
        let v = serde_json::json!({
            "at_ms": now_ms,
            "event": e.event,
            "scope": e.scope.layer.as_str(),
            "id": &*e.scope.id,
            "spent_usd": e.spent_micros as f64 / 1e6,
            "limit_usd": e.limit_micros as f64 / 1e6,
            "threshold": e.threshold,
        });
        self.append_audit(now_ms, &v)
    }

    pub fn append_audit(&self, now_ms: u64, v: &serde_json::Value) -> anyhow::Result<()> {
        let mut k = now_ms.to_be_bytes().to_vec();
        k.extend_from_slice(&self.audit_seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        self.audit.insert(k, serde_json::to_vec(v)?)?;
        Ok(())
    }

    /// Audit events, oldest first.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.audit
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Stored usage buckets with `from_hour <= hour < to_hour` (flushed data only).
    pub fn usage_between(&self, from_hour: u64, to_hour: u64) -> Vec<(UsageKey, UsageTotals)> {
        self.usage
            .range(from_hour.to_be_bytes()..to_hour.to_be_bytes())
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| Some((UsageKey::from_bytes(&k)?, UsageTotals::from_bytes(&v))))
            .collect()
    }

    /// Settled spend of a scope in a period, as stored.
    pub fn stored_spend(&self, scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> u64 {
        self.spend
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
