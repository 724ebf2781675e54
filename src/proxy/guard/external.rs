//! The external guardrail kinds: a catalogue provider's `/v1/moderations` (OpenAI format)
//! and the user's own checker (a signed JSON POST).
//!
//! Calls run on a small runtime of their own through the webhooks' HTTP client, so the
//! proxy thread only awaits a handle: a slow checker holds the request (it must, to give a
//! verdict), never the thread's other requests' work. Each call is bounded by the
//! guardrail's `timeout`.

use crate::control::webhooks::{deliver::http_client, signature, SIGNATURE_HEADER};
use crate::policy::config::guardrails::{External, Service};
use crate::policy::snapshot::ProviderEntry;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What a checker answered.
#[derive(Debug)]
pub(crate) enum Answer {
    Allow,
    /// Flagged: the categories that counted (moderation) or the service's word (webhook).
    Flagged(Vec<String>),
    /// The texts to send instead, one per text sent (webhook `redact`).
    Redact(Vec<String>),
    /// No verdict: the reason (never the texts).
    Failed(String),
}

/// What the webhook kind sends.
#[derive(Serialize)]
struct Ask<'a> {
    direction: &'a str,
    group: &'a str,
    key_id: &'a str,
    model: &'a str,
    texts: &'a [String],
}

/// What the webhook kind answers.
#[derive(Deserialize)]
struct Reply {
    action: String,
    #[serde(default)]
    texts: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Moderation {
    results: Vec<ModerationResult>,
}

#[derive(Deserialize)]
struct ModerationResult {
    flagged: bool,
    #[serde(default)]
    categories: std::collections::HashMap<String, bool>,
}

struct Outbound {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// Built on first use; lives for the process.
fn outbound() -> Option<&'static Outbound> {
    static OUTBOUND: OnceLock<Option<Outbound>> = OnceLock::new();
    OUTBOUND
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tollgate-guard")
                .enable_all()
                .build()
                .map_err(|e| log::error!("guardrails: no runtime for external checks: {e}"))
                .ok()?;
            // The per-call timeout is the guardrail's; this one only bounds a stray call.
            let client = http_client(Duration::from_secs(60))
                .map_err(|e| log::error!("guardrails: no HTTP client: {e}"))
                .ok()?;
            Some(Outbound { runtime, client })
        })
        .as_ref()
}

/// Who is asking, for the webhook's body.
pub(crate) struct Asker<'a> {
    pub(crate) direction: &'static str,
    pub(crate) group: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) model: &'a str,
    pub(crate) now_ms: u64,
}

/// Asks `ext` about `texts`; `provider` is the moderation kind's provider entry.
pub(crate) async fn ask(
    ext: &Arc<External>,
    provider: Option<&Arc<ProviderEntry>>,
    who: &Asker<'_>,
    texts: &[String],
) -> Answer {
    let Some(out) = outbound() else {
        return Answer::Failed("no outbound client".into());
    };
    let request = match build(ext, provider, who, texts, &out.client) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(e),
    };
    let ext2 = ext.clone();
    let n = texts.len();
    let task = out.runtime.spawn(async move {
        match request.send().await {
            Err(e) if e.is_timeout() => Answer::Failed("timed out".into()),
            // Without the URL: a checker's URL may carry a token of its own.
            Err(e) => Answer::Failed(e.without_url().to_string()),
            Ok(r) if !r.status().is_success() => {
                Answer::Failed(format!("answered {}", r.status().as_u16()))
            }
            Ok(r) => match r.bytes().await {
                Err(e) => Answer::Failed(e.without_url().to_string()),
                Ok(b) => read(&ext2, &b, n),
            },
        }
    });
    match tokio::time::timeout(ext.timeout, task).await {
        Err(_) => Answer::Failed("timed out".into()),
        Ok(Err(_)) => Answer::Failed("the check was cancelled".into()),
        Ok(Ok(a)) => a,
    }
}

fn build(
    ext: &External,
    provider: Option<&Arc<ProviderEntry>>,
    who: &Asker<'_>,
    texts: &[String],
    client: &reqwest::Client,
) -> Result<reqwest::RequestBuilder, String> {
    match &ext.service {
        Service::Moderation { .. } => {
            let p = provider.ok_or("its provider is not in the policy")?;
            let url = format!(
                "{}://{}{}/v1/moderations",
                if p.base.tls { "https" } else { "http" },
                p.host_header,
                p.base.path_prefix
            );
            let body = serde_json::json!({ "input": texts });
            let mut r = client
                .post(url)
                .timeout(ext.timeout)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            for (name, value) in &p.headers {
                r = r.header(name, value);
            }
            if let Some(auth) = &p.auth_value {
                r = r.header(http::header::AUTHORIZATION, auth.clone());
            }
            Ok(r)
        }
        Service::Webhook { url, secret_env } => {
            let body = serde_json::to_vec(&Ask {
                direction: who.direction,
                group: who.group,
                key_id: who.key_id,
                model: who.model,
                texts,
            })
            .map_err(|e| e.to_string())?;
            let mut r = client
                .post(url)
                .timeout(ext.timeout)
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(env) = secret_env {
                let secret = std::env::var_os(env)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{env} is not set"))?;
                let t = who.now_ms / 1000;
                r = r.header(
                    SIGNATURE_HEADER,
                    signature(secret.as_encoded_bytes(), t, &body),
                );
            }
            Ok(r.body(body))
        }
    }
}

/// The checker's answer body as a verdict.
fn read(ext: &External, body: &[u8], sent: usize) -> Answer {
    match &ext.service {
        Service::Moderation { categories, .. } => {
            let Ok(m) = serde_json::from_slice::<Moderation>(body) else {
                return Answer::Failed("not a moderation answer (results[])".into());
            };
            let mut hit: Vec<String> = vec![];
            for r in &m.results {
                if categories.is_empty() {
                    if r.flagged {
                        for (name, on) in &r.categories {
                            if *on && !hit.contains(name) {
                                hit.push(name.clone());
                            }
                        }
                        if hit.is_empty() {
                            hit.push("flagged".into());
                        }
                    }
                } else {
                    for c in categories {
                        if r.categories.get(c).copied().unwrap_or(false) && !hit.contains(c) {
                            hit.push(c.clone());
                        }
                    }
                }
            }
            hit.sort();
            if hit.is_empty() {
                Answer::Allow
            } else {
                Answer::Flagged(hit)
            }
        }
        Service::Webhook { .. } => {
            let Ok(r) = serde_json::from_slice::<Reply>(body) else {
                return Answer::Failed("not a guardrail answer ({action, texts?, reason?})".into());
            };
            match r.action.as_str() {
                "allow" => Answer::Allow,
                "block" => Answer::Flagged(vec!["webhook".into()]),
                "redact" => match r.texts {
                    Some(t) if t.len() == sent => Answer::Redact(t),
                    Some(t) => {
                        Answer::Failed(format!("redact with {} texts for the {sent} sent", t.len()))
                    }
                    None => Answer::Failed("redact without texts".into()),
                },
                other => Answer::Failed(format!("unknown action {other:?}")),
            }
        }
    }
}
