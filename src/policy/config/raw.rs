//! The policy file as written: serde structs that mirror docs/policy.md one to one.
//!
//! Nothing here is interpreted. Durations, sizes, CIDRs and globs stay strings until
//! `validate.rs` turns them into runtime types and reports every problem at once.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Declares a raw section that accepts the limit fields next to its own.
///
/// serde's `flatten` cannot be combined with `deny_unknown_fields`, so the shared fields are
/// spliced in by this macro instead, together with an accessor that gathers them.
macro_rules! with_limits {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub rpm: Option<LimitField<u64>>,
            pub rph: Option<LimitField<u64>>,
            pub rpd: Option<LimitField<u64>>,
            pub tpm: Option<LimitField<u64>>,
            pub tpd: Option<LimitField<u64>>,
            pub max_parallel: Option<LimitField<u64>>,
            pub max_tokens: Option<LimitField<u64>>,
            pub budget_usd: Option<LimitField<f64>>,
            pub budget_period: Option<String>,
            pub soft_budget_usd: Option<f64>,
            pub token_budget: Option<LimitField<u64>>,
            pub token_budget_period: Option<String>,
            pub model_limits: Option<BTreeMap<String, RawPatternLimits>>,
        }

        impl $name {
            pub fn limits(&self) -> RawLimits {
                RawLimits {
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
    };
}

/// A limit as written: a number, or `{ value = N, mode = "shadow" }` (docs/policy.md "Limit fields" "Shadow
/// limits": counted and reported, never refusing; `mode = "enforce"` is the plain form).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitField<T> {
    Plain(T),
    WithMode(ModeValue<T>),
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeValue<T> {
    pub value: T,
    pub mode: LimitMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitMode {
    Enforce,
    Shadow,
}

impl<T: Copy> LimitField<T> {
    /// The value, and whether it is a shadow limit.
    pub fn split(self) -> (T, bool) {
        match self {
            LimitField::Plain(v) => (v, false),
            LimitField::WithMode(m) => (m.value, m.mode == LimitMode::Shadow),
        }
    }
}

/// The limit fields shared by orgs, groups and keys (docs/policy.md "Limit fields").
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub rpm: Option<LimitField<u64>>,
    pub rph: Option<LimitField<u64>>,
    pub rpd: Option<LimitField<u64>>,
    pub tpm: Option<LimitField<u64>>,
    pub tpd: Option<LimitField<u64>>,
    pub max_parallel: Option<LimitField<u64>>,
    pub max_tokens: Option<LimitField<u64>>,
    pub budget_usd: Option<LimitField<f64>>,
    pub budget_period: Option<String>,
    pub soft_budget_usd: Option<f64>,
    /// Tokens (input + output) per `token_budget_period` (docs/policy.md "Token budget").
    pub token_budget: Option<LimitField<u64>>,
    pub token_budget_period: Option<String>,
    /// Limits per model glob (docs/policy.md "Model limits").
    pub model_limits: Option<BTreeMap<String, RawPatternLimits>>,
}

/// One `model_limits` entry: any limit field; budget periods are the layer's.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPatternLimits {
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
    pub token_budget: Option<LimitField<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default)]
    pub listen: Vec<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<u64>,
    pub data_dir: Option<String>,
    pub admin_token_env: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub max_body: Option<String>,
    /// Deadlines and caps against slow and hostile clients (see `ClientLimits`).
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub max_header_bytes: Option<String>,
    pub body_memory: Option<String>,
    pub grace_period: Option<String>,
    /// A reload reads the file once it has been unchanged this long (default "1s").
    pub reload_settle: Option<String>,
    pub request_log: Option<String>,
    /// A file `request_log` rotates when it reaches this size (and daily).
    pub request_log_max_size: Option<String>,
    pub tls: Option<RawTls>,
    /// Extension: pid file written in daemon mode (`-d`).
    pub pid_file: Option<String>,
    /// Extension: Unix socket used to hand listeners over on `-u` upgrades.
    pub upgrade_sock: Option<String>,
    /// Extension: tokens reserved for a request that does not set `max_tokens`.
    pub default_max_tokens: Option<u64>,
    /// How long audit events are kept (default "400d").
    pub audit_retention: Option<String>,
    /// Extension: Pingora's work-stealing runtime for the data plane (default false).
    pub work_stealing: Option<bool>,
    /// Extension: idle upstream connections kept per data-plane thread (default 128).
    pub upstream_keepalive_pool_size: Option<u64>,
}

/// The `[smtp]` section: the relay `alert_email` is sent through.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: String,
    pub port: Option<u64>,
    pub from: String,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub starttls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    /// PEM bundle of the CA(s) that verify client certificates (mTLS, optional per request).
    pub client_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub id: String,
    pub api: String,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extension: PEM bundle that replaces the system roots for this provider (private CAs).
    pub ca_file: Option<String>,
    /// The provider's usage API, read by the daily reconciliation (docs/policy.md "Reconciliation").
    pub usage_api: Option<RawUsageApi>,
    /// Per cent of difference between the provider's tokens and the gateway's above which
    /// a day × model is a drift (default 2).
    pub drift_alert: Option<f64>,
}

/// A provider's `usage_api` table: where its usage is read and the admin key to read it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsageApi {
    pub admin_key_env: String,
    /// Default: the provider's own `base_url`.
    pub base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    #[serde(default)]
    pub input_usd_per_mtok: f64,
    #[serde(default)]
    pub output_usd_per_mtok: f64,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    pub cache_read_usd_per_mtok: Option<f64>,
    pub cache_write_usd_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: String,
    pub model: Option<String>,
    pub weight: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Per-target price overrides (used by `routing = "cost"`).
    pub input_usd_per_mtok: Option<f64>,
    pub output_usd_per_mtok: Option<f64>,
}

with_limits! {
    pub struct RawOrg {
        pub id: String,
        pub name: Option<String>,
        /// The org's own receiver: events about the org as a whole (`spend.drift`).
        pub webhook: Option<String>,
        pub webhook_secret_env: Option<String>,
        /// Guardrail ids (docs/guardrails.md); lower layers add to these.
        #[serde(default)]
        pub guardrails: Vec<String>,
        /// Requests must present a client certificate `tls.client_ca` verifies.
        pub require_client_cert: Option<bool>,
        /// `json` (default), `slack`, `feishu` or `dingtalk`: the receiver's message shape.
        pub webhook_format: Option<String>,
        /// Addresses the same events are mailed to (needs `[smtp]`).
        #[serde(default)]
        pub alert_email: Vec<String>,
        /// Request policy (docs/policy.md "Request policy"; `reqpolicy.rs`).
        pub allowed_providers: Option<Vec<String>>,
        #[serde(default)]
        pub required_params: Vec<String>,
        pub fixed_params: Option<BTreeMap<String, serde_json::Value>>,
        pub allowed_origins: Option<Vec<String>>,
        /// `[[log_sinks]]` ids; the org's groups add theirs.
        #[serde(default)]
        pub log_sinks: Vec<String>,
        /// How long the org's lines are kept (local rotated files, S3 objects).
        pub log_retention: Option<String>,
    }
}

with_limits! {
    pub struct RawGroup {
        pub id: String,
        pub org: String,
        pub name: Option<String>,
        pub state: Option<String>,
        pub models: Option<Vec<String>>,
        #[serde(default)]
        pub deny_models: Vec<String>,
        pub default_model: Option<String>,
        #[serde(default)]
        pub aliases: BTreeMap<String, String>,
        pub routing: Option<String>,
        #[serde(default)]
        pub fallbacks: BTreeMap<String, Vec<String>>,
        pub timeout: Option<String>,
        pub retries: Option<u64>,
        pub allowed_cidrs: Option<Vec<String>>,
        #[serde(default)]
        pub quarantine_cidrs: Vec<String>,
        #[serde(default)]
        pub quarantine_models: Vec<String>,
        pub key_ttl: Option<String>,
        pub idle_disable: Option<String>,
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
        pub log_level: Option<String>,
        pub webhook: Option<String>,
        pub webhook_secret_env: Option<String>,
        #[serde(default)]
        pub alert_thresholds: Vec<f64>,
        pub error_rate_alert: Option<RawErrorRateAlert>,
        pub self_service: Option<RawSelfService>,
        /// Invoices: the service fee added to cost, in per cent (`15`, `12.5`).
        pub markup_pct: Option<f64>,
        /// Invoices: whom the group's usage is billed to (groups sharing it share an invoice).
        pub invoice_to: Option<String>,
        /// Guardrail ids, added to the org's.
        #[serde(default)]
        pub guardrails: Vec<String>,
        pub require_client_cert: Option<bool>,
        /// A `[[presets]]` id: the fields this group does not set come from it.
        pub preset: Option<String>,
        pub webhook_format: Option<String>,
        #[serde(default)]
        pub alert_email: Vec<String>,
        /// Request policy (docs/policy.md "Request policy"; `reqpolicy.rs`).
        pub allowed_providers: Option<Vec<String>>,
        #[serde(default)]
        pub required_params: Vec<String>,
        pub fixed_params: Option<BTreeMap<String, serde_json::Value>>,
        pub allowed_origins: Option<Vec<String>>,
        /// Lower `max_tokens` to what the budgets can still pay for (docs/policy.md "Budget clamp").
        pub budget_clamp: Option<bool>,
        /// `[[log_sinks]]` ids, added to the org's.
        #[serde(default)]
        pub log_sinks: Vec<String>,
        /// How long the group's lines are kept; the shorter of group and org wins.
        pub log_retention: Option<String>,
    }
}

/// A group's `error_rate_alert` table: when the share of 5xx/upstream failures is high.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorRateAlert {
    pub threshold: f64,
    pub window: String,
    pub min_requests: u64,
}

/// A group's `self_service` table: what developer tokens may mint on their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfService {
    #[serde(default)]
    pub enabled: bool,
    pub max_keys_per_owner: Option<u64>,
    #[serde(default)]
    pub require_expiry: bool,
    pub max_ttl: Option<String>,
    #[serde(default)]
    pub limits: RawLimits,
}

with_limits! {
    pub struct RawKey {
        pub id: String,
        pub name: Option<String>,
        pub group: String,
        pub sha256: String,
        pub expires_at: Option<String>,
        pub models: Option<Vec<String>>,
        #[serde(default)]
        pub deny_models: Vec<String>,
        pub allowed_cidrs: Option<Vec<String>>,
        /// Extension: `active` (default) or `disabled`; revocation of a file key is removal.
        pub state: Option<String>,
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
        /// Guardrail ids, added to the group's and the org's.
        #[serde(default)]
        pub guardrails: Vec<String>,
        pub require_client_cert: Option<bool>,
        /// SHA-256 of the client certificates (DER) this key works with.
        pub client_cert_sha256: Option<Vec<String>>,
        /// Request policy (docs/policy.md "Request policy"; `reqpolicy.rs`).
        pub allowed_providers: Option<Vec<String>>,
        #[serde(default)]
        pub required_params: Vec<String>,
        pub fixed_params: Option<BTreeMap<String, serde_json::Value>>,
        pub allowed_origins: Option<Vec<String>>,
    }
}

/// A `[[guardrails]]` block (docs/guardrails.md): a check that groups attach by id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    pub id: String,
    pub kind: String,
    /// `pii`: the entities looked for (default: all).
    pub entities: Option<Vec<String>>,
    /// `regex`: the patterns (the `regex` crate's syntax).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// `injection`: the score from which a text counts as an injection attempt.
    pub threshold: Option<f64>,
    pub action: Option<String>,
    /// `request`, `response` (default: request only).
    pub on: Option<Vec<String>>,
    /// `moderation`: the catalogue provider whose `/v1/moderations` is asked.
    pub provider: Option<String>,
    /// `moderation`: the categories that count (default: the provider's `flagged`).
    pub categories: Option<Vec<String>>,
    /// `webhook`: where the texts are sent.
    pub url: Option<String>,
    /// `webhook`: the environment variable holding the signing key.
    pub secret_env: Option<String>,
    pub timeout: Option<String>,
    pub on_error: Option<String>,
}

/// `[tracing]`: OpenTelemetry spans over OTLP/HTTP (docs/policy.md "Tracing").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: String,
    pub sample: Option<f64>,
}

/// A `[[log_sinks]]` block (docs/policy.md "Log sinks"): where request-log lines are
/// exported; orgs and groups name them by id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogSink {
    pub id: String,
    pub kind: String,
    pub url: String,
    /// `s3`: the store's endpoint (default: AWS for `region`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    /// `http`: `jsonl` (default), `splunk_hec`, `elastic_bulk`.
    pub format: Option<String>,
    /// `http`, `otlp`: header name -> environment variable holding its value.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// `otlp`: `protobuf` (default) or `json`.
    pub encoding: Option<String>,
    /// `syslog` over `tls://`: a PEM bundle replacing the system roots.
    pub ca_file: Option<String>,
    pub batch: Option<RawLogBatch>,
    /// Bytes the sink's spool may hold (default "1GiB"); past it the oldest lines go.
    pub spool_max: Option<String>,
}

/// A sink's `batch = { max_lines, max_bytes, max_wait }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogBatch {
    pub max_lines: Option<u64>,
    pub max_bytes: Option<String>,
    pub max_wait: Option<String>,
}
