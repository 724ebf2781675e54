//! A mock LLM provider (OpenAI- and Anthropic-style) for tests, the demo and load tests.
//!
//! Hand-written HTTP/1.1 on tokio (not hyper) so it can misbehave on purpose: hang, reset
//! the connection, answer garbage, stall mid-stream. Behaviour is set per instance
//! ([`MockProvider::set_behaviour`], `PUT /_mock/behaviour`) or per request with headers:
//! `x-mock-latency-ms`, `x-mock-chunk-interval-ms`, `x-mock-status`, `x-mock-fault`
//! (`hang|reset|garbage|stall_mid_stream|cut_mid_stream|error_mid_stream`),
//! `x-mock-output-tokens`, `x-mock-omit-usage: 1`,
//! `x-mock-cached-tokens` (that many of the prompt tokens reported as read from the prompt
//! cache, in each API's own fields), `x-mock-cache-write-tokens` (as written to it:
//! Anthropic's `cache_creation_input_tokens`), `x-mock-reasoning-tokens` (that many of the
//! output tokens reported as reasoning: OpenAI's `*_tokens_details.reasoning_tokens`),
//! `x-mock-echo: 1` (answer with a summary of the request, see `reply`),
//! `x-mock-reply-text: …` (answer exactly that text, streamed in 4-byte pieces).
//! `POST /v1/messages/count_tokens` answers `{"input_tokens": N}` (N: a quarter of the body's
//! bytes). `POST /v1/moderations` answers in OpenAI's shape, flagging texts that hold
//! [`MODERATION_MARKER`] (violence) or [`MODERATION_MARKER_SELF_HARM`] (self-harm);
//! [`Behaviour`]'s `moderation_latency_ms` and `moderation_status` slow it or make it fail.
//! A status outside 200..=599 (`x-mock-status: 103`, `101`, `999`) is answered with the bare status line only,
//! then the connection is closed: a provider misbehaving in a way the gateway cannot relay.
//! [`MockProvider::fail_next`] (`POST /_mock/fail_next {"status": 529}`) makes the next
//! answer an error in the provider's own shape. Chat and messages answers carry tool calls
//! and stop reasons as `reply` decides them from the request.
//! Every request is recorded (`received()`, `GET /_mock/received`) as soon as its body is
//! read; [`MockProvider::last_event_at`] tells when the last stream event was written.
//! Prompt tokens are `ceil(body length / 4)`. The providers' usage APIs (`usage`) report
//! what it served per day and model; [`Behaviour`]'s `usage_*` fields make them report more,
//! fail, or insist on an admin key.

mod answers;
mod kind;
mod reply;
mod usage;
mod wire;

use answers::Kind;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Read the request, never answer.
    Hang,
    /// Read the request, close with a TCP reset.
    Reset,
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// Send the header and a stream's events up to its first text, then hang.
    StallMidStream,
    /// Send the header and a stream's events up to its first text, then close the
    /// connection without ending the chunked body.
    CutMidStream,
    /// Send a stream's events up to its first text, then an error event (Anthropic's
    /// `event: error`, or an OpenAI-style `data: {"error": …}`), then end the stream
    /// without usage.
    ErrorMidStream,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Behaviour {
    pub latency_ms: u64,
    pub chunk_interval_ms: u64,
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    pub output_tokens: Option<u32>,
    pub omit_usage: bool,
    pub echo: bool,
    /// Prompt tokens reported as cache reads (capped at the prompt's tokens).
    pub cached_tokens: Option<u64>,
    /// Prompt tokens reported as cache writes (Anthropic answers only).
    pub cache_write_tokens: Option<u64>,
    /// Output tokens reported as reasoning (OpenAI answers only).
    pub reasoning_tokens: Option<u64>,
    /// The usage APIs report this many per cent more tokens than were served.
    pub usage_extra_pct: u64,
    /// The usage APIs answer every call with this status.
    pub usage_status: Option<u16>,
    /// The usage APIs accept only this admin key (else 401).
    pub usage_key: Option<String>,
    /// Chat and messages answers say exactly this text (streamed in pieces of 4 bytes).
    pub reply_text: Option<String>,
    /// `/v1/moderations` answers after this long.
    pub moderation_latency_ms: u64,
    /// `/v1/moderations` answers every call with this status (an error body).
    pub moderation_status: Option<u16>,
}

/// Texts containing this are flagged by `/v1/moderations` (category `violence`).
pub const MODERATION_MARKER: &str = "FLAGME";
/// Texts containing this are flagged by `/v1/moderations` (category `self-harm`).
pub const MODERATION_MARKER_SELF_HARM: &str = "FLAGSELF";

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Shared {
    received: Mutex<Vec<Received>>,
    behaviour: Mutex<Behaviour>,
    input: AtomicU64,
    output: AtomicU64,
    started: Instant,
    fail_next: Mutex<std::collections::VecDeque<u16>>,
    last_event_at: Mutex<Option<Instant>>,
    /// What was served per day and model, for the usage APIs.
    served: usage::Served,
}

#[derive(Clone)]
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockProvider {
    pub async fn start(addr: &str) -> std::io::Result<MockProvider> {
        Self::start_inner(addr, None).await
    }

    pub async fn start_tls(
        addr: &str,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<MockProvider> {
        Self::start_inner(addr, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_inner(
        addr: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<MockProvider> {
        let listener = TcpListener::bind(addr).await?;
        let mock = MockProvider {
            addr: listener.local_addr()?,
            shared: Arc::new(Shared {
                received: Mutex::new(Vec::new()),
                behaviour: Mutex::new(Behaviour::default()),
                input: AtomicU64::new(0),
                output: AtomicU64::new(0),
                started: Instant::now(),
                fail_next: Mutex::new(Default::default()),
                last_event_at: Mutex::new(None),
                served: usage::Served::default(),
            }),
        };
        let shared = mock.shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                // SO_LINGER 0 makes close() send a RST at once (it cannot block with 0).
                #[allow(deprecated)]
                tokio::spawn(async move {
                    match tls {
                        None => {
                            serve(tcp, shared, |s: &TcpStream| {
                                s.set_linger(Some(Duration::ZERO))
                            })
                            .await
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve(
                                    s,
                                    shared,
                                    |s: &tokio_rustls::server::TlsStream<TcpStream>| {
                                        s.get_ref().0.set_linger(Some(Duration::ZERO))
                                    },
                                )
                                .await
                            }
                        }
                    }
                });
            }
        });
        Ok(mock)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    pub fn clear_received(&self) {
        lock(&self.shared.received).clear();
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.shared.behaviour) = b;
    }

    /// The next answer (to a model request) is an error with `status`, in the provider's
    /// own error shape. Calls queue up.
    pub fn fail_next(&self, status: u16) {
        lock(&self.shared.fail_next).push_back(status);
    }

    /// When the last event of the most recent stream was sent.
    pub fn last_event_at(&self) -> Option<Instant> {
        *lock(&self.shared.last_event_at)
    }

    /// Usage reported in answers that were written completely: (input, output).
    pub fn reported_usage(&self) -> (u64, u64) {
        (
            self.shared.input.load(Ordering::SeqCst),
            self.shared.output.load(Ordering::SeqCst),
        )
    }
}

/// Runs a mock provider until the process is killed (`tollgate mock`).
pub async fn run_forever(addr: &str) -> anyhow::Result<()> {
    let mock = MockProvider::start(addr).await?;
    println!("mock provider listening on {}", mock.addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// The effective behaviour: instance default, overridden by request headers.
fn behaviour(shared: &Shared, req: &wire::Request) -> Behaviour {
    let mut b = lock(&shared.behaviour).clone();
    let num = |n: &str| req.header(n).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(v) = num("x-mock-latency-ms") {
        b.latency_ms = v;
    }
    if let Some(v) = num("x-mock-chunk-interval-ms") {
        b.chunk_interval_ms = v;
    }
    if let Some(v) = num("x-mock-status") {
        b.status = u16::try_from(v).ok();
    }
    if let Some(v) = num("x-mock-output-tokens") {
        b.output_tokens = u32::try_from(v).ok();
    }
    if let Some(v) = num("x-mock-cached-tokens") {
        b.cached_tokens = Some(v);
    }
    if let Some(v) = num("x-mock-cache-write-tokens") {
        b.cache_write_tokens = Some(v);
    }
    if let Some(v) = num("x-mock-reasoning-tokens") {
        b.reasoning_tokens = Some(v);
    }
    let flag = |n: &str| req.header(n).is_some_and(|v| v == "1" || v == "true");
    if flag("x-mock-omit-usage") {
        b.omit_usage = true;
    }
    if flag("x-mock-echo") {
        b.echo = true;
    }
    if let Some(t) = req.header("x-mock-reply-text") {
        b.reply_text = Some(t.to_string());
    }
    if let Some(f) = req.header("x-mock-fault") {
        b.fault = serde_json::from_value(serde_json::Value::String(f.trim().to_string())).ok();
    }
    b
}

/// The cache and reasoning counts `b` asks answers to report, if any.
fn cache_report(b: &Behaviour) -> Option<answers::CacheReport> {
    let (read, write, reasoning) = (b.cached_tokens, b.cache_write_tokens, b.reasoning_tokens);
    (read.is_some() || write.is_some() || reasoning.is_some()).then(|| answers::CacheReport {
        read: read.unwrap_or(0),
        write: write.unwrap_or(0),
        reasoning: reasoning.unwrap_or(0),
    })
}

enum After {
    KeepAlive,
    Close,
    Reset,
}

async fn serve<S, R>(mut s: S, shared: Arc<Shared>, reset: R)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    R: Fn(&S) -> std::io::Result<()>,
{
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        let req = match wire::read_request(&mut s, &mut buf).await {
            Ok(r) => r,
            Err(wire::ReadError::Closed) => return,
            Err(wire::ReadError::Bad(m)) => {
                let _ = wire::write_full(&mut s, 400, "text/plain", m.as_bytes()).await;
                return;
            }
        };
        let close = req.close;
        match answer(&mut s, &shared, req).await {
            Ok(After::KeepAlive) if !close => continue,
            Ok(After::Reset) => {
                let _ = reset(&s);
                return;
            }
            _ => {
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    shared: &Shared,
    req: wire::Request,
) -> std::io::Result<After> {
    // Control endpoints.
    let path = req.path.split('?').next().unwrap_or("").to_string();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/healthz") => {
            return wire::write_full(s, 200, "text/plain", b"ok")
                .await
                .map(|_| After::KeepAlive)
        }
        ("GET", "/_mock/received") => {
            let list: Vec<serde_json::Value> = lock(&shared.received)
                .iter()
                .map(|r| {
                    let headers: serde_json::Map<String, serde_json::Value> = r.headers.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
                    serde_json::json!({"method": r.method, "path": r.path, "headers": headers,
                        "body": String::from_utf8_lossy(&r.body), "at_ms": r.at.duration_since(shared.started).as_millis() as u64})
                })
                .collect();
            let body = serde_json::to_vec(&list).unwrap_or_default();
            return wire::write_full(s, 200, "application/json", &body)
                .await
                .map(|_| After::KeepAlive);
        }
        ("DELETE", "/_mock/received") => {
            lock(&shared.received).clear();
            return wire::write_full(s, 200, "application/json", b"{}")
                .await
                .map(|_| After::KeepAlive);
        }
        ("PUT", "/_mock/behaviour") => {
            return match serde_json::from_slice::<Behaviour>(&req.body) {
                Ok(b) => {
                    *lock(&shared.behaviour) = b;
                    wire::write_full(s, 200, "application/json", b"{}")
                        .await
                        .map(|_| After::KeepAlive)
                }
                Err(e) => wire::write_full(s, 400, "text/plain", e.to_string().as_bytes())
                    .await
                    .map(|_| After::KeepAlive),
            };
        }
        ("POST", "/_mock/fail_next") => {
            let status = serde_json::from_slice::<serde_json::Value>(&req.body)
                .ok()
                .and_then(|v| v["status"].as_u64())
                .and_then(|s| u16::try_from(s).ok());
            let (code, body) = match status {
                Some(s) => {
                    lock(&shared.fail_next).push_back(s);
                    (200, &b"{}"[..])
                }
                None => (400, &b"want {\"status\": N}"[..]),
            };
            return wire::write_full(s, code, "application/json", body)
                .await
                .map(|_| After::KeepAlive);
        }
        ("GET", "/_mock/usage") => {
            let body = serde_json::json!({"input_tokens": shared.input.load(Ordering::SeqCst), "output_tokens": shared.output.load(Ordering::SeqCst)});
            return wire::write_full(s, 200, "application/json", body.to_string().as_bytes())
                .await
                .map(|_| After::KeepAlive);
        }
        _ => {}
    }
    if let Some((status, body)) = shared.served.answer(&req, &behaviour(shared, &req)) {
        lock(&shared.received).push(Received {
            method: req.method.clone(),
            path: req.path.clone(),
            headers: req.headers,
            body: req.body,
            at: Instant::now(),
        });
        return wire::write_full(s, status, "application/json", &body)
            .await
            .map(|_| After::KeepAlive);
    }

    let b = behaviour(shared, &req);
    let kind = Kind::from_path(&req.path);
    let body_json: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let prompt = (req.body.len() as u64).div_ceil(4);
    lock(&shared.received).push(Received {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers,
        body: req.body,
        at: Instant::now(),
    });
    if req.method == "POST" && path == "/v1/moderations" {
        return moderation(s, &b, &body_json).await;
    }
    if req.method == "POST" && path == "/v1/messages/count_tokens" {
        // Anthropic's answer shape; the count is the mock's usual prompt estimate.
        let v = serde_json::json!({ "input_tokens": prompt });
        wire::write_full(s, 200, "application/json", v.to_string().as_bytes()).await?;
        return Ok(After::KeepAlive);
    }

    match b.fault {
        Some(Fault::Hang) => {
            std::future::pending::<()>().await;
        }
        Some(Fault::Reset) => return Ok(After::Reset),
        Some(Fault::Garbage) => {
            let junk: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
            s.write_all(b"\x00\x01GARBAGE\r\n").await?;
            s.write_all(&junk).await?;
            s.flush().await?;
            return Ok(After::Close);
        }
        _ => {}
    }
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    let Some(kind) = kind.filter(|_| req.method == "POST") else {
        wire::write_full(s, 404, "application/json", &answers::error_body(None, 404)).await?;
        return Ok(After::KeepAlive);
    };
    let queued = lock(&shared.fail_next).pop_front();
    if let Some(status) = queued.or(b.status).filter(|s| !(200..=599).contains(s)) {
        // A status no provider should answer with (1xx, 101, 999): the bare status line,
        // as if it were the final answer, then the connection is closed.
        s.write_all(wire::bare_status(status).as_bytes()).await?;
        s.flush().await?;
        return Ok(After::Close);
    }
    if let Some(status) = queued.or(b.status).filter(|s| *s != 200) {
        wire::write_full(
            s,
            status,
            "application/json",
            &answers::error_body(Some(kind), status),
        )
        .await?;
        return Ok(After::KeepAlive);
    }
    let model = body_json["model"]
        .as_str()
        .unwrap_or("mock-model")
        .to_string();
    let mut r = reply::plan(kind, &body_json, b.output_tokens.unwrap_or(8), b.echo);
    if let Some(t) = &b.reply_text {
        r = reply::fixed(t, r.output_tokens);
    }
    let c = r.output_tokens;
    let usage = !b.omit_usage;
    let stream = body_json["stream"] == serde_json::Value::Bool(true) && kind != Kind::Embeddings;
    if !stream {
        let mut v = answers::json_answer(kind, &model, &body_json, prompt, &r, usage);
        if let Some(cache) = cache_report(&b) {
            answers::report_cache(kind, &mut v, cache);
        }
        wire::write_full(s, 200, "application/json", v.to_string().as_bytes()).await?;
        if usage {
            count(shared, kind, &model, prompt, c);
        }
        return Ok(After::KeepAlive);
    }
    let mut events = answers::stream_events(kind, &model, &body_json, prompt, &r, usage);
    if let Some(cache) = cache_report(&b) {
        for ev in &mut events {
            answers::report_cache_in_event(kind, ev, cache);
        }
    }
    let reports_usage = usage
        && (kind != Kind::Chat && kind != Kind::Completions
            || body_json["stream_options"]["include_usage"] == serde_json::Value::Bool(true));
    wire::write_stream_head(s).await?;
    for (i, ev) in events.iter().enumerate() {
        if i > 0 && b.chunk_interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(b.chunk_interval_ms)).await;
        }
        // The breaking faults act right after the first event that carries text.
        if i > 0 && events[i - 1].contains("tok0") {
            match b.fault {
                Some(Fault::StallMidStream) => std::future::pending::<()>().await,
                Some(Fault::CutMidStream) => {
                    s.flush().await?;
                    return Ok(After::Close);
                }
                Some(Fault::ErrorMidStream) => {
                    let err = if kind == Kind::Messages {
                        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
                    } else {
                        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n"
                    };
                    wire::write_chunk(s, err.as_bytes()).await?;
                    wire::write_last_chunk(s).await?;
                    return Ok(After::KeepAlive);
                }
                _ => {}
            }
        }
        if i + 1 == events.len() {
            *lock(&shared.last_event_at) = Some(Instant::now());
        }
        wire::write_chunk(s, ev.as_bytes()).await?;
    }
    wire::write_last_chunk(s).await?;
    if reports_usage {
        count(shared, kind, &model, prompt, c);
    }
    Ok(After::KeepAlive)
}

/// `POST /v1/moderations` in OpenAI's shape: one result per input text, flagged when it
/// holds a marker word.
async fn moderation<S: AsyncWrite + Unpin>(
    s: &mut S,
    b: &Behaviour,
    req: &serde_json::Value,
) -> std::io::Result<After> {
    if b.moderation_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.moderation_latency_ms)).await;
    }
    if let Some(status) = b.moderation_status {
        wire::write_full(
            s,
            status,
            "application/json",
            &answers::error_body(None, status),
        )
        .await?;
        return Ok(After::KeepAlive);
    }
    let inputs: Vec<String> = match &req["input"] {
        serde_json::Value::String(t) => vec![t.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => vec![],
    };
    let results: Vec<serde_json::Value> = inputs
        .iter()
        .map(|t| {
            let violence = t.contains(MODERATION_MARKER);
            let self_harm = t.contains(MODERATION_MARKER_SELF_HARM);
            let score = |on: bool| if on { 0.97 } else { 0.001 };
            serde_json::json!({
                "flagged": violence || self_harm,
                "categories": {"violence": violence, "self-harm": self_harm, "harassment": false},
                "category_scores": {"violence": score(violence), "self-harm": score(self_harm), "harassment": 0.001},
            })
        })
        .collect();
    let body = serde_json::json!({
        "id": "modr-mock",
        "model": "omni-moderation-latest",
        "results": results,
    });
    wire::write_full(s, 200, "application/json", body.to_string().as_bytes()).await?;
    Ok(After::KeepAlive)
}

fn count(shared: &Shared, kind: Kind, model: &str, prompt: u64, c: u32) {
    shared.input.fetch_add(prompt, Ordering::SeqCst);
    let output = if kind != Kind::Embeddings {
        shared.output.fetch_add(u64::from(c), Ordering::SeqCst);
        u64::from(c)
    } else {
        0
    };
    shared.served.record(kind, model, prompt, output);
}

#[cfg(test)]
mod tests;
