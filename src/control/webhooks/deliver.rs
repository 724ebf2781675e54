//! Delivery: a Pingora background service with its own HTTP client (its own runtime, off
//! the request path). Every tick it flushes the store if entries were queued, then starts
//! the attempts that are due, at most [`Tuning::concurrency`] at once, each bounded by
//! [`Tuning::timeout`]: a receiver that hangs holds a few of those slots and nothing else.
//!
//! Outcomes: a 2xx removes the entry (`webhook.delivered`); anything else is retried after
//! 1 s, 2 s, 4 s, … up to 10 min between attempts (`webhook.failed` with `retry_at`), until
//! an attempt fails more than [`Tuning::give_up_after`] (1 h) after the event, or the
//! signing secret is not in the environment: then it is dropped (`webhook.failed` with
//! `gave_up`). Delivery is at least once: an entry delivered just before a crash may be
//! sent again, with the same `id`.

use super::channels::{self, Format};
use super::{Webhooks, SIGNATURE_HEADER};
use crate::clock::Clock;
use crate::control::events::{Event, EventKind, Events};
use crate::observe::error_rate::ErrorRates;
use crate::observe::metrics::Metrics;
use crate::policy::snapshot::Snapshot;
use crate::storage::Pending;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Wait before the first retry; doubles per attempt.
    pub(crate) first_retry: Duration,
    pub(crate) max_retry: Duration,
    /// A failed attempt this long after the event is the last.
    pub(crate) give_up_after: Duration,
    /// Per attempt, connect to last byte.
    pub(crate) timeout: Duration,
    /// Attempts in flight at once.
    pub(crate) concurrency: usize,
    /// How often the queue and the error rates are looked at.
    pub(crate) tick: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            give_up_after: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            concurrency: 8,
            tick: Duration::from_millis(250),
        }
    }
}

impl Tuning {
    /// Defaults, with test-speed overrides from the environment:
    /// `TOLLGATE_WEBHOOK_RETRY_MS` (first retry) and `TOLLGATE_WEBHOOK_TIMEOUT_MS`.
    pub(crate) fn from_env() -> Tuning {
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
        };
        let mut t = Tuning::default();
        if let Some(d) = ms("TOLLGATE_WEBHOOK_RETRY_MS") {
            log::warn!("TOLLGATE_WEBHOOK_RETRY_MS: first webhook retry after {d:?} (testing)");
            t.first_retry = d;
        }
        if let Some(d) = ms("TOLLGATE_WEBHOOK_TIMEOUT_MS") {
            t.timeout = d;
        }
        t
    }

    /// The wait after the `attempts`-th failed attempt.
    pub(crate) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.first_retry.saturating_mul(factor).min(self.max_retry)
    }

    /// When to try `p` again after its `p.attempts`-th attempt failed at `now_ms`; `None`:
    /// give up (the attempt came [`Tuning::give_up_after`] or more after the event).
    pub(crate) fn retry_at(&self, p: &Pending, now_ms: u64) -> Option<u64> {
        (now_ms.saturating_sub(p.created_ms) < self.give_up_after.as_millis() as u64)
            .then(|| now_ms + self.backoff(p.attempts).as_millis() as u64)
    }
}

pub(crate) struct DeliveryService {
    /// No entry is due before this (unix ms): ticks until then skip the queue scan.
    pub(crate) next_due: AtomicU64,
    /// Attempts finished so far: a tick that saw one finish while it scanned looks again.
    pub(crate) finished: AtomicU64,
    pub(crate) hooks: Arc<Webhooks>,
    pub(crate) events: Arc<Events>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) error_rates: Arc<ErrorRates>,
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    pub(crate) tuning: Tuning,
    /// Due times, retry times, signature timestamps, outcome events.
    pub(crate) clock: Arc<dyn Clock>,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    /// Status (if an answer came) and why.
    Failed(Option<u16>, String),
    /// Cannot succeed by retrying.
    Hopeless(String),
}

fn client(t: &Tuning) -> anyhow::Result<reqwest::Client> {
    http_client(t.timeout)
}

/// The outbound client of webhooks and external guardrails: system roots, no redirects.
pub(crate) fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")));
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            for c in certs {
                if let Ok(cert) = reqwest::Certificate::from_der(&c) {
                    b = b.add_root_certificate(cert);
                }
            }
        }
        Err(e) => log::warn!("webhooks: no system CA roots ({e}); https receivers will fail"),
    }
    Ok(b.build()?)
}

impl DeliveryService {
    /// One attempt in the entry's format: a POST (signed as the format asks) or a mail.
    /// `now_ms` is the attempt's time (signature timestamps).
    async fn send(&self, client: &reqwest::Client, p: &Pending, now_ms: u64) -> Attempt {
        let format = Format::from_stored(p.format.as_deref());
        if format == Format::Email {
            return self.mail(p).await;
        }
        let secret = if p.secret_env.is_empty() {
            None
        } else {
            match std::env::var_os(&p.secret_env).filter(|s| !s.is_empty()) {
                Some(s) => Some(s),
                None => return Attempt::Hopeless(format!("{} is not set", p.secret_env)),
            }
        };
        let out = channels::request(
            format,
            &p.url,
            &p.body,
            secret.as_ref().map(|s| s.as_encoded_bytes()),
            now_ms,
        );
        let mut req = client
            .post(&out.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-tollgate-event", &p.event)
            .header("x-tollgate-delivery", &p.id);
        if let Some(sig) = out.signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        match req.body(out.body).send().await {
            Ok(r) if r.status().is_success() => {
                let status = r.status().as_u16();
                let answer = r.bytes().await.unwrap_or_default();
                match channels::accepted(format, &answer) {
                    Ok(()) => Attempt::Delivered(status),
                    Err(why) => Attempt::Failed(Some(status), why),
                }
            }
            Ok(r) => Attempt::Failed(Some(r.status().as_u16()), "not a 2xx".into()),
            // Without the URL: a receiver's URL may carry a token of its own.
            Err(e) => Attempt::Failed(None, e.without_url().to_string()),
        }
    }

    /// `alert_email`: one message to the entry's addresses through `[smtp]`.
    async fn mail(&self, p: &Pending) -> Attempt {
        let snapshot = self.policy.load_full();
        let Some(smtp) = snapshot.server.smtp.as_ref() else {
            return Attempt::Hopeless("no [smtp] section in the policy".into());
        };
        let to = p.url.strip_prefix("mailto:").unwrap_or(&p.url);
        let (subject, text) = channels::text(&p.body);
        match super::mail::send(smtp, to, &subject, &text, self.tuning.timeout).await {
            Ok(()) => Attempt::Delivered(250),
            Err(f) if f.retry => Attempt::Failed(None, f.error),
            Err(f) => Attempt::Hopeless(f.error),
        }
    }

    /// One attempt at one entry, and its outcome recorded.
    async fn attempt(self: Arc<Self>, client: reqwest::Client, seq: u64, mut p: Pending) {
        let outcome = self.send(&client, &p, self.clock.now_ms()).await;
        p.attempts += 1;
        let now = self.clock.now_ms();
        let retry_at = self.tuning.retry_at(&p, now);
        let (kind, result, detail) = match (outcome, retry_at) {
            (Attempt::Delivered(status), _) => {
                if let Err(e) = self.hooks.queue.remove(seq) {
                    log::error!("webhook queue: {e}");
                }
                let d = serde_json::json!({"status": status});
                (EventKind::WebhookDelivered, "delivered", d)
            }
            (Attempt::Failed(status, error), Some(next)) => {
                p.next_ms = next;
                self.next_due.fetch_min(p.next_ms, Ordering::SeqCst);
                if let Err(e) = self.hooks.queue.put(seq, &p) {
                    log::error!("webhook queue: {e}");
                }
                let d = serde_json::json!({
                    "status": status,
                    "error": error,
                    "retry_at": crate::clock::rfc3339(p.next_ms / 1000),
                    "gave_up": false,
                });
                (EventKind::WebhookFailed, "retry", d)
            }
            (Attempt::Failed(status, error), None) => {
                let _ = self.hooks.queue.remove(seq);
                let d = serde_json::json!({"status": status, "error": error, "gave_up": true});
                (EventKind::WebhookFailed, "failed", d)
            }
            (Attempt::Hopeless(error), _) => {
                let _ = self.hooks.queue.remove(seq);
                let d = serde_json::json!({"status": null, "error": error, "gave_up": true});
                (EventKind::WebhookFailed, "failed", d)
            }
        };
        if result != "delivered" {
            log::warn!(
                "webhook {} {} to group {}: attempt {} failed: {} {}",
                p.event,
                p.id,
                p.group.as_deref().unwrap_or("-"),
                p.attempts,
                detail["status"],
                detail["error"].as_str().unwrap_or_default(),
            );
        }
        self.metrics
            .webhook_deliveries
            .with_label_values(&[p.event.as_str(), result])
            .inc();
        let mut detail = detail;
        detail["id"] = p.id.clone().into();
        detail["event"] = p.event.clone().into();
        detail["attempt"] = p.attempts.into();
        let e = Event {
            kind,
            at_ms: now,
            actor: "system".into(),
            org: p.org,
            group: p.group,
            key_id: p.key_id,
            before: None,
            after: Some(detail),
            secret: None,
        };
        let events = self.events.clone();
        let _ = tokio::task::spawn_blocking(move || events.emit_logged(&e)).await;
    }

    /// One tick: error-rate alerts, then the attempts that are due.
    async fn tick(self: &Arc<Self>, client: &reqwest::Client, inflight: &Arc<Mutex<HashSet<u64>>>) {
        let now = self.clock.now_ms();
        let alerts = self.error_rates.events(&self.policy.load(), now);
        if !alerts.is_empty() {
            let events = self.events.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for e in &alerts {
                    events.emit_logged(e);
                }
            })
            .await;
        }
        // Only entries known to be on disk are attempted: a crash after an attempt cannot
        // lose one that was never durable.
        let below = self.hooks.queue.written_below();
        let fresh = self.hooks.dirty.swap(false, Ordering::SeqCst);
        if fresh {
            if let Err(e) = self.hooks.queue.commit().await {
                log::error!("webhook queue: flush failed ({e}); retrying next tick");
                self.hooks.dirty.store(true, Ordering::SeqCst);
                return;
            }
        } else if now < self.next_due.load(Ordering::SeqCst) {
            return;
        }
        let free = {
            let busy = inflight.lock().unwrap_or_else(|p| p.into_inner());
            self.tuning.concurrency.saturating_sub(busy.len())
        };
        if free == 0 {
            return;
        }
        let hooks = self.hooks.clone();
        let finished = self.finished.load(Ordering::SeqCst);
        let busy: HashSet<u64> = inflight.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (due, next) = tokio::task::spawn_blocking(move || {
            let (due, next) = hooks.queue.due(now, below, free + busy.len());
            let due: Vec<_> = due
                .into_iter()
                .filter(|(seq, _)| !busy.contains(seq))
                .take(free)
                .collect();
            (due, next)
        })
        .await
        .unwrap_or_default();
        // Entries beyond the watermark were not looked at: they come with `fresh` later.
        self.next_due.store(next, Ordering::SeqCst);
        if self.finished.load(Ordering::SeqCst) != finished {
            self.next_due.store(0, Ordering::SeqCst);
        }
        for (seq, p) in due {
            inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(seq);
            let me = self.clone();
            let client = client.clone();
            let inflight = inflight.clone();
            tokio::spawn(async move {
                me.attempt(client, seq, p).await;
                inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&seq);
            });
        }
    }
}

/// The service Pingora runs; holds the state in an `Arc` so attempts can outlive a tick.
pub(crate) struct Delivery(pub(crate) Arc<DeliveryService>);

#[async_trait]
impl BackgroundService for Delivery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let me = self.0.clone();
        let client = match client(&me.tuning) {
            Ok(c) => c,
            Err(e) => {
                log::error!("webhooks: cannot build the HTTP client: {e}; no webhook is sent");
                return;
            }
        };
        for g in me.policy.load().groups.values() {
            if let Some(env) = &g.webhook_secret_env {
                if std::env::var_os(env).is_none_or(|v| v.is_empty()) {
                    log::warn!(
                        "group {}: webhook_secret_env {env} is not set: its webhooks will fail",
                        g.id
                    );
                }
            }
        }
        let pending = me.hooks.queue.len();
        if pending > 0 {
            log::info!("webhooks: {pending} pending deliveries in the queue");
        }
        let inflight = Arc::new(Mutex::new(HashSet::new()));
        let mut tick = tokio::time::interval(me.tuning.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = me.hooks.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            me.tick(&client, &inflight).await;
        }
    }
}
