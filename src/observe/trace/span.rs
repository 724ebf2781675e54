//! The spans of one finished request, built once in `logging` from what the request kept.

use super::context::RequestTrace;
use crate::llm::body::Endpoint;
use crate::observe::{Finished, Outcome};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::time::Instant;

/// The GenAI `gen_ai.operation.name` of a route.
fn operation(e: Option<Endpoint>) -> Option<&'static str> {
    match e? {
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => Some("chat"),
        Endpoint::Completions => Some("text_completion"),
        Endpoint::Embeddings => Some("embeddings"),
        Endpoint::ListModels | Endpoint::CountTokens => None,
    }
}

/// What a span needs of the request besides its trace and its outcome.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) snapshot: &'a crate::policy::snapshot::Snapshot,
}

/// The request's span first, then one per attempt.
pub(super) fn build(
    trace: &RequestTrace,
    req: Request<'_>,
    f: &Finished<'_>,
    scope: &InstrumentationScope,
) -> Vec<SpanData> {
    // One clock pair: instants become wall-clock times relative to now.
    let (now, wall) = (Instant::now(), crate::clock::wall());
    let at = |i: Instant| wall - now.saturating_duration_since(i);
    let op = operation(req.endpoint);
    let snapshot = req.snapshot;
    let target = |r: (usize, usize)| &snapshot.models[r.0].targets[r.1];
    let span =
        |id: u64, parent: Option<u64>, kind, name: String, start, end, attributes, status| {
            SpanData {
                span_context: SpanContext::new(
                    TraceId::from(trace.trace_id),
                    SpanId::from(id),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::NONE,
                ),
                parent_span_id: parent.map_or(SpanId::INVALID, SpanId::from),
                parent_span_is_remote: parent.is_some() && parent == trace.parent,
                span_kind: kind,
                name: Cow::Owned(name),
                start_time: start,
                end_time: end,
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: scope.clone(),
            }
        };

    let mut attrs = Vec::with_capacity(14);
    if let Some(op) = op {
        attrs.push(KeyValue::new("gen_ai.operation.name", op));
    }
    let last = trace.attempts.last().map(|a| target(a.target));
    if let Some(t) = last {
        attrs.push(KeyValue::new(
            "gen_ai.provider.name",
            t.provider.api.as_str(),
        ));
    }
    if let Some(m) = f.model {
        attrs.push(KeyValue::new("gen_ai.request.model", m.to_string()));
    }
    if let Some(m) = f.served_model {
        attrs.push(KeyValue::new("gen_ai.response.model", m.to_string()));
    }
    let usage = |attrs: &mut Vec<KeyValue>| {
        if let Some(b) = f.billed {
            attrs.push(KeyValue::new("gen_ai.usage.input_tokens", b.input as i64));
            attrs.push(KeyValue::new("gen_ai.usage.output_tokens", b.output as i64));
        }
    };
    usage(&mut attrs);
    if let Some(k) = f.key {
        attrs.push(KeyValue::new("tollgate.group", k.group.id.clone()));
        attrs.push(KeyValue::new("tollgate.key_id", k.id.clone()));
    }
    if let Some(b) = f.billed {
        attrs.push(KeyValue::new(
            "tollgate.cost_usd",
            b.cost_micros as f64 / 1e6,
        ));
    }
    if let Some(e) = f.error {
        attrs.push(KeyValue::new("tollgate.refusal", e.code()));
    }
    attrs.push(KeyValue::new(
        "tollgate.request_id",
        f.request_id.to_string(),
    ));
    if f.status != 0 {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(f.status),
        ));
    }
    let status = match f.error {
        Some(e) => Status::error(e.code()),
        None => Status::Unset,
    };
    let name = match (op, f.model) {
        (Some(op), Some(m)) => format!("{op} {m}"),
        (Some(op), None) => op.to_string(),
        (None, _) => "tollgate".to_string(),
    };
    let mut spans = Vec::with_capacity(1 + trace.attempts.len());
    spans.push(span(
        trace.span_id,
        trace.parent,
        SpanKind::Server,
        name,
        at(f.started),
        at(f.ended),
        attrs,
        status,
    ));

    let n = trace.attempts.len();
    for (i, a) in trace.attempts.iter().enumerate() {
        let t = target(a.target);
        let end = trace
            .attempts
            .get(i + 1)
            .map_or(f.ended, |next| next.started);
        let outcome = f.attempts.get(i).map_or(Outcome::Pending, |o| o.1);
        let mut attrs = Vec::with_capacity(10);
        if let Some(op) = op {
            attrs.push(KeyValue::new("gen_ai.operation.name", op));
        }
        attrs.push(KeyValue::new(
            "gen_ai.provider.name",
            t.provider.api.as_str(),
        ));
        attrs.push(KeyValue::new("gen_ai.request.model", t.model.clone()));
        attrs.push(KeyValue::new("tollgate.target", t.label.clone()));
        attrs.push(KeyValue::new("tollgate.provider", t.provider.id.clone()));
        let answered = i + 1 == n && matches!(outcome, Outcome::Status(s) if s < 400);
        if answered {
            attrs.push(KeyValue::new("gen_ai.response.model", t.model.clone()));
            usage(&mut attrs);
        }
        let status = match outcome {
            Outcome::Status(s) => {
                attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
                if s >= 400 {
                    Status::error(s.to_string())
                } else {
                    Status::Unset
                }
            }
            Outcome::Pending => Status::Unset,
            o => {
                attrs.push(KeyValue::new("error.type", o.name()));
                Status::error(o.name())
            }
        };
        let name = match op {
            Some(op) => format!("{op} {}", t.model),
            None => t.label.to_string(),
        };
        spans.push(span(
            a.span_id,
            Some(trace.span_id),
            SpanKind::Client,
            name,
            at(a.started),
            at(end),
            attrs,
            status,
        ));
    }
    spans
}
