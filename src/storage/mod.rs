//! The embedded store under `data_dir`: one sled database, one tree per kind of record,
//! and each tree behind the one repository that owns its key encoding. This table is the
//! whole on-disk format:
//!
//! | tree        | key                                  | value                              | owner                 |
//! |-------------|--------------------------------------|------------------------------------|-----------------------|
//! | `keys`      | key id                               | [`KeyRecord`] (JSON)               | [`control`]           |
//! | `groups`    | group id                             | [`GroupOverride`] (JSON)           | [`control`]           |
//! | `tokens`    | token id                             | [`TokenRecord`] (JSON)             | [`control`]           |
//! | `last_used` | key id                               | unix seconds (u64 be)              | [`control`]           |
//! | `notices`   | `expiring \0` key id                 | the expiry already announced (u64 be) | [`control`]        |
//! | `spend`     | `layer \0 id \0 period-kind \0 id`   | settled micro-dollars (u64 be)     | [`ledger::tables`]    |
//! | `totals`    | `layer \0 id`                        | spend all time and per period (7 × u64 be) | [`ledger::tables`] |
//! | `usage`     | `hour(be) group \0 key \0 model`     | requests, in, out, cost, cached in (5 × u64 be; older rows 4, read as 0 cached) | [`ledger::tables`] |
//! | `rollup`    | `dim scope \0 level start(be) label` | `usage` summed by key, model, group (5 × u64 be, likewise) | [`ledger::tables`] |
//! | `served`    | `day(be) provider \0 model \0 org`   | requests, in, out (3 × u64 be)     | [`ledger::served`]    |
//! | `drift`     | `day(be) provider \0 model`          | a [`DriftRecord`] (JSON)           | [`reconcile`]         |
//! | `drift_runs`| `ms(be) seq(be)`                     | a [`RunRecord`] (JSON)             | [`reconcile`]         |
//! | `audit`     | `ms(be) seq(be)`                     | event (JSON, hash-chained)         | [`audit`]             |
//! | `webhooks`  | sequence number (u64 be)             | a [`Pending`] delivery (JSON)      | [`webhooks`]          |
//! | `meta`      | `audit_anchor`                       | the audit chain's anchor (hash)    | [`audit`], via `Meta` |
//! |             | `usage_rollups`                      | `1` once the rollups cover `usage` | [`ledger::tables`], via `Meta` |
//!
//! Callers see traits named by what they need — [`ControlStore`], [`AuditStore`],
//! [`WebhookQueue`], and the ledger's `LedgerStore` — so a shared store (Redis, for
//! several gateway instances: fleet mode (planned)) can implement them next; no sled type appears in a
//! signature outside this module. Every write method takes a whole batch.

pub(crate) mod audit;
pub(crate) mod control;
pub mod ledger;
pub(crate) mod reconcile;
pub(crate) mod records;
pub(crate) mod webhooks;

pub(crate) use audit::{AuditKey, AuditStore, AuditTables};
pub(crate) use control::ControlStore;
pub(crate) use reconcile::{DriftRecord, ProviderRun, ReconcileStore, RunRecord};
pub use records::{
    GroupOverride, KeyRecord, KeySpec, KeyStatus, Pending, PreviousSecret, TokenRecord,
};
pub(crate) use webhooks::WebhookQueue;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The opened database: one repository per set of trees. Clones of a repository share the
/// database; it closes when the last one goes.
pub struct Store {
    db: sled::Db,
    control: Arc<control::ControlTables>,
    ledger: Arc<ledger::tables::LedgerTables>,
    served: Arc<ledger::served::ServedTables>,
    reconcile: Arc<reconcile::ReconcileTables>,
    /// The audit trail's trees. Public for the tamper test (tests/e2e/audit.rs), which alters a
    /// stored event through [`AuditTables::get`] / [`AuditTables::insert`].
    pub audit: AuditTables,
    webhooks: Arc<webhooks::WebhookTables>,
}

/// sled's page cache; the default (1 GiB) would dwarf everything else the gateway holds.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Store {
    /// Opens (or creates) the store. sled holds an exclusive lock on the directory: while
    /// another process (an instance being upgraded) still has it, retry for `wait`.
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", dir.display()))?;
        // A deadline for retries, not a time of day: `Instant`, not the clock.
        let deadline = std::time::Instant::now() + wait;
        let db = loop {
            match sled::Config::new()
                .path(dir.join("ledger"))
                .cache_capacity(CACHE_BYTES)
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
        let meta = Meta(db.open_tree("meta")?);
        Ok(Store {
            control: Arc::new(control::ControlTables::open(&db)?),
            ledger: Arc::new(ledger::tables::LedgerTables::open(&db, meta.clone())?),
            served: Arc::new(ledger::served::ServedTables::open(&db)?),
            reconcile: Arc::new(reconcile::ReconcileTables::open(&db)?),
            audit: AuditTables::open(&db, meta)?,
            webhooks: Arc::new(webhooks::WebhookTables::open(&db)?),
            db,
        })
    }

    /// fsync: everything written before the call survives a crash after it.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// API keys, group state, admin tokens, last use, expiry notices.
    pub fn control(&self) -> Arc<dyn ControlStore> {
        self.control.clone()
    }

    /// Spend, totals, hourly usage and its rollups.
    pub(crate) fn ledger(&self) -> Arc<dyn ledger::LedgerStore> {
        self.ledger.clone()
    }

    /// Tokens served per day × provider × upstream model × org.
    pub(crate) fn served(&self) -> Arc<dyn ledger::served::ServedStore> {
        self.served.clone()
    }

    /// Reconciliation results and runs.
    pub(crate) fn reconcile(&self) -> Arc<dyn ReconcileStore> {
        self.reconcile.clone()
    }

    /// The audit trail.
    pub(crate) fn audit_store(&self) -> Arc<dyn AuditStore> {
        Arc::new(self.audit.clone())
    }

    /// The webhook deliveries not yet made.
    pub(crate) fn webhook_queue(&self) -> Arc<dyn WebhookQueue> {
        self.webhooks.clone()
    }

    /// Writes hourly usage rows as a version without rollups did (no rollups, no marker
    /// change): the spend bench builds an old store with it, to time the migration.
    #[doc(hidden)]
    pub fn write_usage_without_rollups(
        &self,
        rows: &[(ledger::UsageKey, ledger::UsageTotals)],
    ) -> anyhow::Result<()> {
        self.ledger.put_hourly_only(rows)
    }

    /// Rows in the rollup tree (the spend bench reports it).
    #[doc(hidden)]
    pub fn rollup_rows(&self) -> usize {
        self.ledger.rollup_rows()
    }
}

/// The `meta` tree: named markers of several owners (each entry has one, see the table
/// above). Only this module and its repositories read it.
#[derive(Clone)]
pub(crate) struct Meta(sled::Tree);

impl Meta {
    fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.0.get(name.as_bytes())?.map(|v| v.to_vec()))
    }

    fn put(&self, name: &str, value: &[u8]) -> anyhow::Result<()> {
        self.0.insert(name.as_bytes(), value)?;
        Ok(())
    }

    fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.0.remove(name.as_bytes())?;
        Ok(())
    }
}

fn json<T: serde::de::DeserializeOwned>(what: &str, k: &[u8], v: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(v).map_err(|e| {
        anyhow::anyhow!(
            "corrupt {what} record {:?}: {e}",
            String::from_utf8_lossy(k)
        )
    })
}

/// A big-endian u64 value (0 when short or absent).
fn be_u64(b: &[u8]) -> Option<u64> {
    b.try_into().ok().map(u64::from_be_bytes)
}
