//! Signed webhooks (docs/operations.md "Webhooks"): lifecycle events a group's receiver should hear about, kept
//! in a queue in the store and POSTed in the background.
//!
//! ```text
//!  Events ──► Webhooks (subscriber) ── body + id ──► queue ([`WebhookQueue`] in the store)
//!                                                        │  flushed before any attempt
//!  DeliveryService (BackgroundService, own HTTP client) ◄┘
//!     ├─ POST with x-tollgate-signature, ≤ CONCURRENCY at once, timeout per attempt
//!     ├─ 2xx: removed; else retried with backoff (1 s doubling to 10 min) for > 1 h
//!     └─ each outcome: `webhook.delivered` / `webhook.failed` event (audit) + metric
//!  gateway `logging` ──► ErrorRates (counters) ◄── checked by DeliveryService ──► `error_rate.high`
//! ```
//!
//! The body is made once, when the event happens, so every retry carries the same `id` and
//! the same bytes; only the signature's timestamp is renewed per attempt. Nothing of this
//! runs on the request path except the error-rate counters (one map lookup, one short lock).

pub(crate) mod channels;
pub(crate) mod deliver;
mod mail;

use crate::control::events::{Event, EventKind, Subscriber};
use crate::policy::snapshot::Snapshot;
use crate::proxy::directory::Directory;
use crate::storage::{Pending, WebhookQueue};
use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The events a group's receiver is sent (docs/operations.md "Webhooks"); every other event stays in the audit
/// trail only (delivery outcomes among them, so a delivery never begets another).
pub(crate) const DELIVERED: &[EventKind] = &[
    EventKind::BudgetThreshold,
    EventKind::BudgetExhausted,
    EventKind::GroupPaused,
    EventKind::GroupResumed,
    EventKind::GroupQuarantined,
    EventKind::KeyRevoked,
    EventKind::KeyIdleDisabled,
    EventKind::KeyRotated,
    EventKind::KeyExpiring,
    EventKind::ErrorRateHigh,
    EventKind::SpendDrift,
];

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub(crate) const SIGNATURE_HEADER: &str = "x-tollgate-signature";

/// The signature header's value for `body` sent at `t`, keyed by `secret`.
pub(crate) fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of one event: `{id, event, org, group, key_id, at, detail}`. `detail` is
/// the event's `after` (its fields at top level), its `before`, the actor, and for
/// `key.rotated` the new secret as `key` — the one place that secret is ever written.
pub(crate) fn body(e: &Event, id: &str, org: Option<&str>, group: Option<&str>) -> String {
    let mut detail = match &e.after {
        Some(Value::Object(m)) => m.clone(),
        Some(v) => Map::from_iter([("after".to_string(), v.clone())]),
        None => Map::new(),
    };
    if let Some(b) = &e.before {
        detail.insert("before".into(), b.clone());
    }
    detail.insert("actor".into(), json!(e.actor));
    if let Some(s) = &e.secret {
        detail.insert("key".into(), json!(s.expose()));
    }
    json!({
        "id": id,
        "event": e.kind,
        "org": org,
        "group": group,
        "key_id": e.key_id,
        "at": crate::clock::rfc3339(e.at_ms / 1000),
        "detail": detail,
    })
    .to_string()
}

fn new_id() -> String {
    crate::secret::base62("evt_", 20)
}

/// The events subscriber: turns an event into one queue entry per receiver. It runs where
/// the event is emitted (an admin call, the ledger tick, the lifecycle pass), writes to the
/// store and wakes the delivery service; it never waits on the network.
pub(crate) struct Webhooks {
    pub(crate) queue: Arc<dyn WebhookQueue>,
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    pub(crate) directory: Arc<Directory>,
    /// Wakes the delivery service when an entry is queued.
    pub(crate) wake: tokio::sync::Notify,
    /// Entries were queued since the store was last flushed by the delivery service.
    pub(crate) dirty: AtomicBool,
}

/// A group's receiver: URL and the env var of its secret ("" when unsigned), or the
/// addresses to mail (`mailto:a@x,b@y`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receiver {
    /// `None` for an org's own receiver.
    group: Option<String>,
    url: String,
    secret_env: String,
    format: channels::Format,
}

/// The receivers of one layer (org or group): its webhook and its mail list.
fn layer_receivers(
    group: Option<&str>,
    webhook: Option<(&str, &str)>,
    alerts: &crate::policy::config::Alerts,
) -> Vec<Receiver> {
    let mut out = vec![];
    if let Some((url, env)) = webhook {
        out.push(Receiver {
            group: group.map(str::to_string),
            url: url.to_string(),
            secret_env: env.to_string(),
            format: alerts.format,
        });
    }
    if !alerts.email.is_empty() {
        out.push(Receiver {
            group: group.map(str::to_string),
            url: format!("mailto:{}", alerts.email.join(",")),
            secret_env: String::new(),
            format: channels::Format::Email,
        });
    }
    out
}

impl Webhooks {
    pub(crate) fn new(
        queue: Arc<dyn WebhookQueue>,
        policy: Arc<ArcSwap<Snapshot>>,
        directory: Arc<Directory>,
    ) -> anyhow::Result<Webhooks> {
        Ok(Webhooks {
            queue,
            policy,
            directory,
            wake: tokio::sync::Notify::new(),
            dirty: AtomicBool::new(false),
        })
    }

    /// The group an event is about: its own, or its key's (a key's budget event names the
    /// key only).
    fn group_of(&self, e: &Event, snapshot: &Snapshot) -> Option<String> {
        if let Some(g) = &e.group {
            return Some(g.clone());
        }
        let key = e.key_id.as_deref()?;
        if let Some(k) = snapshot.file_keys().find(|k| &*k.id == key) {
            return Some(k.group.id.to_string());
        }
        self.directory
            .keys()
            .iter()
            .find(|k| &*k.id == key)
            .map(|k| k.group.to_string())
    }

    /// Where an event goes: its group's receiver; for an org's event (no group), the org's
    /// own receiver (`[[orgs]] webhook`) if it has one, else every receiver of the org's
    /// groups. A receiver named by several groups gets it once.
    fn receivers(&self, group: Option<&str>, org: Option<&str>, s: &Snapshot) -> Vec<Receiver> {
        let mut out: Vec<Receiver> = vec![];
        if let (None, Some(o)) = (group, org) {
            if let Some(o) = s.orgs.get(o) {
                let hook = o.webhook.as_ref().map(|(u, e)| (u.as_str(), e.as_str()));
                let own = layer_receivers(None, hook, &o.alerts);
                if !own.is_empty() {
                    return own;
                }
            }
        }
        let groups: Vec<_> = match (group, org) {
            (Some(g), _) => s.groups.get(g).into_iter().collect(),
            (None, Some(o)) => {
                let mut gs: Vec<_> = s.groups.values().filter(|g| *g.org.id == *o).collect();
                gs.sort_by(|a, b| a.id.cmp(&b.id));
                gs
            }
            (None, None) => vec![],
        };
        for g in groups {
            let env = g.webhook_secret_env.as_deref().unwrap_or_default();
            let hook = g.webhook.as_deref().map(|u| (u, env));
            for r in layer_receivers(Some(&g.id), hook, &g.alerts) {
                if !out
                    .iter()
                    .any(|o| o.url == r.url && o.secret_env == r.secret_env)
                {
                    out.push(r);
                }
            }
        }
        out
    }
}

impl Subscriber for Webhooks {
    fn on_event(&self, e: &Event) -> anyhow::Result<()> {
        if !DELIVERED.contains(&e.kind) {
            return Ok(());
        }
        let snapshot = self.policy.load();
        let group = self.group_of(e, &snapshot);
        let org = e.org.clone().or_else(|| {
            let g = snapshot.groups.get(group.as_deref()?)?;
            Some(g.org.id.to_string())
        });
        let receivers = self.receivers(group.as_deref(), org.as_deref(), &snapshot);
        if receivers.is_empty() {
            return Ok(());
        }
        let id = new_id();
        let body = body(e, &id, org.as_deref(), group.as_deref());
        let entries: Vec<Pending> = receivers
            .into_iter()
            .map(|r| Pending {
                id: id.clone(),
                event: e.kind.as_str().to_string(),
                org: org.clone(),
                group: r.group,
                key_id: e.key_id.clone(),
                url: r.url,
                secret_env: r.secret_env,
                body: body.clone(),
                attempts: 0,
                created_ms: e.at_ms,
                next_ms: 0,
                format: r.format.stored(),
            })
            .collect();
        self.queue.push(&entries)?;
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
