//! File keys' last-use cells from one snapshot to the next: a key keeps its cell through a
//! reload, also when its secret changes, and gets it back when it is removed and later put
//! back (`LastSeen` holds the cells of keys that left the file).

use super::{Digest, KeyEntry, Snapshot};
use crate::policy::config::KeyDefs;
use crate::proxy::last_seen::{LastSeen, LastUsed};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

/// Hands out the cells of one snapshot build.
pub(super) struct Carry<'a> {
    previous: Option<&'a Snapshot>,
    /// Previous keys whose id comes with another digest in the new file: id -> cell.
    moved: HashMap<Arc<str>, Arc<LastUsed>>,
    retired: MutexGuard<'a, HashMap<Arc<str>, Arc<LastUsed>>>,
}

fn is(entry: Option<&Arc<KeyEntry>>, id: &str) -> bool {
    entry.is_some_and(|e| &*e.id == id)
}

impl<'a> Carry<'a> {
    /// An unchanged key is found in `previous` by its digest; the ids that are not (new
    /// keys, new secrets) are looked for once among the previous keys. No map of every id is
    /// built: only of those that changed.
    pub(super) fn new(
        previous: Option<&'a Snapshot>,
        keys: &KeyDefs,
        last_seen: &'a LastSeen,
    ) -> Carry<'a> {
        let mut moved = HashMap::new();
        if let Some(prev) = previous {
            let changed: HashSet<&str> = keys
                .iter()
                .filter(|k| !is(prev.key(&k.digest), &k.id))
                .map(|k| &*k.id)
                .collect();
            if !changed.is_empty() {
                for e in prev.file_keys() {
                    if changed.contains(&*e.id) {
                        moved.insert(e.id.clone(), e.last_used.clone());
                    }
                }
            }
        }
        Carry {
            previous,
            moved,
            retired: last_seen.retired(),
        }
    }

    /// The cell of the key `id` with `digest`: the previous snapshot's, else a retired one,
    /// else a new one.
    pub(super) fn cell(&mut self, id: &str, digest: &Digest) -> Arc<LastUsed> {
        if let Some(e) = self.previous.and_then(|p| p.key(digest)) {
            if &*e.id == id {
                return e.last_used.clone();
            }
        }
        if let Some(c) = self.moved.get(id) {
            return c.clone();
        }
        if self.retired.is_empty() {
            return Arc::default();
        }
        self.retired.remove(id).unwrap_or_default()
    }

    /// Keeps the cells of the previous keys that are not in `new`.
    pub(super) fn finish(mut self, new: &Snapshot) {
        let Some(prev) = self.previous else { return };
        for e in prev.file_keys() {
            if !is(new.key(&e.digest), &e.id) && !self.moved.contains_key(&e.id) {
                self.retired.insert(e.id.clone(), e.last_used.clone());
            }
        }
    }
}
