//! `GET /v1/log_sinks` (docs/admin-api.md "Log sinks"): each log sink's delivery state, for
//! the console's Overview. Sinks are shared by every group: unscoped tokens only.

use super::AdminState;
use crate::control::Actor;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::atomic::Ordering;

pub(crate) async fn list_log_sinks(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
) -> Response {
    if a.groups.is_some() {
        return super::error_response(&crate::control::ApiError {
            status: 403,
            code: "forbidden",
            message: "log sinks are shared by every group: unscoped tokens only".into(),
            param: None,
        });
    }
    let data: Vec<_> = s
        .exporter
        .iter()
        .flat_map(|x| x.sinks.iter())
        .map(|sink| {
            serde_json::json!({
                "id": &*sink.def.id,
                "kind": sink.def.kind.name(),
                "spool_bytes": sink.spool_bytes.get(),
                "lag_seconds": sink.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
                "delivered": sink.delivered_total.load(Ordering::Relaxed),
                "dropped": sink.dropped_total.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(serde_json::json!({ "data": data })).into_response()
}
