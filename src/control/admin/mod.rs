//! The admin listener (`server.admin_listen`): the admin API of docs/admin-api.md, `/metrics`,
//! `/healthz` and `/readyz`, as a Pingora background service on its own tokio listener with
//! axum routing.
//!
//! Every route is declared once, in [`routes`]: the router is built from it and the test
//! of `docs/openapi.json` compares the document with it, so neither can drift.
//! `/healthz` and `/readyz` are open (load balancers probe them); everything else needs
//! `Authorization: Bearer <admin token>`. The web console's static files under `/console/`
//! ([`console`]) are open too and outside the route table: they carry no data, and every
//! call they make is one of these routes with the signed-in token.

mod auth;
pub mod authz;
mod console;
mod handlers;
mod introspect;
mod log_sinks;
#[cfg(test)]
mod schema;
mod system;

use crate::control::{ApiError, ControlPlane};
use crate::observe::metrics::Metrics;
use crate::policy::reload::Policy;
use crate::proxy::account::Accounting;
use crate::proxy::route::health::Health;
use async_trait::async_trait;
pub(crate) use authz::Perm;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) policy: Arc<Policy>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) accounting: Arc<Accounting>,
    pub(crate) health: Arc<Health>,
    /// The root token's SHA-256 (compared in constant time, whatever the length).
    pub(crate) token: Option<crate::digest::Digest>,
    pub(crate) control: Arc<ControlPlane>,
    pub(crate) audit: Arc<crate::control::audit::AuditLog>,
    pub(crate) reconciler: Arc<crate::control::reconcile::Reconciler>,
    /// Log export, when `[[log_sinks]]` are configured.
    pub(crate) exporter: Option<Arc<crate::observe::export::Exporter>>,
}

pub(crate) struct AdminService {
    pub(crate) addr: SocketAddr,
    pub(crate) state: AdminState,
}

/// An error answer (`Error`): `{error: {message, type, code, param}}`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: ErrorDetail<'a>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct ErrorDetail<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) code: &'static str,
    pub(crate) param: Option<&'a str>,
}

/// An error in the documented (OpenAI) shape, `param` naming the offending field.
pub(crate) fn error_response(e: &ApiError) -> Response {
    let kind = match e.status {
        401 => "authentication_error",
        403 => "permission_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    let body = ErrorBody {
        error: ErrorDetail {
            message: &e.message,
            kind,
            code: e.code,
            param: e.param.as_deref(),
        },
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn err(status: u16, code: &'static str, message: &str) -> Response {
    error_response(&ApiError {
        status,
        code,
        message: message.into(),
        param: None,
    })
}

/// Every route the admin listener serves: method, path (axum / OpenAPI syntax), the
/// permission it needs, handler.
pub(crate) fn routes() -> Vec<(Method, &'static str, Perm, MethodRouter<AdminState>)> {
    use handlers::*;
    use routing::{delete, get, patch, post};
    use Perm::*;
    vec![
        (Method::GET, "/healthz", Open, get(system::healthz)),
        (Method::GET, "/readyz", Open, get(system::readyz)),
        (Method::GET, "/metrics", Metrics, get(system::metrics)),
        (Method::POST, "/v1/reload", Reload, post(system::reload)),
        (Method::GET, "/v1/whoami", Whoami, get(introspect::whoami)),
        (
            Method::GET,
            "/v1/policy",
            ReadPolicy,
            get(introspect::policy),
        ),
        (Method::POST, "/v1/tokens", Tokens, post(create_token)),
        (Method::GET, "/v1/tokens", Tokens, get(list_tokens)),
        (
            Method::DELETE,
            "/v1/tokens/{id}",
            Tokens,
            delete(revoke_token),
        ),
        (Method::POST, "/v1/keys", CreateKeys, post(create_key)),
        (Method::GET, "/v1/keys", ReadKeys, get(list_keys)),
        (
            Method::POST,
            "/v1/keys/batch",
            BatchKeys,
            post(create_batch),
        ),
        (Method::GET, "/v1/keys/{id}", ReadKeys, get(get_key)),
        (Method::PATCH, "/v1/keys/{id}", EditKeys, patch(patch_key)),
        (
            Method::DELETE,
            "/v1/keys/{id}",
            ManageKeys,
            delete(revoke_key),
        ),
        (
            Method::POST,
            "/v1/keys/{id}/disable",
            ManageKeys,
            post(disable_key),
        ),
        (
            Method::POST,
            "/v1/keys/{id}/enable",
            ManageKeys,
            post(enable_key),
        ),
        (
            Method::POST,
            "/v1/keys/{id}/regenerate",
            ManageKeys,
            post(regenerate_key),
        ),
        (Method::POST, "/v1/keys/{id}/move", EditKeys, post(move_key)),
        (Method::GET, "/v1/groups", ReadGroups, get(list_groups)),
        (Method::GET, "/v1/groups/{id}", ReadGroups, get(get_group)),
        (
            Method::POST,
            "/v1/groups/{id}/pause",
            WriteGroups,
            post(pause_group),
        ),
        (
            Method::POST,
            "/v1/groups/{id}/resume",
            WriteGroups,
            post(resume_group),
        ),
        (
            Method::POST,
            "/v1/groups/{id}/quarantine",
            WriteGroups,
            post(quarantine_group),
        ),
        (
            Method::POST,
            "/v1/groups/{id}/keys/disable",
            WriteGroups,
            post(bulk_disable),
        ),
        (
            Method::POST,
            "/v1/groups/{id}/keys/enable",
            WriteGroups,
            post(bulk_enable),
        ),
        (
            Method::POST,
            "/v1/groups/{id}/keys/revoke",
            WriteGroups,
            post(bulk_revoke),
        ),
        (
            Method::PATCH,
            "/v1/groups/{id}/keys",
            WriteGroups,
            patch(bulk_patch_keys),
        ),
        (
            Method::GET,
            "/v1/spend/groups/{id}",
            ReadSpend,
            get(spend_group),
        ),
        (
            Method::GET,
            "/v1/spend/groups/{id}/by-model",
            ReadSpend,
            get(spend_by_model),
        ),
        (
            Method::GET,
            "/v1/spend/groups/{id}/by-key",
            ReadSpend,
            get(spend_by_key),
        ),
        (
            Method::GET,
            "/v1/spend/groups/{id}/timeline",
            ReadSpend,
            get(spend_timeline),
        ),
        (
            Method::GET,
            "/v1/spend/keys/{id}",
            ReadSpend,
            get(spend_key),
        ),
        (
            Method::GET,
            "/v1/spend/orgs/{id}",
            ReadSpend,
            get(spend_org),
        ),
        (
            Method::GET,
            "/v1/spend/tags/{tag}",
            ReadSpend,
            get(spend_tag),
        ),
        (
            Method::GET,
            "/v1/invoices",
            ReadInvoices,
            get(list_invoices),
        ),
        (Method::GET, "/v1/audit", ReadAudit, get(list_audit)),
        (
            Method::GET,
            "/v1/audit/verify",
            VerifyAudit,
            get(verify_audit),
        ),
        (
            Method::GET,
            "/v1/reconciliation",
            ReadReconciliation,
            get(list_reconciliation),
        ),
        (
            Method::POST,
            "/v1/reconciliation/run",
            RunReconciliation,
            post(run_reconciliation),
        ),
        (
            Method::GET,
            "/v1/log_sinks",
            ReadLogSinks,
            get(log_sinks::list_log_sinks),
        ),
    ]
}

/// `(method, path)` of every route, for the OpenAPI check.
pub fn route_list() -> Vec<(String, String)> {
    route_perms().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// `(method, path, permission)` of every route.
pub(crate) fn route_perms() -> Vec<(String, String, Perm)> {
    routes()
        .into_iter()
        .map(|(m, p, perm, _)| (m.as_str().to_string(), p.to_string(), perm))
        .collect()
}

/// The largest request body the admin API reads (axum's default, written down): a larger
/// one is answered 413 `request_too_large`, as the data plane answers a body over
/// `max_body`.
pub(crate) const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The listener's own refusals in the documented error shape: axum answers a body over
/// [`BODY_LIMIT`] with a plain-text 413 from inside the extractor.
async fn own_errors_as_json(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return err(
            413,
            "request_too_large",
            &format!("the body is over the admin API's limit of {BODY_LIMIT} bytes"),
        );
    }
    resp
}

pub(crate) fn router(state: AdminState) -> Router {
    let mut r = Router::new();
    for (_, path, perm, handler) in routes() {
        let guard = axum::middleware::from_fn_with_state((state.clone(), perm), authz::authorize);
        r = r.route(path, handler.route_layer(guard));
    }
    let metrics = state.metrics.clone();
    r.merge(console::router())
        .fallback(|| async { err(404, "unknown_route", "no such admin route") })
        .method_not_allowed_fallback(|| async {
            err(
                405,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(own_errors_as_json))
        .layer(axum::middleware::from_fn_with_state(metrics, count_request))
        .with_state(state)
}

/// `tollgate_admin_requests_total{route,status}`: the route template, never the ids in it.
async fn count_request(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let resp = next.run(req).await;
    metrics
        .admin_requests
        .with_label_values(&[&format!("{method} {route}"), resp.status().as_str()])
        .inc();
    resp
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
