//! Key lifecycle, in the background (docs/admin-api.md "Key lifecycle"): keys unused for their
//! group's `idle_disable` are disabled, keys with a `rotation_interval` are regenerated
//! when due (the old secret valid 24 h more; the new one goes out only in the `key.rotated`
//! event, for the signed webhook), keys due to expire within [`EXPIRY_NOTICE`] are announced
//! once per expiry (`key.expiring`), and last-use times are persisted. Runs every [`EVERY`]
//! (at least once a minute).

use super::{Actor, ControlPlane, Keys};
use crate::clock::Clock;
use crate::policy::config::KeyState;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const EVERY: Duration = Duration::from_secs(30);
/// How long a rotated key's previous secret keeps working.
pub(crate) const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
/// How long before `expires_at` a key is announced as `key.expiring` (docs/operations.md "Webhooks").
pub(crate) const EXPIRY_NOTICE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Keys<'_> {
    /// One pass at `now_ms` (the lifecycle service's clock); returns (idle-disabled,
    /// rotated).
    pub(crate) fn lifecycle_pass(&self, now_ms: u64) -> (usize, usize) {
        let system = Actor::system();
        let now = now_ms / 1000;
        let snapshot = self.w.policy.load_full();
        let (mut idle, mut rotated) = (0, 0);
        for k in self.w.directory.keys() {
            if k.state != KeyState::Active {
                continue;
            }
            let Some(group) = snapshot.groups.get(&k.group) else {
                continue;
            };
            if let Some(limit) = group.idle_disable {
                let last = k.last_used.get().max(k.created_at);
                if now.saturating_sub(last) >= limit.as_secs() {
                    let idle_disable = |r: &mut crate::storage::KeyRecord, _: &_| {
                        r.status = crate::storage::KeyStatus::Disabled;
                        Ok(crate::control::events::EventKind::KeyIdleDisabled)
                    };
                    match self.update(&system, &k.id, idle_disable, None) {
                        Ok(_) => idle += 1,
                        Err(e) => log::error!("idle_disable {}: {}", k.id, e.message),
                    }
                    continue;
                }
            }
            if let Some(every) = k.rotation_s() {
                if now >= k.secret_at.saturating_add(every) {
                    match self.rotate(
                        &system,
                        &k.id,
                        ROTATION_GRACE,
                        crate::control::events::EventKind::KeyRotated,
                    ) {
                        Ok(_) => rotated += 1,
                        Err(e) => log::error!("rotation {}: {}", k.id, e.message),
                    }
                }
            }
        }
        self.expiry_notices(&snapshot, now_ms);
        let mut seen: Vec<(Arc<str>, u64)> = self
            .w
            .directory
            .keys()
            .iter()
            .filter_map(|k| Some((k.id.clone(), k.last_used.take_changed()?)))
            .collect();
        seen.extend(
            snapshot
                .file_keys()
                .filter_map(|k| Some((k.id.clone(), k.last_used.take_changed()?))),
        );
        if !seen.is_empty() {
            if let Err(e) = self.w.store.put_last_used(&seen) {
                log::error!("store: last_used: {e}");
            }
        }
        (idle, rotated)
    }
}

fn unix_s(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keys<'_> {
    /// `key.expiring` for every active key (API or file) whose `expires_at` is within
    /// [`EXPIRY_NOTICE`] and not yet past, once per key and expiry: the expiry announced is
    /// kept in the store, so a restart does not announce it again, and a key whose expiry
    /// is moved is announced anew.
    fn expiry_notices(&self, snapshot: &crate::policy::snapshot::Snapshot, now_ms: u64) {
        let now = now_ms / 1000;
        let due = |expires_at: Option<std::time::SystemTime>| {
            let at = unix_s(expires_at?);
            (now < at && at <= now + EXPIRY_NOTICE.as_secs()).then_some(at)
        };
        let mut found: Vec<(Arc<str>, Arc<str>, u64)> = self
            .w
            .directory
            .keys()
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .filter_map(|k| Some((k.id.clone(), k.group.clone(), due(k.expires_at)?)))
            .collect();
        found.extend(
            snapshot
                .file_keys()
                .filter(|k| k.state == KeyState::Active)
                .filter_map(|k| Some((k.id.clone(), k.group.id.clone(), due(k.expires_at)?))),
        );
        let mut announced = false;
        for (id, group, at) in found {
            match self.w.store.expiry_notice(&id) {
                Ok(Some(prev)) if prev == at => continue,
                Ok(_) => {}
                Err(e) => {
                    log::error!("store: expiry notice {id}: {e}");
                    continue;
                }
            }
            if let Err(e) = self.w.store.put_expiry_notice(&id, at) {
                log::error!("store: expiry notice {id}: {e}");
                continue;
            }
            let org = snapshot.groups.get(&group).map(|g| g.org.id.to_string());
            self.w.events.emit_logged(&crate::control::events::Event {
                kind: crate::control::events::EventKind::KeyExpiring,
                at_ms: now_ms,
                actor: "system".into(),
                org,
                group: Some(group.to_string()),
                key_id: Some(id.to_string()),
                before: None,
                after: Some(serde_json::json!({
                    "expires_at": crate::clock::rfc3339(at),
                    "seconds_left": at - now,
                })),
                secret: None,
            });
            announced = true;
        }
        if announced {
            if let Err(e) = self.w.store.commit() {
                log::error!("store: expiry notices: {e}");
            }
        }
    }
}

pub(crate) struct LifecycleService {
    pub(crate) control: Arc<ControlPlane>,
    pub(crate) every: Duration,
    /// What "now" is for idle, rotation and expiry.
    pub(crate) clock: Arc<dyn Clock>,
}

#[async_trait]
impl BackgroundService for LifecycleService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.changed() => return,
            }
            let cp = self.control.clone();
            let now_ms = self.clock.now_ms();
            let _ = tokio::task::spawn_blocking(move || cp.keys().lifecycle_pass(now_ms)).await;
        }
    }
}
