//! Lifecycle events of the control plane (a key created, revoked, moved, a group paused, …),
//! emitted in one place and fanned out to subscribers: the audit trail, the log and the
//! webhook queue. Subscribers run synchronously, before the change is committed to the
//! store, so an audited change and its audit event become durable together.

use crate::secret::Secret;
use std::sync::{Arc, RwLock};

/// Declares [`EventKind`] from one list: variant and wire name (the audit trail's `type`,
/// the webhook's `event`, the policy file's `webhook_events`, log lines).
macro_rules! event_kinds {
    ($($variant:ident = $wire:literal),* $(,)?) => {
        /// What happened. The wire names are part of the contract (docs/admin-api.md, §9).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub(crate) enum EventKind {
            $(#[serde(rename = $wire)] $variant,)*
        }

        impl EventKind {
            #[cfg(test)]
            pub(crate) const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $wire,)*
                }
            }
        }
    };
}

event_kinds! {
    KeyCreated = "key.created",
    KeyUpdated = "key.updated",
    KeyRevoked = "key.revoked",
    KeyDisabled = "key.disabled",
    KeyEnabled = "key.enabled",
    KeyRegenerated = "key.regenerated",
    KeyMoved = "key.moved",
    KeyIdleDisabled = "key.idle_disabled",
    KeyRotated = "key.rotated",
    KeyExpiring = "key.expiring",
    GroupPaused = "group.paused",
    GroupResumed = "group.resumed",
    GroupQuarantined = "group.quarantined",
    TokenCreated = "token.created",
    TokenRevoked = "token.revoked",
    ConfigReloaded = "config.reloaded",
    ConfigReloadFailed = "config.reload_failed",
    BudgetThreshold = "budget.threshold",
    BudgetExhausted = "budget.exhausted",
    ErrorRateHigh = "error_rate.high",
    SpendDrift = "spend.drift",
    WebhookDelivered = "webhook.delivered",
    WebhookFailed = "webhook.failed",
    RequestRefused = "request.refused",
    RequestShadowLimited = "request.shadow_limited",
    GuardrailTriggered = "guardrail.triggered",
    LogSinkDropped = "log_sink.dropped",
}

#[cfg(test)]
impl EventKind {
    /// The kind with this wire name.
    pub(crate) fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    /// Unix milliseconds.
    pub(crate) at_ms: u64,
    /// `root` (the admin token from the environment), `system` (lifecycle), or a token id.
    pub(crate) actor: String,
    pub(crate) org: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) key_id: Option<String>,
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
    /// The new secret of a rotated key: for the signed `key.rotated` webhook only, never
    /// for the audit trail or a log line.
    pub(crate) secret: Option<Secret>,
}

pub(crate) trait Subscriber: Send + Sync {
    fn on_event(&self, e: &Event) -> anyhow::Result<()>;
}

#[derive(Default)]
pub struct Events {
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
}

impl Events {
    pub(crate) fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.subscribers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    /// For events that describe something already done (a budget crossed, a reload):
    /// every subscriber gets it, failures are logged.
    pub(crate) fn emit_logged(&self, e: &Event) {
        let subs = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            if let Err(err) = s.on_event(e) {
                log::error!("event {}: {err}", e.kind);
            }
        }
    }

    /// Hands the event to every subscriber; the first failure is returned (the change it
    /// describes must then not be committed).
    pub(crate) fn emit(&self, e: &Event) -> anyhow::Result<()> {
        let subs = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for s in subs.iter() {
            s.on_event(e)?;
        }
        Ok(())
    }
}

/// One log line per event (never the secret).
pub(crate) struct EventLog;

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

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn wire_names_round_trip() {
        for k in EventKind::ALL {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, k.as_str());
            assert_eq!(serde_json::from_value::<EventKind>(v).unwrap(), *k);
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(EventKind::ErrorRateHigh.as_str(), "error_rate.high");
        assert_eq!(EventKind::parse("key.nope"), None);
    }
}
