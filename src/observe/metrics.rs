//! Prometheus metrics (SPEC §8), in a registry of our own served on the admin listener.
//! Labels are groups, models, targets and codes only — never key ids or secrets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub rejections: IntCounterVec,
    /// `tollgate_errors_total{group,fault,code}`: every request that ended in an error,
    /// by who caused it (client | gateway | upstream).
    pub errors: IntCounterVec,
    pub tokens: IntCounterVec,
    pub spend: prometheus::CounterVec,
    pub request_duration: HistogramVec,
    pub overhead: Histogram,
    pub upstream_duration: HistogramVec,
    pub target_healthy: IntGaugeVec,
    pub inflight: IntGauge,
    pub connections: IntGauge,
    pub body_memory: IntGauge,
    pub reloads: IntCounterVec,
    /// `tollgate_keys{group,status}`, set at scrape time.
    pub keys: IntGaugeVec,
    pub admin_requests: IntCounterVec,
    pub shadow_limited: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    /// Request-log lines dropped because the sink could not keep up.
    pub request_log_dropped: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let requests = counter(
            "tollgate_requests_total",
            "Requests answered, by group, model and status.",
            &["group", "model", "status"],
        )?;
        let rejections = counter(
            "tollgate_rejections_total",
            "Requests refused by the gateway, by group and error code.",
            &["group", "reason"],
        )?;
        let errors = counter(
            "tollgate_errors_total",
            "Requests that ended in an error, by group, fault (client|gateway|upstream) and code \
             (provider_status: a provider's own 4xx/5xx passed through).",
            &["group", "fault", "code"],
        )?;
        let tokens = counter(
            "tollgate_tokens_total",
            "Tokens billed, by group, model and direction (input|output).",
            &["group", "model", "direction"],
        )?;
        let reloads = counter(
            "tollgate_config_reloads_total",
            "Policy reloads, by result (ok|error).",
            &["result"],
        )?;
        let webhook_deliveries = counter(
            "tollgate_webhook_deliveries_total",
            "Webhook delivery attempts, by event and result (delivered|retry|failed).",
            &["event", "result"],
        )?;
        let spend = prometheus::CounterVec::new(
            Opts::new(
                "tollgate_spend_usd_total",
                "USD billed, by group and model.",
            ),
            &["group", "model"],
        )?;
        registry.register(Box::new(spend.clone()))?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Whole request time, by group.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["group"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_overhead_seconds",
                "Time spent in the gateway before the first upstream attempt.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_upstream_duration_seconds",
                "Upstream time of the answering attempt, by target.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["target"],
        )?;
        registry.register(Box::new(upstream_duration.clone()))?;
        let target_healthy = IntGaugeVec::new(
            Opts::new("tollgate_target_healthy", "1 if the target is not ejected."),
            &["target"],
        )?;
        registry.register(Box::new(target_healthy.clone()))?;
        let inflight = IntGauge::new("tollgate_inflight_requests", "Requests in flight.")?;
        registry.register(Box::new(inflight.clone()))?;
        let connections = IntGauge::new(
            "tollgate_connections",
            "Client connections open on the data plane.",
        )?;
        registry.register(Box::new(connections.clone()))?;
        let body_memory = IntGauge::new(
            "tollgate_body_memory_bytes",
            "Request body bytes reserved in server.body_memory.",
        )?;
        registry.register(Box::new(body_memory.clone()))?;
        let keys = IntGaugeVec::new(
            Opts::new("tollgate_keys", "Keys (file and API) per group and status."),
            &["group", "status"],
        )?;
        registry.register(Box::new(keys.clone()))?;
        let admin_requests = IntCounterVec::new(
            Opts::new(
                "tollgate_admin_requests_total",
                "Admin API requests by route template and status.",
            ),
            &["route", "status"],
        )?;
        registry.register(Box::new(admin_requests.clone()))?;
        let shadow_limited = IntCounterVec::new(
            Opts::new(
                "tollgate_shadow_limited_total",
                "Requests over a shadow limit (admitted all the same), by group and the code it would have refused with.",
            ),
            &["group", "reason"],
        )?;
        registry.register(Box::new(shadow_limited.clone()))?;
        let request_log_dropped = IntCounter::new(
            "tollgate_request_log_dropped_total",
            "Request-log lines dropped because the sink could not keep up (64 MiB waiting).",
        )?;
        registry.register(Box::new(request_log_dropped.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            rejections,
            errors,
            tokens,
            spend,
            request_duration,
            overhead,
            upstream_duration,
            target_healthy,
            inflight,
            connections,
            body_memory,
            reloads,
            keys,
            admin_requests,
            shadow_limited,
            webhook_deliveries,
            request_log_dropped,
        })
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
