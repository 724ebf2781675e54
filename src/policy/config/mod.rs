//! The policy file: `raw` (as written) -> `validate` (checked, typed) -> [`Config`].
//!
//! [`load`] reads a file and returns either a [`Config`] or every problem found in it.
//! Nothing in this module touches the network or the environment, so `tollgate -t` gives
//! the same verdict on a laptop as on the edge host.

pub(crate) mod api_fields;
pub(crate) mod guardrails;
mod keydefs;
pub(crate) mod log_sinks;
pub(crate) mod model_limits;
pub(crate) mod mtls;
pub mod raw;
pub mod reqpolicy;
mod validate;

use globset::GlobSet;
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) use keydefs::KeyDefs;
pub use model_limits::{MoreLimits, PatternLimits, TokenBudget};
pub(crate) use raw::RawLimits;
pub use validate::parse_config;
pub(crate) use validate::{fields, looser_patterns, looser_than};

/// Micro-dollars as a decimal USD string without trailing zeros (`1500000` → `1.5`).
pub(crate) fn micros_to_usd(m: u64) -> String {
    let s = format!("{}.{:06}", m / 1_000_000, m % 1_000_000);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Hard ceiling for `server.max_body`: the patched Pingora retry buffer (vendor/README.md).
pub(crate) const MAX_BODY_CEILING: u64 = 64 * 1024 * 1024;

/// Reads and validates the policy file at `path`.
///
/// A valid file is read piece by piece (its whole text is never in memory); one the fast
/// path cannot take is read whole and every problem in it is reported, as by [`parse_config`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    validate::load_file(path)
}

/// Every problem found in a policy file.
#[derive(Debug)]
pub struct ConfigError {
    pub(crate) file: String,
    pub(crate) problems: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// 1-based line (and column) where known.
    pub(crate) line: Option<(usize, usize)>,
    /// Field path such as `groups[1] (grp_prod).rpm`.
    pub(crate) path: String,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem(s) found:",
            self.file,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "  {}", self.file)?;
            if let Some((line, col)) = p.line {
                write!(f, ":{line}:{col}")?;
            }
            if p.path.is_empty() {
                writeln!(f, ": {}", p.message)?;
            } else {
                writeln!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A validated policy file. Runtime types only: nothing here is `Deserialize`.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) path: PathBuf,
    pub(crate) server: ServerConfig,
    pub(crate) providers: Vec<Provider>,
    pub(crate) models: Vec<Model>,
    /// `[[guardrails]]`; layers name them by index.
    pub(crate) guardrails: Vec<guardrails::Guardrail>,
    pub(crate) orgs: Vec<Org>,
    pub(crate) groups: Vec<Group>,
    pub keys: KeyDefs,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) admin_listen: Option<SocketAddr>,
    pub(crate) threads: usize,
    pub(crate) data_dir: PathBuf,
    pub(crate) admin_token_env: String,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) max_body: u64,
    pub(crate) clients: ClientLimits,
    pub(crate) grace_period: Duration,
    /// docs/operations.md "Reload": a reload waits until the file has been unchanged (size, mtime, content)
    /// this long, so a file caught half-written is never loaded.
    pub(crate) reload_settle: Duration,
    pub(crate) request_log: RequestLog,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) pid_file: PathBuf,
    pub(crate) upgrade_sock: PathBuf,
    pub(crate) default_max_tokens: u32,
    pub(crate) audit_retention: Duration,
    /// Pingora's work-stealing runtime (off by default: one single-threaded runtime per
    /// data-plane thread is ~25 µs cheaper per request; see README "Performance").
    pub(crate) work_stealing: bool,
    /// Idle upstream connections kept per data-plane thread.
    pub(crate) upstream_keepalive_pool_size: usize,
    /// The top-level `[smtp]` section (kept here: the delivery service reads it with the
    /// rest of the server settings).
    pub(crate) smtp: Option<Smtp>,
    /// `[tracing]` (a section of its own in the file; read at start only).
    pub(crate) tracing: Option<TracingConfig>,
    /// A file `request_log` also rotates at this size (it always rotates daily).
    pub(crate) request_log_max_size: Option<u64>,
    /// `[[log_sinks]]` (top-level blocks, kept here so the snapshot carries them).
    pub(crate) log_sinks: Arc<[log_sinks::LogSink]>,
}

/// `[smtp]`: where `alert_email` messages are sent. Credentials are read from the
/// environment when a message is sent, never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Smtp {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) from: String,
    pub(crate) username_env: Option<String>,
    pub(crate) password_env: Option<String>,
    pub(crate) starttls: bool,
}

/// `[tracing]`: where spans go and which requests are traced (docs/policy.md "Tracing").
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TracingConfig {
    /// The OTLP/HTTP traces URL (`<otlp_endpoint>/v1/traces`).
    pub(crate) traces_url: String,
    /// Ratio of new traces recorded, 0..=1 (a client's sampled flag wins).
    pub(crate) sample: f64,
}

/// Deadlines and caps that keep slow and hostile clients from holding memory and
/// connections (`[server]` fields of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientLimits {
    /// From a connection's first byte of a request (or its accept) to the end of the header.
    pub(crate) header_timeout: Duration,
    /// From the start of the body read to its last byte.
    pub(crate) body_timeout: Duration,
    /// A keep-alive connection waiting for its next request is closed after this long.
    pub(crate) idle_timeout: Duration,
    /// Connections open at once; beyond it a new one gets a 503 and is closed.
    pub(crate) max_connections: usize,
    /// Request line plus headers.
    pub(crate) max_header_bytes: usize,
    /// Request bodies buffered at once, all requests together.
    pub(crate) body_memory: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            body_memory: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestLog {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Client certificates are asked for, verified against this CA, and optional.
    pub(crate) client_ca: Option<PathBuf>,
}

/// Wire format spoken by a provider, and by a data-plane route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Provider {
    pub(crate) id: Arc<str>,
    pub(crate) api: Api,
    pub(crate) base: BaseUrl,
    pub(crate) api_key_env: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) usage_api: Option<UsageApi>,
    /// `drift_alert`: per cent, default 2.
    pub(crate) drift_alert_pct: f64,
}

/// Where a provider's usage is read for reconciliation. The key itself is read from the
/// environment when a run starts, never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageApi {
    pub(crate) admin_key_env: String,
    /// `http(s)://host[:port][/prefix]` without a trailing slash.
    pub(crate) base_url: String,
}

/// `drift_alert` when a provider sets none.
pub(crate) const DEFAULT_DRIFT_ALERT_PCT: f64 = 2.0;

/// `base_url` split into what a peer needs. Host names are resolved when the snapshot
/// is built, never on the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path prefix without a trailing slash ("" for none), prepended to the route path.
    pub(crate) path_prefix: String,
}

/// Prices in micro-dollars per million tokens (integers: money never accumulates in floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Price {
    pub(crate) input_micros_per_mtok: u64,
    pub(crate) output_micros_per_mtok: u64,
    /// Prompt tokens read from the provider's cache (`cache_read_usd_per_mtok`, else input).
    pub(crate) cache_read_micros_per_mtok: u64,
    /// Prompt tokens written to the provider's cache (`cache_write_usd_per_mtok`, else input).
    pub(crate) cache_write_micros_per_mtok: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) name: Arc<str>,
    pub(crate) price: Price,
    pub(crate) targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Index into [`Config::providers`].
    pub(crate) provider: usize,
    pub(crate) model: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) tags: Vec<String>,
    pub(crate) price: Option<Price>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit_micros: u64,
    pub period: BudgetPeriod,
    pub soft_micros: Option<u64>,
}

/// The limit fields for one layer (org, group or key). `None` = no limit at this layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    pub rpm: Option<NonZeroU64>,
    pub rph: Option<NonZeroU64>,
    pub rpd: Option<NonZeroU64>,
    pub tpm: Option<NonZeroU64>,
    pub tpd: Option<NonZeroU64>,
    pub max_parallel: Option<NonZeroU32>,
    pub max_tokens: Option<NonZeroU32>,
    pub budget: Option<Budget>,
    /// Fields given as `{ value, mode = "shadow" }`: counted and reported, never refusing.
    pub shadow: Shadow,
    /// `token_budget` and `model_limits`, behind one pointer so a million keys that set
    /// neither pay 8 bytes each (`None`: the usual case, nothing looked at per request).
    pub more: Option<Arc<MoreLimits>>,
}

/// Which limit fields of a layer are shadow limits (one bit per field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shadow(u16);

impl Shadow {
    pub const RPM: u16 = 1;
    pub const RPH: u16 = 2;
    pub const RPD: u16 = 4;
    pub const TPM: u16 = 8;
    pub const TPD: u16 = 16;
    pub const MAX_PARALLEL: u16 = 32;
    pub const MAX_TOKENS: u16 = 64;
    pub const BUDGET: u16 = 128;
    pub const TOKEN_BUDGET: u16 = 256;

    pub fn has(self, field: u16) -> bool {
        self.0 & field != 0
    }

    pub fn set(&mut self, field: u16) {
        self.0 |= field;
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }
}

impl Limits {
    /// The scalar limits that refuse: shadow fields left out (and `more`: see
    /// [`Limits::enforced_token_budget`]; patterns carry their own shadow bits).
    pub(crate) fn enforced(&self) -> Limits {
        let s = self.shadow;
        let keep = |bit: u16| !s.has(bit);
        Limits {
            rpm: self.rpm.filter(|_| keep(Shadow::RPM)),
            rph: self.rph.filter(|_| keep(Shadow::RPH)),
            rpd: self.rpd.filter(|_| keep(Shadow::RPD)),
            tpm: self.tpm.filter(|_| keep(Shadow::TPM)),
            tpd: self.tpd.filter(|_| keep(Shadow::TPD)),
            max_parallel: self.max_parallel.filter(|_| keep(Shadow::MAX_PARALLEL)),
            max_tokens: self.max_tokens.filter(|_| keep(Shadow::MAX_TOKENS)),
            budget: self.budget.filter(|_| keep(Shadow::BUDGET)),
            shadow: Shadow::default(),
            more: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: Arc<str>,
    /// Shown by `tollgate -t`; not used by the request path.
    #[allow(dead_code)]
    pub(crate) name: Option<String>,
    pub(crate) limits: Limits,
    /// The org's own webhook receiver: URL and the env var of its signing secret.
    pub(crate) webhook: Option<(String, String)>,
    /// Indices into [`Config::guardrails`].
    pub(crate) guardrails: Box<[u16]>,
    pub(crate) require_client_cert: bool,
    /// How the org's `webhook` is spoken to, and where its events are mailed.
    pub(crate) alerts: Alerts,
    /// `allowed_providers`, `required_params`, `fixed_params`, `allowed_origins`.
    pub(crate) req: Option<Arc<reqpolicy::ReqPolicy>>,
    /// `[[log_sinks]]` ids the org's lines go to.
    pub(crate) log_sinks: Box<[Arc<str>]>,
    pub(crate) log_retention: Option<Duration>,
}

/// `webhook_format` and `alert_email` of an org or a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Alerts {
    pub(crate) format: crate::control::webhooks::channels::Format,
    pub(crate) email: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Active,
    Paused,
    Quarantined,
}

impl GroupState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GroupState::Active => "active",
            GroupState::Paused => "paused",
            GroupState::Quarantined => "quarantined",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Weighted,
    Latency,
    Cost,
    Sticky,
    Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Metadata,
    Prompt,
    Full,
}

/// Model allow/deny globs of one layer. `allow: None` = everything the layer above allows.
#[derive(Debug, Clone)]
pub struct ModelFilter {
    pub allow: Option<GlobSet>,
    pub deny: Option<GlobSet>,
    /// The patterns as written, for display.
    pub allow_src: Option<Vec<String>>,
    pub deny_src: Vec<String>,
}

impl ModelFilter {
    pub(crate) fn permits(&self, model: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.is_match(model))
            && !self.deny.as_ref().is_some_and(|d| d.is_match(model))
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub(crate) id: Arc<str>,
    /// Index into [`Config::orgs`].
    pub(crate) org: usize,
    pub(crate) name: Option<String>,
    pub(crate) state: GroupState,
    pub(crate) limits: Limits,
    pub(crate) models: ModelFilter,
    /// Catalogue name (aliases already resolved).
    pub(crate) default_model: Option<Arc<str>>,
    /// Client name -> catalogue name.
    pub(crate) aliases: HashMap<String, Arc<str>>,
    pub(crate) routing: Routing,
    /// Catalogue name -> fallback catalogue names, in order.
    pub(crate) fallbacks: HashMap<Arc<str>, Vec<Arc<str>>>,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) allowed_cidrs: Option<Vec<IpNet>>,
    pub(crate) quarantine_cidrs: Vec<IpNet>,
    pub(crate) quarantine_models: Option<GlobSet>,
    pub(crate) key_ttl: Option<Duration>,
    pub(crate) idle_disable: Option<Duration>,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) log_level: LogLevel,
    pub(crate) webhook: Option<String>,
    /// The environment variable holding the webhook's HMAC key (read when signing, so a
    /// secret never sits in the file or the snapshot).
    pub(crate) webhook_secret_env: Option<String>,
    pub(crate) alert_thresholds: Vec<f64>,
    pub(crate) error_rate_alert: Option<ErrorRateAlert>,
    pub(crate) self_service: Option<SelfService>,
    /// Invoices: the markup on cost in thousandths of a per cent (`12.5` % = 12 500), so
    /// invoice amounts stay integer micro-dollars.
    pub(crate) markup_millipct: u32,
    /// Invoices: the invoice the group's usage goes on (`None`: its own, named by its id).
    pub(crate) invoice_to: Option<Arc<str>>,
    /// Indices into [`Config::guardrails`] (the group's own; the org's are added in the snapshot).
    pub(crate) guardrails: Box<[u16]>,
    /// The group's or its org's `require_client_cert` (the org's cannot be turned off).
    pub(crate) require_client_cert: bool,
    /// The preset the group named, and the fields it took from it.
    pub(crate) preset: Option<GroupPreset>,
    pub(crate) alerts: Alerts,
    /// The group's own request policy (the org's is resolved with it in the snapshot).
    pub(crate) req: Option<Arc<reqpolicy::ReqPolicy>>,
    /// `budget_clamp`: lower `max_tokens` to what the budgets can still pay for.
    pub(crate) budget_clamp: bool,
    /// `[[log_sinks]]` ids the group's lines go to: the org's and the group's own.
    pub(crate) log_sinks: Box<[Arc<str>]>,
    /// The shorter of the group's and the org's `log_retention`.
    pub(crate) log_retention: Option<Duration>,
}

/// A group's `preset` and the fields it took from it (shown by `-t` and the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupPreset {
    pub(crate) id: Arc<str>,
    pub(crate) fields: Vec<String>,
}

/// `error_rate.high` fires when, over `window`, at least `min_requests` were counted and
/// the share of 5xx/upstream failures among them is above `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ErrorRateAlert {
    /// A fraction in (0, 1).
    pub(crate) threshold: f64,
    pub(crate) window: Duration,
    pub(crate) min_requests: NonZeroU64,
}

/// What developer tokens may do in a group on their own (docs/admin-api.md "Self-service policy").
#[derive(Debug, Clone)]
pub(crate) struct SelfService {
    pub(crate) enabled: bool,
    /// Live keys (not revoked, not expired) one owner may hold in the group.
    pub(crate) max_keys_per_owner: Option<u64>,
    pub(crate) require_expiry: bool,
    pub(crate) max_ttl: Option<Duration>,
    /// Ceilings: a developer's key gets these when it sets none and may only set lower.
    pub(crate) limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Disabled,
    Revoked,
}

#[derive(Debug, Clone)]
pub struct KeyDef {
    pub id: Arc<str>,
    pub name: Option<Box<str>>,
    /// Index into [`Config::groups`].
    pub group: usize,
    pub digest: [u8; 32],
    pub expires_at: Option<SystemTime>,
    pub state: KeyState,
    /// The key's own model lists; `None` when it has none (most keys: a million keys in a
    /// file keep one pointer each instead of an empty filter).
    pub models: Option<Box<ModelFilter>>,
    pub allowed_cidrs: Option<Vec<IpNet>>,
    pub limits: Limits,
    /// String map for cost attribution (spend by tag).
    pub tags: Vec<(String, String)>,
    /// Indices into [`Config::guardrails`]: the key's own, added to its group's.
    pub guardrails: Box<[u16]>,
    /// `require_client_cert` / `client_cert_sha256` of the key itself.
    pub client_cert: Option<Box<mtls::CertRule>>,
    /// The key's own request policy.
    pub req: Option<Arc<reqpolicy::ReqPolicy>>,
}

impl Config {
    /// A group's guardrails as `-t` shows them: the org's, then the group's own, each
    /// `id (kind, action)`; keys may add more.
    fn group_guardrails(&self, org: &Org, g: &Group) -> Vec<String> {
        let mut seen: Vec<u16> = vec![];
        for &i in org.guardrails.iter().chain(g.guardrails.iter()) {
            if !seen.contains(&i) {
                seen.push(i);
            }
        }
        seen.iter()
            .filter_map(|&i| self.guardrails.get(usize::from(i)))
            .map(|gr| {
                let from = if org
                    .guardrails
                    .iter()
                    .any(|&o| *self.guardrails[usize::from(o)].id == *gr.id)
                {
                    ", from org"
                } else {
                    ""
                };
                format!("{} ({} {}{from})", gr.id, gr.kind(), gr.action().as_str())
            })
            .collect()
    }

    /// The one-screen summary printed by `tollgate -t`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{}: OK", self.path.display());
        let listen: Vec<String> = self.server.listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            s,
            "  listen {}  admin {}  threads {}  max_body {}  data_dir {}",
            listen.join(","),
            self.server
                .admin_listen
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
            self.server.threads,
            bytesize::ByteSize(self.server.max_body).display().iec(),
            self.server.data_dir.display()
        );
        let _ = writeln!(s, "  providers ({}):", self.providers.len());
        for p in &self.providers {
            let env = p.api_key_env.as_deref().unwrap_or("-");
            let set = match &p.api_key_env {
                Some(v) if std::env::var_os(v).is_none() => " (NOT SET in this environment)",
                _ => "",
            };
            let usage = match &p.usage_api {
                Some(u) if std::env::var_os(&u.admin_key_env).is_none() => format!(
                    "  usage API key from {} (NOT SET in this environment)",
                    u.admin_key_env
                ),
                Some(u) => format!("  usage API key from {}", u.admin_key_env),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "    {:<16} {:<9} {}://{}:{}{}  key from {env}{set}{usage}",
                p.id,
                p.api.as_str(),
                if p.base.tls { "https" } else { "http" },
                p.base.host,
                p.base.port,
                p.base.path_prefix
            );
        }
        let _ = writeln!(s, "  models ({}):", self.models.len());
        for m in &self.models {
            let targets: Vec<String> = m
                .targets
                .iter()
                .map(|t| format!("{}/{}@{}", self.providers[t.provider].id, t.model, t.weight))
                .collect();
            let _ = writeln!(s, "    {:<24} -> {}", m.name, targets.join(", "));
        }
        let _ = writeln!(s, "  orgs ({}):", self.orgs.len());
        for (oi, o) in self.orgs.iter().enumerate() {
            let groups: Vec<&Group> = self.groups.iter().filter(|g| g.org == oi).collect();
            let _ = writeln!(s, "    {} ({} groups)", o.id, groups.len());
            for g in groups {
                let keys = self
                    .keys
                    .iter()
                    .filter(|k| self.groups[k.group].id == g.id)
                    .count();
                let _ = writeln!(
                    s,
                    "      {:<20} {:<11} {} keys in file, routing {:?}",
                    g.id,
                    g.state.as_str(),
                    keys,
                    g.routing
                );
                if let Some(p) = &g.preset {
                    let taken = if p.fields.is_empty() {
                        "nothing (the group sets every field itself)".to_string()
                    } else {
                        p.fields.join(", ")
                    };
                    let _ = writeln!(s, "        preset {}: {taken}", p.id);
                }
                let guards = self.group_guardrails(o, g);
                if !guards.is_empty() {
                    let _ = writeln!(s, "        guardrails: {}", guards.join(", "));
                }
                if let Some(p) = reqpolicy::summary(o.req.as_deref(), g.req.as_deref()) {
                    let _ = writeln!(s, "        request policy: {p}");
                }
            }
        }
        if !self.guardrails.is_empty() {
            let _ = writeln!(s, "  guardrails ({}):", self.guardrails.len());
            for g in &self.guardrails {
                let on = match (g.on_request, g.on_response) {
                    (true, true) => "request+response",
                    (false, true) => "response",
                    _ => "request",
                };
                let _ = writeln!(
                    s,
                    "    {:<20} {:<10} {:<6} on {on}",
                    g.id,
                    g.kind(),
                    g.action().as_str()
                );
            }
        }
        let _ = writeln!(s, "  keys in file: {}", self.keys.len());
        s
    }
}
