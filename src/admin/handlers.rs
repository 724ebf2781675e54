//! Key and group routes: authenticate, then hand the call to the control plane on a
//! blocking thread (a write ends in an fsync).

use super::{error_response, AdminState};
use crate::config::GroupState;
use crate::control::spend::SpendQuery;
use crate::control::{Actor, ApiError, ApiResult, ControlPlane};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde_json::Value;

async fn run<F>(s: AdminState, who: Actor, ok: StatusCode, f: F) -> Response
where
    F: FnOnce(&ControlPlane, &Actor) -> ApiResult<Value> + Send + 'static,
{
    let cp = s.control.clone();
    match tokio::task::spawn_blocking(move || f(&cp, &who)).await {
        Ok(Ok(v)) => (ok, Json(v)).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&ApiError::internal(e)),
    }
}

pub async fn create_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.create_key(a, &body)
    })
    .await
}

pub async fn create_batch(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.create_batch(a, &body)
    })
    .await
}

pub async fn list_keys(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        let query = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request("", format!("query: {e}")))?;
        cp.list_keys(a, &query)
    })
    .await
}

pub async fn get_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.get_key(a, &id)).await
}

pub async fn patch_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        cp.patch_key(a, &id, &body)
    })
    .await
}

pub async fn revoke_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.revoke_key(a, &id)).await
}

pub async fn disable_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.disable_key(a, &id)).await
}

pub async fn enable_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.enable_key(a, &id)).await
}

pub async fn regenerate_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        cp.regenerate_key(a, &id, &body)
    })
    .await
}

pub async fn move_key(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        cp.move_key(a, &id, &body)
    })
    .await
}

pub async fn list_groups(State(s): State<AdminState>, Extension(h): Extension<Actor>) -> Response {
    run(s, h, StatusCode::OK, |cp, a| Ok(cp.list_groups(a))).await
}

pub async fn get_group(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.get_group(a, &id)).await
}

async fn set_state(s: AdminState, h: Actor, id: String, to: GroupState) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| {
        cp.set_group_state(a, &id, to)
    })
    .await
}

pub async fn pause_group(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    set_state(s, h, id, GroupState::Paused).await
}

pub async fn resume_group(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    set_state(s, h, id, GroupState::Active).await
}

pub async fn quarantine_group(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    set_state(s, h, id, GroupState::Quarantined).await
}

async fn bulk(s: AdminState, h: Actor, id: String, action: crate::control::Bulk) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.bulk(a, &id, action)).await
}

pub async fn bulk_disable(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    bulk(s, h, id, crate::control::Bulk::Disable).await
}

pub async fn bulk_enable(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    bulk(s, h, id, crate::control::Bulk::Enable).await
}

pub async fn bulk_revoke(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    bulk(s, h, id, crate::control::Bulk::Revoke).await
}

pub async fn create_token(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    body: Bytes,
) -> Response {
    run(s, h, StatusCode::CREATED, move |cp, a| {
        cp.create_token(a, &body)
    })
    .await
}

pub async fn list_tokens(State(s): State<AdminState>, Extension(h): Extension<Actor>) -> Response {
    run(s, h, StatusCode::OK, |cp, _| cp.list_tokens()).await
}

pub async fn revoke_token(
    State(s): State<AdminState>,
    Extension(h): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    run(s, h, StatusCode::OK, move |cp, a| cp.revoke_token(a, &id)).await
}

/// A spend route: JSON, or CSV with `?format=csv`.
async fn spend<F>(s: AdminState, who: Actor, q: Option<String>, label: &str, f: F) -> Response
where
    F: FnOnce(&ControlPlane, &Actor, &SpendQuery) -> ApiResult<Value> + Send + 'static,
{
    let query: SpendQuery = match serde_urlencoded::from_str(q.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error_response(&ApiError::bad_request("", format!("query: {e}"))),
    };
    let csv = match query.csv() {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let cp = s.control.clone();
    match tokio::task::spawn_blocking(move || f(&cp, &who, &query)).await {
        Ok(Ok(v)) if csv => (
            [(http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            crate::control::spend::to_csv(&v, label),
        )
            .into_response(),
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&ApiError::internal(e)),
    }
}

macro_rules! spend_route {
    ($name:ident, $label:literal, |$cp:ident, $a:ident, $id:ident, $q:ident| $call:expr) => {
        pub async fn $name(
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
    .spend_group(a, &id, q));
spend_route!(spend_by_model, "model", |cp, a, id, q| cp
    .spend_group_by(a, &id, false, q));
spend_route!(spend_by_key, "key_id", |cp, a, id, q| cp
    .spend_group_by(a, &id, true, q));
spend_route!(spend_timeline, "start", |cp, a, id, q| cp
    .spend_timeline(a, &id, q));
spend_route!(spend_key, "key_id", |cp, a, id, q| cp.spend_key(a, &id, q));
spend_route!(spend_org, "org", |cp, a, id, q| cp.spend_org(a, &id, q));
spend_route!(spend_tag, "value", |cp, a, id, q| cp.spend_tag(a, &id, q));
