//! Step 8 (in part): the JSON request log and the Prometheus metrics of a finished request.
//!
//! - [`line`]: one line, serialized from borrowed fields into a per-thread reused buffer;
//! - [`sink`]: the shared buffer and the background writer (no syscall on the request path);
//! - [`record_metrics`]: the counters and histograms.

pub(crate) mod error_rate;
pub(crate) mod export;
pub(crate) mod fault;
pub mod line;
pub(crate) mod sink;
pub(crate) mod trace;

pub(crate) use sink::RequestLog;

use crate::error::GatewayError;
use crate::llm::body::RequestBody;
use crate::llm::usage::{Billed, Completion};
use crate::policy::snapshot::KeyEntry;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of the prompt's JSON kept in a line (`log_level = "prompt"` or `"full"`).
pub(crate) const PROMPT_CAP: usize = 1 << 20;

thread_local! {
    /// The line being built, reused by every request of this thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl RequestLog {
    /// Renders the line of `f` and queues it.
    pub(crate) fn write(&self, f: &Finished<'_>) {
        if !self.enabled() {
            return;
        }
        LINE.with(|buf| {
            let Ok(mut buf) = buf.try_borrow_mut() else {
                return;
            };
            buf.clear();
            line::render(f, &mut buf);
            self.push(&buf);
            if buf.capacity() > 64 * 1024 {
                // A `full` line: do not keep megabytes per thread.
                *buf = Vec::with_capacity(1024);
            }
        });
    }
}

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Status(u16),
    ConnectFailed,
    TimedOut,
    Failed,
    /// The client went away while the attempt was under way: not the target's failure.
    ClientClosed,
}

impl Outcome {
    /// The outcome's name; `Status` has none (the log writes its code).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Status(_) => "status",
            Outcome::ConnectFailed => "connect_failed",
            Outcome::TimedOut => "timeout",
            Outcome::Failed => "failed",
            Outcome::ClientClosed => "client_closed",
        }
    }
}

/// A finished request, as the request log and the metrics see it.
pub struct Finished<'a> {
    pub request_id: &'a str,
    pub key: Option<&'a KeyEntry>,
    /// The catalogue model asked for.
    pub model: Option<&'a str>,
    /// The catalogue model that served (a fallback, possibly).
    pub served_model: Option<&'a str>,
    /// `provider/model` of the last target tried.
    pub target: Option<&'a str>,
    pub status: u16,
    pub error: Option<&'a GatewayError>,
    pub billed: Option<Billed>,
    pub started: Instant,
    /// When the request was finished (read once for the log and the metrics).
    pub ended: Instant,
    pub first_attempt_at: Option<Instant>,
    pub attempt_started: Option<Instant>,
    pub client_ip: Option<IpAddr>,
    pub stream: bool,
    pub attempts: &'a [(Arc<str>, Outcome)],
    /// Shadow limits the request went over.
    pub shadow: &'a [crate::admission::ShadowHit],
    /// The client's body: its prompt fields are logged when the group asks.
    pub body: Option<&'a RequestBody>,
    /// The answer's text, collected only when the group logs at `full`.
    pub completion: Option<&'a Completion>,
    /// The group was quarantined when the request came: it is logged at `full`.
    pub quarantined: bool,
    /// Guardrail verdicts on the request and its answer.
    pub guardrails: &'a [crate::proxy::guard::Trip],
    /// `POST /v1/messages/count_tokens`: never billed (`"count_tokens": true` on the line).
    pub count_tokens: bool,
}

impl Finished<'_> {
    /// The group's `log_level`, or `full` while it is quarantined.
    pub(crate) fn log_level(&self) -> crate::policy::config::LogLevel {
        if self.quarantined {
            return crate::policy::config::LogLevel::Full;
        }
        self.key
            .map_or(crate::policy::config::LogLevel::Metadata, |k| {
                k.group.log_level
            })
    }
}

pub(crate) mod metrics;

/// Counts one finished request in the Prometheus metrics.
pub(crate) fn record_metrics(m: &metrics::Metrics, f: &Finished<'_>) {
    let group = f.key.map_or("-", |k| &*k.group.id);
    let model = f.served_model.or(f.model).unwrap_or("-");
    let series = m.series(group, model, f.target, f.status);
    series.requests.inc();
    if let Some(e) = f.error {
        m.rejections.with_label_values(&[group, e.code()]).inc();
    }
    if let Some(fault) = crate::observe::fault::Fault::of(f.error, f.status) {
        let code = f.error.map_or("provider_status", GatewayError::code);
        m.errors
            .with_label_values(&[group, fault.as_str(), code])
            .inc();
    }
    for h in f.shadow {
        m.shadow_limited.with_label_values(&[group, h.code]).inc();
    }
    for t in f.guardrails {
        m.guardrail_actions
            .with_label_values(&[group, &t.id, t.action])
            .inc();
    }
    if let Some(b) = f.billed.filter(|b| !b.is_zero()) {
        let (tokens_in, tokens_out, spend) = series.billing(m);
        tokens_in.inc_by(b.input);
        tokens_out.inc_by(b.output);
        spend.inc_by(b.cost_micros as f64 / 1e6);
    }
    series
        .duration
        .observe(f.ended.saturating_duration_since(f.started).as_secs_f64());
    if let Some(first) = f.first_attempt_at {
        m.overhead
            .observe(first.duration_since(f.started).as_secs_f64());
    }
    if let Some(started) = f.attempt_started {
        if let Some(h) = series.upstream(m) {
            h.observe(f.ended.saturating_duration_since(started).as_secs_f64());
        }
    }
}
