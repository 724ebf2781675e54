//! When each key was last used, coarse (whole seconds), kept off the request path's
//! critical work: a request does one relaxed atomic load and, at most once a second per
//! key, one store. The lifecycle task persists changes about once a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One key's last use, in unix seconds (0 = never).
#[derive(Debug, Default)]
pub struct LastUsed(AtomicU64);

impl LastUsed {
    pub fn touch(&self, now_s: u64) {
        if self.0.load(Ordering::Relaxed) < now_s {
            self.0.store(now_s, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A key's cell and the value last persisted.
type Cell = (Arc<LastUsed>, u64);

/// Every key's [`LastUsed`] by id, shared by the snapshot's file keys and the API keys so it
/// survives reloads and edits. Entries: (cell, value last persisted).
#[derive(Debug, Default)]
pub struct LastSeen {
    cells: Mutex<HashMap<Arc<str>, Cell>>,
}

impl LastSeen {
    pub fn cell(&self, id: &Arc<str>) -> Arc<LastUsed> {
        let mut m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.clone())
            .or_insert_with(|| (Arc::new(LastUsed::default()), 0))
            .0
            .clone()
    }

    /// Seeds values loaded from the store.
    pub fn load(&self, stored: impl IntoIterator<Item = (String, u64)>) {
        let mut m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        for (id, secs) in stored {
            let cell = Arc::new(LastUsed(AtomicU64::new(secs)));
            m.insert(id.into(), (cell, secs));
        }
    }

    pub fn get(&self, id: &str) -> u64 {
        let m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).map_or(0, |(c, _)| c.get())
    }

    /// Values changed since the last call (to persist them).
    pub fn take_changed(&self) -> Vec<(Arc<str>, u64)> {
        let mut m = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = vec![];
        for (id, (cell, persisted)) in m.iter_mut() {
            let now = cell.get();
            if now != *persisted {
                *persisted = now;
                out.push((id.clone(), now));
            }
        }
        out
    }
}
