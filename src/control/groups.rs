//! Group operations of the admin API: list, get, pause / resume / quarantine (overrides
//! kept in the store), and bulk disable / enable / revoke of a group's API keys.

use super::view::{parse_state, GroupView, KeyCounts, List};
use super::{Actor, ApiError, ApiResult, Groups};
use crate::control::events::{Event, EventKind};
use crate::policy::config::{GroupState, KeyState};
use crate::policy::snapshot::{GroupEntry, Snapshot};
use crate::proxy::directory::{Directory, StateOverride};
use crate::storage::{GroupOverride, KeyRecord, KeyStatus};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Puts a stored override back in the directory if its group still has the file state it
/// was made over; returns false when it no longer applies (the caller drops it).
pub(super) fn restore_override(dir: &Directory, snapshot: &Snapshot, o: &GroupOverride) -> bool {
    let Some(g) = snapshot.groups.get(o.group.as_str()) else {
        return false;
    };
    if g.state.as_str() != o.file_state {
        return false;
    }
    {
        dir.set_group_override(
            &g.id,
            Some(StateOverride {
                state: parse_state(&o.state),
                file_state: parse_state(&o.file_state),
            }),
        );
    }
    true
}

/// A bulk action's answer (`BulkResult`): keys changed, and keys skipped (file keys, keys
/// already in the target state, revoked keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct BulkResult {
    pub(crate) affected: u64,
    pub(crate) skipped: u64,
}

/// Which bulk action.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bulk {
    Disable,
    Enable,
    Revoke,
}

impl Groups<'_> {
    /// A group the caller may see (else 404, as if it did not exist).
    fn visible(&self, actor: &Actor, snapshot: &Snapshot, id: &str) -> ApiResult<Arc<GroupEntry>> {
        snapshot
            .groups
            .get(id)
            .filter(|_| actor.sees_group(id))
            .cloned()
            .ok_or_else(|| ApiError::not_found("group", id))
    }

    /// Key counts per group and status, file and API keys.
    /// Keys per group: `[active, disabled, expired, revoked, of which from the file]`.
    pub(crate) fn key_counts(&self, snapshot: &Snapshot) -> HashMap<Arc<str>, [u64; 5]> {
        let now = self.w.now();
        let mut counts: HashMap<Arc<str>, [u64; 5]> = HashMap::new();
        let slot = |state: KeyState, expires: Option<SystemTime>| -> usize {
            match super::view::status_name(state, expires, now) {
                "active" => 0,
                "disabled" => 1,
                "expired" => 2,
                _ => 3,
            }
        };
        for k in snapshot.file_keys() {
            let c = counts.entry(k.group.id.clone()).or_default();
            c[slot(k.state, k.expires_at)] += 1;
            c[4] += 1;
        }
        for k in self.w.directory.keys() {
            let c = counts.entry(k.group.clone()).or_default();
            c[slot(k.state, k.expires_at)] += 1;
        }
        counts
    }

    /// `GET /v1/groups`.
    pub(crate) fn list(&self, actor: &Actor) -> List<GroupView> {
        let snapshot = self.w.policy.load_full();
        let counts = self.key_counts(&snapshot);
        let mut groups: Vec<&Arc<GroupEntry>> = snapshot
            .groups
            .values()
            .filter(|g| actor.sees_group(&g.id))
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        let data = groups
            .into_iter()
            .map(|g| self.w.group_view(g, KeyCounts::of(counts.get(&g.id))))
            .collect();
        List {
            data,
            next_cursor: None,
        }
    }

    /// `GET /v1/groups/{id}`.
    pub(crate) fn get(&self, actor: &Actor, id: &str) -> ApiResult<GroupView> {
        let snapshot = self.w.policy.load_full();
        let g = self.visible(actor, &snapshot, id)?;
        let counts = self.key_counts(&snapshot);
        Ok(self.w.group_view(&g, KeyCounts::of(counts.get(&g.id))))
    }

    /// `POST /v1/groups/{id}/pause|resume|quarantine`.
    pub(crate) fn set_state(
        &self,
        actor: &Actor,
        id: &str,
        to: GroupState,
    ) -> ApiResult<GroupView> {
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let g = self.visible(actor, &snapshot, id)?;
        let before = self.w.directory.group_state(&g);
        // Back to the file's own state: no override needed.
        let o = (to != g.state).then(|| GroupOverride {
            group: g.id.to_string(),
            state: to.as_str().into(),
            file_state: g.state.as_str().into(),
            at: self.w.now_s(),
            by: actor.id.clone(),
        });
        let previous = self
            .w
            .store
            .group_overrides()
            .ok()
            .and_then(|all| all.into_iter().find(|p| p.group == *g.id));
        self.w
            .store
            .put_group_override(&g.id, o.as_ref())
            .map_err(ApiError::internal)?;
        let kind = match to {
            GroupState::Active => EventKind::GroupResumed,
            GroupState::Paused => EventKind::GroupPaused,
            GroupState::Quarantined => EventKind::GroupQuarantined,
        };
        let committed = self
            .w
            .emit(Event {
                kind,
                at_ms: self.w.now_ms(),
                actor: actor.id.clone(),
                org: Some(g.org.id.to_string()),
                group: Some(g.id.to_string()),
                key_id: None,
                before: Some(json!({"state": before.as_str()})),
                after: Some(json!({"state": to.as_str()})),
                secret: None,
            })
            .and_then(|()| self.w.commit());
        if let Err(e) = committed {
            // Put back what was there, so the store and the data plane still agree.
            let _ = self.w.store.put_group_override(&g.id, previous.as_ref());
            return Err(e);
        }
        self.w.directory.set_group_override(
            &g.id,
            o.map(|_| StateOverride {
                state: to,
                file_state: g.state,
            }),
        );
        drop(_guard);
        self.get(actor, id)
    }

    /// `POST /v1/groups/{id}/keys/disable|enable|revoke` → `{affected, skipped}`. File keys
    /// and keys already in the target state (or revoked) are skipped.
    pub(crate) fn bulk(&self, actor: &Actor, id: &str, action: Bulk) -> ApiResult<BulkResult> {
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let g = self.visible(actor, &snapshot, id)?;
        let file_keys = snapshot.file_keys().filter(|k| k.group.id == g.id).count() as u64;
        let members: Vec<String> = self
            .w
            .directory
            .keys()
            .into_iter()
            .filter(|k| k.group == g.id)
            .map(|k| k.id.to_string())
            .collect();
        let (to, kind) = match action {
            Bulk::Disable => (KeyStatus::Disabled, EventKind::KeyDisabled),
            Bulk::Enable => (KeyStatus::Active, EventKind::KeyEnabled),
            Bulk::Revoke => (KeyStatus::Revoked, EventKind::KeyRevoked),
        };
        let mut changed: Vec<(KeyRecord, KeyRecord)> = vec![];
        let mut skipped = file_keys;
        for kid in members {
            let Some(old) = self.w.store.key(&kid).map_err(ApiError::internal)? else {
                continue;
            };
            if old.status == to || old.status == KeyStatus::Revoked {
                skipped += 1;
                continue;
            }
            let mut new = old.clone();
            new.status = to;
            new.updated_at = self.w.now_s();
            changed.push((old, new));
        }
        let events = changed
            .iter()
            .map(|(o, n)| {
                let before = Some(json!({"status": o.status}));
                self.w
                    .event(kind, actor, n, before, Some(json!({"status": n.status})))
            })
            .collect();
        let pairs: Vec<(Option<&KeyRecord>, &KeyRecord)> =
            changed.iter().map(|(o, n)| (Some(o), n)).collect();
        self.w.apply(&pairs, events)?;
        Ok(BulkResult {
            affected: changed.len() as u64,
            skipped,
        })
    }

    /// After a reload: group overrides made over a file state that has since changed are
    /// dropped for good (the file's new state wins).
    pub(crate) fn after_reload(&self, new: &Snapshot) {
        let _guard = self.w.lock();
        let Ok(stored) = self.w.store.group_overrides() else {
            return;
        };
        let mut dropped = false;
        for o in stored {
            let keep = new
                .groups
                .get(o.group.as_str())
                .is_some_and(|g| g.state.as_str() == o.file_state);
            if !keep {
                log::info!(
                    "group {}: the policy file's state changed; the API's {:?} no longer applies",
                    o.group,
                    o.state
                );
                let id: Arc<str> = o.group.as_str().into();
                self.w.directory.set_group_override(&id, None);
                dropped |= self.w.store.put_group_override(&o.group, None).is_ok();
            }
        }
        if dropped {
            if let Err(e) = self.w.store.commit() {
                log::error!("store: {e}");
            }
        }
    }
}
