//! The key directory: the data plane's view of API-made keys and of group runtime state,
//! updated in place by the control plane (no snapshot rebuild per change).
//!
//! A request looks its digest up in the file snapshot first, then here. API keys name their
//! group by id and are resolved against the request's snapshot (cached per snapshot
//! generation), so a move, a group edit in the file or a reload applies on the next
//! request. Group pause / resume / quarantine made through the API are overrides kept
//! here; each remembers the file's state it was made over and stops applying once the
//! file's state changes.

use crate::digest::ByDigest;
use crate::error::GatewayError;
use crate::policy::config::mtls::CertRule;
use crate::policy::config::reqpolicy::ReqPolicy;
use crate::policy::config::{GroupState, KeyState, Limits, ModelFilter};
use crate::policy::snapshot::{
    Digest, DigestHash, GroupEntry, KeyEntry, KeyParts, KeySource, Snapshot,
};
use crate::proxy::last_seen::LastUsed;
use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// An API-made key as the data plane needs it (the full record stays in the store):
/// its definition, its last use, and its resolution against the latest snapshot.
#[derive(Debug)]
pub struct ApiKey {
    pub(crate) def: ApiKeyDef,
    pub(crate) last_used: Arc<LastUsed>,
    resolved: ArcSwapOption<Resolved>,
}

impl std::ops::Deref for ApiKey {
    type Target = ApiKeyDef;
    fn deref(&self) -> &ApiKeyDef {
        &self.def
    }
}

/// [`ApiKeyParts`] as the directory holds them: the fields few keys use are boxed together,
/// so a common key fits one 256-byte allocation (a test checks it; at 280 bytes a million
/// keys took 64 MB more).
#[derive(Debug)]
pub struct ApiKeyDef {
    pub(crate) id: Arc<str>,
    pub(crate) group: Arc<str>,
    pub(crate) digest: Digest,
    pub(crate) state: KeyState,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) limits: Limits,
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) created_at: u64,
    pub(crate) secret_at: u64,
    rare: Option<Box<Rare>>,
}

#[derive(Debug)]
struct Rare {
    previous: Option<(Digest, u64)>,
    models: Option<Box<ModelFilter>>,
    allowed_cidrs: Option<Box<[IpNet]>>,
    rotation_s: Option<u64>,
    guardrails: Option<Box<[Arc<str>]>>,
    client_cert: Option<Box<CertRule>>,
    req: Option<Arc<ReqPolicy>>,
}

impl ApiKeyDef {
    fn new(p: ApiKeyParts) -> ApiKeyDef {
        let ApiKeyParts {
            id,
            group,
            digest,
            previous,
            state,
            expires_at,
            limits,
            models,
            allowed_cidrs,
            owner,
            created_at,
            secret_at,
            rotation_s,
            guardrails,
            client_cert,
            req,
        } = p;
        let rare = (previous.is_some()
            || client_cert.is_some()
            || models.is_some()
            || allowed_cidrs.is_some()
            || rotation_s.is_some()
            || guardrails.is_some()
            || req.is_some())
        .then(|| {
            Box::new(Rare {
                previous: previous.map(|p| *p),
                models,
                allowed_cidrs: allowed_cidrs.map(Vec::into_boxed_slice),
                rotation_s,
                guardrails,
                client_cert,
                req,
            })
        });
        ApiKeyDef {
            id,
            group,
            digest,
            state,
            expires_at,
            limits,
            owner,
            created_at,
            secret_at,
            rare,
        }
    }

    /// The secret before the last regeneration and when it stops working (unix seconds).
    pub(crate) fn previous(&self) -> Option<&(Digest, u64)> {
        self.rare.as_ref()?.previous.as_ref()
    }

    pub(crate) fn models(&self) -> Option<&ModelFilter> {
        self.rare.as_ref()?.models.as_deref()
    }

    pub(crate) fn allowed_cidrs(&self) -> Option<&[IpNet]> {
        self.rare.as_ref()?.allowed_cidrs.as_deref()
    }

    /// The key's own client-certificate rule.
    pub(crate) fn client_cert(&self) -> Option<&CertRule> {
        self.rare.as_ref()?.client_cert.as_deref()
    }

    /// `rotation_interval` in seconds.
    pub(crate) fn rotation_s(&self) -> Option<u64> {
        self.rare.as_ref()?.rotation_s
    }

    /// The key's own request policy.
    pub(crate) fn req(&self) -> Option<&Arc<ReqPolicy>> {
        self.rare.as_ref()?.req.as_ref()
    }

    /// The key's own `allowed_origins`.
    fn origins(&self) -> &[Box<str>] {
        self.req()
            .and_then(|r| r.allowed_origins.as_deref())
            .unwrap_or_default()
    }

    /// The key's own guardrail ids.
    pub(crate) fn guardrails(&self) -> &[Arc<str>] {
        self.rare
            .as_ref()
            .and_then(|r| r.guardrails.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct Resolved {
    generation: u64,
    entry: Arc<KeyEntry>,
}

/// What an API key is, before it is resolved against its group.
#[derive(Debug)]
pub struct ApiKeyParts {
    pub id: Arc<str>,
    pub group: Arc<str>,
    pub digest: Digest,
    /// The secret before the last regeneration and when it stops working (unix seconds).
    pub previous: Option<Box<(Digest, u64)>>,
    pub state: KeyState,
    pub expires_at: Option<SystemTime>,
    pub limits: Limits,
    pub models: Option<Box<ModelFilter>>,
    pub allowed_cidrs: Option<Vec<IpNet>>,
    pub owner: Option<Arc<str>>,
    /// Creation or last change (unix seconds): idleness counts from here.
    pub created_at: u64,
    /// When the secret was made: rotation counts from here.
    pub secret_at: u64,
    /// `rotation_interval` in seconds.
    pub rotation_s: Option<u64>,
    /// The key's own guardrail ids (added to its group's and org's).
    pub guardrails: Option<Box<[Arc<str>]>>,
    pub client_cert: Option<Box<CertRule>>,
    /// The key's own request policy (`allowed_providers`, `required_params`, ...).
    pub req: Option<Arc<ReqPolicy>>,
}

impl ApiKey {
    pub fn new(parts: ApiKeyParts, last_used: Arc<LastUsed>) -> ApiKey {
        ApiKey {
            def: ApiKeyDef::new(parts),
            last_used,
            resolved: ArcSwapOption::empty(),
        }
    }

    /// This key resolved against `snapshot` (computed once per snapshot generation).
    pub(crate) fn entry(&self, snapshot: &Snapshot) -> Option<Arc<KeyEntry>> {
        if let Some(r) = self.resolved.load().as_ref() {
            if r.generation == snapshot.generation {
                return Some(r.entry.clone());
            }
        }
        let group = snapshot.groups.get(&self.group)?;
        let parts = KeyParts {
            id: self.id.clone(),
            name: None,
            digest: self.digest,
            expires_at: self.expires_at,
            state: self.state,
            limits: self.limits.clone(),
            models: self.models(),
            allowed_cidrs: self.allowed_cidrs().map(Box::from),
            client_cert: self.client_cert().map(|c| Box::new(c.clone())),
            source: KeySource::Api,
            last_used: self.last_used.clone(),
            // An id the file no longer has is skipped (the admin API refuses unknown ids).
            guardrails: self
                .guardrails()
                .iter()
                .filter_map(|id| snapshot.guardrails.get(id).cloned())
                .collect(),
            req: self.req().cloned(),
        };
        let entry = Arc::new(KeyEntry::resolve(parts, group, &snapshot.models));
        self.resolved.store(Some(Arc::new(Resolved {
            generation: snapshot.generation,
            entry: entry.clone(),
        })));
        Some(entry)
    }

    /// Whether `presented` is this key's secret now (or its previous one, in its grace).
    fn accepts(&self, presented: &Digest, now_s: u64) -> bool {
        bool::from(self.digest.ct_eq(presented))
            || self
                .previous()
                .is_some_and(|(d, until)| now_s < *until && bool::from(d.ct_eq(presented)))
    }
}

/// A group state set through the API over the file's `file_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateOverride {
    pub(crate) state: GroupState,
    pub(crate) file_state: GroupState,
}

impl crate::digest::Keyed for ApiKey {
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

#[derive(Default)]
pub struct Directory {
    /// Every key, by its current digest.
    keys: DashMap<ByDigest<ApiKey>, (), DigestHash>,
    /// Keys regenerated with a grace period, by their previous digest (few).
    previous: DashMap<Digest, Arc<ApiKey>, DigestHash>,
    groups: ArcSwap<HashMap<Arc<str>, StateOverride>>,
    /// API keys' own `allowed_origins`, counted (CORS preflights carry no key).
    origins: DashMap<Box<str>, u32>,
}

impl Directory {
    /// Step 1 for API keys: the key a digest belongs to, resolved against `snapshot`.
    pub(crate) fn lookup(
        &self,
        presented: &Digest,
        snapshot: &Snapshot,
        now_s: u64,
    ) -> Result<Arc<KeyEntry>, GatewayError> {
        // Resolved under the map's read guard: no reference count is taken on the key.
        if let Some(k) = self.keys.get(presented) {
            return Self::resolve(&k.key().0, presented, snapshot, now_s);
        }
        let k = self
            .previous
            .get(presented)
            .ok_or(GatewayError::InvalidApiKey)?;
        Self::resolve(k.value(), presented, snapshot, now_s)
    }

    fn resolve(
        key: &ApiKey,
        presented: &Digest,
        snapshot: &Snapshot,
        now_s: u64,
    ) -> Result<Arc<KeyEntry>, GatewayError> {
        if !key.accepts(presented, now_s) {
            return Err(GatewayError::InvalidApiKey);
        }
        key.entry(snapshot).ok_or_else(|| {
            GatewayError::KeyDisabled(format!(
                "{} (its group {} is no longer in the policy file)",
                key.id, key.group
            ))
        })
    }

    /// The key holding `digest` as its current secret.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Arc<ApiKey>> {
        self.keys.get(digest).map(|k| k.key().0.clone())
    }

    /// Puts `key` in place of `old` (same id): the next lookup of any of its digests sees
    /// it. Digests `old` had and `key` does not are removed. (`key` should carry `old`'s
    /// `last_used` cell: see [`ApiKey::new`].)
    pub fn put(&self, key: Arc<ApiKey>, old: Option<&ApiKey>) {
        for o in key.origins() {
            *self.origins.entry(o.clone()).or_insert(0) += 1;
        }
        for o in old.map(|k| k.origins()).unwrap_or_default() {
            if let Entry::Occupied(mut e) = self.origins.entry(o.clone()) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
        // The new digests first, then the old ones go: a lookup never misses in between.
        match self.keys.entry(ByDigest(key.clone())) {
            Entry::Occupied(o) => {
                o.replace_entry(());
            }
            Entry::Vacant(v) => {
                v.insert(());
            }
        }
        if let Some((d, _)) = key.previous() {
            self.previous.insert(*d, key.clone());
        }
        if let Some(old) = old {
            if old.digest != key.digest {
                self.keys.remove_if(&old.digest, |k, _| k.0.id == key.id);
            }
            if let Some((d, _)) = old.previous() {
                if key.previous().is_none_or(|(p, _)| p != d) {
                    self.previous.remove_if(d, |_, v| v.id == key.id);
                }
            }
        }
    }

    /// Whether some API key lists `origin` in its `allowed_origins`.
    pub(crate) fn has_origin(&self, origin: &str) -> bool {
        !self.origins.is_empty() && self.origins.contains_key(origin)
    }

    /// Every API key once, in no particular order.
    pub fn keys(&self) -> Vec<Arc<ApiKey>> {
        self.keys.iter().map(|e| e.key().0.clone()).collect()
    }

    /// Digests that open a key: current ones and those in a grace period.
    pub fn len(&self) -> usize {
        self.keys.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.previous.is_empty()
    }

    /// The state a group is in now: its API override, while the file's state is still the
    /// one it was made over; else the file's.
    pub fn group_state(&self, group: &GroupEntry) -> GroupState {
        let overrides = self.groups.load();
        if overrides.is_empty() {
            return group.state;
        }
        match overrides.get(&group.id) {
            Some(o) if o.file_state == group.state => o.state,
            _ => group.state,
        }
    }

    pub(crate) fn group_override(&self, group: &str) -> Option<StateOverride> {
        self.groups.load().get(group).copied()
    }

    pub(crate) fn set_group_override(&self, group: &Arc<str>, o: Option<StateOverride>) {
        self.groups.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            match o {
                Some(o) => next.insert(group.clone(), o),
                None => next.remove(group),
            };
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str, generation: u64) -> Snapshot {
        let cfg =
            crate::policy::config::parse_config(text, std::path::Path::new("t.toml")).unwrap();
        Snapshot::build(
            cfg,
            &crate::proxy::last_seen::LastSeen::default(),
            None,
            generation,
            &crate::policy::snapshot::Loopback,
            &Default::default(),
        )
        .unwrap()
    }

    const POLICY: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nname = \"a\"\ntargets = [{ provider = \"p\" }]\n[[models]]\nname = \"b\"\ntargets = [{ provider = \"p\" }]\n[[orgs]]\nid = \"o\"\n[[groups]]\nid = \"g1\"\norg = \"o\"\nmodels = [\"a\"]\n[[groups]]\nid = \"g2\"\norg = \"o\"\nstate = \"paused\"\n";

    fn key(group: &str, digest: u8, previous: Option<(Digest, u64)>) -> Arc<ApiKey> {
        let previous = previous.map(Box::new);
        Arc::new(ApiKey::new(
            ApiKeyParts {
                id: "key_x".into(),
                group: group.into(),
                digest: [digest; 32],
                previous,
                state: KeyState::Active,
                expires_at: None,
                limits: Limits::default(),
                models: None,
                allowed_cidrs: None,
                client_cert: None,
                owner: None,
                created_at: 0,
                secret_at: 0,
                rotation_s: None,
                guardrails: None,
                req: None,
            },
            Arc::default(),
        ))
    }

    #[test]
    fn keys_resolve_per_snapshot_and_follow_moves_and_regeneration() {
        let dir = Directory::default();
        let s1 = snapshot(POLICY, 1);
        let k = key("g1", 1, None);
        dir.put(k.clone(), None);
        let e = dir.lookup(&[1; 32], &s1, 100).unwrap();
        assert_eq!(&*e.group.id, "g1");
        assert!(e.allowed[0] && !e.allowed[1]);
        assert!(matches!(
            dir.lookup(&[2; 32], &s1, 100),
            Err(GatewayError::InvalidApiKey)
        ));
        // Move: the same digest now resolves to g2.
        let moved = key("g2", 1, None);
        dir.put(moved, Some(&k));
        assert_eq!(&*dir.lookup(&[1; 32], &s1, 100).unwrap().group.id, "g2");
        // Regenerate with a grace period: both digests work until it ends.
        let old = dir.get(&[1; 32]).unwrap();
        let regen = key("g2", 2, Some(([1; 32], 200)));
        dir.put(regen.clone(), Some(&old));
        assert!(dir.lookup(&[2; 32], &s1, 150).is_ok());
        assert!(dir.lookup(&[1; 32], &s1, 150).is_ok());
        assert!(dir.lookup(&[1; 32], &s1, 200).is_err());
        // Without grace: the old digest is gone at once.
        let regen2 = key("g2", 3, None);
        dir.put(regen2, Some(&regen));
        assert!(dir.lookup(&[1; 32], &s1, 150).is_err());
        assert!(dir.lookup(&[2; 32], &s1, 150).is_err());
        assert!(dir.lookup(&[3; 32], &s1, 150).is_ok());
        assert_eq!(dir.keys().len(), 1);
        // A reload that removes the group: the key is refused, not served.
        let s2 = snapshot(
            &POLICY.replace(
                "[[groups]]\nid = \"g2\"\norg = \"o\"\nstate = \"paused\"\n",
                "",
            ),
            2,
        );
        assert!(matches!(
            dir.lookup(&[3; 32], &s2, 150),
            Err(GatewayError::KeyDisabled(_))
        ));
    }

    #[test]
    fn an_api_key_fits_a_256_byte_allocation() {
        // With the Arc's two counts; rarely-used fields are boxed (`ApiKeyDef`).
        assert!(std::mem::size_of::<ApiKey>() <= 240);
        let k = key("g1", 1, Some(([9; 32], 5)));
        assert_eq!(k.previous(), Some(&([9; 32], 5)));
        assert!(key("g1", 1, None).def.rare.is_none());
    }

    #[test]
    fn group_overrides_yield_to_a_changed_file_state() {
        let dir = Directory::default();
        let s1 = snapshot(POLICY, 1);
        let g1 = s1.groups.get("g1").unwrap();
        assert_eq!(dir.group_state(g1), GroupState::Active);
        dir.set_group_override(
            &g1.id,
            Some(StateOverride {
                state: GroupState::Paused,
                file_state: GroupState::Active,
            }),
        );
        assert_eq!(dir.group_state(g1), GroupState::Paused);
        let s2 = snapshot(
            &POLICY.replace(
                "models = [\"a\"]\n",
                "models = [\"a\"]\nstate = \"quarantined\"\n",
            ),
            2,
        );
        assert_eq!(
            dir.group_state(s2.groups.get("g1").unwrap()),
            GroupState::Quarantined
        );
    }
}
