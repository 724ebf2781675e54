//! Tracing (`[tracing]`): one OpenTelemetry span per request and one per upstream attempt,
//! exported over OTLP/HTTP (protobuf).
//!
//! The request path only keeps ids and instants ([`RequestTrace`], made when tracing is
//! on; nothing at all when it is off). `logging` builds the spans once from the finished
//! request ([`span`]) and hands them to the SDK's batch processor, whose channel never
//! blocks (a full queue drops the span); the export runs on the processor's own thread
//! with a blocking HTTP client, so a slow or dead collector never slows a request.
//!
//! Sampling is parent-based: a client's `traceparent` is continued with its sampled flag,
//! a new trace is recorded at the `sample` ratio of its trace id. Either way the attempt's
//! `traceparent` goes upstream, so the provider's spans join the client's trace.

mod context;
mod export;
mod span;

pub(crate) use context::RequestTrace;
pub(crate) use span::Request;

use crate::observe::Finished;
use crate::policy::config::TracingConfig;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// How long spans wait for their batch, at most.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// An export that takes longer is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Spans waiting for export; past it new spans are dropped, never waited for.
const QUEUE: usize = 8192;

/// The exporter: built at start from `[tracing]` (a reload does not change it).
pub(crate) struct Tracer {
    processor: BatchSpanProcessor,
    sample_bound: u64,
    scope: InstrumentationScope,
}

impl Tracer {
    pub(crate) fn start(cfg: &TracingConfig) -> anyhow::Result<Tracer> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.traces_url.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(BATCH_DELAY)
            .with_max_queue_size(QUEUE)
            .build();
        let exporter = export::Logged::new(exporter, cfg.traces_url.clone());
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        processor.set_resource(&Resource::builder().with_service_name("tollgate").build());
        let scope = InstrumentationScope::builder("tollgate")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Tracer {
            processor,
            sample_bound: context::sample_bound(cfg.sample),
            scope,
        })
    }

    /// The request's trace, from its `traceparent` header if any.
    pub(crate) fn begin(&self, req: &pingora_http::RequestHeader) -> Box<RequestTrace> {
        let client = req.headers.get("traceparent").map(|v| v.as_bytes());
        Box::new(RequestTrace::begin(client, self.sample_bound))
    }
}

/// `logging`: the request's spans, when it is traced and sampled.
pub(crate) fn export(
    tracer: Option<&Tracer>,
    trace: Option<&RequestTrace>,
    req: span::Request<'_>,
    f: &Finished<'_>,
) {
    let (Some(tracer), Some(trace)) = (tracer, trace) else {
        return;
    };
    if !trace.sampled {
        return;
    }
    for s in span::build(trace, req, f, &tracer.scope) {
        tracer.processor.on_end(s);
    }
}
