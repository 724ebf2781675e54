//! The providers' usage APIs, read with an admin key, one UTC day per bucket, grouped by
//! model, every page followed:
//!
//! - OpenAI: `GET /v1/organization/usage/completions?start_time=&end_time=&bucket_width=1d&group_by=model&limit=`
//!   (unix seconds; `Authorization: Bearer <admin key>`); each result has `input_tokens`
//!   (cached ones included), `output_tokens`, `input_cached_tokens`, `num_model_requests`,
//!   `model`.
//! - Anthropic: `GET /v1/organizations/usage_report/messages?starting_at=&ending_at=&bucket_width=1d&group_by[]=model&limit=`
//!   (RFC 3339; `x-api-key: <admin key>`, `anthropic-version: 2023-06-01`); each result has
//!   `uncached_input_tokens`, `cache_creation.{ephemeral_5m_input_tokens,
//!   ephemeral_1h_input_tokens}`, `cache_read_input_tokens`, `output_tokens`, `model`, no
//!   request count.
//!
//! Both answer `{data: [bucket], has_more, next_page}`; the next page is asked for with
//! `page=<next_page>`. Input tokens are counted as the gateway counts them: every prompt
//! token, cached or written to the cache included.

use crate::policy::config::Api;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a provider reports for one day and model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) requests: Option<u64>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
}

/// `(day, model)` → what the provider reports.
pub(crate) type DayModel = BTreeMap<(u64, String), Reported>;

/// A page: its buckets' usage, and the cursor of the next page if there is one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Page {
    pub(crate) rows: Vec<(u64, String, Reported)>,
    pub(crate) next_page: Option<String>,
}

/// Pages followed at most in one fetch (31 days × many models fit in a few).
const MAX_PAGES: usize = 100;
/// Buckets per page: the APIs' maximum for `1d`.
const LIMIT: u64 = 31;
const DAY_SECS: u64 = 86_400;

#[derive(Deserialize)]
struct Envelope<B> {
    data: Vec<B>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiBucket {
    start_time: u64,
    results: Vec<OpenAiResult>,
}

#[derive(Deserialize)]
struct OpenAiResult {
    input_tokens: u64,
    /// Absent from the embeddings report.
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    num_model_requests: u64,
    model: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicBucket {
    starting_at: String,
    results: Vec<AnthropicResult>,
}

#[derive(Deserialize)]
struct AnthropicResult {
    #[serde(default)]
    uncached_input_tokens: u64,
    #[serde(default)]
    cache_creation: CacheCreation,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    model: Option<String>,
}

#[derive(Deserialize, Default)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    ephemeral_1h_input_tokens: u64,
}

fn next(has_more: bool, next_page: Option<String>) -> Option<String> {
    next_page.filter(|p| has_more && !p.is_empty())
}

/// One page of OpenAI's completions usage.
pub(crate) fn parse_openai(body: &[u8]) -> Result<Page, String> {
    let e: Envelope<OpenAiBucket> =
        serde_json::from_slice(body).map_err(|e| format!("malformed usage answer: {e}"))?;
    let mut rows = vec![];
    for b in e.data {
        let day = b.start_time / DAY_SECS;
        for r in b.results {
            rows.push((
                day,
                r.model.unwrap_or_default(),
                Reported {
                    requests: Some(r.num_model_requests),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                },
            ));
        }
    }
    Ok(Page {
        rows,
        next_page: next(e.has_more, e.next_page),
    })
}

/// One page of Anthropic's messages usage report.
pub(crate) fn parse_anthropic(body: &[u8]) -> Result<Page, String> {
    let e: Envelope<AnthropicBucket> =
        serde_json::from_slice(body).map_err(|e| format!("malformed usage answer: {e}"))?;
    let mut rows = vec![];
    for b in e.data {
        let start = humantime::parse_rfc3339(&b.starting_at).map_err(|e| {
            format!(
                "malformed usage answer: starting_at {:?}: {e}",
                b.starting_at
            )
        })?;
        let secs = start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let day = secs / DAY_SECS;
        for r in b.results {
            let c = &r.cache_creation;
            rows.push((
                day,
                r.model.unwrap_or_default(),
                Reported {
                    requests: None,
                    input_tokens: r.uncached_input_tokens
                        + c.ephemeral_5m_input_tokens
                        + c.ephemeral_1h_input_tokens
                        + r.cache_read_input_tokens,
                    output_tokens: r.output_tokens,
                },
            ));
        }
    }
    Ok(Page {
        rows,
        next_page: next(e.has_more, e.next_page),
    })
}

/// The query of one page for days `[from_day, to_day)`.
pub(crate) fn query(
    api: Api,
    from_day: u64,
    to_day: u64,
    page: Option<&str>,
) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = match api {
        Api::OpenAi => vec![
            ("start_time".into(), (from_day * DAY_SECS).to_string()),
            ("end_time".into(), (to_day * DAY_SECS).to_string()),
            ("bucket_width".into(), "1d".into()),
            ("group_by".into(), "model".into()),
        ],
        Api::Anthropic => vec![
            (
                "starting_at".into(),
                crate::clock::rfc3339(from_day * DAY_SECS),
            ),
            ("ending_at".into(), crate::clock::rfc3339(to_day * DAY_SECS)),
            ("bucket_width".into(), "1d".into()),
            ("group_by[]".into(), "model".into()),
        ],
    };
    q.push(("limit".into(), LIMIT.to_string()));
    if let Some(p) = page {
        q.push(("page".into(), p.into()));
    }
    q
}

/// The reports read: OpenAI keeps embeddings apart from completions (chat, responses).
pub(crate) fn paths(api: Api) -> &'static [&'static str] {
    match api {
        Api::OpenAi => &[
            "/v1/organization/usage/completions",
            "/v1/organization/usage/embeddings",
        ],
        Api::Anthropic => &["/v1/organizations/usage_report/messages"],
    }
}

/// Adds a page's rows to what was read so far.
pub(crate) fn merge(into: &mut DayModel, page: Vec<(u64, String, Reported)>) {
    for (day, model, r) in page {
        merge_one(into.entry((day, model)).or_default(), &r);
    }
}

/// Adds `r` to `e`.
pub(crate) fn merge_one(e: &mut Reported, r: &Reported) {
    e.requests = match (e.requests, r.requests) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    e.input_tokens += r.input_tokens;
    e.output_tokens += r.output_tokens;
}

/// The HTTP client of one run (built per run: a run happens in whichever runtime called it).
pub(crate) fn client() -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")));
    if let Ok(certs) = rustls_native_certs::load_native_certs() {
        for c in certs {
            if let Ok(cert) = reqwest::Certificate::from_der(&c) {
                b = b.add_root_certificate(cert);
            }
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Everything the provider reports for days `[from_day, to_day)`, every page followed. An
/// error names what failed, never the key.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    api: Api,
    base_url: &str,
    key: &Secret,
    from_day: u64,
    to_day: u64,
) -> Result<DayModel, String> {
    let mut out = DayModel::new();
    for path in paths(api) {
        fetch_report(
            client,
            api,
            &format!("{base_url}{path}"),
            key,
            (from_day, to_day),
            &mut out,
        )
        .await?;
    }
    Ok(out)
}

/// Every page of one report into `out`.
async fn fetch_report(
    client: &reqwest::Client,
    api: Api,
    url: &str,
    key: &Secret,
    (from_day, to_day): (u64, u64),
    out: &mut DayModel,
) -> Result<(), String> {
    let mut page: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let req = client
            .get(url)
            .query(&query(api, from_day, to_day, page.as_deref()));
        let req = match api {
            Api::OpenAi => req.bearer_auth(key.expose()),
            Api::Anthropic => req
                .header("x-api-key", key.expose())
                .header("anthropic-version", "2023-06-01"),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {}", status.as_u16()));
        }
        let parsed = match api {
            Api::OpenAi => parse_openai(&body),
            Api::Anthropic => parse_anthropic(&body),
        }?;
        merge(out, parsed.rows);
        match parsed.next_page {
            Some(p) => page = Some(p),
            None => return Ok(()),
        }
    }
    Err(format!("GET {url}: more than {MAX_PAGES} pages"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example answer of OpenAI's reference (grouped by model).
    const OPENAI: &str = r#"{
      "object": "page",
      "data": [{
        "object": "bucket", "start_time": 1730419200, "end_time": 1730505600,
        "results": [{
          "object": "organization.usage.completions.result",
          "input_tokens": 1000, "output_tokens": 500, "input_cached_tokens": 800,
          "input_audio_tokens": 0, "output_audio_tokens": 0, "num_model_requests": 5,
          "project_id": null, "user_id": null, "api_key_id": null,
          "model": "gpt-4o-mini-2024-07-18", "batch": null
        }]
      }],
      "has_more": true,
      "next_page": "AAAAAGdGxdEiJdKOAAAAAGcqsYA="
    }"#;

    /// The example answer of Anthropic's reference.
    const ANTHROPIC: &str = r#"{
      "data": [{
        "starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z",
        "results": [{
          "uncached_input_tokens": 1500,
          "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
          "cache_read_input_tokens": 200, "output_tokens": 500,
          "server_tool_use": {"web_search_requests": 10},
          "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
          "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
          "model": "claude-sonnet-4-20250514", "service_tier": "standard",
          "context_window": "0-200k"
        }]
      }],
      "has_more": false,
      "next_page": null
    }"#;

    #[test]
    fn openai_page_is_read_with_its_cursor() {
        let p = parse_openai(OPENAI.as_bytes()).unwrap();
        assert_eq!(p.next_page.as_deref(), Some("AAAAAGdGxdEiJdKOAAAAAGcqsYA="));
        assert_eq!(
            p.rows,
            [(
                1730419200 / DAY_SECS,
                "gpt-4o-mini-2024-07-18".to_string(),
                Reported {
                    requests: Some(5),
                    input_tokens: 1000,
                    output_tokens: 500
                }
            )]
        );
    }

    #[test]
    fn anthropic_input_counts_every_prompt_token() {
        let p = parse_anthropic(ANTHROPIC.as_bytes()).unwrap();
        assert_eq!(p.next_page, None);
        let day = 1754006400 / DAY_SECS; // 2025-08-01
        assert_eq!(
            p.rows,
            [(
                day,
                "claude-sonnet-4-20250514".to_string(),
                Reported {
                    requests: None,
                    input_tokens: 1500 + 1000 + 500 + 200,
                    output_tokens: 500
                }
            )]
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_zeros() {
        for body in ["", "{}", "[]", r#"{"data": [{"results": []}]}"#, "<html>"] {
            assert!(parse_openai(body.as_bytes()).is_err(), "{body}");
            assert!(parse_anthropic(body.as_bytes()).is_err(), "{body}");
        }
        let bad_time = r#"{"data": [{"starting_at": "yesterday", "results": []}]}"#;
        assert!(parse_anthropic(bad_time.as_bytes()).is_err());
    }

    #[test]
    fn a_cursor_without_has_more_ends_the_paging() {
        let body = r#"{"data": [], "has_more": false, "next_page": "x"}"#;
        assert_eq!(parse_openai(body.as_bytes()).unwrap().next_page, None);
        let body = r#"{"data": [], "has_more": true, "next_page": "x"}"#;
        assert_eq!(
            parse_anthropic(body.as_bytes())
                .unwrap()
                .next_page
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    fn pages_add_up_per_day_and_model() {
        let mut all = DayModel::new();
        let r = |i, o| Reported {
            requests: Some(1),
            input_tokens: i,
            output_tokens: o,
        };
        merge(
            &mut all,
            vec![(1, "m".into(), r(10, 1)), (2, "m".into(), r(5, 5))],
        );
        merge(&mut all, vec![(1, "m".into(), r(10, 1))]);
        assert_eq!(
            all[&(1, "m".to_string())],
            Reported {
                requests: Some(2),
                input_tokens: 20,
                output_tokens: 2
            }
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn queries_follow_each_api() {
        let q = query(Api::OpenAi, 1, 3, Some("cur"));
        assert!(q.contains(&("start_time".into(), "86400".into())));
        assert!(q.contains(&("end_time".into(), "259200".into())));
        assert!(q.contains(&("group_by".into(), "model".into())));
        assert!(q.contains(&("page".into(), "cur".into())));
        let q = query(Api::Anthropic, 1, 3, None);
        assert!(q.contains(&("starting_at".into(), "1970-01-02T00:00:00Z".into())));
        assert!(q.contains(&("ending_at".into(), "1970-01-04T00:00:00Z".into())));
        assert!(q.contains(&("group_by[]".into(), "model".into())));
        assert!(!q.iter().any(|(k, _)| k == "page"));
    }
}
