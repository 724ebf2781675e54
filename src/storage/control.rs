//! The control plane's repository: trees `keys`, `groups`, `tokens`, `last_used` and
//! `notices` (encoding in the table of [`crate::storage`]).

use super::records::{GroupOverride, KeyRecord, TokenRecord};
use super::{be_u64, json};
use std::sync::Arc;

/// What the control plane (API keys, group runtime state, admin tokens, key lifecycle)
/// needs from a store. Writes are durable only once [`ControlStore::commit`] has returned.
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

pub(crate) struct ControlTables {
    db: sled::Db,
    keys: sled::Tree,
    groups: sled::Tree,
    tokens: sled::Tree,
    last_used: sled::Tree,
    notices: sled::Tree,
}

impl ControlTables {
    pub(super) fn open(db: &sled::Db) -> anyhow::Result<ControlTables> {
        Ok(ControlTables {
            keys: db.open_tree("keys")?,
            groups: db.open_tree("groups")?,
            tokens: db.open_tree("tokens")?,
            last_used: db.open_tree("last_used")?,
            notices: db.open_tree("notices")?,
            db: db.clone(),
        })
    }
}

fn notice_key(key: &str) -> Vec<u8> {
    [b"expiring\0".as_slice(), key.as_bytes()].concat()
}

impl ControlStore for ControlTables {
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
            let secs = be_u64(&v).unwrap_or(0);
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
        Ok(self.notices.get(notice_key(key))?.and_then(|v| be_u64(&v)))
    }

    fn put_expiry_notice(&self, key: &str, expires_at: u64) -> anyhow::Result<()> {
        self.notices
            .insert(notice_key(key), &expires_at.to_be_bytes())?;
        Ok(())
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
