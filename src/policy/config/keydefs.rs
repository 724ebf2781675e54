//! The file's validated keys, held in runs so the snapshot build can free them as it goes.

use super::KeyDef;

/// Keys per run: small enough that a run freed is soon reused by the entries made from it.
const RUN: usize = 1024;

/// The `[[keys]]` of a validated file, in file order, in runs of at most 1024.
///
/// With a million keys the definitions take ~250 MB. [`Snapshot::build`] takes them a run at
/// a time ([`KeyDefs::into_runs`]) and drops each run once its entries are made, so the
/// definitions and the snapshot's entries are never both held in full.
///
/// [`Snapshot::build`]: crate::policy::snapshot::Snapshot::build
#[derive(Debug, Clone, Default)]
pub struct KeyDefs {
    runs: Vec<Vec<KeyDef>>,
    len: usize,
}

impl KeyDefs {
    pub(crate) fn push(&mut self, k: KeyDef) {
        match self.runs.last_mut() {
            Some(run) if run.len() < RUN => run.push(k),
            _ => {
                let mut run = Vec::with_capacity(RUN);
                run.push(k);
                self.runs.push(run);
            }
        }
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cfg(test)]
    pub(crate) fn get(&self, i: usize) -> Option<&KeyDef> {
        self.runs.get(i / RUN)?.get(i % RUN)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &KeyDef> {
        self.runs.iter().flatten()
    }

    /// The runs in file order, each given up whole (the caller drops it when done).
    pub(crate) fn into_runs(self) -> impl Iterator<Item = Vec<KeyDef>> {
        self.runs.into_iter()
    }
}

impl std::ops::Index<usize> for KeyDefs {
    type Output = KeyDef;
    fn index(&self, i: usize) -> &KeyDef {
        &self.runs[i / RUN][i % RUN]
    }
}

impl FromIterator<KeyDef> for KeyDefs {
    fn from_iter<I: IntoIterator<Item = KeyDef>>(iter: I) -> KeyDefs {
        let mut keys = KeyDefs::default();
        for k in iter {
            keys.push(k);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{KeyState, Limits};

    fn key(i: usize) -> KeyDef {
        KeyDef {
            id: format!("k{i}").into(),
            name: None,
            group: 0,
            digest: [0; 32],
            expires_at: None,
            state: KeyState::Active,
            models: None,
            allowed_cidrs: None,
            client_cert: None,
            limits: Limits::default(),
            tags: vec![],
            guardrails: Box::default(),
            req: None,
        }
    }

    #[test]
    fn runs_keep_file_order_and_indices() {
        let n = 2 * RUN + 5;
        let keys: KeyDefs = (0..n).map(key).collect();
        assert_eq!(keys.len(), n);
        assert_eq!(&*keys[RUN + 3].id, format!("k{}", RUN + 3));
        assert!(keys.get(n).is_none());
        assert!(keys
            .iter()
            .map(|k| &*k.id)
            .eq((0..n).map(|i| format!("k{i}"))));
        let runs: Vec<usize> = keys.into_runs().map(|r| r.len()).collect();
        assert_eq!(runs, [RUN, RUN, 5]);
    }
}
