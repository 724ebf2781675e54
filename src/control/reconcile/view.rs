//! The reconciliation routes' queries and answers, as serde types (schemas
//! `Reconciliation`, `DriftRow`, `ReconciliationRun`, `ProviderRun` of `docs/openapi.json`).

use super::day_name;
use crate::clock::rfc3339;
use crate::storage::{DriftRecord, ProviderRun, RunRecord};
use serde::{Deserialize, Serialize};

/// `GET /v1/reconciliation?provider=&from=&to=` (days as `YYYY-MM-DD`, inclusive).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconciliationQuery {
    pub(crate) provider: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

/// `POST /v1/reconciliation/run?from=&to=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunQuery {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

/// `GET /v1/reconciliation`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reconciliation {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) data: Vec<DriftRow>,
    /// The latest runs, newest first.
    pub(crate) runs: Vec<RunView>,
}

/// One day × provider × model.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DriftRow {
    pub(crate) day: String,
    pub(crate) provider: String,
    pub(crate) model: String,
    pub(crate) provider_requests: Option<u64>,
    pub(crate) provider_input_tokens: u64,
    pub(crate) provider_output_tokens: u64,
    pub(crate) provider_tokens: u64,
    pub(crate) gateway_requests: u64,
    pub(crate) gateway_input_tokens: u64,
    pub(crate) gateway_output_tokens: u64,
    pub(crate) gateway_tokens: u64,
    pub(crate) diff_pct: Option<f64>,
    pub(crate) drift_alert: f64,
    pub(crate) drift: bool,
    pub(crate) alerted: bool,
    pub(crate) checked_at: String,
}

/// One run (`ReconciliationRun`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunView {
    pub(crate) id: String,
    pub(crate) at: String,
    pub(crate) trigger: String,
    pub(crate) actor: String,
    pub(crate) from: String,
    pub(crate) to: String,
    /// Every provider's usage was read and compared.
    pub(crate) ok: bool,
    pub(crate) providers: Vec<ProviderRun>,
}

impl From<DriftRecord> for DriftRow {
    fn from(r: DriftRecord) -> DriftRow {
        let DriftRecord {
            day,
            provider,
            model,
            provider_requests,
            provider_input_tokens,
            provider_output_tokens,
            gateway_requests,
            gateway_input_tokens,
            gateway_output_tokens,
            diff_pct,
            drift_alert_pct,
            alerted,
            checked_ms,
        } = r;
        DriftRow {
            day: day_name(day),
            provider,
            model,
            provider_requests,
            provider_input_tokens,
            provider_output_tokens,
            provider_tokens: provider_input_tokens + provider_output_tokens,
            gateway_requests,
            gateway_input_tokens,
            gateway_output_tokens,
            gateway_tokens: gateway_input_tokens + gateway_output_tokens,
            diff_pct,
            drift_alert: drift_alert_pct,
            drift: super::is_drift(diff_pct, drift_alert_pct),
            alerted,
            checked_at: rfc3339(checked_ms / 1000),
        }
    }
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> RunView {
        let RunRecord {
            id,
            at_ms,
            trigger,
            actor,
            from_day,
            to_day,
            providers,
        } = r;
        RunView {
            id,
            at: rfc3339(at_ms / 1000),
            trigger,
            actor,
            from: day_name(from_day),
            to: day_name(to_day),
            ok: providers.iter().all(|p| p.ok),
            providers,
        }
    }
}

pub(super) fn answer(
    from: u64,
    to: u64,
    rows: Vec<DriftRecord>,
    runs: Vec<RunRecord>,
    provider: Option<&str>,
) -> Reconciliation {
    Reconciliation {
        from: day_name(from),
        to: day_name(to),
        data: rows
            .into_iter()
            .filter(|r| provider.is_none_or(|p| r.provider == p))
            .map(DriftRow::from)
            .collect(),
        runs: runs.into_iter().map(RunView::from).collect(),
    }
}
