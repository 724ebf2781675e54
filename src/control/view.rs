//! The admin API's JSON views of keys and groups.

use super::ControlPlane;
use crate::admission::Layer;
use crate::policy::config::{BudgetPeriod, GroupState, KeyState, Limits, Shadow};
use crate::policy::snapshot::{GroupEntry, KeyEntry, Snapshot};
use crate::storage::{KeyRecord, KeyStatus};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::clock::rfc3339;

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn usd(micros: u64) -> Value {
    json!(micros as f64 / 1e6)
}

pub fn period_name(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Daily => "daily",
        BudgetPeriod::Weekly => "weekly",
        BudgetPeriod::Monthly => "monthly",
        BudgetPeriod::Never => "never",
    }
}

/// A value as written: plain, or `{value, mode: "shadow"}` for a shadow limit.
fn with_mode(v: Value, shadow: bool) -> Value {
    if shadow {
        json!({"value": v, "mode": "shadow"})
    } else {
        v
    }
}

pub fn limits_view(l: &Limits) -> Value {
    let mut m = serde_json::Map::new();
    let s = l.shadow;
    let mut put = |k: &str, v: Option<u64>, bit: u8| {
        if let Some(v) = v {
            m.insert(k.into(), with_mode(json!(v), s.has(bit)));
        }
    };
    put("rpm", l.rpm.map(|n| n.get()), Shadow::RPM);
    put("rph", l.rph.map(|n| n.get()), Shadow::RPH);
    put("rpd", l.rpd.map(|n| n.get()), Shadow::RPD);
    put("tpm", l.tpm.map(|n| n.get()), Shadow::TPM);
    put("tpd", l.tpd.map(|n| n.get()), Shadow::TPD);
    put(
        "max_parallel",
        l.max_parallel.map(|n| u64::from(n.get())),
        Shadow::MAX_PARALLEL,
    );
    put(
        "max_tokens",
        l.max_tokens.map(|n| u64::from(n.get())),
        Shadow::MAX_TOKENS,
    );
    if let Some(b) = l.budget {
        m.insert(
            "budget_usd".into(),
            with_mode(usd(b.limit_micros), s.has(Shadow::BUDGET)),
        );
        m.insert("budget_period".into(), json!(period_name(b.period)));
        if let Some(s) = b.soft_micros {
            m.insert("soft_budget_usd".into(), usd(s));
        }
    }
    Value::Object(m)
}

/// The period a key's "spend this period" covers: its own budget's, else its group's, else
/// its org's, else the calendar month.
fn key_period(own: &Limits, group: Option<&GroupEntry>) -> BudgetPeriod {
    own.budget
        .or_else(|| group.and_then(|g| g.limits.budget))
        .or_else(|| group.and_then(|g| g.org.limits.budget))
        .map_or(BudgetPeriod::Monthly, |b| b.period)
}

pub fn status_name(
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

pub fn record_state(s: KeyStatus) -> KeyState {
    match s {
        KeyStatus::Active => KeyState::Active,
        KeyStatus::Disabled => KeyState::Disabled,
        KeyStatus::Revoked => KeyState::Revoked,
    }
}

impl ControlPlane {
    fn spend(&self, layer: Layer, id: &str, period: BudgetPeriod) -> (u64, u64) {
        let Some(ledger) = &self.ledger else {
            return (0, 0);
        };
        let t = ledger.totals(layer, id);
        (t.current(period, super::now_ms()), t.all_time)
    }

    /// An API key as the admin API shows it (never its secret).
    pub fn api_key_view(&self, r: &KeyRecord, snapshot: &Snapshot) -> Value {
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
        json!({
            "id": r.id,
            "name": r.spec.name,
            "prefix": r.prefix,
            "group": r.group,
            "org": group.map(|g| &*g.org.id),
            "owner": r.spec.owner,
            "source": "api",
            "status": status_name(record_state(r.status), expires, SystemTime::now()),
            "created_at": rfc3339(r.created_at),
            "created_by": r.created_by,
            "updated_at": rfc3339(r.updated_at),
            "expires_at": expires.map(|t| rfc3339(secs(t))),
            "last_used_at": (last_used > 0).then(|| rfc3339(last_used)),
            "limits": limits_view(&limits),
            "models": r.spec.models,
            "deny_models": r.spec.deny_models,
            "allowed_cidrs": r.spec.allowed_cidrs,
            "tags": r.spec.tags.clone().unwrap_or_default(),
            "metadata": r.spec.metadata,
            "rotation_interval": r.spec.rotation_interval,
            "grace_until": r.previous.as_ref().filter(|p| p.until > super::now_s()).map(|p| rfc3339(p.until)),
            "spend_usd": usd(spend),
            "spend_all_time_usd": usd(all_time),
            "budget_usd": limits.budget.map(|b| usd(b.limit_micros)),
        })
    }

    /// A key from the policy file (read-only here).
    pub fn file_key_view(&self, k: &KeyEntry) -> Value {
        let (spend, all_time) =
            self.spend(Layer::Key, &k.id, key_period(&k.limits, Some(&k.group)));
        let last_used = k.last_used.get();
        let w = k.written.as_deref();
        json!({
            "id": &*k.id,
            "name": k.name,
            "prefix": null,
            "group": &*k.group.id,
            "org": &*k.group.org.id,
            "owner": null,
            "source": "config",
            "status": status_name(k.state, k.expires_at, SystemTime::now()),
            "created_at": null,
            "created_by": "config",
            "expires_at": k.expires_at.map(|t| rfc3339(secs(t))),
            "last_used_at": (last_used > 0).then(|| rfc3339(last_used)),
            "limits": limits_view(&k.limits),
            "models": w.and_then(|w| w.models.as_ref()),
            "deny_models": w.map(|w| &w.deny_models).filter(|d| !d.is_empty()),
            "allowed_cidrs": k.allowed_cidrs.as_ref().map(|l| l.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
            "tags": w.map(|w| w.tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).unwrap_or_default(),
            "metadata": null,
            "rotation_interval": null,
            "spend_usd": usd(spend),
            "spend_all_time_usd": usd(all_time),
            "budget_usd": k.limits.budget.map(|b| usd(b.limit_micros)),
        })
    }

    pub fn group_view(&self, g: &GroupEntry, counts: &Value) -> Value {
        let state = self.directory.group_state(g);
        let period = g.limits.budget.map_or(BudgetPeriod::Monthly, |b| b.period);
        let (spend, all_time) = self.spend(Layer::Group, &g.id, period);
        let o = self
            .directory
            .group_override(&g.id)
            .filter(|o| o.file_state == g.state);
        json!({
            "id": &*g.id,
            "name": g.name,
            "org": &*g.org.id,
            "state": state.as_str(),
            "file_state": g.state.as_str(),
            "state_source": if o.is_some() { "api" } else { "config" },
            "limits": limits_view(&g.limits),
            "models": g.models.allow_src,
            "deny_models": g.models.deny_src,
            "default_model": g.default_model.as_deref(),
            "routing": format!("{:?}", g.routing).to_lowercase(),
            "retries": g.retries,
            "timeout": humantime::format_duration(g.timeout).to_string(),
            "key_ttl": g.key_ttl.map(|d| humantime::format_duration(d).to_string()),
            "idle_disable": g.idle_disable.map(|d| humantime::format_duration(d).to_string()),
            "tags": g.tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "log_level": format!("{:?}", g.log_level).to_lowercase(),
            "keys": counts,
            "budget_usd": g.limits.budget.map(|b| usd(b.limit_micros)),
            "budget_period": period_name(period),
            "spend_usd": usd(spend),
            "spend_all_time_usd": usd(all_time),
        })
    }
}

pub fn parse_state(s: &str) -> GroupState {
    match s {
        "paused" => GroupState::Paused,
        "quarantined" => GroupState::Quarantined,
        _ => GroupState::Active,
    }
}
