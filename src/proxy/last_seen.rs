//! When each key was last used, coarse (whole seconds), kept off the request path's
//! critical work: a request does one relaxed atomic load and, at most once a second per
//! key, one store. The lifecycle task persists changes about once a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One key's last use, in unix seconds (0 = never), and the value last persisted.
#[derive(Debug, Default)]
pub struct LastUsed {
    at: AtomicU64,
    persisted: AtomicU64,
}

impl LastUsed {
    /// A cell holding a value read from the store.
    pub(crate) fn seeded(secs: u64) -> LastUsed {
        LastUsed {
            at: AtomicU64::new(secs),
            persisted: AtomicU64::new(secs),
        }
    }

    /// Sets the value read from the store (at start-up, before any request).
    pub(crate) fn seed(&self, secs: u64) {
        self.at.store(secs, Ordering::Relaxed);
        self.persisted.store(secs, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self, now_s: u64) {
        if self.at.load(Ordering::Relaxed) < now_s {
            self.at.store(now_s, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.at.load(Ordering::Relaxed)
    }

    /// The value to persist, if it changed since the last call.
    pub(crate) fn take_changed(&self) -> Option<u64> {
        let now = self.get();
        (self.persisted.swap(now, Ordering::Relaxed) != now).then_some(now)
    }
}

/// Cells of file keys that left the policy file, by id, so a key removed and later put
/// back keeps its last use. A file key's cell lives in its snapshot entry and passes from
/// one snapshot to the next (`snapshot::carry`): no map of every key's cell is kept (with
/// a million keys that map alone took ~50 MB). API keys carry theirs from one version of
/// the key to the next in the directory.
#[derive(Debug, Default)]
pub struct LastSeen {
    retired: Mutex<HashMap<Arc<str>, Arc<LastUsed>>>,
}

impl LastSeen {
    pub(crate) fn retired(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<LastUsed>>> {
        self.retired.lock().unwrap_or_else(|p| p.into_inner())
    }
}
