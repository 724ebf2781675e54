//! Reconciliation (docs/operations.md "Reconciliation"): what each provider with a
//! `usage_api` says it served, per UTC day and model, against what the gateway counted
//! for it (the ledger's `served` rows), stored per day × provider × model with the
//! difference in per cent.
//!
//! ```text
//!  ReconcileService (daily) ─┐
//!  POST /v1/reconciliation/run ┴─► Reconciler::run(days) ── per provider with usage_api:
//!       admin key from its env var ─► usage API (every page) ─► match models ─► compare
//!       with Ledger::served_between ─► drift rows (store) ─► above drift_alert, once per
//!       row: `spend.drift` event per org that used it (audit + the org's webhook)
//!  a provider that cannot be read: a failed entry in the run's record, its rows untouched
//! ```
//!
//! Runs are serialised (one at a time); a run never writes a row for a provider whose
//! usage it could not read, so a provider being down is never mistaken for a drift.

pub(crate) mod service;
pub(crate) mod usage_api;
pub(crate) mod view;

pub(crate) use view::{Reconciliation, ReconciliationQuery, RunQuery, RunView};

use crate::clock::Clock;
use crate::control::events::{Event, EventKind, Events};
use crate::control::{Actor, ApiError, ApiResult};
use crate::policy::snapshot::{ProviderEntry, Snapshot};
use crate::secret::Secret;
use crate::storage::ledger::{Ledger, ServedKey, ServedTotals};
use crate::storage::{DriftRecord, ProviderRun, ReconcileStore, RunRecord};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use usage_api::{DayModel, Reported};

const DAY_MS: u64 = 86_400_000;

/// Days a run may cover at once (the usage APIs answer at most 31 daily buckets a page).
pub(crate) const MAX_RUN_DAYS: u64 = 31;
/// Days `GET /v1/reconciliation` may cover at once.
pub(crate) const MAX_READ_DAYS: u64 = 366;

/// `(provider − gateway) / gateway × 100` on total tokens (input + output), rounded to
/// hundredths: 0 when both are 0; `None` when the gateway counted nothing and the provider
/// something (no finite per cent: always a drift).
pub(crate) fn diff_pct(provider: u64, gateway: u64) -> Option<f64> {
    if gateway == 0 {
        return (provider == 0).then_some(0.0);
    }
    let d = (provider as f64 - gateway as f64) / gateway as f64 * 100.0;
    Some((d * 100.0).round() / 100.0)
}

/// A difference above the alert in either direction (the provider billing more, or the
/// gateway having charged for more than was billed).
pub(crate) fn is_drift(diff: Option<f64>, alert_pct: f64) -> bool {
    diff.is_none_or(|d| d.abs() > alert_pct)
}

/// The gateway's model id a provider's reported id stands for: itself when the gateway
/// knows it; else the longest known id it extends with `-<suffix>` (providers report dated
/// snapshots, `gpt-4o-mini-2024-07-18` for a target `gpt-4o-mini`); else itself.
pub(crate) fn match_model<'a>(reported: &'a str, known: &BTreeSet<&'a str>) -> &'a str {
    if known.contains(reported) {
        return reported;
    }
    known
        .iter()
        .filter(|k| {
            reported
                .strip_prefix(**k)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|k| k.len())
        .copied()
        .unwrap_or(reported)
}

/// `YYYY-MM-DD` of a day number.
pub(crate) fn day_name(day: u64) -> String {
    let mut s = crate::clock::rfc3339(day * 86_400);
    s.truncate(10);
    s
}

/// A day number from `YYYY-MM-DD`.
pub(crate) fn parse_day(s: &str) -> Option<u64> {
    if s.len() != 10 {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() / 86_400)
}

/// A `spend.drift` event's detail (the webhook's `detail`, the audit event's `after`).
#[derive(Debug, Serialize)]
struct DriftDetail<'a> {
    day: String,
    provider: &'a str,
    model: &'a str,
    provider_tokens: u64,
    gateway_tokens: u64,
    diff_pct: Option<f64>,
    drift_alert: f64,
}

/// One run as the comparison of each provider sees it.
#[derive(Clone, Copy)]
struct Pass<'a> {
    snapshot: &'a Snapshot,
    /// The gateway's served rows of the run's days.
    served: &'a [(ServedKey, ServedTotals)],
    /// First and last day (inclusive).
    days: (u64, u64),
    now_ms: u64,
    actor: &'a str,
}

/// What the gateway counted for one day × model of a provider, and the orgs it served.
#[derive(Default)]
struct Counted {
    totals: ServedTotals,
    orgs: BTreeSet<String>,
}

pub(crate) struct Reconciler {
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) store: Arc<dyn ReconcileStore>,
    pub(crate) events: Arc<Events>,
    pub(crate) clock: Arc<dyn Clock>,
    /// One run at a time (the scheduled one and an API call).
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl Reconciler {
    pub(crate) fn today(&self) -> u64 {
        self.clock.now_ms() / DAY_MS
    }

    /// Whether any provider has a `usage_api`.
    pub(crate) fn configured(&self) -> bool {
        self.policy
            .load()
            .providers
            .iter()
            .any(|p| p.usage_api.is_some())
    }

    /// The default days of a run: the two complete UTC days before today.
    pub(crate) fn default_days(&self) -> (u64, u64) {
        let today = self.today();
        (today.saturating_sub(2), today.saturating_sub(1))
    }

    /// Reconciles days `from..=to` for every provider with a `usage_api`, and records the run.
    pub(crate) async fn run(&self, from: u64, to: u64, trigger: &str, actor: &str) -> RunRecord {
        let _one = self.running.lock().await;
        let snapshot = self.policy.load_full();
        let at_ms = self.clock.now_ms();
        let served = self.ledger.served_between(from, to + 1);
        let mut providers: Vec<&Arc<ProviderEntry>> = snapshot
            .providers
            .iter()
            .filter(|p| p.usage_api.is_some())
            .collect();
        providers.sort_by(|a, b| a.id.cmp(&b.id));
        let client = usage_api::client();
        let mut runs = vec![];
        for p in providers {
            let fetched = match (&p.usage_api, &client) {
                (None, _) => continue,
                (_, Err(e)) => Err(e.clone()),
                (Some(u), Ok(client)) => match admin_key(&u.admin_key_env) {
                    Err(e) => Err(e),
                    Ok(key) => {
                        usage_api::fetch(client, p.api, &u.base_url, &key, from, to + 1).await
                    }
                },
            };
            let pass = Pass {
                snapshot: &snapshot,
                served: &served,
                days: (from, to),
                now_ms: at_ms,
                actor,
            };
            let outcome = match fetched {
                Ok(reported) => self
                    .compare(&pass, p, reported)
                    .map_err(|e| format!("storing the results: {e}")),
                Err(e) => Err(e),
            };
            runs.push(match outcome {
                Ok((rows, alerts)) => ProviderRun {
                    provider: p.id.to_string(),
                    ok: true,
                    error: None,
                    rows,
                    alerts,
                },
                Err(e) => {
                    log::warn!("reconciliation: provider {}: {e}", p.id);
                    ProviderRun {
                        provider: p.id.to_string(),
                        ok: false,
                        error: Some(e),
                        rows: 0,
                        alerts: 0,
                    }
                }
            });
        }
        let run = RunRecord {
            id: crate::secret::base62("rec_", 16),
            at_ms,
            trigger: trigger.into(),
            actor: actor.into(),
            from_day: from,
            to_day: to,
            providers: runs,
        };
        if let Err(e) = self.store.push_run(&run).and_then(|_| self.store.commit()) {
            log::error!("reconciliation: recording run {}: {e}", run.id);
        }
        run
    }

    /// Compares one provider's reported usage with the gateway's counts, stores the rows
    /// of every day of the run and announces new drifts. Returns (rows, alerts).
    fn compare(
        &self,
        pass: &Pass<'_>,
        p: &ProviderEntry,
        reported: DayModel,
    ) -> anyhow::Result<(u64, u64)> {
        let Pass {
            snapshot,
            served,
            days: (from, to),
            now_ms,
            actor,
        } = *pass;
        let mut counted: BTreeMap<(u64, String), Counted> = BTreeMap::new();
        for (k, t) in served.iter().filter(|(k, _)| *k.provider == *p.id) {
            let c = counted.entry((k.day, k.model.to_string())).or_default();
            c.totals.add(t);
            c.orgs.insert(k.org.to_string());
        }
        let mut known: BTreeSet<&str> = snapshot
            .models
            .iter()
            .flat_map(|m| m.targets.iter())
            .filter(|t| *t.provider.id == *p.id)
            .map(|t| &*t.model)
            .collect();
        known.extend(counted.keys().map(|(_, m)| m.as_str()));
        let mut billed: BTreeMap<(u64, String), Reported> = BTreeMap::new();
        for ((day, model), r) in &reported {
            if !(from..=to).contains(day) {
                continue;
            }
            let m = match_model(model, &known).to_string();
            usage_api::merge_one(billed.entry((*day, m)).or_default(), r);
        }
        let keys: BTreeSet<(u64, String)> = counted.keys().chain(billed.keys()).cloned().collect();
        let mut rows = vec![];
        let mut alerts = 0;
        let none = Counted::default();
        for (day, model) in keys {
            let g = counted.get(&(day, model.clone())).unwrap_or(&none);
            let r = billed
                .get(&(day, model.clone()))
                .copied()
                .unwrap_or_default();
            let provider_tokens = r.input_tokens + r.output_tokens;
            let gateway_tokens = g.totals.input_tokens + g.totals.output_tokens;
            if provider_tokens == 0 && gateway_tokens == 0 {
                continue;
            }
            let diff = diff_pct(provider_tokens, gateway_tokens);
            let already = self
                .store
                .drift(day, &p.id, &model)?
                .is_some_and(|d| d.alerted);
            let drift = is_drift(diff, p.drift_alert_pct);
            if drift && !already {
                alerts += 1;
                let detail = DriftDetail {
                    day: day_name(day),
                    provider: &p.id,
                    model: &model,
                    provider_tokens,
                    gateway_tokens,
                    diff_pct: diff,
                    drift_alert: p.drift_alert_pct,
                };
                let after = serde_json::to_value(&detail)?;
                // Each org that used the model that day hears of it; nobody's usage: the
                // audit trail only.
                let orgs: Vec<Option<String>> = if g.orgs.is_empty() {
                    vec![None]
                } else {
                    g.orgs.iter().cloned().map(Some).collect()
                };
                for org in orgs {
                    self.events.emit_logged(&Event {
                        kind: EventKind::SpendDrift,
                        at_ms: now_ms,
                        actor: actor.into(),
                        org,
                        group: None,
                        key_id: None,
                        before: None,
                        after: Some(after.clone()),
                        secret: None,
                    });
                }
            }
            rows.push(DriftRecord {
                day,
                provider: p.id.to_string(),
                model,
                provider_requests: r.requests,
                provider_input_tokens: r.input_tokens,
                provider_output_tokens: r.output_tokens,
                gateway_requests: g.totals.requests,
                gateway_input_tokens: g.totals.input_tokens,
                gateway_output_tokens: g.totals.output_tokens,
                diff_pct: diff,
                drift_alert_pct: p.drift_alert_pct,
                alerted: already || drift,
                checked_ms: now_ms,
            });
        }
        let days: Vec<u64> = (from..=to).collect();
        self.store.replace_drift(&p.id, &days, &rows)?;
        Ok((rows.len() as u64, alerts))
    }

    /// `GET /v1/reconciliation`: stored rows and the latest runs (unscoped tokens only:
    /// providers are shared by every group).
    pub(crate) fn list(&self, a: &Actor, q: &ReconciliationQuery) -> ApiResult<Reconciliation> {
        unscoped(a)?;
        let today = self.today();
        let to = day_param("to", q.to.as_deref())?.unwrap_or(today);
        let from = day_param("from", q.from.as_deref())?.unwrap_or(to.saturating_sub(30));
        span(from, to, MAX_READ_DAYS)?;
        let rows = self
            .store
            .drift_between(from, to + 1)
            .map_err(ApiError::internal)?;
        let runs = self.store.runs(20).map_err(ApiError::internal)?;
        Ok(view::answer(from, to, rows, runs, q.provider.as_deref()))
    }

    /// `POST /v1/reconciliation/run`: the days asked for (default: the two before today).
    pub(crate) fn days_to_run(&self, a: &Actor, q: &RunQuery) -> ApiResult<(u64, u64)> {
        unscoped(a)?;
        let (dfrom, dto) = self.default_days();
        let today = self.today();
        let to = day_param("to", q.to.as_deref())?;
        let from = day_param("from", q.from.as_deref())?;
        let (from, to) = match (from, to) {
            (None, None) => (dfrom, dto),
            (Some(f), None) => (f, f.max(dto)),
            (None, Some(t)) => (t, t),
            (Some(f), Some(t)) => (f, t),
        };
        if to > today {
            return Err(ApiError::bad_request(
                "to",
                format!("{} is in the future", day_name(to)),
            ));
        }
        span(from, to, MAX_RUN_DAYS)?;
        Ok((from, to))
    }
}

/// The admin key from its environment variable; a missing one fails the provider's part
/// of the run (the message names the variable, never a value).
fn admin_key(env: &str) -> Result<Secret, String> {
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(format!("{env} is not set")),
    }
}

fn unscoped(a: &Actor) -> ApiResult<()> {
    if a.groups.is_some() {
        return Err(ApiError {
            status: 403,
            code: "forbidden",
            message: "reconciliation covers providers shared by every group: unscoped tokens only"
                .into(),
            param: None,
        });
    }
    Ok(())
}

fn day_param(name: &str, v: Option<&str>) -> ApiResult<Option<u64>> {
    v.map(|s| {
        parse_day(s).ok_or_else(|| ApiError::bad_request(name, format!("{s:?}: want YYYY-MM-DD")))
    })
    .transpose()
}

fn span(from: u64, to: u64, max: u64) -> ApiResult<()> {
    if from > to {
        return Err(ApiError::bad_request("from", "from is after to"));
    }
    if to - from + 1 > max {
        return Err(ApiError::bad_request(
            "from",
            format!("at most {max} days at once"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
