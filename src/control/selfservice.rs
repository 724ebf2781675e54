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
