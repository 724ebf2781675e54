//! The providers' usage APIs, reporting what this mock served, per UTC day and model:
//!
//! - `GET /v1/organization/usage/completions` and `/v1/organization/usage/embeddings`
//!   (OpenAI: `start_time`/`end_time` unix seconds, `bucket_width=1d`, `group_by=model`,
//!   `page`; chat, completions and responses traffic, resp. embeddings);
//! - `GET /v1/organizations/usage_report/messages` (Anthropic: `starting_at`/`ending_at`
//!   RFC 3339, `page`; `/v1/messages` traffic).
//!
//! One result per page, so every report of more than one day × model is paged. Knobs
//! ([`Behaviour`]): `usage_extra_pct` reports that many per cent more tokens (added to the
//! input tokens), `usage_status` answers every usage call with that status, `usage_key`
//! accepts only that admin key (`Authorization: Bearer` for OpenAI, `x-api-key` for
//! Anthropic; anything else is a 401).

use super::kind::Kind;
use super::{wire, Behaviour};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

const DAY: u64 = 86_400;

/// Which usage report a request counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Report {
    Completions,
    Embeddings,
    Messages,
}

impl Report {
    fn of(kind: Kind) -> Report {
        match kind {
            Kind::Messages => Report::Messages,
            Kind::Embeddings => Report::Embeddings,
            Kind::Chat | Kind::Completions | Kind::Responses => Report::Completions,
        }
    }

    fn of_path(path: &str) -> Option<Report> {
        Some(match path {
            "/v1/organization/usage/completions" => Report::Completions,
            "/v1/organization/usage/embeddings" => Report::Embeddings,
            "/v1/organizations/usage_report/messages" => Report::Messages,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    input: u64,
    output: u64,
}

/// What the mock served: (report, day, model) → counts.
#[derive(Default)]
pub(super) struct Served(Mutex<BTreeMap<(Report, u64, String), Counts>>);

fn now_day() -> u64 {
    crate::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        / DAY
}

impl Served {
    pub(super) fn record(&self, kind: Kind, model: &str, input: u64, output: u64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let c = m
            .entry((Report::of(kind), now_day(), model.to_string()))
            .or_default();
        c.requests += 1;
        c.input += input;
        c.output += output;
    }

    /// The answer to a usage API call, or `None` if `req` is not one.
    pub(super) fn answer(&self, req: &wire::Request, b: &Behaviour) -> Option<(u16, Vec<u8>)> {
        if req.method != "GET" {
            return None;
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let report = Report::of_path(path)?;
        let presented = match report {
            Report::Messages => req.header("x-api-key").map(str::to_string),
            _ => req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string),
        };
        if let Some(want) = &b.usage_key {
            if presented.as_deref() != Some(want.as_str()) {
                return Some((401, error(report, "invalid admin key")));
            }
        }
        if let Some(status) = b.usage_status {
            return Some((status, error(report, "mock usage API failure")));
        }
        let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let secs = |v: Option<&str>| -> Option<u64> {
            let v = v?;
            v.parse().ok().or_else(|| {
                humantime::parse_rfc3339(v)
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            })
        };
        let (from, to) = match report {
            Report::Messages => (secs(get("starting_at")), secs(get("ending_at"))),
            _ => (secs(get("start_time")), secs(get("end_time"))),
        };
        let Some(from) = from else {
            return Some((400, error(report, "the start of the range is required")));
        };
        let to = to.unwrap_or(u64::MAX);
        let offset: usize = get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let rows: Vec<(u64, String, Counts)> = {
            let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            m.iter()
                .filter(|((r, day, _), _)| {
                    *r == report && day * DAY >= from && (day + 1) * DAY <= to
                })
                .map(|((_, day, model), c)| (*day, model.clone(), *c))
                .collect()
        };
        let data: Vec<Value> = rows
            .get(offset..offset + 1)
            .unwrap_or(&[])
            .iter()
            .map(|(day, model, c)| bucket(report, *day, model, c, b.usage_extra_pct))
            .collect();
        let more = offset + 1 < rows.len();
        let next = more.then(|| (offset + 1).to_string());
        let body = json!({"object": "page", "data": data, "has_more": more, "next_page": next});
        Some((200, body.to_string().into_bytes()))
    }
}

fn error(report: Report, message: &str) -> Vec<u8> {
    let v = match report {
        Report::Messages => {
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
        _ => json!({"error": {"message": message, "type": "server_error", "code": null}}),
    };
    v.to_string().into_bytes()
}

/// One day's bucket with one model's result, `extra_pct` more tokens reported.
fn bucket(report: Report, day: u64, model: &str, c: &Counts, extra_pct: u64) -> Value {
    let extra = (c.input + c.output) * extra_pct / 100;
    let input = c.input + extra;
    match report {
        Report::Messages => json!({
            "starting_at": crate::clock::rfc3339(day * DAY),
            "ending_at": crate::clock::rfc3339((day + 1) * DAY),
            "results": [{
                "uncached_input_tokens": input,
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                "cache_read_input_tokens": 0,
                "output_tokens": c.output,
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": null,
                "workspace_id": null,
                "model": model,
                "service_tier": "standard",
                "context_window": "0-200k",
            }],
        }),
        _ => {
            let mut result = json!({
                "object": if report == Report::Embeddings {
                    "organization.usage.embeddings.result"
                } else {
                    "organization.usage.completions.result"
                },
                "input_tokens": input,
                "num_model_requests": c.requests,
                "project_id": null, "user_id": null, "api_key_id": null,
                "model": model,
            });
            if report == Report::Completions {
                result["output_tokens"] = json!(c.output);
                result["input_cached_tokens"] = json!(0);
                result["batch"] = json!(false);
            }
            json!({
                "object": "bucket",
                "start_time": day * DAY,
                "end_time": (day + 1) * DAY,
                "results": [result],
            })
        }
    }
}
