//! The audit trail's repository: tree `audit` (`ms(be) seq(be)` → the event's JSON) and
//! the chain's anchor in `meta`. The hash chain itself is [`crate::control::audit`]'s.

use super::Meta;

const ANCHOR: &str = "audit_anchor";

/// Where an event sits in the trail: its time (unix ms) and a sequence number within
/// that millisecond. Ordered as the trail is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AuditKey {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl AuditKey {
    pub(crate) const MAX: AuditKey = AuditKey {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    fn to_bytes(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    fn from_bytes(k: &[u8]) -> AuditKey {
        let at = |r: std::ops::Range<usize>| {
            k.get(r)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        AuditKey {
            ms: at(0..8),
            seq: at(8..16),
        }
    }
}

/// One stored event as read: where it sits and its JSON; `Err` for a row the store could
/// not read.
pub(crate) type AuditRow<'a> = anyhow::Result<(AuditKey, &'a [u8])>;

/// What the audit trail needs from a store. Appends are durable once the store is
/// committed (the control plane's commit, or the ledger's flush).
pub(crate) trait AuditStore: Send + Sync {
    /// The hash of the last event pruned (the chain's anchor), if any was.
    fn anchor(&self) -> anyhow::Result<Option<String>>;
    /// The newest event.
    fn last(&self) -> anyhow::Result<Option<(AuditKey, Vec<u8>)>>;
    /// Appends events (keys above every stored one, in chain order).
    fn append(&self, events: &[(AuditKey, Vec<u8>)]) -> anyhow::Result<()>;
    /// Events with `from <= key < to`, oldest first (or newest first), until `visit`
    /// returns false.
    fn scan(
        &self,
        from: AuditKey,
        to: AuditKey,
        newest_first: bool,
        visit: &mut dyn FnMut(AuditRow<'_>) -> bool,
    ) -> anyhow::Result<()>;
    /// Removes the events before `before` and keeps `anchor` (the hash of the last of
    /// them) as the chain's anchor. Returns how many were removed.
    fn prune(&self, before: AuditKey, anchor: &str) -> anyhow::Result<usize>;
}

#[derive(Clone)]
pub struct AuditTables {
    audit: sled::Tree,
    meta: Meta,
}

impl AuditTables {
    pub(super) fn open(db: &sled::Db, meta: Meta) -> anyhow::Result<AuditTables> {
        Ok(AuditTables {
            audit: db.open_tree("audit")?,
            meta,
        })
    }

    /// A stored event's raw bytes by its raw key (the tamper test: tests/e2e/audit.rs).
    #[doc(hidden)]
    pub fn get(&self, key: impl AsRef<[u8]>) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.audit.get(key.as_ref())?.map(|v| v.to_vec()))
    }

    /// Overwrites a stored event's raw bytes (the tamper test: tests/e2e/audit.rs).
    #[doc(hidden)]
    pub fn insert(&self, key: impl AsRef<[u8]>, value: &[u8]) -> anyhow::Result<()> {
        self.audit.insert(key.as_ref(), value)?;
        Ok(())
    }
}

impl AuditStore for AuditTables {
    fn anchor(&self) -> anyhow::Result<Option<String>> {
        Ok(self
            .meta
            .get(ANCHOR)?
            .map(|a| String::from_utf8_lossy(&a).into_owned()))
    }

    fn last(&self) -> anyhow::Result<Option<(AuditKey, Vec<u8>)>> {
        Ok(self
            .audit
            .last()?
            .map(|(k, v)| (AuditKey::from_bytes(&k), v.to_vec())))
    }

    fn append(&self, events: &[(AuditKey, Vec<u8>)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in events {
            batch.insert(&k.to_bytes(), v.as_slice());
        }
        self.audit.apply_batch(batch)?;
        Ok(())
    }

    fn scan(
        &self,
        from: AuditKey,
        to: AuditKey,
        newest_first: bool,
        visit: &mut dyn FnMut(AuditRow<'_>) -> bool,
    ) -> anyhow::Result<()> {
        if from >= to {
            return Ok(());
        }
        let range = self.audit.range(from.to_bytes()..to.to_bytes());
        let rows: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for kv in rows {
            let go = match &kv {
                Ok((k, v)) => visit(Ok((AuditKey::from_bytes(k), v))),
                Err(e) => visit(Err(anyhow::anyhow!("audit: {e}"))),
            };
            if !go {
                break;
            }
        }
        Ok(())
    }

    fn prune(&self, before: AuditKey, anchor: &str) -> anyhow::Result<usize> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in self.audit.range(..before.to_bytes()).keys() {
            batch.remove(k?);
            n += 1;
        }
        self.audit.apply_batch(batch)?;
        self.meta.put(ANCHOR, anchor.as_bytes())?;
        Ok(n)
    }
}
