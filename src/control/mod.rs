//! The control plane: API-made keys and group runtime state, managed through the admin API.
//!
//! Every write follows one order: validate against the current snapshot → write the
//! record(s) to the store → emit the event(s) (the audit trail writes to the same store) →
//! commit (fsync) → update the [`Directory`] the data plane reads → answer. So a 2xx means
//! the change is on disk and the very next request follows it; a crash before the commit
//! loses the change and its audit event together, and no client saw a 2xx for it.
//!
//! Writes are serialised by one lock (they are rare next to requests, and it makes
//! concurrent edits of one key linearisable). Reads need no lock.

pub mod admin;
pub(crate) mod audit;
pub mod events;
mod groups;
pub(crate) mod invoices;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) use groups::Bulk;
pub(crate) use tokens::Role;
pub(crate) mod bulk_keys;
mod keys;
pub(crate) mod lifecycle;
pub(crate) mod reconcile;
mod reqpolicy;
mod requests;
mod selfservice;
mod spec;
pub(crate) mod spend;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use spec::parse_record;
pub(crate) use view::GroupView;

use crate::clock::{Clock, SystemClock};
use crate::control::events::{Event, Events};
use crate::policy::snapshot::Snapshot;
use crate::proxy::directory::Directory;
use crate::storage::ledger::Ledger;
use crate::storage::ControlStore;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, MutexGuard};

/// An admin API refusal: status, error code, message, and the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
}

impl ApiError {
    pub(crate) fn bad_request(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "invalid_request",
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub(crate) fn not_found(what: &str, id: &str) -> ApiError {
        ApiError {
            status: 404,
            code: "not_found",
            message: format!("no {what} {id:?}"),
            param: None,
        }
    }

    pub(crate) fn managed_by_config(id: &str) -> ApiError {
        ApiError {
            status: 409,
            code: "managed_by_config",
            message: format!("key {id} is defined in the policy file: change it there and reload"),
            param: None,
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        log::error!("admin API: {e}");
        ApiError {
            status: 500,
            code: "internal_error",
            message: "the change could not be stored; nothing was changed".into(),
            param: None,
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Who is calling: the root token from the environment, the lifecycle task (`system`), or a
/// token made through the API, with its role, group scope and owner.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// `root`, `system` or the token's id: the audit trail's actor.
    pub(crate) id: String,
    pub(crate) role: Role,
    /// The groups the token is scoped to; `None` = all.
    pub(crate) groups: Option<Vec<String>>,
    /// Developer tokens: the owner their keys get.
    pub(crate) owner: Option<String>,
}

impl Actor {
    pub(crate) fn root() -> Actor {
        Actor {
            id: "root".into(),
            role: Role::Admin,
            groups: None,
            owner: None,
        }
    }

    pub(crate) fn system() -> Actor {
        Actor {
            id: "system".into(),
            ..Actor::root()
        }
    }

    /// Whether a group is inside the token's scope (else it is answered as not found).
    pub(crate) fn sees_group(&self, group: &str) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|gs| gs.iter().any(|g| g == group))
    }

    /// Whether a key is inside the token's scope: its group, and for developers, its owner.
    pub(crate) fn sees_key(&self, group: &str, owner: Option<&str>) -> bool {
        self.sees_group(group)
            && (self.role != Role::Developer
                || owner.is_some_and(|o| Some(o) == self.owner.as_deref()))
    }
}

/// The control plane: four services over one [`Writer`]. Each service is a view borrowed
/// from here (`cp.keys().create(..)`, `cp.groups().set_state(..)`, …); the admin route
/// calls the service that owns it.
pub struct ControlPlane {
    w: Writer,
    /// Admin tokens made through the API.
    tokens: tokens::TokenTable,
}

/// What every write goes through, whichever service makes it: the lock that serialises
/// writes, the store, the events, the directory the data plane reads, the policy snapshot
/// and the clock.
struct Writer {
    store: Arc<dyn ControlStore>,
    directory: Arc<Directory>,
    policy: Arc<ArcSwap<Snapshot>>,
    /// Spend of keys and groups (absent in pure unit tests).
    ledger: Option<Arc<Ledger>>,
    events: Arc<Events>,
    /// What the control plane reads as now: creation and update times, expiries from a
    /// `ttl`, key status (`expired`), grace periods, spend periods.
    clock: Arc<dyn Clock>,
    write: Mutex<()>,
}

/// API keys: create, list, edit, revoke, regenerate, move; their lifecycle (keys.rs,
/// lifecycle.rs).
#[derive(Clone, Copy)]
pub(crate) struct Keys<'a> {
    w: &'a Writer,
}

/// Groups: their views, runtime state and bulk actions on their keys (groups.rs).
#[derive(Clone, Copy)]
pub(crate) struct Groups<'a> {
    w: &'a Writer,
}

/// Admin tokens (tokens.rs).
#[derive(Clone, Copy)]
pub(crate) struct Tokens<'a> {
    w: &'a Writer,
    table: &'a tokens::TokenTable,
}

/// Spend reports and invoices from the ledger (spend.rs, invoices.rs).
#[derive(Clone, Copy)]
pub(crate) struct Spend<'a> {
    w: &'a Writer,
}

/// Reads every stored key into the directory: one thread walks the store while another
/// parses (the two halves cost about the same). Returns (loaded, unreadable).
fn load_keys(
    store: &dyn ControlStore,
    directory: &Directory,
    last_used: &std::collections::HashMap<String, u64>,
) -> anyhow::Result<(usize, usize)> {
    // The reader outruns the parser: what is queued is held raw (~450 B a key), so the
    // queue stays short (16 batches of 4096 held ~30 MB).
    const BATCH: usize = 1024;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(4);
        let reader = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            store.scan_raw_keys(&mut |v| {
                batch.push(v.to_vec());
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    return tx.send(full).is_ok();
                }
                true
            })?;
            let _ = tx.send(batch);
            anyhow::Ok(())
        });
        let mut interner = spec::Interner::default();
        let (mut loaded, mut bad) = (0, 0);
        for batch in rx {
            for raw in batch {
                let parsed = serde_json::from_slice::<crate::storage::KeyRecord>(&raw)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        let seen = last_used.get(&r.id).copied().unwrap_or(0);
                        let cell = Arc::new(crate::proxy::last_seen::LastUsed::seeded(seen));
                        spec::parse_record_interned(&r, cell, &mut interner)
                            .map_err(|e| format!("key {}: {}", r.id, e.message))
                    });
                match parsed {
                    Ok(k) => {
                        directory.put(Arc::new(k), None);
                        loaded += 1;
                    }
                    Err(e) => {
                        bad += 1;
                        log::error!("store: a key cannot be loaded: {e}");
                    }
                }
            }
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("store reader panicked"))??;
        Ok((loaded, bad))
    })
}

impl ControlPlane {
    /// Loads API keys and group overrides from the store into a fresh directory, and seeds
    /// the file keys' last-use cells (held by `policy`'s snapshot) from the store.
    pub fn open(
        store: Arc<dyn ControlStore>,
        directory: Arc<Directory>,
        policy: Arc<ArcSwap<Snapshot>>,
        ledger: Option<Arc<Ledger>>,
        events: Arc<Events>,
    ) -> anyhow::Result<ControlPlane> {
        let started = std::time::Instant::now();
        let last_used: std::collections::HashMap<String, u64> =
            store.last_used()?.into_iter().collect();
        let snapshot = policy.load();
        if !last_used.is_empty() {
            for k in snapshot.file_keys() {
                if let Some(&secs) = last_used.get(&*k.id) {
                    k.last_used.seed(secs);
                }
            }
        }
        let (loaded, bad) = load_keys(&*store, &directory, &last_used)?;
        drop(last_used);
        for o in store.group_overrides()? {
            if !groups::restore_override(&directory, &snapshot, &o) {
                log::info!(
                    "group {}: the policy file's state changed while stopped; the API's {:?} no longer applies",
                    o.group,
                    o.state
                );
                store.put_group_override(&o.group, None)?;
            }
        }
        log::info!(
            "store: {loaded} API keys loaded in {:?}{}",
            started.elapsed(),
            if bad > 0 {
                " (some could not be loaded: see above)"
            } else {
                ""
            }
        );
        let tokens = tokens::TokenTable::default();
        let live = tokens::load(&*store, &tokens)?;
        log::info!("store: {live} admin tokens loaded");
        Ok(ControlPlane {
            w: Writer {
                store,
                directory,
                policy,
                ledger,
                events,
                clock: Arc::new(SystemClock),
                write: Mutex::new(()),
            },
            tokens,
        })
    }

    /// The same control plane reading time from `clock` (tests: a
    /// [`crate::clock::ManualClock`]).
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> ControlPlane {
        self.w.clock = clock;
        self
    }

    pub(crate) fn keys(&self) -> Keys<'_> {
        Keys { w: &self.w }
    }

    pub(crate) fn groups(&self) -> Groups<'_> {
        Groups { w: &self.w }
    }

    pub(crate) fn tokens(&self) -> Tokens<'_> {
        Tokens {
            w: &self.w,
            table: &self.tokens,
        }
    }

    pub(crate) fn spend(&self) -> Spend<'_> {
        Spend { w: &self.w }
    }
}

impl Writer {
    /// Now, in milliseconds since the Unix epoch, as the control plane reads it.
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn now_s(&self) -> u64 {
        self.now_ms() / 1000
    }

    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.now_ms())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, e: Event) -> ApiResult<()> {
        self.events.emit(&e).map_err(ApiError::internal)
    }

    fn commit(&self) -> ApiResult<()> {
        self.store.commit().map_err(ApiError::internal)
    }
}
