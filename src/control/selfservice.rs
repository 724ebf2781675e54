//! Self-service (docs/admin-api.md "Self-service policy"): what a developer token may mint in a group
//! whose `self_service` allows it. Checked in two steps around the ordinary create checks:
//! [`before`] (enabled, owner forced, ceilings defaulted) and [`after`] (ceilings, expiry,
//! the per-owner quota).

use super::spec::Checked;
use super::{Actor, ApiError, ApiResult, Writer};
use crate::policy::config::raw::LimitField;
use crate::policy::config::{looser_than, KeyState, SelfService};
use crate::policy::snapshot::GroupEntry;
use crate::storage::KeySpec;

/// Refuses a group without self-service; forces the owner; gives the key each ceiling it
/// does not set itself.
pub(crate) fn before<'g>(
    actor: &Actor,
    g: &'g GroupEntry,
    spec: &mut KeySpec,
) -> ApiResult<&'g SelfService> {
    let ss = g
        .self_service
        .as_ref()
        .filter(|s| s.enabled)
        .ok_or_else(|| ApiError {
            status: 403,
            code: "self_service_disabled",
            message: format!("group {} does not allow self-service keys", g.id),
            param: None,
        })?;
    spec.owner = actor.owner.clone().or_else(|| Some(actor.id.clone()));
    let c = &ss.limits;
    let fill = |mine: &mut Option<LimitField<u64>>, ceiling: Option<u64>| {
        if mine.is_none() {
            *mine = ceiling.map(LimitField::Plain);
        }
    };
    fill(&mut spec.rpm, c.rpm.map(|n| n.get()));
    fill(&mut spec.rph, c.rph.map(|n| n.get()));
    fill(&mut spec.rpd, c.rpd.map(|n| n.get()));
    fill(&mut spec.tpm, c.tpm.map(|n| n.get()));
    fill(&mut spec.tpd, c.tpd.map(|n| n.get()));
    fill(
        &mut spec.max_parallel,
        c.max_parallel.map(|n| u64::from(n.get())),
    );
    fill(
        &mut spec.max_tokens,
        c.max_tokens.map(|n| u64::from(n.get())),
    );
    if let (None, Some(t)) = (spec.token_budget, c.token_budget()) {
        spec.token_budget = Some(LimitField::Plain(t.limit));
        spec.token_budget_period = Some(super::view::period_name(t.period).into());
    }
    if let Some(ceilings) = ss_patterns(c) {
        // Pattern ceilings (and fields of them) the key leaves out become its own.
        let mine = spec.model_limits.get_or_insert_with(Default::default);
        for (pattern, ceiling) in ceilings {
            let m = mine.entry(pattern).or_default();
            m.rpm = m.rpm.or(ceiling.rpm);
            m.rph = m.rph.or(ceiling.rph);
            m.rpd = m.rpd.or(ceiling.rpd);
            m.tpm = m.tpm.or(ceiling.tpm);
            m.tpd = m.tpd.or(ceiling.tpd);
            m.max_parallel = m.max_parallel.or(ceiling.max_parallel);
            m.max_tokens = m.max_tokens.or(ceiling.max_tokens);
            m.budget_usd = m.budget_usd.or(ceiling.budget_usd);
            m.token_budget = m.token_budget.or(ceiling.token_budget);
        }
    }
    if let (None, Some(b)) = (spec.budget_usd, c.budget) {
        spec.budget_usd = Some(LimitField::Plain(b.limit_micros as f64 / 1e6));
        spec.budget_period = Some(super::view::period_name(b.period).into());
    }
    Ok(ss)
}

/// The key's limits against the ceilings, its expiry against `require_expiry` / `max_ttl`,
/// and the owner's live keys against `max_keys_per_owner`.
pub(super) fn after(
    w: &Writer,
    ss: &SelfService,
    actor: &Actor,
    g: &GroupEntry,
    checked: &Checked,
) -> ApiResult<()> {
    if let Some((field, mine, ceiling)) =
        looser_than(&checked.limits, &ss.limits).into_iter().next()
    {
        return Err(ApiError::bad_request(
            field,
            format!(
                "{field} {mine} exceeds the self-service ceiling {ceiling} of group {}",
                g.id
            ),
        ));
    }
    if let Some((field, mine, pfield, ceiling)) =
        crate::policy::config::looser_patterns(&checked.limits, &ss.limits)
            .into_iter()
            .next()
    {
        return Err(ApiError::bad_request(
            "model_limits",
            format!(
                "{field} {mine} exceeds the self-service ceiling {pfield} {ceiling} of group {}",
                g.id
            ),
        ));
    }
    match (checked.expires_at, ss.max_ttl) {
        (None, _) if ss.require_expiry => {
            return Err(ApiError::bad_request(
                "expires_at",
                format!(
                    "group {} requires self-service keys to expire: give expires_at or ttl",
                    g.id
                ),
            ))
        }
        (Some(at), Some(max)) if at > w.now() + max => {
            return Err(ApiError::bad_request(
                "expires_at",
                format!(
                    "expires_at is beyond the group's max_ttl of {}",
                    humantime::format_duration(max)
                ),
            ))
        }
        (None, Some(max)) => {
            return Err(ApiError::bad_request(
                "expires_at",
                format!(
                    "self-service keys of group {} expire within {}: give expires_at or ttl",
                    g.id,
                    humantime::format_duration(max)
                ),
            ))
        }
        _ => {}
    }
    if let Some(max) = ss.max_keys_per_owner {
        let owner = actor.owner.as_deref().unwrap_or(&actor.id);
        let now = w.now();
        let live = w
            .directory
            .keys()
            .iter()
            .filter(|k| k.group == g.id && k.owner.as_deref() == Some(owner))
            .filter(|k| k.state != KeyState::Revoked && k.expires_at.is_none_or(|t| t > now))
            .count() as u64;
        if live >= max {
            return Err(ApiError {
                status: 403,
                code: "key_quota_exceeded",
                message: format!("owner {owner} already has {live} live keys in group {} (max_keys_per_owner {max})", g.id),
                param: None,
            });
        }
    }
    Ok(())
}

/// A group's self-service pattern ceilings as a key's `model_limits` (enforced values).
fn ss_patterns(
    c: &crate::policy::config::Limits,
) -> Option<std::collections::BTreeMap<String, crate::policy::config::raw::RawPatternLimits>> {
    let out: std::collections::BTreeMap<_, _> = c
        .model_limits()
        .iter()
        .map(|e| {
            let l = e.limits.enforced();
            let n = |v: Option<std::num::NonZeroU64>| v.map(|n| LimitField::Plain(n.get()));
            let n32 =
                |v: Option<std::num::NonZeroU32>| v.map(|n| LimitField::Plain(u64::from(n.get())));
            let raw = crate::policy::config::raw::RawPatternLimits {
                rpm: n(l.rpm),
                rph: n(l.rph),
                rpd: n(l.rpd),
                tpm: n(l.tpm),
                tpd: n(l.tpd),
                max_parallel: n32(l.max_parallel),
                max_tokens: n32(l.max_tokens),
                budget_usd: l
                    .budget
                    .map(|b| LimitField::Plain(b.limit_micros as f64 / 1e6)),
                token_budget: e
                    .limits
                    .enforced_token_budget()
                    .map(|t| LimitField::Plain(t.limit)),
            };
            (e.pattern.to_string(), raw)
        })
        .collect();
    (!out.is_empty()).then_some(out)
}
