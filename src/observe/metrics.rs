//! Prometheus metrics (docs/operations.md "Metrics"), in a registry of our own served on the admin listener.
//! Labels are groups, models, targets and codes only — never key ids or secrets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, OnceLock, RwLock};

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: IntCounterVec,
    pub(crate) rejections: IntCounterVec,
    /// `tollgate_errors_total{group,fault,code}`: every request that ended in an error,
    /// by who caused it (client | gateway | upstream).
    pub(crate) errors: IntCounterVec,
    pub(crate) tokens: IntCounterVec,
    pub(crate) spend: prometheus::CounterVec,
    pub(crate) request_duration: HistogramVec,
    pub(crate) overhead: Histogram,
    pub(crate) upstream_duration: HistogramVec,
    pub(crate) target_healthy: IntGaugeVec,
    pub(crate) inflight: IntGauge,
    pub(crate) connections: IntGauge,
    pub(crate) body_memory: IntGauge,
    pub(crate) reloads: IntCounterVec,
    /// `tollgate_keys{group,status}`, set at scrape time.
    pub(crate) keys: IntGaugeVec,
    pub(crate) admin_requests: IntCounterVec,
    pub(crate) shadow_limited: IntCounterVec,
    /// `tollgate_guardrail_actions_total{group,guardrail,action}`.
    pub(crate) guardrail_actions: IntCounterVec,
    pub(crate) webhook_deliveries: IntCounterVec,
    /// Request-log lines dropped because the sink could not keep up.
    pub(crate) request_log_dropped: IntCounter,
    /// The series of answered requests, resolved once per label set.
    series: RwLock<hashbrown::HashMap<SeriesKey, Arc<Series>, crate::digest::FastHash>>,
}

/// The series one answered request touches, found together: one hashed lookup per request
/// instead of six `with_label_values` (each hashes its labels with SipHash and takes the
/// vector's lock). Token, spend and upstream series are made on first use, as before.
pub(crate) struct Series {
    pub(crate) requests: IntCounter,
    pub(crate) duration: Histogram,
    group: Box<str>,
    model: Box<str>,
    target: Option<Box<str>>,
    billing: OnceLock<(IntCounter, IntCounter, prometheus::Counter)>,
    upstream: OnceLock<Option<Histogram>>,
}

impl Series {
    /// Tokens in, tokens out, USD.
    pub(crate) fn billing(&self, m: &Metrics) -> &(IntCounter, IntCounter, prometheus::Counter) {
        self.billing.get_or_init(|| {
            let (g, model) = (&*self.group, &*self.model);
            (
                m.tokens.with_label_values(&[g, model, "input"]),
                m.tokens.with_label_values(&[g, model, "output"]),
                m.spend.with_label_values(&[g, model]),
            )
        })
    }

    /// `tollgate_upstream_duration_seconds` of the target that answered, if one did.
    pub(crate) fn upstream(&self, m: &Metrics) -> Option<&Histogram> {
        self.upstream
            .get_or_init(|| {
                let t = self.target.as_deref()?;
                Some(m.upstream_duration.with_label_values(&[t]))
            })
            .as_ref()
    }
}

/// Label sets beyond this many are looked up label by label, not kept (a bound on memory
/// whatever the statuses and models seen).
const MAX_SERIES: usize = 4096;

#[derive(PartialEq, Eq, Hash)]
struct SeriesKey {
    group: Box<str>,
    model: Box<str>,
    target: Option<Box<str>>,
    status: u16,
}

/// [`SeriesKey`] borrowed: hashes the same (`&str` and `Box<str>` hash as `str`).
#[derive(Hash)]
struct SeriesRef<'a> {
    group: &'a str,
    model: &'a str,
    target: Option<&'a str>,
    status: u16,
}

impl hashbrown::Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        self.status == k.status
            && self.group == &*k.group
            && self.model == &*k.model
            && self.target == k.target.as_deref()
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
];

impl Metrics {
    pub(crate) fn new() -> prometheus::Result<Metrics> {
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
        let guardrail_actions = IntCounterVec::new(
            Opts::new(
                "tollgate_guardrail_actions_total",
                "Guardrail verdicts by group, guardrail and action (block, redact, log; error and unavailable for a failed external check).",
            ),
            &["group", "guardrail", "action"],
        )?;
        registry.register(Box::new(guardrail_actions.clone()))?;
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
            guardrail_actions,
            webhook_deliveries,
            request_log_dropped,
            series: RwLock::default(),
        })
    }

    /// The series of a request answered with `status` for `group` and `model` (served by
    /// `target`, if one answered).
    pub(crate) fn series(
        &self,
        group: &str,
        model: &str,
        target: Option<&str>,
        status: u16,
    ) -> Arc<Series> {
        let key = SeriesRef {
            group,
            model,
            target,
            status,
        };
        if let Some(s) = self.series.read().ok().and_then(|m| m.get(&key).cloned()) {
            return s;
        }
        let mut code = itoa::Buffer::new();
        let s = Arc::new(Series {
            requests: self
                .requests
                .with_label_values(&[group, model, code.format(status)]),
            duration: self.request_duration.with_label_values(&[group]),
            group: group.into(),
            model: model.into(),
            target: target.map(Into::into),
            billing: OnceLock::new(),
            upstream: OnceLock::new(),
        });
        if let Ok(mut m) = self.series.write() {
            if m.len() < MAX_SERIES {
                let key = SeriesKey {
                    group: group.into(),
                    model: model.into(),
                    target: target.map(Into::into),
                    status,
                };
                m.insert(key, s.clone());
            }
        }
        s
    }

    /// The registry, for metrics registered elsewhere (log export).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of everything.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn cached_series_count_as_label_lookups_do() {
        let m = Metrics::new().unwrap();
        for _ in 0..3 {
            let s = m.series("g", "m", Some("p/m"), 200);
            s.requests.inc();
            s.duration.observe(0.1);
        }
        let s = m.series("g", "m", None, 429);
        s.requests.inc();
        let text = String::from_utf8(m.render()).unwrap();
        let ok = r#"tollgate_requests_total{group="g",model="m",status="200"}"#;
        assert_eq!(line(&text, ok), Some(&*format!("{ok} 3")));
        let refused = r#"tollgate_requests_total{group="g",model="m",status="429"}"#;
        assert_eq!(line(&text, refused), Some(&*format!("{refused} 1")));
        // Made on first use only: nothing billed, no upstream observed yet.
        assert!(!text.contains("tollgate_tokens_total{"), "{text}");
        assert!(
            !text.contains("tollgate_upstream_duration_seconds_count{"),
            "{text}"
        );
        let s = m.series("g", "m", Some("p/m"), 200);
        s.billing(&m).0.inc_by(5);
        s.upstream(&m).unwrap().observe(0.2);
        assert!(m.series("g", "m", None, 200).upstream(&m).is_none());
        let text = String::from_utf8(m.render()).unwrap();
        let tokens = r#"tollgate_tokens_total{direction="input",group="g",model="m"}"#;
        assert_eq!(line(&text, tokens), Some(&*format!("{tokens} 5")));
        assert!(text.contains(r#"tollgate_upstream_duration_seconds_count{target="p/m"} 1"#));
    }
}
