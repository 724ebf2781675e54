//! The guardrail stage of `request_filter` (after the body is read and the model known,
//! before the reservation: a blocked request reserves nothing) and the verdicts a request
//! collects for its evidence (metrics, log line, audit).
//!
//! Built-in checks run inline (linear-time, microseconds); the external ones are asked at
//! once, each within its `timeout`, and their answers applied in the file's order.

pub(crate) mod external;

use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody};
use crate::llm::guard::{self, Action, Verdict};
use crate::policy::config::guardrails::{OnError, Service};
use crate::policy::snapshot::{KeyEntry, Snapshot};
use external::{Answer, Asker};
use std::borrow::Cow;
use std::sync::Arc;

/// One guardrail's verdict on one request: what it did and what it saw (kinds: entity,
/// pattern, category), never the text.
#[derive(Debug, Clone)]
pub struct Trip {
    pub id: Arc<str>,
    /// `block`, `redact`, `log`, or `error` (an external check failed, `on_error = "allow"`)
    /// / `unavailable` (it failed and the request was refused).
    pub action: &'static str,
    pub kinds: Vec<Cow<'static, str>>,
}

impl From<&Verdict> for Trip {
    fn from(v: &Verdict) -> Trip {
        Trip {
            id: v.id.clone(),
            action: v.action.as_str(),
            kinds: v.kinds.iter().map(|k| Cow::Borrowed(*k)).collect(),
        }
    }
}

/// Runs the key's request guardrails over `body` (redacting it in place); their verdicts
/// go to `trips`.
pub(crate) async fn check_request(
    snapshot: &Snapshot,
    key: &KeyEntry,
    endpoint: Endpoint,
    model: &str,
    body: &mut RequestBody,
    trips: &mut Vec<Trip>,
    now_ms: impl FnOnce() -> u64,
) -> Result<(), GatewayError> {
    let Some(set) = key.guards().map(|g| &**g) else {
        return Ok(());
    };
    if !set.request.is_empty() {
        match guard::check_request(body, endpoint, &set.request) {
            Ok(verdicts) => trips.extend(verdicts.iter().map(Trip::from)),
            Err(b) => {
                trips.push(Trip {
                    id: b.id.clone(),
                    action: "block",
                    kinds: vec![Cow::Borrowed(b.kind)],
                });
                return Err(GatewayError::GuardrailBlocked {
                    id: b.id.to_string(),
                    kind: b.kind.to_string(),
                });
            }
        }
    }
    if set.external.is_empty() {
        return Ok(());
    }
    let texts = guard::request_texts(body, endpoint);
    if texts.iter().all(|t| t.is_empty()) {
        return Ok(());
    }
    let who = Asker {
        direction: "request",
        group: &key.group.id,
        key_id: &key.id,
        model,
        // The webhook signature's time: the gateway's clock, read once for all checkers.
        now_ms: now_ms(),
    };
    // Every checker at once: the request waits for the slowest, not for their sum.
    let asks = set.external.iter().map(|ext| {
        let provider = match &ext.service {
            Service::Moderation { provider, .. } => snapshot.providers.get(*provider),
            Service::Webhook { .. } => None,
        };
        external::ask(ext, provider, &who, &texts)
    });
    let answers = join_all(asks).await;
    let mut redacted: Option<Vec<String>> = None;
    for (ext, answer) in set.external.iter().zip(answers) {
        match answer {
            Answer::Allow => {}
            Answer::Failed(reason) => {
                log::warn!("guardrail {}: {reason}", ext.id);
                match ext.on_error {
                    OnError::Allow => trips.push(Trip {
                        id: ext.id.clone(),
                        action: "error",
                        kinds: vec![],
                    }),
                    OnError::Block => {
                        trips.push(Trip {
                            id: ext.id.clone(),
                            action: "unavailable",
                            kinds: vec![],
                        });
                        return Err(GatewayError::GuardrailUnavailable {
                            id: ext.id.to_string(),
                            reason,
                        });
                    }
                }
            }
            Answer::Flagged(kinds) => {
                let trip = Trip {
                    id: ext.id.clone(),
                    action: ext.action.as_str(),
                    kinds: kinds.into_iter().map(Cow::Owned).collect(),
                };
                let blocked = ext.action == Action::Block;
                let kind = trip.kinds.join(", ");
                trips.push(trip);
                if blocked {
                    return Err(GatewayError::GuardrailBlocked {
                        id: ext.id.to_string(),
                        kind,
                    });
                }
            }
            Answer::Redact(t) => {
                trips.push(Trip {
                    id: ext.id.clone(),
                    action: "redact",
                    kinds: vec![Cow::Borrowed("webhook")],
                });
                redacted = Some(t);
            }
        }
    }
    if let Some(t) = redacted {
        guard::replace_request_texts(body, endpoint, &t)?;
    }
    Ok(())
}

/// Awaits every future, in order (few: one per external guardrail).
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
