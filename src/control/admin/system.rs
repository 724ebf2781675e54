//! Health, readiness, metrics and reload on the admin listener.

use super::{err, AdminState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(s): State<AdminState>) -> Response {
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

pub(crate) async fn metrics(State(s): State<AdminState>) -> Response {
    let m = &s.metrics;
    // Gauges and counters kept elsewhere are read at scrape time.
    m.inflight
        .set(s.accounting.inflight.load(Ordering::Relaxed) as i64);
    m.connections
        .set(s.accounting.connections.load(Ordering::Relaxed) as i64);
    m.body_memory.set(s.accounting.body_budget.used() as i64);
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    for (label, healthy, _) in s.health.report(now) {
        m.target_healthy
            .with_label_values(&[&*label])
            .set(i64::from(healthy));
    }
    let snapshot = s.policy.current.load();
    m.keys.reset();
    for (group, c) in s.control.groups().key_counts(&snapshot) {
        for (status, n) in ["active", "disabled", "expired", "revoked"].iter().zip(c) {
            m.keys.with_label_values(&[&*group, status]).set(n as i64);
        }
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

/// `POST /v1/reload`'s answer (`ReloadResult`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReloadResult {
    pub(crate) reloaded: bool,
    pub(crate) generation: u64,
}

pub(crate) async fn reload(State(s): State<AdminState>) -> Response {
    let policy = s.policy.clone();
    match crate::policy::reload::retire::in_background("tollgate-reload", move || policy.reload())
        .await
    {
        Some(Ok(generation)) => Json(ReloadResult {
            reloaded: true,
            generation,
        })
        .into_response(),
        Some(Err(problems)) => err(
            400,
            "invalid_request",
            &format!("policy not reloaded, the previous one stays in force: {problems}"),
        ),
        None => err(500, "internal_error", "reload task failed"),
    }
}
