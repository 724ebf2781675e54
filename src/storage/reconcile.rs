//! Reconciliation results (docs/operations.md "Reconciliation"): per UTC day × provider ×
//! model what the provider billed and what the gateway counted, and the record of each
//! run, failures included.
//!
//! Trees: `drift` (key `day(be) provider \0 model`, a [`DriftRecord`] as JSON) and
//! `drift_runs` (key `ms(be) seq(be)`, a [`RunRecord`] as JSON; the newest
//! [`RUNS_KEPT`] are kept).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// One day × provider × model, as compared by the last run that covered the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DriftRecord {
    /// Days since the Unix epoch (UTC).
    pub(crate) day: u64,
    pub(crate) provider: String,
    /// The provider's model id, as its usage API reports it (dated snapshot ids are
    /// matched to the catalogue's target model they extend).
    pub(crate) model: String,
    /// `None` where the usage API reports no request count (Anthropic).
    pub(crate) provider_requests: Option<u64>,
    pub(crate) provider_input_tokens: u64,
    pub(crate) provider_output_tokens: u64,
    pub(crate) gateway_requests: u64,
    pub(crate) gateway_input_tokens: u64,
    pub(crate) gateway_output_tokens: u64,
    /// `(provider − gateway) / gateway × 100` on total tokens; `None` when the gateway
    /// counted nothing and the provider something.
    pub(crate) diff_pct: Option<f64>,
    /// The provider's `drift_alert` when the row was compared.
    pub(crate) drift_alert_pct: f64,
    /// A `spend.drift` was announced for this row (never twice).
    pub(crate) alerted: bool,
    pub(crate) checked_ms: u64,
}

/// One run of the reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) id: String,
    pub(crate) at_ms: u64,
    /// `schedule` or `api`.
    pub(crate) trigger: String,
    /// `system`, `root` or the admin token's id.
    pub(crate) actor: String,
    /// First and last day covered (inclusive).
    pub(crate) from_day: u64,
    pub(crate) to_day: u64,
    pub(crate) providers: Vec<ProviderRun>,
}

/// What a run did for one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProviderRun {
    pub(crate) provider: String,
    pub(crate) ok: bool,
    /// Why the provider's usage could not be read (never a credential).
    pub(crate) error: Option<String>,
    pub(crate) rows: u64,
    pub(crate) alerts: u64,
}

/// Runs kept in the store.
pub(crate) const RUNS_KEPT: usize = 200;

pub(crate) trait ReconcileStore: Send + Sync {
    /// One row as last stored.
    fn drift(&self, day: u64, provider: &str, model: &str) -> anyhow::Result<Option<DriftRecord>>;
    /// Replaces `provider`'s rows of every day in `days` by `rows`, all or nothing.
    fn replace_drift(
        &self,
        provider: &str,
        days: &[u64],
        rows: &[DriftRecord],
    ) -> anyhow::Result<()>;
    /// Rows with `from_day <= day < to_day`, in day, provider, model order.
    fn drift_between(&self, from_day: u64, to_day: u64) -> anyhow::Result<Vec<DriftRecord>>;
    fn push_run(&self, run: &RunRecord) -> anyhow::Result<()>;
    /// The newest `limit` runs, newest first.
    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>>;
    /// fsync.
    fn commit(&self) -> anyhow::Result<()>;
}

pub(crate) struct ReconcileTables {
    db: sled::Db,
    drift: sled::Tree,
    runs: sled::Tree,
    seq: AtomicU64,
}

impl ReconcileTables {
    pub(crate) fn open(db: &sled::Db) -> anyhow::Result<ReconcileTables> {
        Ok(ReconcileTables {
            drift: db.open_tree("drift")?,
            runs: db.open_tree("drift_runs")?,
            db: db.clone(),
            seq: AtomicU64::new(0),
        })
    }
}

fn drift_key(day: u64, provider: &str, model: &str) -> Vec<u8> {
    let mut k = day.to_be_bytes().to_vec();
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k.extend_from_slice(model.as_bytes());
    k
}

fn day_prefix(day: u64, provider: &str) -> Vec<u8> {
    let mut k = day.to_be_bytes().to_vec();
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k
}

impl ReconcileStore for ReconcileTables {
    fn drift(&self, day: u64, provider: &str, model: &str) -> anyhow::Result<Option<DriftRecord>> {
        let k = drift_key(day, provider, model);
        self.drift
            .get(&k)?
            .map(|v| super::json("drift", &k, &v))
            .transpose()
    }

    fn replace_drift(
        &self,
        provider: &str,
        days: &[u64],
        rows: &[DriftRecord],
    ) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for day in days {
            for kv in self.drift.scan_prefix(day_prefix(*day, provider)) {
                batch.remove(kv?.0);
            }
        }
        for r in rows {
            batch.insert(
                drift_key(r.day, &r.provider, &r.model),
                serde_json::to_vec(r)?,
            );
        }
        self.drift.apply_batch(batch)?;
        Ok(())
    }

    fn drift_between(&self, from_day: u64, to_day: u64) -> anyhow::Result<Vec<DriftRecord>> {
        if from_day >= to_day {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for kv in self
            .drift
            .range(from_day.to_be_bytes()..to_day.to_be_bytes())
        {
            let (k, v) = kv?;
            out.push(super::json("drift", &k, &v)?);
        }
        Ok(out)
    }

    fn push_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        let mut k = run.at_ms.to_be_bytes().to_vec();
        k.extend_from_slice(&self.seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        self.runs.insert(k, serde_json::to_vec(run)?)?;
        while self.runs.len() > RUNS_KEPT {
            match self.runs.pop_min()? {
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }

    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        let mut out = vec![];
        for kv in self.runs.iter().rev().take(limit) {
            let (k, v) = kv?;
            out.push(super::json("drift run", &k, &v)?);
        }
        Ok(out)
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u64, model: &str) -> DriftRecord {
        DriftRecord {
            day,
            provider: "oa".into(),
            model: model.into(),
            provider_requests: Some(1),
            provider_input_tokens: 10,
            provider_output_tokens: 5,
            gateway_requests: 1,
            gateway_input_tokens: 10,
            gateway_output_tokens: 5,
            diff_pct: Some(0.0),
            drift_alert_pct: 2.0,
            alerted: false,
            checked_ms: 1,
        }
    }

    #[test]
    fn a_rerun_replaces_the_days_it_covers_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = ReconcileTables::open(&db).unwrap();
        t.replace_drift("oa", &[1, 2], &[row(1, "a"), row(1, "b"), row(2, "a")])
            .unwrap();
        t.replace_drift("oa", &[1], &[row(1, "c")]).unwrap();
        let models: Vec<(u64, String)> = t
            .drift_between(0, 10)
            .unwrap()
            .into_iter()
            .map(|r| (r.day, r.model))
            .collect();
        assert_eq!(models, [(1, "c".to_string()), (2, "a".to_string())]);
        assert!(t.drift(1, "oa", "c").unwrap().is_some());
        assert!(t.drift(1, "oa", "a").unwrap().is_none());
    }
}
