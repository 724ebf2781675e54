//! The embedded store under `data_dir`: one sled database, one tree per kind of record.
//!
//! | tree        | key                                  | value                              |
//! |-------------|--------------------------------------|------------------------------------|
//! | `keys`      | key id                               | [`KeyRecord`] (JSON)               |
//! | `groups`    | group id                             | [`GroupOverride`] (JSON)           |
//! | `tokens`    | token id                             | [`TokenRecord`] (JSON)             |
//! | `last_used` | key id                               | unix seconds (u64 be)              |
//! | `spend`     | `layer \0 id \0 period-kind \0 id`   | settled micro-dollars (ledger)     |
//! | `totals`    | `layer \0 id`                        | spend per period and all time      |
//! | `usage`     | `hour(be) group \0 key \0 model`     | requests, tokens, cost (ledger)    |
//! | `rollup`    | `dim scope \0 level start(be) label`  | `usage` summed by key, model, group (ledger) |
//! | `audit`     | `ms(be) seq(be)`                     | event (JSON, hash-chained)         |
//! | `meta`      | name                                 | the audit chain's anchor           |
//! | `webhooks`  | sequence number (u64 be)             | a pending webhook delivery (JSON)  |
//! | `notices`   | `expiring \0` key id                 | the expiry already announced (u64) |
//!
//! The control plane talks to it through [`ControlStore`], so a shared store (for several
//! gateway instances) can take its place; the ledger, which only ever runs against the
//! local disk, uses the trees directly.

pub mod ledger;
pub mod records;

pub use records::{GroupOverride, KeyRecord, KeySpec, KeyStatus, PreviousSecret, TokenRecord};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What the control plane (API keys, group runtime state) needs from a store. Writes are
/// durable only once [`ControlStore::commit`] has returned.
pub trait ControlStore: Send + Sync {
    /// Every API key's stored JSON, for start-up, until `visit` returns false.
    fn scan_raw_keys(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> anyhow::Result<()>;
    fn key(&self, id: &str) -> anyhow::Result<Option<KeyRecord>>;
    /// Keys in id order, starting after `after`, until `visit` returns false.
    fn scan_keys(
        &self,
        after: Option<&str>,
        visit: &mut dyn FnMut(KeyRecord) -> bool,
    ) -> anyhow::Result<()>;
    fn put_keys(&self, keys: &[&KeyRecord]) -> anyhow::Result<()>;
    fn remove_keys(&self, ids: &[&str]) -> anyhow::Result<()>;
    fn group_overrides(&self) -> anyhow::Result<Vec<GroupOverride>>;
    fn put_group_override(&self, group: &str, o: Option<&GroupOverride>) -> anyhow::Result<()>;
    fn last_used(&self) -> anyhow::Result<Vec<(String, u64)>>;
    fn put_last_used(&self, seen: &[(Arc<str>, u64)]) -> anyhow::Result<()>;
    fn tokens(&self) -> anyhow::Result<Vec<TokenRecord>>;
    fn put_token(&self, t: &TokenRecord) -> anyhow::Result<()>;
    /// The `expires_at` (unix seconds) of a key's last `key.expiring` notice, so each
    /// expiry is announced once, across restarts.
    fn expiry_notice(&self, key: &str) -> anyhow::Result<Option<u64>>;
    fn put_expiry_notice(&self, key: &str, expires_at: u64) -> anyhow::Result<()>;
    /// Makes everything written so far durable (fsync).
    fn commit(&self) -> anyhow::Result<()>;
}

pub struct Store {
    db: sled::Db,
    pub keys: sled::Tree,
    pub groups: sled::Tree,
    pub tokens: sled::Tree,
    pub last_used: sled::Tree,
    pub spend: sled::Tree,
    pub totals: sled::Tree,
    pub usage: sled::Tree,
    /// `usage` summed at hour, day and month grain (see `ledger::rollup`).
    pub rollup: sled::Tree,
    pub audit: sled::Tree,
    /// Small markers (the audit chain's anchor).
    pub meta: sled::Tree,
    /// Webhook deliveries not yet delivered or given up (see `webhooks::queue`).
    pub webhooks: sled::Tree,
    pub notices: sled::Tree,
}

/// sled's page cache; the default (1 GiB) would dwarf everything else the gateway holds.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Store {
    /// Opens (or creates) the store. sled holds an exclusive lock on the directory: while
    /// another process (an instance being upgraded) still has it, retry for `wait`.
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", dir.display()))?;
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
        Ok(Store {
            keys: db.open_tree("keys")?,
            groups: db.open_tree("groups")?,
            tokens: db.open_tree("tokens")?,
            last_used: db.open_tree("last_used")?,
            spend: db.open_tree("spend")?,
            totals: db.open_tree("totals")?,
            usage: db.open_tree("usage")?,
            rollup: db.open_tree("rollup")?,
            audit: db.open_tree("audit")?,
            meta: db.open_tree("meta")?,
            webhooks: db.open_tree("webhooks")?,
            notices: db.open_tree("notices")?,
            db,
        })
    }

    /// fsync: everything written before the call survives a crash after it.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
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

impl ControlStore for Store {
    fn scan_raw_keys(&self, visit: &mut dyn FnMut(&[u8]) -> bool) -> anyhow::Result<()> {
        for v in self.keys.iter().values() {
            if !visit(&v?) {
                break;
            }
        }
        Ok(())
    }

    fn key(&self, id: &str) -> anyhow::Result<Option<KeyRecord>> {
        match self.keys.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(json("key", id.as_bytes(), &v)?)),
        }
    }

    fn scan_keys(
        &self,
        after: Option<&str>,
        visit: &mut dyn FnMut(KeyRecord) -> bool,
    ) -> anyhow::Result<()> {
        let range = match after {
            Some(a) => self.keys.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.keys.iter(),
        };
        for kv in range {
            let (k, v) = kv?;
            if !visit(json("key", &k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    fn put_keys(&self, keys: &[&KeyRecord]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.insert(k.id.as_bytes(), serde_json::to_vec(k)?);
        }
        self.keys.apply_batch(batch)?;
        Ok(())
    }

    fn remove_keys(&self, ids: &[&str]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(id.as_bytes());
        }
        self.keys.apply_batch(batch)?;
        Ok(())
    }

    fn group_overrides(&self) -> anyhow::Result<Vec<GroupOverride>> {
        let mut out = vec![];
        for kv in self.groups.iter() {
            let (k, v) = kv?;
            out.push(json("group", &k, &v)?);
        }
        Ok(out)
    }

    fn put_group_override(&self, group: &str, o: Option<&GroupOverride>) -> anyhow::Result<()> {
        match o {
            Some(o) => self
                .groups
                .insert(group.as_bytes(), serde_json::to_vec(o)?)?,
            None => self.groups.remove(group.as_bytes())?,
        };
        Ok(())
    }

    fn last_used(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = vec![];
        for kv in self.last_used.iter() {
            let (k, v) = kv?;
            let secs = v.as_ref().try_into().map_or(0, u64::from_be_bytes);
            out.push((String::from_utf8_lossy(&k).into_owned(), secs));
        }
        Ok(out)
    }

    fn put_last_used(&self, seen: &[(Arc<str>, u64)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (id, secs) in seen {
            batch.insert(id.as_bytes(), &secs.to_be_bytes());
        }
        self.last_used.apply_batch(batch)?;
        Ok(())
    }

    fn tokens(&self) -> anyhow::Result<Vec<TokenRecord>> {
        let mut out = vec![];
        for kv in self.tokens.iter() {
            let (k, v) = kv?;
            out.push(json("token", &k, &v)?);
        }
        Ok(out)
    }

    fn put_token(&self, t: &TokenRecord) -> anyhow::Result<()> {
        self.tokens
            .insert(t.id.as_bytes(), serde_json::to_vec(t)?)?;
        Ok(())
    }

    fn expiry_notice(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let k = [b"expiring\0".as_slice(), key.as_bytes()].concat();
        Ok(self
            .notices
            .get(k)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    fn put_expiry_notice(&self, key: &str, expires_at: u64) -> anyhow::Result<()> {
        let k = [b"expiring\0".as_slice(), key.as_bytes()].concat();
        self.notices.insert(k, &expires_at.to_be_bytes())?;
        Ok(())
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.flush()
    }
}
