//! When each key was last used, coarse (whole seconds), kept off the request path's
//! critical work: a request does one relaxed atomic load and, at most once a second per
//! key, one store. The lifecycle task persists changes about once a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One key's last use, in unix seconds (0 = never), and the value last persisted.
#[derive(Debug, Default)]
pub struct LastUsed {
    at: AtomicU64,
    persisted: AtomicU64,
}

impl LastUsed {
    /// A cell holding a value read from the store.
    pub fn seeded(secs: u64) -> LastUsed {
        LastUsed {
            at: AtomicU64::new(secs),
            persisted: AtomicU64::new(secs),
        }
    }

    pub fn touch(&self, now_s: u64) {
        if self.at.load(Ordering::Relaxed) < now_s {
            self.at.store(now_s, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.at.load(Ordering::Relaxed)
    }

    /// The value to persist, if it changed since the last call.
    pub fn take_changed(&self) -> Option<u64> {
        let now = self.get();
        (self.persisted.swap(now, Ordering::Relaxed) != now).then_some(now)
    }
}

/// The file keys' [`LastUsed`] cells by id, so they survive reloads (API keys carry theirs
/// from one version of the key to the next in the directory).
#[derive(Debug, Default)]
pub struct LastSeen {
    cells: Mutex<HashMap<Arc<str>, Arc<LastUsed>>>,
}

impl LastSeen {
    /// Makes room for `n` cells in all, so a large first build does not end by doubling
    /// the map (its old and new tables held together: ~75 MB at a million keys).
    pub fn reserve(&self, n: usize) {
        let mut m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let more = n.saturating_sub(m.len());
        m.reserve(more);
    }

    pub fn cell(&self, id: &Arc<str>) -> Arc<LastUsed> {
        let mut m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.clone()).or_default().clone()
    }

    /// Seeds the file keys' cells (which the snapshot already holds) with values loaded
    /// from the store; other ids are not file keys and are left alone.
    pub fn load(&self, stored: &HashMap<String, u64>) {
        let m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        for (id, cell) in m.iter() {
            if let Some(secs) = stored.get(&**id) {
                cell.at.store(*secs, Ordering::Relaxed);
                cell.persisted.store(*secs, Ordering::Relaxed);
            }
        }
    }
}
