//! What the store keeps for the control plane, as written to disk (JSON, versioned by
//! being additive: new fields are optional).

use crate::policy::config::raw::LimitField;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Disabled,
    Revoked,
}

/// The fields of a key that its owner sets (create, PATCH): exactly the admin API's JSON.
/// `None` = not set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rph: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<LimitField<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_limits: Option<BTreeMap<String, crate::policy::config::raw::RawPatternLimits>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// humantime, e.g. "30d".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_interval: Option<String>,
    /// Guardrail ids, added to the group's and the org's (which a key cannot drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Vec<String>>,
    /// Requests must present a client certificate (docs/policy.md "Client certificates").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_client_cert: Option<bool>,
    /// SHA-256 of the client certificates (DER, hex) this key works with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<Vec<String>>,
    /// Request policy (docs/policy.md "Request policy"): narrows the group's and org's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_providers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_params: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_params: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
}

impl KeySpec {
    pub(crate) fn raw_limits(&self) -> crate::policy::config::RawLimits {
        crate::policy::config::RawLimits {
            rpm: self.rpm,
            rph: self.rph,
            rpd: self.rpd,
            tpm: self.tpm,
            tpd: self.tpd,
            max_parallel: self.max_parallel,
            max_tokens: self.max_tokens,
            budget_usd: self.budget_usd,
            budget_period: self.budget_period.clone(),
            soft_budget_usd: self.soft_budget_usd,
            token_budget: self.token_budget,
            token_budget_period: self.token_budget_period.clone(),
            model_limits: self.model_limits.clone(),
        }
    }
}

/// The secret a regenerated key had, valid until `until` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub(crate) sha256: String,
    pub(crate) until: u64,
}

/// An API-made key. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub group: String,
    pub sha256: String,
    /// `tg-a1b2c3…`, for lists.
    pub prefix: String,
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: u64,
    pub created_by: String,
    pub updated_at: u64,
    /// When the secret was last (re)generated: rotation counts from here.
    pub secret_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
    pub spec: KeySpec,
}

/// A group's runtime state set through the API, and the file's state it was set over: a
/// reload that changes the file's `state` replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOverride {
    pub(crate) group: String,
    pub(crate) state: String,
    pub(crate) file_state: String,
    pub(crate) at: u64,
    pub(crate) by: String,
}

/// An admin token made through the API. Only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `admin`, `group_admin`, `viewer` or `developer`.
    pub(crate) role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
    pub(crate) sha256: String,
    pub(crate) prefix: String,
    pub(crate) created_at: u64,
    pub(crate) created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_at: Option<u64>,
}

/// A webhook delivery not yet made (tree `webhooks`): the event's body as it will be sent,
/// where to, and the retry state.
///
/// The body is stored as it will be sent — for `key.rotated` that includes the new secret,
/// so the queue is as sensitive as the rest of `data_dir` until the entry is delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The event's id: the same on every retry (receivers de-duplicate on it).
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) org: Option<String>,
    /// The group whose receiver this is.
    pub(crate) group: Option<String>,
    pub(crate) key_id: Option<String>,
    pub(crate) url: String,
    /// The environment variable holding the signing secret (read at each attempt).
    pub(crate) secret_env: String,
    pub(crate) body: String,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// When the event happened (unix ms): retries stop an hour or more after it.
    pub(crate) created_ms: u64,
    /// Not before (unix ms).
    pub(crate) next_ms: u64,
    /// `slack`, `feishu`, `dingtalk` or `email` (`url` is then `mailto:a@x,b@y`); absent:
    /// the signed JSON webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<String>,
}
