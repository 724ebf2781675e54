//! What the console needs to know about itself and the policy, as documented routes:
//! `GET /v1/whoami` (the calling token and the routes it may call, from the route table, so
//! a client never re-derives the permission rules) and `GET /v1/policy` (the loaded
//! snapshot and what `tollgate -t` says about the file on disk now). Also the per-group
//! refusal counts the group answers carry.

use super::{error_response, route_perms, AdminState};
use crate::control::view::Refusals;
use crate::control::{Actor, ApiError};
use crate::observe::metrics::Metrics;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use prometheus::core::Collector;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// `GET /v1/whoami`: any valid token.
pub(crate) async fn whoami(
    State(s): State<AdminState>,
    Extension(a): Extension<Actor>,
) -> Response {
    let cp = s.control.clone();
    let who = a.clone();
    let mut v = match tokio::task::spawn_blocking(move || cp.tokens().whoami(&who)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return error_response(&e),
        Err(e) => return error_response(&ApiError::internal(e)),
    };
    v.may = route_perms()
        .into_iter()
        .filter(|(_, _, perm)| perm.allows(a.role))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    Json(v).into_response()
}

/// One problem `tollgate -t` finds in the file (`PolicyProblem`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyProblem {
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) path: String,
    pub(crate) message: String,
}

/// How much the loaded snapshot holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyCounts {
    pub(crate) providers: usize,
    pub(crate) models: usize,
    pub(crate) orgs: usize,
    pub(crate) groups: usize,
    pub(crate) file_keys: usize,
}

/// Reloads since the process started.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reloads {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
}

/// `GET /v1/policy` (`PolicyInfo`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyInfo {
    pub(crate) path: String,
    pub(crate) generation: u64,
    pub(crate) counts: PolicyCounts,
    pub(crate) reloads: Reloads,
    pub(crate) file_ok: bool,
    pub(crate) summary: Option<String>,
    pub(crate) problems: Vec<PolicyProblem>,
}

/// `GET /v1/policy`: the snapshot in force, and the file on disk validated exactly as
/// `tollgate -t` does (`problems` empty when a reload would succeed).
pub(crate) async fn policy(State(s): State<AdminState>) -> Response {
    let policy = s.policy.clone();
    let checked =
        tokio::task::spawn_blocking(move || crate::policy::config::load(&policy.path)).await;
    let (summary, problems) = match checked {
        Ok(Ok(cfg)) => (Some(cfg.summary()), vec![]),
        Ok(Err(e)) => (
            None,
            e.problems
                .iter()
                .map(|p| PolicyProblem {
                    line: p.line.map(|l| l.0),
                    column: p.line.map(|l| l.1),
                    path: p.path.clone(),
                    message: p.message.clone(),
                })
                .collect(),
        ),
        Err(e) => return error_response(&ApiError::internal(e)),
    };
    let snap = s.policy.current.load();
    Json(PolicyInfo {
        path: s.policy.path.display().to_string(),
        generation: snap.generation,
        counts: PolicyCounts {
            providers: snap.providers.len(),
            models: snap.models.len(),
            orgs: snap.orgs.len(),
            groups: snap.groups.len(),
            file_keys: snap.file_keys().count(),
        },
        reloads: Reloads {
            ok: s.policy.reloads_ok.load(Ordering::Relaxed),
            failed: s.policy.reloads_failed.load(Ordering::Relaxed),
        },
        file_ok: problems.is_empty(),
        summary,
        problems,
    })
    .into_response()
}

/// Refusals per group and error code since the process started, read from
/// `tollgate_rejections_total{group,reason}`.
pub(crate) fn refusals(metrics: &Metrics) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for family in metrics.rejections.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
            };
            if let (Some(g), Some(r)) = (label("group"), label("reason")) {
                *out.entry(g).or_default().entry(r).or_default() += m.get_counter().value() as u64;
            }
        }
    }
    out
}

/// Guardrail verdicts per group, guardrail and action since the process started, read from
/// `tollgate_guardrail_actions_total`.
pub(crate) fn guardrail_trips(
    metrics: &Metrics,
) -> BTreeMap<String, crate::control::view::GuardrailTrips> {
    let mut out: BTreeMap<String, crate::control::view::GuardrailTrips> = BTreeMap::new();
    for family in metrics.guardrail_actions.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
            };
            if let (Some(g), Some(id), Some(action)) =
                (label("group"), label("guardrail"), label("action"))
            {
                let n = m.get_counter().value() as u64;
                let t = out.entry(g).or_default();
                t.total += n;
                *t.by_guardrail
                    .entry(id)
                    .or_default()
                    .entry(action)
                    .or_default() += n;
            }
        }
    }
    out
}

/// One group's `refusals: {total, by_code}`.
pub(crate) fn refusals_of(group: &str, all: &BTreeMap<String, BTreeMap<String, u64>>) -> Refusals {
    let by_code = all.get(group).cloned().unwrap_or_default();
    Refusals {
        total: by_code.values().sum(),
        by_code,
    }
}
