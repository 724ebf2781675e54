//! Glue between the request path and admission/usage/ledger: what a request reserves,
//! which scanner reads its answer, and how it is settled in `logging`.

use crate::admission::{
    Admission, AdmitRequest, Layer, LayerLimits, RateInfo, Reservation, ScopeKey, Usage,
};
use crate::error::GatewayError;
use crate::gateway::RequestCtx;
use crate::ledger::{Ledger, UsageKey, UsageTotals};
use crate::request::{RequestBody, Route};
use crate::snapshot::{KeyEntry, ModelEntry, Snapshot};
use crate::usage::{self, Scanner, StreamFormat};
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::ResponseHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts requests in the process (for draining on shutdown); released on drop.
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> InflightGuard {
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
pub struct Accounting {
    pub admission: Arc<Admission>,
    pub ledger: Option<Arc<Ledger>>,
    pub inflight: Arc<AtomicUsize>,
}

/// Reserves the request's worst case against all three layers.
pub fn admit(
    admission: &Arc<Admission>,
    snapshot: &Snapshot,
    key: &KeyEntry,
    models: &[Arc<ModelEntry>],
    body: &RequestBody,
    route: Route,
    ctx: &mut RequestCtx,
) -> Result<Reservation, GatewayError> {
    let est_input = usage::estimate_input_tokens(body.len);
    let est_output = match route {
        Route::Embeddings => 0,
        _ => body
            .max_tokens
            .unwrap_or(u64::from(snapshot.server.default_max_tokens)),
    };
    ctx.est_input = est_input;
    ctx.est_output = est_output;
    // Worst case over every target of every model that could serve it (fallbacks and
    // per-target prices may cost more than the primary).
    let worst_cost = models
        .iter()
        .flat_map(|m| m.targets.iter())
        .map(|t| usage::cost_micros(&t.price, est_input, est_output))
        .max()
        .unwrap_or(0);
    let group = &key.group;
    let req = AdmitRequest {
        layers: [
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
        ],
        est_tokens: est_input + est_output,
        worst_cost_micros: worst_cost,
    };
    admission.admit(&req)
}

/// The usage scanner for a provider's answer (2xx only: errors carry no usage).
pub fn scanner_for(resp: &ResponseHeader, ask_usage: bool) -> Option<Scanner> {
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

pub fn rate_headers(resp: &mut ResponseHeader, rate: &RateInfo) -> pingora_error::Result<()> {
    if let Some((limit, remaining)) = rate.requests {
        resp.insert_header("x-ratelimit-limit-requests", limit)?;
        resp.insert_header("x-ratelimit-remaining-requests", remaining)?;
    }
    if let Some((limit, remaining)) = rate.tokens {
        resp.insert_header("x-ratelimit-limit-tokens", limit)?;
        resp.insert_header("x-ratelimit-remaining-tokens", remaining)?;
    }
    Ok(())
}

/// Settles the reservation with the real usage and records it. Runs once per request.
/// Returns what was billed: `(input tokens, output tokens, micro-dollars)`.
pub fn settle(acc: &Accounting, ctx: &mut RequestCtx) -> Option<(u64, u64, u64)> {
    let reservation = ctx.reservation.take()?;
    let (Some(key), Some(model)) = (&ctx.key, &ctx.model) else {
        reservation.cancel();
        return None;
    };
    let served = ctx.upstream_status.is_some_and(|s| (200..300).contains(&s));
    if !served {
        // Refused upstream or never reached: nothing was consumed.
        reservation.cancel();
        if let (Some(ledger), Some(_)) = (&acc.ledger, ctx.upstream_status) {
            record(ledger, acc, ctx, key, model, 0, 0, 0);
        }
        return Some((0, 0, 0));
    }
    let reported = ctx.scanner.as_ref().map(|s| s.usage).unwrap_or_default();
    // Unknown parts are charged as reserved: a stream cut before its usage event pays its
    // worst case in tokens, at the price of the target that served it.
    let input = reported.input.unwrap_or(ctx.est_input);
    let output = reported.output.unwrap_or(ctx.est_output);
    let price = ctx.target.map_or(model.price, |(m, t)| {
        ctx.snapshot.models[m].targets[t].price
    });
    let cost = usage::cost_micros(&price, input, output);
    reservation.settle(Some(Usage {
        tokens: input + output,
        cost_micros: cost,
    }));
    if let Some(ledger) = &acc.ledger {
        record(ledger, acc, ctx, key, model, input, output, cost);
    }
    Some((input, output, cost))
}

#[allow(clippy::too_many_arguments)]
fn record(
    ledger: &Ledger,
    acc: &Accounting,
    ctx: &RequestCtx,
    key: &KeyEntry,
    model: &ModelEntry,
    input: u64,
    output: u64,
    cost: u64,
) {
    let hour = acc.admission.now_ms() / 3_600_000;
    // Spend is booked on the model that served (a fallback, possibly).
    let served = ctx.target.map_or_else(
        || model.name.clone(),
        |(m, _)| ctx.snapshot.models[m].name.clone(),
    );
    ledger.record(
        UsageKey {
            hour,
            group: key.group.id.clone(),
            key: key.id.clone(),
            model: served,
        },
        UsageTotals {
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cost_micros: cost,
        },
    );
}

/// How often spend reaches the disk: a crash loses at most this much (SPEC: ≤ 1 s).
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Idle counters are swept every 30 s.
const SWEEP_EVERY_TICKS: u64 = 120;

/// Flushes the ledger every 250 ms, sweeps idle counters every 30 s; on shutdown waits for
/// requests in flight (up to the grace period), flushes a last time and exits, so spend
/// is on disk before the process goes.
pub struct LedgerService {
    pub accounting: Arc<Accounting>,
    pub grace: Duration,
}

impl LedgerService {
    fn flush(&self) {
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
            };
            let _ = tokio::task::spawn_blocking(move || {
                me.flush();
                if sweep {
                    me.accounting.admission.sweep();
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
        self.flush();
        log::info!("spend flushed; exiting");
        std::process::exit(0);
    }
}
