//! The webhook queue: one sled tree (`webhooks`), a sequence number (u64 big-endian, so
//! oldest first) to one [`Pending`] delivery in JSON. An entry stays until it is delivered
//! or given up; a restart picks up every entry left.
//!
//! The body is stored as it will be sent — for `key.rotated` that includes the new secret,
//! so the queue is as sensitive as the rest of `data_dir` until the entry is delivered.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The event's id: the same on every retry (receivers de-duplicate on it).
    pub id: String,
    pub event: String,
    pub org: Option<String>,
    /// The group whose receiver this is.
    pub group: Option<String>,
    pub key_id: Option<String>,
    pub url: String,
    /// The environment variable holding the signing secret (read at each attempt).
    pub secret_env: String,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the event happened (unix ms): retries stop an hour or more after it.
    pub created_ms: u64,
    /// Not before (unix ms).
    pub next_ms: u64,
}

pub struct Queue {
    tree: sled::Tree,
    /// The next sequence number; held while an entry is written, so every number below it
    /// is in the tree.
    next: Mutex<u64>,
}

impl Queue {
    pub fn open(tree: sled::Tree) -> anyhow::Result<Queue> {
        let next = match tree.last()? {
            Some((k, _)) => seq_of(&k).map_or(0, |s| s + 1),
            None => 0,
        };
        Ok(Queue {
            tree,
            next: Mutex::new(next),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a new entry (not flushed: see [`Queue::written_below`]); returns its number.
    pub fn push(&self, p: &Pending) -> anyhow::Result<u64> {
        let mut next = self.lock();
        let seq = *next;
        self.tree
            .insert(seq.to_be_bytes(), serde_json::to_vec(p)?)?;
        *next += 1;
        Ok(seq)
    }

    /// Every entry numbered below this has been written (flush the store, then they are
    /// durable).
    pub fn written_below(&self) -> u64 {
        *self.lock()
    }

    /// Entries numbered below `below` that are due at `now_ms`, oldest first, at most
    /// `max`; and the earliest `next_ms` of those left out (`u64::MAX`: none), so the
    /// caller need not look again before then. An unreadable entry is logged and dropped.
    pub fn due(&self, now_ms: u64, below: u64, max: usize) -> (Vec<(u64, Pending)>, u64) {
        let mut out = vec![];
        let mut next = u64::MAX;
        for kv in self.tree.range(..below.to_be_bytes()) {
            let Ok((k, v)) = kv else { continue };
            let Some(seq) = seq_of(&k) else { continue };
            match serde_json::from_slice::<Pending>(&v) {
                Ok(p) if p.next_ms <= now_ms && out.len() < max => out.push((seq, p)),
                Ok(p) => next = next.min(p.next_ms),
                Err(e) => {
                    log::error!("webhook queue: entry {seq} unreadable ({e}); dropped");
                    let _ = self.tree.remove(k);
                }
            }
        }
        (out, next)
    }

    /// Rewrites an entry after a failed attempt.
    pub fn put(&self, seq: u64, p: &Pending) -> anyhow::Result<()> {
        self.tree
            .insert(seq.to_be_bytes(), serde_json::to_vec(p)?)?;
        Ok(())
    }

    pub fn remove(&self, seq: u64) -> anyhow::Result<()> {
        self.tree.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// fsync of the whole store (sled flushes all trees at once).
    pub async fn flush_async(&self) -> anyhow::Result<()> {
        self.tree.flush_async().await?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

fn seq_of(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}
