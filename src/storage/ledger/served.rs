//! Tokens served per UTC day × provider × upstream model id × org: the gateway's side of
//! reconciliation (docs/operations.md "Reconciliation"). The model is the target's `model`,
//! the id the provider reports in its usage API, not the catalogue name; the org is kept so
//! a drift can be announced to the orgs that used the model that day.
//!
//! Like the hourly usage buckets: totals in memory, added to on settle (one short lock,
//! a store read only the first time a row is touched after a start), written as absolute
//! totals with the ledger's flush, so a replayed flush cannot double-count.
//!
//! Tree `served`: key `day(be) provider \0 model \0 org`, value requests, input, output
//! (3 × u64 be).

use crate::digest::FastHash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One row: a UTC day (days since the Unix epoch), the provider's id, the target's model
/// id, the org of the key that was served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServedKey {
    pub day: u64,
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub org: Arc<str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServedTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl ServedTotals {
    pub fn add(&mut self, o: &ServedTotals) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }
}

/// What the served counts need from a store (absolute totals; durable after the ledger's
/// commit).
pub(crate) trait ServedStore: Send + Sync {
    fn served(&self, key: &ServedKey) -> anyhow::Result<Option<ServedTotals>>;
    /// Rows with `from_day <= day < to_day`.
    fn served_between(
        &self,
        from_day: u64,
        to_day: u64,
    ) -> anyhow::Result<Vec<(ServedKey, ServedTotals)>>;
    fn put_served(&self, rows: &[(ServedKey, ServedTotals)]) -> anyhow::Result<()>;
}

pub(crate) struct ServedTables {
    tree: sled::Tree,
}

impl ServedTables {
    pub(crate) fn open(db: &sled::Db) -> anyhow::Result<ServedTables> {
        Ok(ServedTables {
            tree: db.open_tree("served")?,
        })
    }
}

fn key_bytes(k: &ServedKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + k.provider.len() + k.model.len() + k.org.len() + 2);
    b.extend_from_slice(&k.day.to_be_bytes());
    b.extend_from_slice(k.provider.as_bytes());
    b.push(0);
    b.extend_from_slice(k.model.as_bytes());
    b.push(0);
    b.extend_from_slice(k.org.as_bytes());
    b
}

fn parse_key(b: &[u8]) -> Option<ServedKey> {
    let day = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let rest = std::str::from_utf8(&b[8..]).ok()?;
    let mut parts = rest.splitn(3, '\0');
    Some(ServedKey {
        day,
        provider: parts.next()?.into(),
        model: parts.next()?.into(),
        org: parts.next()?.into(),
    })
}

fn value_bytes(t: &ServedTotals) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&t.requests.to_be_bytes());
    b[8..16].copy_from_slice(&t.input_tokens.to_be_bytes());
    b[16..].copy_from_slice(&t.output_tokens.to_be_bytes());
    b
}

fn value_of(b: &[u8]) -> ServedTotals {
    let at = |i: usize| super::super::be_u64(b.get(i * 8..i * 8 + 8).unwrap_or(&[])).unwrap_or(0);
    ServedTotals {
        requests: at(0),
        input_tokens: at(1),
        output_tokens: at(2),
    }
}

impl ServedStore for ServedTables {
    fn served(&self, key: &ServedKey) -> anyhow::Result<Option<ServedTotals>> {
        Ok(self.tree.get(key_bytes(key))?.map(|v| value_of(&v)))
    }

    fn served_between(
        &self,
        from_day: u64,
        to_day: u64,
    ) -> anyhow::Result<Vec<(ServedKey, ServedTotals)>> {
        if from_day >= to_day {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for kv in self
            .tree
            .range(from_day.to_be_bytes()..to_day.to_be_bytes())
        {
            let (k, v) = kv?;
            if let Some(key) = parse_key(&k) {
                out.push((key, value_of(&v)));
            }
        }
        Ok(out)
    }

    fn put_served(&self, rows: &[(ServedKey, ServedTotals)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, t) in rows {
            batch.insert(key_bytes(k), &value_bytes(t));
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

/// A row in memory: its whole total and whether it still has to be written.
type Mem = HashMap<ServedKey, (ServedTotals, bool), FastHash>;

/// The served counts in memory over their store.
pub(crate) struct Served {
    store: Arc<dyn ServedStore>,
    mem: Mutex<Mem>,
}

impl Served {
    pub(crate) fn new(store: Arc<dyn ServedStore>) -> Served {
        Served {
            store,
            mem: Mutex::new(HashMap::default()),
        }
    }

    pub(crate) fn record(&self, key: ServedKey, delta: &ServedTotals) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let entry = mem.entry(key).or_insert_with_key(|k| {
            // Continue from what is already stored for this row (after a restart).
            let stored = self.store.served(k).ok().flatten().unwrap_or_default();
            (stored, false)
        });
        entry.0.add(delta);
        entry.1 = true;
    }

    /// Writes the dirty rows; rows of days before yesterday are then dropped from memory
    /// (their day is over).
    pub(crate) fn flush(&self, today: u64) -> anyhow::Result<()> {
        let dirty: Vec<(ServedKey, ServedTotals)> = {
            let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            mem.iter()
                .filter(|(_, (_, d))| *d)
                .map(|(k, (t, _))| (k.clone(), *t))
                .collect()
        };
        if !dirty.is_empty() {
            self.store.put_served(&dirty)?;
        }
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        for (k, t) in &dirty {
            if let Some(e) = mem.get_mut(k) {
                // Settled meanwhile: stays dirty for the next flush.
                if e.0 == *t {
                    e.1 = false;
                }
            }
        }
        mem.retain(|k, (_, d)| *d || k.day + 1 >= today);
        Ok(())
    }

    /// Rows with `from_day <= day < to_day`: everything settled so far, flushed or not.
    pub(crate) fn between(&self, from_day: u64, to_day: u64) -> Vec<(ServedKey, ServedTotals)> {
        let mut rows: HashMap<ServedKey, ServedTotals> = self
            .store
            .served_between(from_day, to_day)
            .unwrap_or_else(|e| {
                log::error!("ledger: served: {e}");
                vec![]
            })
            .into_iter()
            .collect();
        let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        for (k, (t, _)) in mem.iter() {
            if (from_day..to_day).contains(&k.day) {
                rows.insert(k.clone(), *t);
            }
        }
        rows.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(day: u64, model: &str) -> ServedKey {
        ServedKey {
            day,
            provider: "oa".into(),
            model: model.into(),
            org: "acme".into(),
        }
    }

    #[test]
    fn encoding_round_trips_and_sorts_by_day() {
        let key = k(0x0102, "gpt-4o");
        assert_eq!(key_bytes(&key), b"\0\0\0\0\0\0\x01\x02oa\0gpt-4o\0acme");
        assert_eq!(parse_key(&key_bytes(&key)), Some(key));
        let t = ServedTotals {
            requests: 1,
            input_tokens: 2,
            output_tokens: 3,
        };
        assert_eq!(value_of(&value_bytes(&t)), t);
    }

    #[test]
    fn totals_survive_a_flush_and_a_reopen_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = Arc::new(ServedTables::open(&db).unwrap());
        let one = ServedTotals {
            requests: 1,
            input_tokens: 10,
            output_tokens: 5,
        };
        let s = Served::new(store.clone());
        s.record(k(10, "m"), &one);
        s.record(k(10, "m"), &one);
        s.flush(10).unwrap();
        s.flush(10).unwrap();
        let s = Served::new(store);
        s.record(k(10, "m"), &one);
        let rows = s.between(10, 11);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1.input_tokens, 30);
        assert!(s.between(11, 12).is_empty());
    }
}
