//! Lifecycle events of the control plane (a key created, revoked, moved, a group paused, …),
//! emitted in one place and fanned out to subscribers: the audit trail today, webhooks
//! next. Subscribers run synchronously, before the change is committed to the store, so an
//! audited change and its audit event become durable together.

use crate::secret::Secret;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone)]
pub struct Event {
    /// `key.created`, `key.updated`, `key.revoked`, `key.disabled`, `key.enabled`,
    /// `key.regenerated`, `key.moved`, `key.idle_disabled`, `key.rotated`, `group.paused`,
    /// `group.resumed`, `group.quarantined`.
    pub kind: &'static str,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `root` (the admin token from the environment), `system` (lifecycle), or a token id.
    pub actor: String,
    pub org: Option<String>,
    pub group: Option<String>,
    pub key_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The new secret of a rotated key: for the signed `key.rotated` webhook only, never
    /// for the audit trail or a log line.
    pub secret: Option<Secret>,
}

pub trait Subscriber: Send + Sync {
    fn on_event(&self, e: &Event) -> anyhow::Result<()>;
}

#[derive(Default)]
pub struct Events {
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
}

impl Events {
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.subscribers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    /// For events that describe something already done (a budget crossed, a reload):
    /// every subscriber gets it, failures are logged.
    pub fn emit_logged(&self, e: &Event) {
        let subs = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            if let Err(err) = s.on_event(e) {
                log::error!("event {}: {err}", e.kind);
            }
        }
    }

    /// Hands the event to every subscriber; the first failure is returned (the change it
    /// describes must then not be committed).
    pub fn emit(&self, e: &Event) -> anyhow::Result<()> {
        let subs = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            s.on_event(e)?;
        }
        Ok(())
    }
}

/// One log line per event (never the secret).
pub struct EventLog;

impl Subscriber for EventLog {
    fn on_event(&self, e: &Event) -> anyhow::Result<()> {
        log::info!(
            "event {} actor={} group={} key={}",
            e.kind,
            e.actor,
            e.group.as_deref().unwrap_or("-"),
            e.key_id.as_deref().unwrap_or("-")
        );
        Ok(())
    }
}
