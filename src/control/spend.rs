//! Spend reporting (docs/admin-api.md spend routes): totals, by model, by key, timeline, per key, per
//! org and per tag, from the ledger's rollups (hourly buckets summed per key, model and group
//! at hour, day and month grain) — everything settled before the call, flushed or not. A
//! scoped token's answers cover only its groups.

use super::view::usd;
use super::{Actor, ApiError, ApiResult, Keys, Spend};
use crate::admission::budget::period_start;
use crate::policy::config::BudgetPeriod;
use crate::storage::ledger::{Dim, Level, UsageTotals};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

const HOUR_MS: u64 = 3_600_000;

/// `?from=&to=&grain=&format=` of the spend routes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpendQuery {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) grain: Option<String>,
    pub(crate) format: Option<String>,
}

impl SpendQuery {
    /// `?format=csv` (or `json`, the default); anything else is a 400.
    pub(crate) fn csv(&self) -> ApiResult<bool> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::bad_request("format", "format: json or csv")),
        }
    }
}

/// A half-open range of whole hours.
#[derive(Debug, Clone, Copy)]
struct Range {
    from_h: u64,
    to_h: u64,
}

fn parse_time(field: &str, s: &str) -> ApiResult<u64> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| ApiError::bad_request(field, format!("{s:?}: {e} (want RFC 3339 UTC)")))
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
}

fn range(q: &SpendQuery, default_period: BudgetPeriod, now_ms: u64) -> ApiResult<Range> {
    let now = now_ms;
    let from = match &q.from {
        Some(f) => parse_time("from", f)?,
        None => period_start(default_period, now),
    };
    let to = match &q.to {
        Some(t) => parse_time("to", t)?,
        None => now,
    };
    if to < from {
        return Err(ApiError::bad_request("to", "to is before from"));
    }
    // Buckets are hourly: a range covers every hour it touches.
    Ok(Range {
        from_h: from / HOUR_MS,
        to_h: to.div_ceil(HOUR_MS).max(from / HOUR_MS + 1),
    })
}

#[derive(Default, Clone, Copy)]
struct Sum(UsageTotals);

impl Sum {
    fn add(&mut self, t: &UsageTotals) {
        self.0.add(t);
    }

    fn totals(&self) -> SpendTotals {
        SpendTotals {
            requests: self.0.requests,
            input_tokens: self.0.input_tokens,
            cached_input_tokens: self.0.cached_input_tokens,
            cache_write_tokens: self.0.cache_write_tokens,
            output_tokens: self.0.output_tokens,
            reasoning_tokens: self.0.reasoning_tokens,
            cost_usd: usd(self.0.cost_micros),
        }
    }
}

/// Totals of everything settled in a range (`SpendTotals`); the answers below carry them
/// after their own fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct SpendTotals {
    pub(crate) requests: u64,
    pub(crate) input_tokens: u64,
    /// The part of `input_tokens` served from the providers' prompt caches.
    pub(crate) cached_input_tokens: u64,
    /// The part of `input_tokens` written to the providers' prompt caches.
    pub(crate) cache_write_tokens: u64,
    pub(crate) output_tokens: u64,
    /// The part of `output_tokens` spent reasoning.
    pub(crate) reasoning_tokens: u64,
    pub(crate) cost_usd: f64,
}

/// `GET /v1/spend/groups/{id}` (`GroupSpend`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupSpend {
    pub(crate) group: String,
    pub(crate) from: String,
    pub(crate) to: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// `GET /v1/spend/keys/{id}` (`KeySpend`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeySpend {
    pub(crate) key_id: String,
    pub(crate) group: String,
    pub(crate) from: String,
    pub(crate) to: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// `GET /v1/spend/orgs/{id}` (`OrgSpend`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrgSpend {
    pub(crate) org: String,
    pub(crate) from: String,
    pub(crate) to: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// One model's totals (`ModelSpendRow`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelSpendRow {
    pub(crate) model: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// One key's totals in a group (`KeySpendRow`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeySpendRow {
    pub(crate) key_id: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// One bucket of a timeline (`TimelineBucket`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelineBucket {
    pub(crate) start: String,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// One value of a tag, `null` for spend of keys and groups without it (`TagSpendRow`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TagSpendRow {
    pub(crate) value: Option<String>,
    #[serde(flatten)]
    pub(crate) totals: SpendTotals,
}

/// `GET /v1/spend/groups/{id}/by-model` and `/by-key` (`GroupSpendByModel`,
/// `GroupSpendByKey`): rows largest cost first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupSpendBy<Row> {
    pub(crate) group: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) data: Vec<Row>,
}

/// `GET /v1/spend/groups/{id}/timeline` (`GroupSpendTimeline`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupSpendTimeline {
    pub(crate) group: String,
    /// `hour` or `day`.
    pub(crate) grain: &'static str,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) data: Vec<TimelineBucket>,
}

/// `GET /v1/spend/tags/{tag}` (`TagSpend`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TagSpend {
    pub(crate) tag: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) data: Vec<TagSpendRow>,
}

/// The range's ends as the answers show them.
fn range_text(r: Range) -> (String, String) {
    (
        crate::clock::rfc3339(r.from_h * 3600),
        crate::clock::rfc3339(r.to_h * 3600),
    )
}

/// Sums by a label, largest cost first.
fn ranked(sums: HashMap<String, Sum>) -> Vec<(String, SpendTotals)> {
    let mut v: Vec<(String, Sum)> = sums.into_iter().collect();
    v.sort_by(|a, b| {
        b.1 .0
            .cost_micros
            .cmp(&a.1 .0.cost_micros)
            .then(a.0.cmp(&b.0))
    });
    v.into_iter().map(|(k, s)| (k, s.totals())).collect()
}

impl Spend<'_> {
    /// Rollup rows of `dim` in `scope` over the range (see [`crate::storage::ledger::Ledger::rollup_scan`]).
    fn scan(
        &self,
        dim: Dim,
        scope: &str,
        r: Range,
        max: Level,
        visit: &mut dyn FnMut(u64, &str, &UsageTotals),
    ) {
        if let Some(ledger) = &self.w.ledger {
            ledger.rollup_scan(dim, scope, r.from_h, r.to_h, max, visit);
        }
    }

    fn group_range(&self, actor: &Actor, id: &str, q: &SpendQuery) -> ApiResult<Range> {
        let snapshot = self.w.policy.load();
        let g = snapshot
            .groups
            .get(id)
            .filter(|_| actor.sees_group(id))
            .ok_or_else(|| ApiError::not_found("group", id))?;
        range(
            q,
            g.limits.budget.map_or(BudgetPeriod::Monthly, |b| b.period),
            self.w.now_ms(),
        )
    }

    /// `GET /v1/spend/groups/{id}`.
    pub(crate) fn group(&self, actor: &Actor, id: &str, q: &SpendQuery) -> ApiResult<GroupSpend> {
        let r = self.group_range(actor, id, q)?;
        let mut s = Sum::default();
        self.scan(Dim::Total, id, r, Level::Month, &mut |_, _, t| s.add(t));
        let (from, to) = range_text(r);
        Ok(GroupSpend {
            group: id.to_string(),
            from,
            to,
            totals: s.totals(),
        })
    }

    /// `GET /v1/spend/groups/{id}/by-model`.
    pub(crate) fn by_model(
        &self,
        actor: &Actor,
        id: &str,
        q: &SpendQuery,
    ) -> ApiResult<GroupSpendBy<ModelSpendRow>> {
        self.group_by(actor, id, false, q, |model, totals| ModelSpendRow {
            model,
            totals,
        })
    }

    /// `GET /v1/spend/groups/{id}/by-key`.
    pub(crate) fn by_key(
        &self,
        actor: &Actor,
        id: &str,
        q: &SpendQuery,
    ) -> ApiResult<GroupSpendBy<KeySpendRow>> {
        self.group_by(actor, id, true, q, |key_id, totals| KeySpendRow {
            key_id,
            totals,
        })
    }

    fn group_by<Row>(
        &self,
        actor: &Actor,
        id: &str,
        by_key: bool,
        q: &SpendQuery,
        row: impl Fn(String, SpendTotals) -> Row,
    ) -> ApiResult<GroupSpendBy<Row>> {
        let r = self.group_range(actor, id, q)?;
        let mut sums: HashMap<String, Sum> = HashMap::new();
        let dim = if by_key { Dim::Key } else { Dim::Model };
        self.scan(
            dim,
            id,
            r,
            Level::Month,
            &mut |_, label, t| match sums.get_mut(label) {
                Some(s) => s.add(t),
                None => sums.entry(label.to_string()).or_default().add(t),
            },
        );
        let (from, to) = range_text(r);
        Ok(GroupSpendBy {
            group: id.to_string(),
            from,
            to,
            data: ranked(sums).into_iter().map(|(k, t)| row(k, t)).collect(),
        })
    }

    /// `GET /v1/spend/groups/{id}/timeline?grain=hour|day`: every bucket, empty ones too.
    pub(crate) fn timeline(
        &self,
        actor: &Actor,
        id: &str,
        q: &SpendQuery,
    ) -> ApiResult<GroupSpendTimeline> {
        let step = match q.grain.as_deref() {
            None | Some("day") => 24,
            Some("hour") => 1,
            Some(_) => return Err(ApiError::bad_request("grain", "grain: hour or day")),
        };
        let mut r = self.group_range(actor, id, q)?;
        r.from_h = r.from_h / step * step;
        r.to_h = r.to_h.div_ceil(step) * step;
        if (r.to_h - r.from_h) / step > 100_000 {
            return Err(ApiError::bad_request("from", "at most 100000 buckets"));
        }
        let mut buckets: BTreeMap<u64, Sum> = (r.from_h..r.to_h)
            .step_by(step as usize)
            .map(|h| (h, Sum::default()))
            .collect();
        let max = if step == 1 { Level::Hour } else { Level::Day };
        self.scan(Dim::Total, id, r, max, &mut |hour, _, t| {
            buckets.entry(hour / step * step).or_default().add(t)
        });
        let data = buckets
            .into_iter()
            .map(|(h, s)| TimelineBucket {
                start: crate::clock::rfc3339(h * 3600),
                totals: s.totals(),
            })
            .collect();
        let (from, to) = range_text(r);
        Ok(GroupSpendTimeline {
            group: id.to_string(),
            grain: if step == 1 { "hour" } else { "day" },
            from,
            to,
            data,
        })
    }

    /// `GET /v1/spend/keys/{id}`: the key's spend in every group it has been in.
    pub(crate) fn key(&self, actor: &Actor, id: &str, q: &SpendQuery) -> ApiResult<KeySpend> {
        // Readable = in scope (the same rule as GET /v1/keys/{id}).
        let view = Keys { w: self.w }.get(actor, id)?;
        let snapshot = self.w.policy.load();
        let group = snapshot.groups.get(view.group.as_str());
        let own = match view.limits.budget_period {
            Some("daily") => Some(BudgetPeriod::Daily),
            Some("weekly") => Some(BudgetPeriod::Weekly),
            Some("monthly") => Some(BudgetPeriod::Monthly),
            Some("never") => Some(BudgetPeriod::Never),
            _ => None,
        };
        // The key's own period, else its group's, else its org's (as its view's spend_usd).
        let period = own
            .or_else(|| group.and_then(|g| g.limits.budget).map(|b| b.period))
            .or_else(|| group.and_then(|g| g.org.limits.budget).map(|b| b.period))
            .unwrap_or(BudgetPeriod::Monthly);
        let r = range(q, period, self.w.now_ms())?;
        let mut s = Sum::default();
        self.scan(Dim::KeyGroups, id, r, Level::Month, &mut |_, _, t| s.add(t));
        let (from, to) = range_text(r);
        Ok(KeySpend {
            key_id: id.to_string(),
            group: view.group,
            from,
            to,
            totals: s.totals(),
        })
    }

    /// `GET /v1/spend/orgs/{id}`: the org's groups (those the token sees).
    pub(crate) fn org(&self, actor: &Actor, id: &str, q: &SpendQuery) -> ApiResult<OrgSpend> {
        let snapshot = self.w.policy.load_full();
        let org = snapshot
            .orgs
            .get(id)
            .filter(|_| {
                snapshot
                    .groups
                    .values()
                    .any(|g| &*g.org.id == id && actor.sees_group(&g.id))
            })
            .ok_or_else(|| ApiError::not_found("org", id))?;
        let r = range(
            q,
            org.limits
                .budget
                .map_or(BudgetPeriod::Monthly, |b| b.period),
            self.w.now_ms(),
        )?;
        let mut s = Sum::default();
        for g in snapshot.groups.values() {
            if &*g.org.id == id && actor.sees_group(&g.id) {
                self.scan(Dim::Total, &g.id, r, Level::Month, &mut |_, _, t| s.add(t));
            }
        }
        let (from, to) = range_text(r);
        Ok(OrgSpend {
            org: id.to_string(),
            from,
            to,
            totals: s.totals(),
        })
    }

    /// `GET /v1/spend/tags/{tag}`: spend per value of a tag — the key's tag, else its
    /// group's; rows with neither are reported under `value: null`.
    pub(crate) fn tag(&self, actor: &Actor, tag: &str, q: &SpendQuery) -> ApiResult<TagSpend> {
        let r = range(q, BudgetPeriod::Monthly, self.w.now_ms())?;
        let snapshot = self.w.policy.load_full();
        let mut key_tags: HashMap<String, Option<String>> = HashMap::new();
        for k in snapshot.file_keys() {
            let v = k.written.as_ref().and_then(|w| {
                w.tags
                    .iter()
                    .find(|(n, _)| n == tag)
                    .map(|(_, v)| v.clone())
            });
            key_tags.insert(k.id.to_string(), v);
        }
        let mut sums: BTreeMap<Option<String>, Sum> = BTreeMap::new();
        let groups = self
            .w
            .ledger
            .as_ref()
            .map_or_else(Vec::new, |l| l.usage_groups());
        for group in groups.iter().filter(|g| actor.sees_group(g)) {
            // Per key first: a key's tag is looked up once per group, not once per row.
            let mut per_key: HashMap<String, Sum> = HashMap::new();
            self.scan(
                Dim::Key,
                group,
                r,
                Level::Month,
                &mut |_, key, t| match per_key.get_mut(key) {
                    Some(s) => s.add(t),
                    None => per_key.entry(key.to_string()).or_default().add(t),
                },
            );
            for (key, t) in per_key {
                let own = match key_tags.get(&key) {
                    Some(v) => v.clone(),
                    None => {
                        let v = self
                            .w
                            .store
                            .key(&key)
                            .ok()
                            .flatten()
                            .and_then(|r| r.spec.tags.and_then(|mut t| t.remove(tag)));
                        key_tags.insert(key, v.clone());
                        v
                    }
                };
                let value = own.or_else(|| {
                    snapshot.groups.get(group.as_str()).and_then(|g| {
                        g.tags
                            .iter()
                            .find(|(n, _)| n == tag)
                            .map(|(_, v)| v.clone())
                    })
                });
                sums.entry(value).or_default().add(&t.0);
            }
        }
        let mut data: Vec<(Option<String>, Sum)> = sums.into_iter().collect();
        data.sort_by(|a, b| {
            b.1 .0
                .cost_micros
                .cmp(&a.1 .0.cost_micros)
                .then(a.0.cmp(&b.0))
        });
        let data = data
            .into_iter()
            .map(|(value, s)| TagSpendRow {
                value,
                totals: s.totals(),
            })
            .collect();
        let (from, to) = range_text(r);
        Ok(TagSpend {
            tag: tag.to_string(),
            from,
            to,
            data,
        })
    }
}

/// A spend answer as CSV: its `data` rows, or the answer itself as one row. Columns in the
/// JSON's order; values quoted where needed. No rows: just the header (`label` and the
/// totals).
pub(crate) fn to_csv(v: &Value, label: &str) -> String {
    let rows: Vec<&Map<String, Value>> = match v.get("data").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_object).collect(),
        None => v.as_object().into_iter().collect(),
    };
    let Some(first) = rows.first() else {
        return format!(
            "{label},requests,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd\n"
        );
    };
    let cols: Vec<&String> = first.keys().collect();
    let cell = |v: &Value| -> String {
        let s = match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = cols
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in rows {
        let line: Vec<String> = cols
            .iter()
            .map(|c| cell(r.get(*c).unwrap_or(&Value::Null)))
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}
