//! End to end: docs/operations.md "Tracing" — spans exported over OTLP/HTTP to a collector
//! in the test (protobuf `ExportTraceServiceRequest`s decoded with opentelemetry-proto):
//! the GenAI attributes equal the provider's usage, an attempt span per upstream attempt,
//! the client's trace continued and passed upstream, refusals traced, sampling honoured.

use crate::harness::*;
use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    /// 2 = server, 3 = client.
    kind: i32,
    attrs: HashMap<String, Value>,
    service: Option<String>,
}

impl Span {
    fn attr(&self, k: &str) -> &Value {
        self.attrs.get(k).unwrap_or(&Value::Null)
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn value(v: Option<Any>) -> Value {
    match v {
        Some(Any::StringValue(s)) => Value::from(s),
        Some(Any::IntValue(i)) => Value::from(i),
        Some(Any::DoubleValue(d)) => Value::from(d),
        Some(Any::BoolValue(b)) => Value::from(b),
        _ => Value::Null,
    }
}

async fn collect(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut out = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|a| a.key == "service.name")
                .and_then(|a| {
                    value(a.value.clone().and_then(|v| v.value))
                        .as_str()
                        .map(str::to_string)
                })
        });
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attrs: s
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, value(a.value.and_then(|v| v.value))))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    ""
}

/// An OTLP/HTTP collector on a free port: `POST /v1/traces`.
async fn collector() -> (SocketAddr, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, spans)
}

fn traced_policy(mock: SocketAddr, otlp: SocketAddr, sample: f64) -> String {
    basic_policy(mock, "").with_dead_target("")
        + &format!("\n[tracing]\notlp_endpoint = \"http://{otlp}\"\nsample = {sample}\n")
}

/// The spans of `trace_id`, once `n` of them have arrived.
async fn trace(spans: &Spans, trace_id: &str, n: usize) -> Vec<Span> {
    wait_for(Duration::from_secs(20), "the trace's spans", || async {
        let got: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        (got.len() >= n).then_some(got)
    })
    .await
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn spans_carry_genai_usage_attempts_and_the_clients_trace() {
    let mock = mock().await;
    let (otlp, spans) = collector().await;
    let g = start_gateway(&traced_policy(mock.addr(), otlp, 1.0));

    // The client's trace is continued; the answer's usage is on the spans.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let a = g
        .call(
            CHAT,
            &key(1),
            &[("traceparent", &tp), ("x-mock-output-tokens", "7")],
            &chat_body("gpt-4o-mini"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let usage = &a.json()["usage"];
    let got = trace(&spans, CLIENT_TRACE, 2).await;
    let req = got
        .iter()
        .find(|s| s.kind == 2)
        .expect("the request's span");
    assert_eq!(req.parent, CLIENT_SPAN, "the client's span is the parent");
    assert_eq!(req.service.as_deref(), Some("tollgate"));
    assert_eq!(req.name, "chat gpt-4o-mini");
    assert_eq!(req.attr("gen_ai.operation.name"), "chat");
    assert_eq!(req.attr("gen_ai.provider.name"), "openai");
    assert_eq!(req.attr("gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(req.attr("gen_ai.response.model"), "gpt-4o-mini");
    assert_eq!(
        req.attr("gen_ai.usage.input_tokens"),
        &usage["prompt_tokens"]
    );
    assert_eq!(
        req.attr("gen_ai.usage.output_tokens"),
        &usage["completion_tokens"]
    );
    assert_eq!(req.attr("gen_ai.usage.output_tokens"), 7);
    assert_eq!(req.attr("tollgate.group"), "grp_prod");
    assert_eq!(req.attr("tollgate.key_id"), "key_main");
    // gpt-4o-mini: $0.15 and $0.60 per million tokens, rounded up to the micro-dollar.
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    let micros = (input * 150_000 + output * 600_000).div_ceil(1_000_000);
    assert_eq!(
        req.attr("tollgate.cost_usd").as_f64(),
        Some(micros as f64 / 1e6)
    );
    assert_eq!(req.attr("tollgate.refusal"), &Value::Null);
    let attempt = got
        .iter()
        .find(|s| s.kind == 3)
        .expect("the attempt's span");
    assert_eq!(attempt.parent, req.span_id);
    assert_eq!(
        attempt.attr("gen_ai.request.model"),
        "gpt-4o-mini-2024-07-18"
    );
    assert_eq!(attempt.attr("http.response.status_code"), 200);
    // The provider saw the attempt's span as its parent, in the client's trace.
    let sent = mock.received();
    let upstream = sent
        .last()
        .and_then(|r| r.header("traceparent"))
        .expect("traceparent upstream");
    assert_eq!(
        upstream,
        format!("00-{CLIENT_TRACE}-{}-01", attempt.span_id)
    );

    // A dead first target: two attempt spans under the request's.
    let tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let a = g
        .call(CHAT, &key(1), &[("traceparent", tp2)], &chat_body("gpt-4o"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = trace(&spans, "0af7651916cd43dd8448eb211c80319c", 3).await;
    let req = got
        .iter()
        .find(|s| s.kind == 2)
        .expect("the request's span");
    let attempts: Vec<&Span> = got.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(attempts.len(), 2, "{got:#?}");
    assert!(attempts.iter().all(|s| s.parent == req.span_id));
    let failed = attempts
        .iter()
        .find(|s| s.attr("tollgate.provider") == "dead")
        .expect("dead");
    assert_eq!(failed.attr("error.type"), "connect_failed");
    let served = attempts
        .iter()
        .find(|s| s.attr("tollgate.provider") == "oa")
        .expect("oa");
    assert_eq!(served.attr("http.response.status_code"), 200);
    assert_eq!(
        served.attr("gen_ai.usage.output_tokens"),
        &a.json()["usage"]["completion_tokens"]
    );

    // Refused requests are traced too, with the error code.
    let tp3 = "00-11111111111111111111111111111111-2222222222222222-01";
    let a = g
        .call(
            CHAT,
            "tg-not-a-key",
            &[("traceparent", tp3)],
            &chat_body("gpt-4o"),
        )
        .await;
    assert_eq!(a.status, 401);
    let got = trace(&spans, "11111111111111111111111111111111", 1).await;
    assert_eq!(got.len(), 1, "no attempt for a refused request");
    assert_eq!(got[0].attr("tollgate.refusal"), "invalid_api_key");
    assert_eq!(got[0].attr("http.response.status_code"), 401);
    let tp4 = "00-33333333333333333333333333333333-4444444444444444-01";
    let a = g
        .call(
            CHAT,
            &key(1),
            &[("traceparent", tp4)],
            &chat_body("o1-preview"),
        )
        .await;
    assert_eq!(a.code(), "model_not_allowed");
    let got = trace(&spans, "33333333333333333333333333333333", 1).await;
    assert_eq!(got[0].attr("tollgate.refusal"), "model_not_allowed");
    assert_eq!(got[0].attr("tollgate.key_id"), "key_main");

    // A new trace (no traceparent) at sample = 1 is recorded, and passed upstream.
    mock.clear_received();
    let a = g.call(CHAT, &key(1), &[], &chat_body("gpt-4o-mini")).await;
    assert_eq!(a.status, 200);
    let sent = mock.received();
    let tp = sent[0]
        .header("traceparent")
        .expect("traceparent upstream")
        .to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    trace(&spans, &tp[3..35], 2).await;
}

#[tokio::test]
async fn sample_zero_records_no_new_trace() {
    let mock = mock().await;
    let (otlp, spans) = collector().await;
    let g = start_gateway(&traced_policy(mock.addr(), otlp, 0.0));
    for _ in 0..5 {
        let a = g.call(CHAT, &key(1), &[], &chat_body("gpt-4o-mini")).await;
        assert_eq!(a.status, 200);
    }
    // Not recorded, but still one trace across services: the flag says so upstream.
    let tp = mock.received()[0]
        .header("traceparent")
        .expect("traceparent")
        .to_string();
    assert!(tp.ends_with("-00"), "{tp}");
    // A client's sampled trace is still honoured; spans are exported in order, so once it
    // is in, nothing else was.
    let marker = "00-55555555555555555555555555555555-6666666666666666-01";
    let a = g
        .call(
            CHAT,
            &key(1),
            &[("traceparent", marker)],
            &chat_body("gpt-4o-mini"),
        )
        .await;
    assert_eq!(a.status, 200);
    trace(&spans, "55555555555555555555555555555555", 2).await;
    let all = spans.lock().unwrap().clone();
    assert!(
        all.iter()
            .all(|s| s.trace_id == "55555555555555555555555555555555"),
        "{all:#?}"
    );
}

/// A collector that accepts connections and never answers: exports hang until their
/// timeout on the exporter's own thread, while requests keep their pace.
#[tokio::test]
async fn a_hanging_collector_never_slows_requests() {
    let mock = mock().await;
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = stuck.local_addr().unwrap();
    let tried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = tried.clone();
    let held = tokio::spawn(async move {
        let mut conns = vec![];
        while let Ok((c, _)) = stuck.accept().await {
            conns.push(c);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let g = start_gateway(&traced_policy(mock.addr(), otlp, 1.0));
    // Past several batch intervals (1 s each): every export is stuck meanwhile.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while std::time::Instant::now() < until {
        let t = std::time::Instant::now();
        let a = g.call(CHAT, &key(1), &[], &chat_body("gpt-4o-mini")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "request {n} took {:?}",
            t.elapsed()
        );
        n += 1;
    }
    assert!(n > 10, "only {n} requests in 3 s");
    // The exporter did try the collector meanwhile (and is stuck there).
    wait_until(Duration::from_secs(10), "an export attempt", || {
        tried.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    held.abort();
}
