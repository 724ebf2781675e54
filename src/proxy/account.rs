//! Glue between the request path and admission/usage/ledger: what a request reserves,
//! which scanner reads its answer, and how it is settled in `logging`.

use crate::admission::{
    Admission, AdmitRequest, BudgetEvent, Clamp, Layer, LayerLimits, Reservation, ScopeKey,
    ShadowHit, SlotHold, Usage,
};
use crate::control::events::{Event, Events};
use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody};
use crate::llm::usage::{self, Billed, Scanner, StreamFormat, UsageSource};
use crate::policy::config::Price;
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot};
use crate::storage::ledger::{Ledger, ServedKey, ServedTotals, UsageKey, UsageTotals};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::ResponseHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts requests in the process (for draining on shutdown); released on drop.
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> InflightGuard {
        counter.fetch_add(1, Ordering::SeqCst);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Process-wide accounting state: counters, the store, requests in flight.
pub(crate) struct Accounting {
    pub(crate) admission: Arc<Admission>,
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) inflight: Arc<AtomicUsize>,
    /// Client connections open on the data plane (`server.max_connections`).
    pub(crate) connections: Arc<AtomicUsize>,
    /// Request bodies in memory, all requests together (`server.body_memory`).
    pub(crate) body_budget: Arc<crate::proxy::conn::body_memory::BodyBudget>,
    /// Limit and budget refusals, aggregated for the audit trail.
    pub(crate) refusals: crate::control::audit::Refusals,
}

impl Accounting {
    /// Notes a refusal for a limit or a budget, and the shadow limits a request went over
    /// (audited, aggregated per key, code and minute).
    pub(crate) fn note_refusals(
        &self,
        key: Option<&KeyEntry>,
        error: Option<&GatewayError>,
        shadow: &[ShadowHit],
    ) {
        let Some(k) = key else { return };
        let audited = error.filter(|e| crate::control::audit::audited_refusal(e.code()));
        if audited.is_none() && shadow.is_empty() {
            // The usual request: nothing to note, no clock read.
            return;
        }
        let now = self.admission.now_ms();
        if let Some(e) = audited {
            self.refusals.record(k, e.code(), false, now);
        }
        for h in shadow {
            self.refusals.record(k, h.code, true, now);
        }
    }

    /// Notes guardrail verdicts for the audit trail (`guardrail.triggered`, aggregated per
    /// key, guardrail, action and minute).
    pub(crate) fn note_trips(&self, key: Option<&KeyEntry>, trips: &[crate::proxy::guard::Trip]) {
        let (Some(k), false) = (key, trips.is_empty()) else {
            return;
        };
        let now = self.admission.now_ms();
        for t in trips {
            self.refusals.record_trip(k, &t.id, t.action, now);
        }
    }
}

/// Tokens a request reserved: what an unknown part of its usage is charged at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Estimate {
    pub(crate) input: u64,
    /// The request's max_tokens or the server default.
    pub(crate) output: u64,
}

/// The request's three layers: org, group, key (admission's lock order).
pub(crate) fn layers(key: &KeyEntry) -> [LayerLimits<'_>; 3] {
    let group = &key.group;
    [
        LayerLimits {
            scope: ScopeKey {
                layer: Layer::Org,
                id: group.org.id.clone(),
            },
            limits: &group.org.limits,
            alert_thresholds: &[],
        },
        LayerLimits {
            scope: ScopeKey {
                layer: Layer::Group,
                id: group.id.clone(),
            },
            limits: &group.limits,
            alert_thresholds: &group.alert_thresholds,
        },
        LayerLimits {
            scope: ScopeKey {
                layer: Layer::Key,
                id: key.id.clone(),
            },
            limits: &key.limits,
            alert_thresholds: &[],
        },
    ]
}

/// Takes the request's in-flight slot in all three layers before its body is read.
pub(crate) fn hold_slots(
    admission: &Arc<Admission>,
    key: &KeyEntry,
) -> Result<SlotHold, GatewayError> {
    admission.hold(&layers(key))
}

/// Reserves the request's worst case against all three layers and the `model_limits`
/// pools its model (`model`, the catalogue name after alias resolution) falls in; `held`
/// are the in-flight slots taken before the body was read (the reservation takes them
/// over).
pub(crate) fn admit(
    admission: &Arc<Admission>,
    snapshot: &Snapshot,
    key: &KeyEntry,
    (model, models): (&str, &[Arc<ModelEntry>]),
    body: &RequestBody,
    route: Endpoint,
    held: Option<SlotHold>,
) -> Result<(Reservation, Estimate), GatewayError> {
    let est_input = usage::estimate_input_tokens(body.len());
    let est_output = match route {
        Endpoint::Embeddings => 0,
        _ => body
            .max_tokens
            .unwrap_or(u64::from(snapshot.server.default_max_tokens)),
    };
    let targets = || models.iter().flat_map(|m| m.targets.iter());
    // Worst case over every target of every model that could serve it (fallbacks and
    // per-target prices may cost more than the primary).
    let worst_cost = targets()
        .map(|t| usage::worst_cost_micros(&t.price, est_input, est_output))
        .max()
        .unwrap_or(0);
    let layers = layers(key);
    let (extra, pattern_shadow) =
        crate::proxy::model_pools::pools(&layers, model, body.max_tokens)?;
    let clamp = (key.group.budget_clamp && route != Endpoint::Embeddings).then(|| Clamp {
        input_tokens: est_input,
        output_tokens: est_output,
        named: body.max_tokens.is_some(),
        // The prompt at the dearest of its prices (cache reads and writes may cost more).
        input_micros_per_mtok: targets()
            .map(|t| {
                let p = &t.price;
                p.input_micros_per_mtok
                    .max(p.cache_read_micros_per_mtok)
                    .max(p.cache_write_micros_per_mtok)
            })
            .max()
            .unwrap_or(0),
        output_micros_per_mtok: targets()
            .map(|t| t.price.output_micros_per_mtok)
            .max()
            .unwrap_or(0),
    });
    let req = AdmitRequest {
        layers,
        extra,
        est_tokens: est_input + est_output,
        worst_cost_micros: worst_cost,
        clamp,
    };
    let mut admitted = match held {
        Some(h) => admission.admit_held(&req, h),
        None => admission.admit(&req),
    }?;
    admitted.shadow.extend(pattern_shadow);
    let estimate = Estimate {
        input: est_input,
        output: admitted.clamped_max_tokens.unwrap_or(est_output),
    };
    Ok((admitted, estimate))
}

/// The usage scanner for a provider's answer (2xx only: errors carry no usage).
pub(crate) fn scanner_for(resp: &ResponseHeader, ask_usage: bool) -> Option<Scanner> {
    if !resp.status.is_success() {
        return None;
    }
    let sse = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    Some(Scanner::new(
        if sse {
            StreamFormat::Sse
        } else {
            StreamFormat::Json
        },
        ask_usage,
    ))
}

/// `x-ratelimit-*` (enforced limits) and `x-tollgate-shadow-limited` (the shadow limits the
/// request went over, e.g. `key k1 rpm 10, group g tpm 1000`).
pub(crate) fn limit_headers(
    resp: &mut ResponseHeader,
    r: &Reservation,
) -> pingora_error::Result<()> {
    use crate::proxy::headers::*;
    if !r.shadow.is_empty() {
        let names: Vec<&str> = r.shadow.iter().map(|h| h.scope.as_str()).collect();
        resp.append_wire_header(&SHADOW_LIMITED, names.join(", ").as_bytes())?;
    }
    let mut n = itoa::Buffer::new();
    if let Some((limit, remaining)) = r.rate.requests {
        resp.append_wire_header(&LIMIT_REQUESTS, n.format(limit).as_bytes())?;
        resp.append_wire_header(&REMAINING_REQUESTS, n.format(remaining).as_bytes())?;
    }
    if let Some((limit, remaining)) = r.rate.tokens {
        resp.append_wire_header(&LIMIT_TOKENS, n.format(limit).as_bytes())?;
        resp.append_wire_header(&REMAINING_TOKENS, n.format(remaining).as_bytes())?;
    }
    if let Some(max) = r.clamped_max_tokens {
        resp.append_wire_header(&MAX_TOKENS, n.format(max).as_bytes())?;
    }
    Ok(())
}

/// How the upstream exchange ended, as far as accounting cares.
pub(crate) struct Served<'a> {
    /// The upstream's status, if any answer arrived.
    pub(crate) status: Option<u16>,
    /// The catalogue model that served (a fallback, possibly) and its target's price.
    pub(crate) model: &'a Arc<str>,
    pub(crate) price: Price,
    /// The answer's usage scanner (none when nothing 2xx arrived).
    pub(crate) scanner: Option<&'a Scanner>,
    /// The target that served: provider id and the model id sent upstream (what the
    /// provider's usage API reports), for reconciliation.
    pub(crate) target: Option<(&'a Arc<str>, &'a Arc<str>)>,
}

/// Settles the reservation with the real usage and records it. Runs once per request.
pub(crate) fn settle(
    acc: &Accounting,
    reservation: Reservation,
    key: &KeyEntry,
    served: &Served<'_>,
    estimate: Estimate,
) -> Billed {
    let ok = served.status.is_some_and(|s| (200..300).contains(&s));
    if !ok {
        // Refused upstream or never reached: nothing was consumed.
        reservation.cancel();
        if let (Some(ledger), Some(_)) = (&acc.ledger, served.status) {
            record(
                ledger,
                acc.admission.now_ms(),
                key,
                served.model,
                Billed::default(),
            );
        }
        return Billed::default();
    }
    // What the provider reported; a stream cut before its report pays what it streamed
    // (counted), a JSON answer without usage what was reserved — at the price of the
    // target that served it.
    let (input, output, source) = match served.scanner {
        Some(s) => s.charge(estimate.input, estimate.output),
        None => (estimate.input, estimate.output, UsageSource::Reserved),
    };
    // The cache and reasoning parts the provider reported, within the totals charged.
    let reported = served.scanner.map(|s| s.usage).unwrap_or_default();
    let cached_input = reported.cached_input.unwrap_or(0).min(input);
    let cache_write = reported.cache_write.unwrap_or(0).min(input - cached_input);
    let tokens = usage::Tokens {
        input,
        cache_read: cached_input,
        cache_write,
        output,
    };
    let cost = usage::cost_of(&served.price, tokens);
    reservation.settle(Some(Usage {
        tokens: input + output,
        cost_micros: cost,
    }));
    let billed = Billed {
        input,
        output,
        cost_micros: cost,
        source: Some(source),
        cached_input,
        cache_write,
        reasoning: reported.reasoning.unwrap_or(0).min(output),
    };
    if let Some(ledger) = &acc.ledger {
        // One clock read for both rows.
        let now_ms = acc.admission.now_ms();
        record(ledger, now_ms, key, served.model, billed);
        record_served(ledger, now_ms, key, served, billed);
    }
    billed
}

/// The tokens a provider served, per day × provider × upstream model × org (reconciliation).
fn record_served(ledger: &Ledger, now_ms: u64, key: &KeyEntry, served: &Served<'_>, b: Billed) {
    let Some((provider, model)) = served.target else {
        return;
    };
    ledger.record_served(
        ServedKey {
            day: now_ms / 86_400_000,
            provider: provider.clone(),
            model: model.clone(),
            org: key.group.org.id.clone(),
        },
        ServedTotals {
            requests: 1,
            input_tokens: b.input,
            output_tokens: b.output,
        },
    );
}

fn record(ledger: &Ledger, now_ms: u64, key: &KeyEntry, model: &Arc<str>, b: Billed) {
    let hour = now_ms / 3_600_000;
    ledger.record(
        UsageKey {
            hour,
            group: key.group.id.clone(),
            key: key.id.clone(),
            model: model.clone(),
        },
        UsageTotals {
            requests: 1,
            input_tokens: b.input,
            output_tokens: b.output,
            cost_micros: b.cost_micros,
            cached_input_tokens: b.cached_input,
            cache_write_tokens: b.cache_write,
            reasoning_tokens: b.reasoning,
        },
    );
}

/// How often spend reaches the disk: a crash loses at most this much (documented: ≤ 1 s).
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The audit trail is pruned at start-up and hourly.
const PRUNE_EVERY_TICKS: u64 = 14_400;
/// Idle counters are swept every 30 s.
const SWEEP_EVERY_TICKS: u64 = 120;

/// Flushes the ledger every 250 ms, sweeps idle counters every 30 s; on shutdown waits for
/// requests in flight (up to the grace period), flushes a last time and exits, so spend
/// is on disk before the process goes.
pub(crate) struct LedgerService {
    pub(crate) accounting: Arc<Accounting>,
    pub(crate) grace: Duration,
    pub(crate) events: Arc<Events>,
    /// To name the org and group of a budget event.
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    /// The audit trail and its retention (pruned hourly).
    pub(crate) audit: Option<(Arc<crate::control::audit::AuditLog>, Duration)>,
}

/// A budget threshold crossed, as a lifecycle event (`budget.threshold` /
/// `budget.exhausted`).
fn budget_event(e: &BudgetEvent, snapshot: &Snapshot, now_ms: u64) -> Event {
    log::warn!(
        "{}: {} {} spent ${} of ${} (threshold {})",
        e.event,
        e.scope.layer.as_str(),
        e.scope.id,
        crate::admission::micros_to_usd(e.spent_micros),
        crate::admission::micros_to_usd(e.limit_micros),
        e.threshold
    );
    let id = e.scope.id.to_string();
    let (org, group, key_id) = match e.scope.layer {
        Layer::Org => (Some(id), None, None),
        Layer::Group => (
            snapshot
                .groups
                .get(&e.scope.id)
                .map(|g| g.org.id.to_string()),
            Some(id),
            None,
        ),
        Layer::Key => (None, None, Some(id)),
    };
    Event {
        kind: if e.event == "budget.exhausted" {
            crate::control::events::EventKind::BudgetExhausted
        } else {
            crate::control::events::EventKind::BudgetThreshold
        },
        at_ms: now_ms,
        actor: "system".into(),
        org,
        group,
        key_id,
        before: None,
        after: Some(serde_json::json!({
            "scope": e.scope.layer.as_str(),
            "id": &*e.scope.id,
            "spent_usd": e.spent_micros as f64 / 1e6,
            "limit_usd": e.limit_micros as f64 / 1e6,
            "threshold": e.threshold,
        })),
        secret: None,
    }
}

impl LedgerService {
    fn flush(&self) {
        // Budget thresholds crossed since the last tick become events (audit, webhooks);
        // the flush right after makes them durable.
        for e in self.accounting.admission.take_events() {
            let now = self.accounting.admission.now_ms();
            self.events
                .emit_logged(&budget_event(&e, &self.policy.load(), now));
        }
        let now = self.accounting.admission.now_ms();
        for e in self.accounting.refusals.take_closed(now) {
            self.events.emit_logged(&e);
        }
        if let Some(ledger) = &self.accounting.ledger {
            if let Err(e) = ledger.flush(&self.accounting.admission) {
                log::error!("ledger flush failed: {e}");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for LedgerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            n += 1;
            let acc = self.accounting.clone();
            let sweep = n % SWEEP_EVERY_TICKS == 0;
            let me = LedgerService {
                accounting: acc,
                grace: self.grace,
                events: self.events.clone(),
                policy: self.policy.clone(),
                audit: self.audit.clone(),
            };
            let prune = n % PRUNE_EVERY_TICKS == 1;
            let _ = tokio::task::spawn_blocking(move || {
                me.flush();
                if sweep {
                    me.accounting.admission.sweep();
                }
                if let (true, Some((audit, keep))) = (prune, &me.audit) {
                    let cutoff = me
                        .accounting
                        .admission
                        .now_ms()
                        .saturating_sub(keep.as_millis() as u64);
                    match audit.prune(cutoff) {
                        Ok(0) => {}
                        Ok(n) => log::info!("audit: {n} events past audit_retention pruned"),
                        Err(e) => log::error!("audit prune: {e}"),
                    }
                }
            })
            .await;
        }
        log::info!(
            "shutting down: waiting for {} request(s) in flight",
            self.accounting.inflight.load(Ordering::SeqCst)
        );
        let deadline = tokio::time::Instant::now() + self.grace;
        while self.accounting.inflight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.flush();
        }
        for e in self.accounting.refusals.take_closed(u64::MAX) {
            self.events.emit_logged(&e);
        }
        self.flush();
        log::info!("spend flushed; exiting");
        std::process::exit(0);
    }
}
