//! Key and group routes: authenticate, then hand the call to the control plane on a
//! blocking thread (a write ends in an fsync).

use super::{error_response, AdminState};
use crate::control::spend::SpendQuery;
use crate::control::{Actor, ApiError, ApiResult, Bulk, ControlPlane, GroupView};
use crate::policy::config::GroupState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Serialize;

async fn run<T, F>(s: AdminState, who: Actor, ok: StatusCode, f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&ControlPlane, &Actor) -> ApiResult<T> + Send + 'static,
{
    let cp = s.control.clone();
    match tokio::task::spawn_blocking(move || f(&cp, &who)).await {
        Ok(Ok(v)) => (ok, Json(v)).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&ApiError::internal(e)),
    }
}

pub(crate) async fn create_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.keys().create(a, &body)
    })
    .await
}

pub(crate) async fn create_batch(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.keys().batch(a, &body)
    })
    .await
}

/// The query string as `T` (empty when absent): 400 `invalid_request`, `param: ""`, when it
/// does not parse.
fn query<T: serde::de::DeserializeOwned>(q: Option<&str>) -> ApiResult<T> {
    serde_urlencoded::from_str(q.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("", format!("query: {e}")))
}

pub(crate) async fn list_keys(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        cp.keys().list(a, &query(q.as_deref())?)
    })
    .await
}

/// A route on one object (`/{id}`), answered 200: `on_id!(name, |cp, actor, id| call)`.
macro_rules! on_id {
    ($name:ident, |$cp:ident, $a:ident, $id:ident| $call:expr) => {
        pub(crate) async fn $name(
            State(s): State<AdminState>,
            Extension(h): Extension<Actor>,
            Path($id): Path<String>,
        ) -> Response {
            run(s, h, StatusCode::OK, move |$cp, $a| $call).await
        }
    };
}

/// The same with the request body: `on_id_body!(name, |cp, actor, id, body| call)`.
macro_rules! on_id_body {
    ($name:ident, |$cp:ident, $a:ident, $id:ident, $body:ident| $call:expr) => {
        pub(crate) async fn $name(
            State(s): State<AdminState>,
            Extension(h): Extension<Actor>,
            Path($id): Path<String>,
            $body: Bytes,
        ) -> Response {
            run(s, h, StatusCode::OK, move |$cp, $a| $call).await
        }
    };
}

on_id!(get_key, |cp, a, id| cp.keys().get(a, &id));
on_id_body!(patch_key, |cp, a, id, body| cp.keys().patch(a, &id, &body));
on_id!(revoke_key, |cp, a, id| cp.keys().revoke(a, &id));
on_id!(disable_key, |cp, a, id| cp.keys().disable(a, &id));
on_id!(enable_key, |cp, a, id| cp.keys().enable(a, &id));
on_id_body!(regenerate_key, |cp, a, id, body| cp
    .keys()
    .regenerate(a, &id, &body));
on_id_body!(move_key, |cp, a, id, body| cp.keys().move_to(a, &id, &body));

/// Groups carry `refusals` (since the process started) beside their spend: the console's
/// Overview shows them to every role that reads groups, `/metrics` being admin-only.
pub(crate) async fn list_groups(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
) -> Response {
    let refusals = super::introspect::refusals(&s.metrics);
    let trips = super::introspect::guardrail_trips(&s.metrics);
    run(s, h, StatusCode::OK, move |cp, a| {
        let mut v = cp.groups().list(a);
        for g in &mut v.data {
            g.refusals = super::introspect::refusals_of(&g.id, &refusals);
            g.guardrail_trips = trips.get(&g.id).cloned().unwrap_or_default();
        }
        Ok(v)
    })
    .await
}

/// A group answer with its `refusals` added.
async fn group_answer<F>(s: AdminState, who: Actor, f: F) -> Response
where
    F: FnOnce(&ControlPlane, &Actor) -> ApiResult<GroupView> + Send + 'static,
{
    let refusals = super::introspect::refusals(&s.metrics);
    let trips = super::introspect::guardrail_trips(&s.metrics);
    run(s, who, StatusCode::OK, move |cp, a| {
        let mut v = f(cp, a)?;
        v.refusals = super::introspect::refusals_of(&v.id, &refusals);
        v.guardrail_trips = trips.get(&v.id).cloned().unwrap_or_default();
        Ok(v)
    })
    .await
}

/// A route answering one group: `on_group!(name, |cp, actor, id| call)`.
macro_rules! on_group {
    ($name:ident, |$cp:ident, $a:ident, $id:ident| $call:expr) => {
        pub(crate) async fn $name(
            State(s): State<AdminState>,
            Extension(h): Extension<Actor>,
            Path($id): Path<String>,
        ) -> Response {
            group_answer(s, h, move |$cp, $a| $call).await
        }
    };
}

on_group!(get_group, |cp, a, id| cp.groups().get(a, &id));
on_group!(pause_group, |cp, a, id| cp.groups().set_state(
    a,
    &id,
    GroupState::Paused
));
on_group!(resume_group, |cp, a, id| cp.groups().set_state(
    a,
    &id,
    GroupState::Active
));
on_group!(quarantine_group, |cp, a, id| cp.groups().set_state(
    a,
    &id,
    GroupState::Quarantined
));
on_id!(bulk_disable, |cp, a, id| cp.groups().bulk(
    a,
    &id,
    Bulk::Disable
));
on_id!(bulk_enable, |cp, a, id| cp.groups().bulk(
    a,
    &id,
    Bulk::Enable
));
on_id!(bulk_revoke, |cp, a, id| cp.groups().bulk(
    a,
    &id,
    Bulk::Revoke
));
on_id_body!(bulk_patch_keys, |cp, a, id, body| cp
    .keys()
    .patch_group(a, &id, &body));

pub(crate) async fn create_token(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.tokens().create(a, &body)
    })
    .await
}

pub(crate) async fn list_tokens(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
) -> Response {
    run(s, h, StatusCode::OK, |cp, _| cp.tokens().list()).await
}

on_id!(revoke_token, |cp, a, id| cp.tokens().revoke(a, &id));

/// A spend route: JSON, or CSV with `?format=csv`.
async fn spend<T, F>(s: AdminState, who: Actor, q: Option<String>, label: &str, f: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&ControlPlane, &Actor, &SpendQuery) -> ApiResult<T> + Send + 'static,
{
    let query: SpendQuery = match query(q.as_deref()) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
    };
    let csv = match query.csv() {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let cp = s.control.clone();
    match tokio::task::spawn_blocking(move || f(&cp, &who, &query)).await {
        Ok(Ok(v)) if csv => match serde_json::to_value(&v) {
            Ok(v) => (
                [(http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                crate::control::spend::to_csv(&v, label),
            )
                .into_response(),
            Err(e) => error_response(&ApiError::internal(e)),
        },
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&ApiError::internal(e)),
    }
}

macro_rules! spend_route {
    ($name:ident, $label:literal, |$cp:ident, $a:ident, $id:ident, $q:ident| $call:expr) => {
        pub(crate) async fn $name(
            State(s): State<AdminState>,
            Extension(h): Extension<Actor>,
            Path($id): Path<String>,
            RawQuery(q): RawQuery,
        ) -> Response {
            spend(s, h, q, $label, move |$cp, $a, $q| $call).await
        }
    };
}

spend_route!(spend_group, "group", |cp, a, id, q| cp
    .spend()
    .group(a, &id, q));
spend_route!(spend_by_model, "model", |cp, a, id, q| cp
    .spend()
    .by_model(a, &id, q));
spend_route!(spend_by_key, "key_id", |cp, a, id, q| cp
    .spend()
    .by_key(a, &id, q));
spend_route!(spend_timeline, "start", |cp, a, id, q| cp
    .spend()
    .timeline(a, &id, q));
spend_route!(spend_key, "key_id", |cp, a, id, q| cp
    .spend()
    .key(a, &id, q));
spend_route!(spend_org, "org", |cp, a, id, q| cp.spend().org(a, &id, q));
spend_route!(spend_tag, "value", |cp, a, id, q| cp.spend().tag(a, &id, q));

/// `GET /v1/invoices`: JSON, or CSV (a row per line item) with `?format=csv`.
pub(crate) async fn list_invoices(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    use crate::control::invoices::{self, InvoiceQuery};
    let query: InvoiceQuery = match query(q.as_deref()) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
    };
    let csv = match query.csv() {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let cp = s.control.clone();
    match tokio::task::spawn_blocking(move || cp.spend().invoices(&h, &query)).await {
        Ok(Ok(v)) if csv => (
            [(http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            invoices::to_csv(&v),
        )
            .into_response(),
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&ApiError::internal(e)),
    }
}

pub(crate) async fn list_audit(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    let audit = s.audit.clone();
    run(s, h, StatusCode::OK, move |_, a| {
        let query: crate::control::audit::AuditQuery = query(q.as_deref())?;
        // A scoped token sees its groups' events; events of no group only unscoped ones.
        let visible = |g: Option<&str>| match g {
            Some(g) => a.sees_group(g),
            None => a.groups.is_none(),
        };
        audit
            .list(&query, &visible)
            .map_err(|(field, msg)| ApiError::bad_request(field, msg))
    })
    .await
}

pub(crate) async fn verify_audit(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
) -> Response {
    let audit = s.audit.clone();
    run(s, h, StatusCode::OK, move |_, _| Ok(audit.verify())).await
}

pub(crate) async fn list_reconciliation(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    let rec = s.reconciler.clone();
    run(s, h, StatusCode::OK, move |_, a| {
        let query: crate::control::reconcile::ReconciliationQuery = query(q.as_deref())?;
        rec.list(a, &query)
    })
    .await
}

/// Runs in the admin listener's task: the usage APIs are awaited, the store writes are a
/// few rows.
pub(crate) async fn run_reconciliation(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    let rec = s.reconciler.clone();
    let days = query::<crate::control::reconcile::RunQuery>(q.as_deref())
        .and_then(|query| rec.days_to_run(&h, &query));
    match days {
        Ok((from, to)) => {
            let run: crate::control::reconcile::RunView =
                rec.run(from, to, "api", &h.id).await.into();
            (StatusCode::OK, Json(run)).into_response()
        }
        Err(e) => error_response(&e),
    }
}
