//! The admin listener (`server.admin_listen`): `/healthz`, `/readyz`, `/metrics` and
//! `POST /v1/reload`, behind `Authorization: Bearer <admin token>` (the token comes from the
//! environment variable named by `admin_token_env`; without it the authenticated routes
//! answer 401). `/healthz` and `/readyz` are open so load balancers can probe them.
//!
//! Runs as a Pingora background service on its own tokio listener, with axum routing.

use crate::account::Accounting;
use crate::observe::metrics::Metrics;
use crate::reload::Policy;
use crate::route::health::Health;
use crate::secret::Secret;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct AdminState {
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    pub accounting: Arc<Accounting>,
    pub health: Arc<Health>,
    pub token: Option<Secret>,
}

pub struct AdminService {
    pub addr: SocketAddr,
    pub state: AdminState,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"message": message.into(), "type": "invalid_request_error", "code": code, "param": null}});
    (status, Json(body)).into_response()
}

/// `None` if the request carries the admin token, else the refusal to send.
fn refusal(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    match (&state.token, presented) {
        (Some(t), Some(p)) if bool::from(t.expose().as_bytes().ct_eq(p)) => None,
        (None, _) => Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "admin token not configured (server.admin_token_env)",
        )),
        (_, None) => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "send Authorization: Bearer <admin token>",
        )),
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "invalid admin token",
        )),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let snap = s.policy.current.load();
    if snap.key_count() == 0 && snap.models.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no policy loaded\n").into_response();
    }
    (
        StatusCode::OK,
        format!("ready (policy generation {})\n", snap.generation),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let m = &s.metrics;
    // Gauges and counters kept elsewhere are read at scrape time.
    m.inflight
        .set(s.accounting.inflight.load(Ordering::Relaxed) as i64);
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    for (label, healthy, _) in s.health.report(now) {
        m.target_healthy
            .with_label_values(&[&*label])
            .set(i64::from(healthy));
    }
    for (result, total) in [
        ("ok", &s.policy.reloads_ok),
        ("error", &s.policy.reloads_failed),
    ] {
        let c = m.reloads.with_label_values(&[result]);
        c.inc_by(total.load(Ordering::Relaxed).saturating_sub(c.get()));
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let policy = s.policy.clone();
    match tokio::task::spawn_blocking(move || policy.reload()).await {
        Ok(Ok(generation)) => {
            Json(serde_json::json!({"reloaded": true, "generation": generation})).into_response()
        }
        Ok(Err(problems)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("policy not reloaded, the previous one stays in force: {problems}"),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "reload task failed",
        ),
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/reload", post(reload))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "unknown_route",
                "no such admin route",
            )
        })
        .with_state(state)
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // SO_REUSEPORT: during an upgrade (-u) the old process still holds the port.
        let bind = || -> std::io::Result<tokio::net::TcpListener> {
            let socket = if self.addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(self.addr)?;
            socket.listen(1024)
        };
        let listener = match bind() {
            Ok(l) => l,
            Err(e) => {
                log::error!("admin listener {}: {e}", self.addr);
                return;
            }
        };
        log::info!("admin API on http://{}", self.addr);
        let app = router(self.state.clone());
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            log::error!("admin listener: {e}");
        }
    }
}
