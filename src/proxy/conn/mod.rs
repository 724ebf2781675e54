//! Connections from clients: the cap on how many are open, and the deadlines Pingora does
//! not enforce itself.
//!
//! Pingora 0.9's HTTP/1 server times out each *read* (a client sending one header byte
//! every few seconds is never closed) and keeps an idle keep-alive connection forever.
//! Rather than patch it, the data-plane service is wrapped: [`Guarded`] is a `ServerApp`
//! around Pingora's `HttpProxy` that
//!
//! - refuses a connection beyond `server.max_connections` with a 503 `overloaded` in the
//!   documented error shape and closes it;
//! - wraps the connection's stream in [`watch::Watched`], which sees every byte the client
//!   sends and enforces, from the stream's side, the total header deadline
//!   (`header_timeout`, 408), the header size cap (`max_header_bytes`, 431) and the
//!   keep-alive idle timeout (`idle_timeout`, closed quietly).
//!
//! The request path tells the connection when a request is over ([`request_finished`],
//! from `logging`) so the idle clock starts; the body deadline and the body memory budget
//! are the request path's own (`respond::read_body`, [`budget`]).

pub(crate) mod body_memory;
pub(crate) mod watch;

use crate::error::GatewayError;
use crate::policy::config::ClientLimits;
use crate::policy::snapshot::Snapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a connection is in its request cycle (what its reads are waiting for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for (the rest of) a request header: `header_timeout` from the first byte
    /// (or from the accept, for a new connection).
    Header,
    /// A request is being served: the request path's own deadlines apply.
    Busy,
    /// Between requests on a keep-alive connection: `idle_timeout`.
    Idle,
}

/// The phase of one connection and when it began; shared by its stream and its requests.
#[derive(Debug)]
pub(crate) struct ConnState(Mutex<(Phase, Instant)>);

impl ConnState {
    pub(crate) fn new() -> ConnState {
        ConnState(Mutex::new((Phase::Header, Instant::now())))
    }

    pub(crate) fn get(&self) -> (Phase, Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, phase: Phase) {
        // A busy connection has no deadline here: its start time is never read (no clock).
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s = match phase {
            Phase::Busy => (phase, s.1),
            _ => (phase, Instant::now()),
        };
    }
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState::new()
    }
}

tokio::task_local! {
    /// The connection the current task serves (HTTP/1: one task per connection).
    static CONN: Arc<ConnState>;
}

/// The request on this connection is over: the keep-alive idle clock starts. Called from
/// `logging`, which Pingora runs after the response and before it reads the next request.
pub(crate) fn request_finished() {
    let _ = CONN.try_with(|c| c.set(Phase::Idle));
}

/// The data-plane service: Pingora's HTTP proxy behind a connection cap and deadlines.
pub(crate) struct Guarded<A> {
    app: Arc<A>,
    policy: Arc<ArcSwap<Snapshot>>,
    open: Arc<AtomicUsize>,
}

impl<A> Guarded<A> {
    /// `open` counts the connections (shared with the metrics).
    pub(crate) fn new(
        app: A,
        policy: Arc<ArcSwap<Snapshot>>,
        open: Arc<AtomicUsize>,
    ) -> Guarded<A> {
        Guarded {
            app: Arc::new(app),
            policy,
            open,
        }
    }
}

/// Counts an open connection; released on drop.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits: ClientLimits = self.policy.load().server.clients;
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        let _open = Open(self.open.clone());
        if n >= limits.max_connections {
            let e = GatewayError::Overloaded(format!(
                "too many connections (server.max_connections {}); retry shortly",
                limits.max_connections
            ));
            // Best effort: the client may not read it, and we do not wait long for it to.
            let _ = tokio::time::timeout(LINGER, stream.write_all(&canned(&e))).await;
            linger(&mut stream).await;
            log::debug!("connection refused: {e}");
            return None;
        }
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes requests on one connection: Pingora's h2 timeouts apply.
            return self.app.process_new(stream, shutdown).await;
        }
        let state = Arc::new(ConnState::new());
        let watched: Stream = Box::new(watch::Watched::new(stream, state.clone(), limits));
        let app = self.app.clone();
        CONN.scope(
            state,
            async move { app.process_new(watched, shutdown).await },
        )
        .await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// How long a closing connection reads what the client is still sending.
const LINGER: Duration = Duration::from_secs(1);
/// How much it reads at most.
const LINGER_BYTES: usize = 2 * 1024 * 1024;

/// Closes our side, then reads (and drops) what the client still sends, for a moment.
/// Closing a socket with unread bytes makes the kernel answer with a reset, which can
/// destroy the refusal we just wrote before the client reads it (nginx's
/// `lingering_close`).
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(s: &mut S) {
    let _ = tokio::time::timeout(LINGER, s.shutdown()).await;
    let drain = async {
        let mut buf = [0u8; 16 * 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A complete HTTP/1.1 refusal in the documented error shape (OpenAI's: no route is known yet) that
/// closes the connection.
pub(crate) fn canned(e: &GatewayError) -> Vec<u8> {
    let body = e.body(crate::policy::config::Api::OpenAi);
    let reason = http::StatusCode::from_u16(e.status())
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        e.status(),
        body.len()
    );
    if let Some(s) = e.retry_after() {
        out.push_str(&format!("retry-after: {s}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}
