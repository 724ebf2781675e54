//! SIGHUP / `POST /v1/reload`: wait until the file is at rest (`settle`), validate it,
//! build a new snapshot off the request path, swap it in atomically. An invalid file
//! changes nothing.

pub(crate) mod retire;
mod settle;

use crate::clock::Clock;
use crate::control::events::{Event, Events};
use crate::policy::config::{self, Config};
use crate::policy::snapshot::{Snapshot, SystemEnvironment};
use crate::proxy::last_seen::LastSeen;
use crate::proxy::route::health::Health;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

type AfterSwap = dyn Fn(&Snapshot, &Snapshot) + Send + Sync;

/// The live policy: the snapshot every new request loads, and how to rebuild it.
pub(crate) struct Policy {
    pub(crate) path: PathBuf,
    pub(crate) current: Arc<ArcSwap<Snapshot>>,
    generation: AtomicU64,
    /// Serialises reloads (SIGHUP and the admin endpoint may race).
    lock: Mutex<()>,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    /// Target health survives reloads.
    pub(crate) health: Arc<Health>,
    /// Keys' last use survives reloads.
    pub(crate) last_seen: Arc<LastSeen>,
    /// Called with the old and the new snapshot after every successful reload.
    after_swap: OnceLock<Box<AfterSwap>>,
    /// `config.reloaded` / `config.reload_failed` go here (audit trail), stamped by the
    /// clock.
    events: OnceLock<(Arc<Events>, Arc<dyn Clock>)>,
}

impl Policy {
    pub(crate) fn new(
        path: PathBuf,
        config: Config,
        last_seen: Arc<LastSeen>,
    ) -> anyhow::Result<Policy> {
        let health = Arc::new(Health::default());
        let snapshot = Snapshot::build(config, &last_seen, None, 1, &SystemEnvironment, &health)?;
        Ok(Policy {
            path,
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            generation: AtomicU64::new(1),
            lock: Mutex::new(()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            health,
            last_seen,
            after_swap: OnceLock::new(),
            events: OnceLock::new(),
        })
    }

    pub(crate) fn set_events(&self, events: Arc<Events>, clock: Arc<dyn Clock>) {
        let _ = self.events.set((events, clock));
    }

    /// Registers what must follow a reload (the control plane reconciles group state).
    pub(crate) fn on_reload(&self, f: impl Fn(&Snapshot, &Snapshot) + Send + Sync + 'static) {
        let _ = self.after_swap.set(Box::new(f));
    }

    /// Blocking: waits for the file to settle, reads it, resolves provider hosts. Returns
    /// the new generation.
    pub(crate) fn reload(&self) -> Result<u64, String> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let settle = self.current.load().server.reload_settle;
        let mut keys = (0, 0);
        let result = settle::read_settled(&self.path, settle, settle::give_up_after(settle))
            .map_err(|e| format!("{}: {e}", self.path.display()))
            .and_then(|bytes| {
                let text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_string())?;
                config::parse_config(&text, &self.path).map_err(|e| e.to_string())
            })
            .and_then(|cfg| {
                let old = self.current.load();
                let (a, b) = (&cfg.server, &old.server);
                if a.listen != b.listen
                    || a.threads != b.threads
                    || a.admin_listen != b.admin_listen
                    || a.work_stealing != b.work_stealing
                    || a.upstream_keepalive_pool_size != b.upstream_keepalive_pool_size
                {
                    log::warn!("reload: listen/admin_listen/threads/work_stealing/upstream_keepalive_pool_size changes take effect only after a restart or upgrade (-u)");
                }
                if a.tracing != b.tracing {
                    log::warn!("reload: [tracing] changes take effect only after a restart or upgrade (-u)");
                }
                let generation = self.generation.load(Ordering::Relaxed) + 1;
                let snapshot = Snapshot::build(cfg, &self.last_seen, Some(&old), generation, &SystemEnvironment, &self.health).map_err(|e| e.to_string())?;
                keys = key_changes(&old, &snapshot);
                let old = self.current.swap(Arc::new(snapshot));
                if let Some(f) = self.after_swap.get() {
                    f(&old, &self.current.load());
                }
                retire::retire(old);
                self.generation.store(generation, Ordering::Relaxed);
                Ok(generation)
            });
        let (added, removed) = keys;
        if let Some((events, clock)) = self.events.get() {
            events.emit_logged(&Event {
                kind: if result.is_ok() {
                    crate::control::events::EventKind::ConfigReloaded
                } else {
                    crate::control::events::EventKind::ConfigReloadFailed
                },
                at_ms: clock.now_ms(),
                actor: "system".into(),
                org: None,
                group: None,
                key_id: None,
                before: None,
                after: Some(match &result {
                    Ok(g) => serde_json::json!({"generation": g, "file": self.path.display().to_string(), "keys_added": added, "keys_removed": removed}),
                    Err(e) => serde_json::json!({"error": e, "file": self.path.display().to_string()}),
                }),
                secret: None,
            });
        }
        match &result {
            Ok(g) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "policy reloaded from {} (generation {g}): keys: {added} added, {removed} removed; read after {} unchanged, {} ms in all",
                    self.path.display(),
                    humantime::format_duration(settle),
                    started.elapsed().as_millis()
                );
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                log::error!("reload failed, the previous policy stays in force: {e}");
            }
        }
        result
    }
}

/// File keys (by id) the new snapshot has and the old one had not, and the reverse.
fn key_changes(old: &Snapshot, new: &Snapshot) -> (usize, usize) {
    let (a, b) = (old.key_ids(), new.key_ids());
    (b.difference(&a).count(), a.difference(&b).count())
}

/// Set by the SIGHUP handler installed first thing in `main`, so a hangup that arrives
/// while the process is still starting is neither fatal nor lost.
pub fn install_early_sighup_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())?;
    Ok(flag)
}

/// Background service (runs after daemonizing) that turns SIGHUP into reloads.
pub(crate) struct SighupService {
    pub(crate) policy: Arc<Policy>,
    pub(crate) early: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for SighupService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                return;
            }
        };
        let mut first = self.early.swap(false, Ordering::SeqCst);
        loop {
            if !first {
                tokio::select! {
                    _ = hup.recv() => {}
                    _ = shutdown.changed() => return,
                }
            }
            first = false;
            let policy = self.policy.clone();
            retire::in_background("tollgate-reload", move || policy.reload()).await;
        }
    }
}

/// Background service that re-resolves provider host names every 30 s (every 5 s while
/// one of them has no address yet).
pub(crate) struct DnsService {
    pub(crate) policy: Arc<Policy>,
}

#[async_trait]
impl BackgroundService for DnsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut wait = std::time::Duration::from_secs(30);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.policy.current.load_full();
            let unresolved = tokio::task::spawn_blocking(move || {
                crate::policy::snapshot::refresh_addresses(&snapshot, &SystemEnvironment)
            })
            .await
            .unwrap_or(0);
            wait = std::time::Duration::from_secs(if unresolved > 0 { 5 } else { 30 });
        }
    }
}
