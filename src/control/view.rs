//! The admin API's answers about keys and groups, as serde types: each is a schema of
//! `docs/openapi.json` (`Key`, `Group`, `Limits`, …) with the same fields in the same
//! order, checked by `admin::schema` tests.

use super::Writer;
use crate::admission::Layer;
use crate::policy::config::{BudgetPeriod, GroupState, KeyState, Limits, Shadow};
use crate::policy::snapshot::reqpolicy::ReqPolicyView;
use crate::policy::snapshot::{GroupEntry, KeyEntry, Snapshot};
use crate::storage::{KeyRecord, KeyStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use crate::clock::rfc3339;

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Micro-dollars as the admin API shows money: decimal USD.
pub(crate) fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A markup in thousandths of a per cent as the answers show it (`12500` → `12.5`).
pub(crate) fn pct(millipct: u32) -> f64 {
    f64::from(millipct) / 1000.0
}

pub(crate) fn period_name(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Daily => "daily",
        BudgetPeriod::Weekly => "weekly",
        BudgetPeriod::Monthly => "monthly",
        BudgetPeriod::Never => "never",
    }
}

/// A list answer: `{data, next_cursor}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct List<T> {
    pub(crate) data: Vec<T>,
    pub(crate) next_cursor: Option<String>,
}

/// A limit as written: plain, or `{value, mode: "shadow"}` for a shadow limit
/// (`ShadowLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum LimitView<T> {
    Plain(T),
    Shadow { value: T, mode: &'static str },
}

impl<T> LimitView<T> {
    fn new(v: T, shadow: bool) -> LimitView<T> {
        if shadow {
            LimitView::Shadow {
                value: v,
                mode: "shadow",
            }
        } else {
            LimitView::Plain(v)
        }
    }
}

/// A layer's own limits (`Limits`): fields that are not set are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct LimitsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rpm: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rph: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rpd: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tpm: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tpd: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_parallel: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) budget_usd: Option<LimitView<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) budget_period: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) soft_budget_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_budget: Option<LimitView<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_budget_period: Option<&'static str>,
    /// Pattern → its limits (budget periods are the layer's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_limits: Option<BTreeMap<String, LimitsView>>,
}

pub(crate) fn limits_view(l: &Limits) -> LimitsView {
    let s = l.shadow;
    let lim = |v: Option<u64>, bit: u16| v.map(|v| LimitView::new(v, s.has(bit)));
    LimitsView {
        rpm: lim(l.rpm.map(|n| n.get()), Shadow::RPM),
        rph: lim(l.rph.map(|n| n.get()), Shadow::RPH),
        rpd: lim(l.rpd.map(|n| n.get()), Shadow::RPD),
        tpm: lim(l.tpm.map(|n| n.get()), Shadow::TPM),
        tpd: lim(l.tpd.map(|n| n.get()), Shadow::TPD),
        max_parallel: lim(
            l.max_parallel.map(|n| u64::from(n.get())),
            Shadow::MAX_PARALLEL,
        ),
        max_tokens: lim(l.max_tokens.map(|n| u64::from(n.get())), Shadow::MAX_TOKENS),
        budget_usd: l
            .budget
            .map(|b| LimitView::new(usd(b.limit_micros), s.has(Shadow::BUDGET))),
        budget_period: l.budget.map(|b| period_name(b.period)),
        soft_budget_usd: l.budget.and_then(|b| b.soft_micros).map(usd),
        token_budget: l
            .token_budget()
            .map(|t| LimitView::new(t.limit, s.has(Shadow::TOKEN_BUDGET))),
        token_budget_period: l.token_budget().map(|t| period_name(t.period)),
        model_limits: (!l.model_limits().is_empty()).then(|| {
            l.model_limits()
                .iter()
                .map(|e| (e.pattern.to_string(), limits_view(&e.limits)))
                .collect()
        }),
    }
}

/// The period a layer's token use is counted over: its own `token_budget_period`; `None`
/// without a token budget of its own (its tokens are then not counted apart).
pub(crate) fn token_period(own: &Limits) -> Option<BudgetPeriod> {
    own.token_budget().map(|t| t.period)
}

/// A key as the admin API shows it, never its secret (`Key`). Keys from the policy file
/// have no `updated_at` and no `grace_until` (absent, not null): hence the
/// `Option<Option<_>>` of `grace_until`, absent for them and null when no grace runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyView {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) group: String,
    pub(crate) org: Option<String>,
    pub(crate) owner: Option<String>,
    /// `api` or `config`.
    pub(crate) source: &'static str,
    pub(crate) status: &'static str,
    pub(crate) created_at: Option<String>,
    pub(crate) created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) updated_at: Option<String>,
    pub(crate) expires_at: Option<String>,
    pub(crate) last_used_at: Option<String>,
    pub(crate) limits: LimitsView,
    pub(crate) models: Option<Vec<String>>,
    pub(crate) deny_models: Option<Vec<String>>,
    pub(crate) allowed_cidrs: Option<Vec<String>>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) rotation_interval: Option<String>,
    /// The key's own guardrails (added to its group's and org's).
    pub(crate) guardrails: Option<Vec<String>>,
    /// Every guardrail that applies to the key: org ∪ group ∪ key.
    pub(crate) guardrails_in_force: Vec<String>,
    /// The key must present a client certificate (its own rule, its group's or its org's).
    pub(crate) require_client_cert: bool,
    pub(crate) client_cert_sha256: Option<Vec<String>>,
    /// The key's own `allowed_providers`, `required_params`, `fixed_params`, `allowed_origins`.
    #[serde(flatten)]
    pub(crate) request_policy: ReqPolicyView,
    /// Org, group and key resolved: what the key's requests obey.
    pub(crate) request_policy_in_force: ReqPolicyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grace_until: Option<Option<String>>,
    pub(crate) spend_usd: f64,
    pub(crate) spend_all_time_usd: f64,
    pub(crate) budget_usd: Option<f64>,
    /// The key's own `token_budget`, and the tokens (input + output) it used this token
    /// budget period (as last flushed: at most a second behind).
    pub(crate) token_budget: Option<u64>,
    pub(crate) tokens_used: u64,
    /// Per `model_limits` pattern with a budget: what its pool used this period.
    pub(crate) model_usage: BTreeMap<String, PatternUsage>,
}

/// What a `model_limits` pattern's pool used this period (`PatternUsage`): USD against
/// its `budget_usd`, tokens against its `token_budget` (0 for the one it lacks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct PatternUsage {
    pub(crate) spend_usd: f64,
    pub(crate) tokens_used: u64,
}

/// A new or regenerated key's answer: its view and `key`, the raw secret, shown only here
/// (`KeyWithSecret`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyWithSecret {
    #[serde(flatten)]
    pub(crate) view: KeyView,
    pub(crate) key: String,
}

/// Keys of a group by status, file and API keys; `config`: how many come from the file
/// (`KeyCounts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct KeyCounts {
    pub(crate) active: u64,
    pub(crate) disabled: u64,
    pub(crate) expired: u64,
    pub(crate) revoked: u64,
    pub(crate) total: u64,
    pub(crate) config: u64,
}

impl KeyCounts {
    /// From `[active, disabled, expired, revoked, of which from the file]`.
    pub(crate) fn of(c: Option<&[u64; 5]>) -> KeyCounts {
        let [active, disabled, expired, revoked, config] = c.copied().unwrap_or_default();
        KeyCounts {
            active,
            disabled,
            expired,
            revoked,
            total: active + disabled + expired + revoked,
            config,
        }
    }
}

/// Requests of a group the gateway refused since the process started (`Refusals`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Refusals {
    pub(crate) total: u64,
    pub(crate) by_code: BTreeMap<String, u64>,
}

/// A group: its definition from the file, runtime state, key counts, spend (`Group`).
/// `refusals` is filled in by the admin listener, which holds the metrics.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupView {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) org: String,
    pub(crate) state: &'static str,
    pub(crate) file_state: &'static str,
    /// `api` (an override set through the API) or `config`.
    pub(crate) state_source: &'static str,
    pub(crate) limits: LimitsView,
    pub(crate) models: Option<Vec<String>>,
    pub(crate) deny_models: Vec<String>,
    pub(crate) default_model: Option<String>,
    pub(crate) routing: String,
    pub(crate) retries: u32,
    pub(crate) timeout: String,
    pub(crate) key_ttl: Option<String>,
    pub(crate) idle_disable: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) log_level: String,
    /// Invoices: the markup on cost, in per cent (0 when the file sets none).
    pub(crate) markup_pct: f64,
    /// Invoices: whom the group is billed to (`null`: its own invoice, named by its id).
    pub(crate) invoice_to: Option<String>,
    pub(crate) keys: KeyCounts,
    pub(crate) budget_usd: Option<f64>,
    pub(crate) budget_period: &'static str,
    pub(crate) spend_usd: f64,
    pub(crate) spend_all_time_usd: f64,
    /// The group's `token_budget` and the tokens its keys used this token budget period.
    pub(crate) token_budget: Option<u64>,
    pub(crate) tokens_used: u64,
    /// Per `model_limits` pattern with a budget: what its pool used this period.
    pub(crate) model_usage: BTreeMap<String, PatternUsage>,
    pub(crate) refusals: Refusals,
    /// The guardrails every key of the group runs (org's, then the group's own).
    pub(crate) guardrails: Vec<String>,
    /// Guardrail verdicts since the process started (filled in by the admin listener).
    pub(crate) guardrail_trips: GuardrailTrips,
    /// Requests must present a client certificate (the group's or its org's rule).
    pub(crate) require_client_cert: bool,
    /// The `[[presets]]` id the group named, and the fields it took from it.
    pub(crate) preset: Option<String>,
    pub(crate) preset_fields: Vec<String>,
    /// The group's own request policy fields.
    #[serde(flatten)]
    pub(crate) request_policy: ReqPolicyView,
    /// Org and group resolved: what the group's keys obey (a key may narrow it).
    pub(crate) request_policy_in_force: ReqPolicyView,
}

/// A group's guardrail verdicts since the process started, from
/// `tollgate_guardrail_actions_total{group,guardrail,action}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct GuardrailTrips {
    pub(crate) total: u64,
    /// guardrail id → action → count.
    pub(crate) by_guardrail: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The period a key's "spend this period" covers: its own budget's, else its group's, else
/// its org's, else the calendar month.
pub(crate) fn key_period(own: &Limits, group: Option<&GroupEntry>) -> BudgetPeriod {
    own.budget
        .or_else(|| group.and_then(|g| g.limits.budget))
        .or_else(|| group.and_then(|g| g.org.limits.budget))
        .map_or(BudgetPeriod::Monthly, |b| b.period)
}

pub(crate) fn status_name(
    state: KeyState,
    expires_at: Option<SystemTime>,
    now: SystemTime,
) -> &'static str {
    match state {
        KeyState::Revoked => "revoked",
        KeyState::Disabled => "disabled",
        KeyState::Active if expires_at.is_some_and(|t| t <= now) => "expired",
        KeyState::Active => "active",
    }
}

pub(crate) fn record_state(s: KeyStatus) -> KeyState {
    match s {
        KeyStatus::Active => KeyState::Active,
        KeyStatus::Disabled => KeyState::Disabled,
        KeyStatus::Revoked => KeyState::Revoked,
    }
}

fn duration_text(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Org ∪ group guardrails, then the key's own that the policy knows, each once.
fn in_force(
    group: Option<&crate::policy::snapshot::GuardSet>,
    known: impl Fn(&str) -> bool,
    own: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = group
        .map(|g| g.ids().map(str::to_string).collect())
        .unwrap_or_default();
    for id in own {
        if known(id) && !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

/// A file key's own guardrails: those in force that its group does not bring.
fn own_file_guardrails(k: &KeyEntry) -> Option<Vec<String>> {
    let mine = k.guards()?;
    let group: Vec<&str> = k
        .group
        .guards
        .as_ref()
        .map_or(vec![], |g| g.ids().collect());
    let own: Vec<String> = mine
        .ids()
        .filter(|id| !group.contains(id))
        .map(str::to_string)
        .collect();
    (!own.is_empty()).then_some(own)
}

impl Writer {
    fn spend(&self, layer: Layer, id: &str, period: BudgetPeriod) -> (u64, u64) {
        let Some(ledger) = &self.ledger else {
            return (0, 0);
        };
        let t = ledger.totals(layer, id);
        (t.current(period, self.now_ms()), t.all_time)
    }

    /// Tokens counted against a layer's `token_budget` this period, as last flushed.
    fn tokens_used(&self, layer: Layer, id: &str, period: Option<BudgetPeriod>) -> u64 {
        let (Some(ledger), Some(period)) = (&self.ledger, period) else {
            return 0;
        };
        let scope = crate::admission::ScopeKey {
            layer,
            id: crate::policy::config::model_limits::tokens_scope(id),
        };
        let current = crate::admission::budget::period_id(period, self.now_ms());
        ledger.stored_spend(&scope, period, current)
    }

    /// What each budgeted pattern of a layer's `model_limits` used this period, as last
    /// flushed (one store read per budget; none for a layer without patterns).
    fn model_usage(&self, layer: Layer, id: &str, l: &Limits) -> BTreeMap<String, PatternUsage> {
        let mut out = BTreeMap::new();
        let Some(ledger) = &self.ledger else {
            return out;
        };
        let now = self.now_ms();
        for e in l.model_limits() {
            let scope = crate::admission::ScopeKey {
                layer,
                id: crate::policy::config::model_limits::pattern_scope(id, &e.pattern),
            };
            let mut u = PatternUsage::default();
            if let Some(b) = e.limits.budget {
                let current = crate::admission::budget::period_id(b.period, now);
                u.spend_usd = usd(ledger.stored_spend(&scope, b.period, current));
            }
            if let Some(t) = e.limits.token_budget() {
                let current = crate::admission::budget::period_id(t.period, now);
                let tokens = crate::admission::ScopeKey {
                    layer,
                    id: crate::policy::config::model_limits::tokens_scope(&scope.id),
                };
                u.tokens_used = ledger.stored_spend(&tokens, t.period, current);
            }
            if e.limits.budget.is_some() || e.limits.token_budget().is_some() {
                out.insert(e.pattern.to_string(), u);
            }
        }
        out
    }

    /// An API key as the admin API shows it (never its secret).
    pub(crate) fn api_key_view(&self, r: &KeyRecord, snapshot: &Snapshot) -> KeyView {
        let group = snapshot.groups.get(r.group.as_str());
        let limits = crate::policy::config::fields::limits(r.spec.raw_limits()).unwrap_or_default();
        let expires = r
            .spec
            .expires_at
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339_weak(e).ok());
        let (spend, all_time) =
            self.spend(Layer::Key, &r.id, key_period(&limits, group.map(|g| &**g)));
        let last_used = super::spec::digest_hex(&r.sha256)
            .ok()
            .and_then(|d| self.directory.get(&d))
            .map_or(0, |k| k.last_used.get());
        let now_s = self.now_s();
        KeyView {
            id: r.id.clone(),
            name: r.spec.name.clone(),
            prefix: Some(r.prefix.clone()),
            group: r.group.clone(),
            org: group.map(|g| g.org.id.to_string()),
            owner: r.spec.owner.clone(),
            source: "api",
            status: status_name(record_state(r.status), expires, self.now()),
            created_at: Some(rfc3339(r.created_at)),
            created_by: r.created_by.clone(),
            updated_at: Some(rfc3339(r.updated_at)),
            expires_at: expires.map(|t| rfc3339(secs(t))),
            last_used_at: (last_used > 0).then(|| rfc3339(last_used)),
            limits: limits_view(&limits),
            models: r.spec.models.clone(),
            deny_models: r.spec.deny_models.clone(),
            allowed_cidrs: r.spec.allowed_cidrs.clone(),
            tags: r.spec.tags.clone().unwrap_or_default(),
            metadata: r.spec.metadata.clone(),
            rotation_interval: r.spec.rotation_interval.clone(),
            guardrails: r.spec.guardrails.clone(),
            guardrails_in_force: in_force(
                group.and_then(|g| g.guards.as_deref()),
                |id| snapshot.guardrails.contains_key(id),
                r.spec.guardrails.as_deref().unwrap_or_default(),
            ),
            require_client_cert: r.spec.require_client_cert == Some(true)
                || group.is_some_and(|g| g.require_client_cert),
            client_cert_sha256: r.spec.client_cert_sha256.clone(),
            request_policy: ReqPolicyView::own(
                super::reqpolicy::check_spec_req(&r.spec)
                    .ok()
                    .flatten()
                    .as_deref(),
            ),
            request_policy_in_force: match (
                super::spec::digest_hex(&r.sha256)
                    .ok()
                    .and_then(|d| self.directory.get(&d))
                    .and_then(|k| k.entry(snapshot)),
                group,
            ) {
                (Some(k), _) => ReqPolicyView::in_force(k.req_policy()),
                (None, Some(g)) => ReqPolicyView::in_force(g.req.as_deref()),
                (None, None) => ReqPolicyView::default(),
            },
            grace_until: Some(
                r.previous
                    .as_ref()
                    .filter(|p| p.until > now_s)
                    .map(|p| rfc3339(p.until)),
            ),
            spend_usd: usd(spend),
            spend_all_time_usd: usd(all_time),
            budget_usd: limits.budget.map(|b| usd(b.limit_micros)),
            token_budget: limits.token_budget().map(|t| t.limit),
            tokens_used: self.tokens_used(Layer::Key, &r.id, token_period(&limits)),
            model_usage: self.model_usage(Layer::Key, &r.id, &limits),
        }
    }

    /// A key from the policy file (read-only here).
    pub(crate) fn file_key_view(&self, k: &KeyEntry) -> KeyView {
        let (spend, all_time) =
            self.spend(Layer::Key, &k.id, key_period(&k.limits, Some(&k.group)));
        let last_used = k.last_used.get();
        let w = k.written.as_deref();
        KeyView {
            id: k.id.to_string(),
            name: k.name.as_deref().map(str::to_string),
            prefix: None,
            group: k.group.id.to_string(),
            org: Some(k.group.org.id.to_string()),
            owner: None,
            source: "config",
            status: status_name(k.state, k.expires_at, self.now()),
            created_at: None,
            created_by: "config".into(),
            updated_at: None,
            expires_at: k.expires_at.map(|t| rfc3339(secs(t))),
            last_used_at: (last_used > 0).then(|| rfc3339(last_used)),
            limits: limits_view(&k.limits),
            models: w.and_then(|w| w.models.clone()),
            deny_models: w.map(|w| w.deny_models.clone()).filter(|d| !d.is_empty()),
            allowed_cidrs: k
                .allowed_cidrs()
                .map(|l| l.iter().map(|n| n.to_string()).collect()),
            tags: w
                .map(|w| w.tags.iter().cloned().collect())
                .unwrap_or_default(),
            metadata: None,
            rotation_interval: None,
            guardrails: own_file_guardrails(k),
            guardrails_in_force: k
                .guards()
                .map(|g| g.ids().map(str::to_string).collect())
                .unwrap_or_default(),
            require_client_cert: k.group.require_client_cert
                || k.client_cert().is_some_and(|c| c.required),
            client_cert_sha256: k
                .client_cert()
                .filter(|c| !c.sha256.is_empty())
                .map(|c| c.sha256_hex()),
            request_policy: ReqPolicyView::own(k.own_req()),
            request_policy_in_force: ReqPolicyView::in_force(k.req_policy()),
            grace_until: None,
            spend_usd: usd(spend),
            spend_all_time_usd: usd(all_time),
            budget_usd: k.limits.budget.map(|b| usd(b.limit_micros)),
            token_budget: k.limits.token_budget().map(|t| t.limit),
            tokens_used: self.tokens_used(Layer::Key, &k.id, token_period(&k.limits)),
            model_usage: self.model_usage(Layer::Key, &k.id, &k.limits),
        }
    }

    pub(crate) fn group_view(&self, g: &GroupEntry, keys: KeyCounts) -> GroupView {
        let state = self.directory.group_state(g);
        let period = g.limits.budget.map_or(BudgetPeriod::Monthly, |b| b.period);
        let (spend, all_time) = self.spend(Layer::Group, &g.id, period);
        let o = self
            .directory
            .group_override(&g.id)
            .filter(|o| o.file_state == g.state);
        GroupView {
            id: g.id.to_string(),
            name: g.name.clone(),
            org: g.org.id.to_string(),
            state: state.as_str(),
            file_state: g.state.as_str(),
            state_source: if o.is_some() { "api" } else { "config" },
            limits: limits_view(&g.limits),
            models: g.models.allow_src.clone(),
            deny_models: g.models.deny_src.clone(),
            default_model: g.default_model.as_deref().map(str::to_string),
            routing: format!("{:?}", g.routing).to_lowercase(),
            retries: g.retries,
            timeout: duration_text(g.timeout),
            key_ttl: g.key_ttl.map(duration_text),
            idle_disable: g.idle_disable.map(duration_text),
            tags: g.tags.iter().cloned().collect(),
            log_level: format!("{:?}", g.log_level).to_lowercase(),
            markup_pct: pct(g.markup_millipct),
            invoice_to: g.invoice_to.as_deref().map(str::to_string),
            keys,
            budget_usd: g.limits.budget.map(|b| usd(b.limit_micros)),
            budget_period: period_name(period),
            spend_usd: usd(spend),
            spend_all_time_usd: usd(all_time),
            token_budget: g.limits.token_budget().map(|t| t.limit),
            tokens_used: self.tokens_used(Layer::Group, &g.id, token_period(&g.limits)),
            model_usage: self.model_usage(Layer::Group, &g.id, &g.limits),
            refusals: Refusals::default(),
            guardrails: g
                .guards
                .as_ref()
                .map(|s| s.ids().map(str::to_string).collect())
                .unwrap_or_default(),
            guardrail_trips: GuardrailTrips::default(),
            require_client_cert: g.require_client_cert,
            preset: g.preset.as_ref().map(|p| p.id.to_string()),
            preset_fields: g
                .preset
                .as_ref()
                .map(|p| p.fields.clone())
                .unwrap_or_default(),
            request_policy: ReqPolicyView::own(g.def.req.as_deref()),
            request_policy_in_force: ReqPolicyView::in_force(g.req.as_deref()),
        }
    }
}

pub(crate) fn parse_state(s: &str) -> GroupState {
    match s {
        "paused" => GroupState::Paused,
        "quarantined" => GroupState::Quarantined,
        _ => GroupState::Active,
    }
}
