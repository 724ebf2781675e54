//! The webhook queue's repository: tree `webhooks`, a sequence number (u64 big-endian, so
//! oldest first) to one [`Pending`] delivery in JSON. An entry stays until it is delivered
//! or given up; a restart picks up every entry left.

use super::records::Pending;
use async_trait::async_trait;
use std::sync::Mutex;

/// What webhook delivery needs from a store: a durable FIFO of deliveries, each numbered.
#[async_trait]
pub(crate) trait WebhookQueue: Send + Sync {
    /// Writes new entries (not durable until [`WebhookQueue::commit`]); returns the
    /// number of the first (the others follow it).
    fn push(&self, entries: &[Pending]) -> anyhow::Result<u64>;
    /// Every entry numbered below this has been written (commit, then they are durable).
    fn written_below(&self) -> u64;
    /// Entries numbered below `below` that are due at `now_ms`, oldest first, at most
    /// `max`; and the earliest `next_ms` of those left out (`u64::MAX`: none), so the
    /// caller need not look again before then. An unreadable entry is logged and dropped.
    fn due(&self, now_ms: u64, below: u64, max: usize) -> (Vec<(u64, Pending)>, u64);
    /// Rewrites an entry after a failed attempt.
    fn put(&self, seq: u64, p: &Pending) -> anyhow::Result<()>;
    fn remove(&self, seq: u64) -> anyhow::Result<()>;
    /// Makes everything written so far durable.
    async fn commit(&self) -> anyhow::Result<()>;
    fn len(&self) -> usize;
}

pub(crate) struct WebhookTables {
    tree: sled::Tree,
    /// The next sequence number; held while entries are written, so every number below it
    /// is in the tree.
    next: Mutex<u64>,
}

fn seq_of(k: &[u8]) -> Option<u64> {
    super::be_u64(k)
}

impl WebhookTables {
    pub(super) fn open(db: &sled::Db) -> anyhow::Result<WebhookTables> {
        Self::on(db.open_tree("webhooks")?)
    }

    fn on(tree: sled::Tree) -> anyhow::Result<WebhookTables> {
        let next = match tree.last()? {
            Some((k, _)) => seq_of(&k).map_or(0, |s| s + 1),
            None => 0,
        };
        Ok(WebhookTables {
            tree,
            next: Mutex::new(next),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl WebhookQueue for WebhookTables {
    fn push(&self, entries: &[Pending]) -> anyhow::Result<u64> {
        let mut next = self.lock();
        let first = *next;
        let mut batch = sled::Batch::default();
        for (i, p) in entries.iter().enumerate() {
            batch.insert(&(first + i as u64).to_be_bytes(), serde_json::to_vec(p)?);
        }
        self.tree.apply_batch(batch)?;
        *next += entries.len() as u64;
        Ok(first)
    }

    fn written_below(&self) -> u64 {
        *self.lock()
    }

    fn due(&self, now_ms: u64, below: u64, max: usize) -> (Vec<(u64, Pending)>, u64) {
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

    fn put(&self, seq: u64, p: &Pending) -> anyhow::Result<()> {
        self.tree
            .insert(seq.to_be_bytes(), serde_json::to_vec(p)?)?;
        Ok(())
    }

    fn remove(&self, seq: u64) -> anyhow::Result<()> {
        self.tree.remove(seq.to_be_bytes())?;
        Ok(())
    }

    /// fsync of the whole store (sled flushes all trees at once).
    async fn commit(&self) -> anyhow::Result<()> {
        self.tree.flush_async().await?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.tree.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_survives_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::open(dir.path()).expect("db");
        let q = WebhookTables::open(&db).expect("queue");
        let p = |id: &str, next_ms| Pending {
            id: id.into(),
            event: "key.revoked".into(),
            org: None,
            group: Some("grp".into()),
            key_id: None,
            url: "http://127.0.0.1:1/".into(),
            secret_env: "S".into(),
            body: "{}".into(),
            attempts: 0,
            created_ms: 0,
            next_ms,
            format: None,
        };
        assert_eq!(q.push(&[p("a", 0)]).expect("push"), 0);
        assert_eq!(q.push(&[p("b", 5_000), p("c", 0)]).expect("push"), 1);
        let due: Vec<String> = q
            .due(1_000, q.written_below(), 10)
            .0
            .into_iter()
            .map(|(_, p)| p.id)
            .collect();
        assert_eq!(due, ["a", "c"]);
        assert_eq!(q.due(1_000, 1, 10).0.len(), 1, "only below the watermark");
        assert_eq!(q.due(1_000, 3, 10).1, 5_000, "the next one due");
        assert_eq!(
            q.due(1_000, 3, 1).1,
            0,
            "one due entry left out: look again at once"
        );
        q.remove(0).expect("remove");
        drop(q);
        let q = WebhookTables::open(&db).expect("queue");
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.push(&[p("d", 0)]).expect("push"),
            3,
            "numbers keep growing"
        );
    }
}
