//! Key lifecycle, in the background (SPEC §7 "Key lifecycle"): keys unused for their
//! group's `idle_disable` are disabled, keys with a `rotation_interval` are regenerated
//! when due (the old secret valid 24 h more; the new one goes out only in the `key.rotated`
//! event, for the signed webhook), and last-use times are persisted. Runs every
//! [`EVERY`] (SPEC: at least once a minute).

use super::{now_s, Actor, ControlPlane};
use crate::config::KeyState;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub const EVERY: Duration = Duration::from_secs(30);
/// How long a rotated key's previous secret keeps working.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

impl ControlPlane {
    /// One pass; returns (idle-disabled, rotated).
    pub fn lifecycle_pass(&self) -> (usize, usize) {
        let system = Actor::system();
        let now = now_s();
        let snapshot = self.policy.load_full();
        let (mut idle, mut rotated) = (0, 0);
        for k in self.directory.keys() {
            if k.state != KeyState::Active {
                continue;
            }
            let Some(group) = snapshot.groups.get(&k.group) else {
                continue;
            };
            if let Some(limit) = group.idle_disable {
                let last = k.last_used.get().max(k.created_at);
                if now.saturating_sub(last) >= limit.as_secs() {
                    let idle_disable = |r: &mut crate::store::KeyRecord, _: &_| {
                        r.status = crate::store::KeyStatus::Disabled;
                        Ok("key.idle_disabled")
                    };
                    match self.update_key(&system, &k.id, idle_disable, None) {
                        Ok(_) => idle += 1,
                        Err(e) => log::error!("idle_disable {}: {}", k.id, e.message),
                    }
                    continue;
                }
            }
            if let Some(every) = k.rotation_s {
                if now >= k.secret_at.saturating_add(every) {
                    match self.regenerate(&system, &k.id, ROTATION_GRACE, "key.rotated") {
                        Ok(_) => rotated += 1,
                        Err(e) => log::error!("rotation {}: {}", k.id, e.message),
                    }
                }
            }
        }
        let mut seen: Vec<(Arc<str>, u64)> = self
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
            if let Err(e) = self.store.put_last_used(&seen) {
                log::error!("store: last_used: {e}");
            }
        }
        (idle, rotated)
    }
}

pub struct LifecycleService {
    pub control: Arc<ControlPlane>,
    pub every: Duration,
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
            let _ = tokio::task::spawn_blocking(move || cp.lifecycle_pass()).await;
        }
    }
}
