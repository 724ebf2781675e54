//! Step 2: key state, group state, client IP and model gating, against a key entry whose
//! org -> group -> key inheritance was resolved when the snapshot was built.

use crate::admission::ShadowHit;
use crate::error::GatewayError;
use crate::llm::body::Serves;
use crate::policy::config::{GroupState, KeyState, Shadow};
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// Key and group state, before anything else is looked at. `group_state` is the group's
/// state now (the file's, or an override made through the admin API).
pub fn check_state(
    key: &KeyEntry,
    group_state: GroupState,
    now: SystemTime,
) -> Result<(), GatewayError> {
    match key.state {
        KeyState::Revoked => return Err(GatewayError::KeyRevoked(key.id.to_string())),
        KeyState::Disabled => return Err(GatewayError::KeyDisabled(key.id.to_string())),
        KeyState::Active => {}
    }
    if key.expires_at.is_some_and(|t| t <= now) {
        return Err(GatewayError::KeyExpired(key.id.to_string()));
    }
    if group_state == GroupState::Paused {
        return Err(GatewayError::GroupPaused(format!(
            "group {} is paused",
            key.group.id
        )));
    }
    Ok(())
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the first
/// untrusted address of `X-Forwarded-For` read right to left.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    xff: Option<&[u8]>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(xff) = xff.and_then(|x| std::str::from_utf8(x).ok()) else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => last = ip,
            Ok(ip) => return Some(ip),
            // A malformed entry ends what can be believed.
            Err(_) => return Some(last),
        }
    }
    Some(last)
}

/// `allowed_cidrs` of key and group (lists intersect: the address must be in both).
pub fn check_ip(key: &KeyEntry, ip: Option<IpAddr>) -> Result<(), GatewayError> {
    let layers = [
        (key.allowed_cidrs(), "key", &key.id),
        (key.group.allowed_cidrs.as_deref(), "group", &key.group.id),
    ];
    for (list, kind, id) in layers {
        let Some(list) = list else { continue };
        let ok = ip.is_some_and(|ip| list.iter().any(|n| n.contains(&ip)));
        if !ok {
            return Err(GatewayError::IpNotAllowed {
                ip: ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                scope: format!("{kind} {id}"),
            });
        }
    }
    Ok(())
}

/// Resolves the model a request asks for: default model, alias, catalogue, allow/deny,
/// quarantine lists, and whether any target can serve the route (chat and messages are
/// translated, so either API serves them).
pub fn resolve_model(
    snapshot: &Snapshot,
    key: &KeyEntry,
    requested: Option<&str>,
    serves: Serves,
    ip: Option<IpAddr>,
    group_state: GroupState,
) -> Result<Arc<ModelEntry>, GatewayError> {
    let group = &key.group;
    let name: &str = match requested {
        Some(m) if !m.is_empty() => m,
        _ => group.default_model.as_deref().ok_or_else(|| {
            GatewayError::InvalidRequest(
                "`model` is required (the group has no default_model)".into(),
            )
        })?,
    };
    let name = group.aliases.get(name).map_or(name, |a| a);
    let model = snapshot
        .model(name)
        .ok_or_else(|| GatewayError::ModelNotFound(format!("model {name} does not exist")))?;
    if !key.allowed[model.index] {
        let scope = if key.own_models && group.allowed[model.index] {
            format!("key {}", key.id)
        } else {
            format!("group {}", group.id)
        };
        return Err(GatewayError::ModelNotAllowed {
            model: name.to_string(),
            scope,
        });
    }
    if group_state == GroupState::Quarantined {
        let ip_ok = ip.is_some_and(|ip| group.quarantine_cidrs.iter().any(|n| n.contains(&ip)));
        let model_ok = group
            .quarantine_models
            .as_ref()
            .is_some_and(|g| g.is_match(name));
        if !(ip_ok && model_ok) {
            return Err(GatewayError::GroupPaused(format!(
                "group {} is quarantined; this caller or model is outside its quarantine lists",
                group.id
            )));
        }
    }
    if !model.targets.iter().any(|t| serves.accepts(t.provider.api)) {
        return Err(GatewayError::ModelNotFound(format!(
            "model {name} has no OpenAI-style target (this route is not translated)"
        )));
    }
    Ok(model.clone())
}

/// Shadow `max_tokens` caps of key, group and org that the request goes over.
pub(crate) fn shadow_max_tokens(key: &KeyEntry, requested: Option<u64>, out: &mut Vec<ShadowHit>) {
    let Some(r) = requested else { return };
    let g = &key.group;
    let layers = [
        (&key.limits, "key", &key.id),
        (&g.limits, "group", &g.id),
        (&g.org.limits, "org", &g.org.id),
    ];
    for (l, kind, id) in layers {
        if let (Some(cap), true) = (l.max_tokens, l.shadow.has(Shadow::MAX_TOKENS)) {
            if r > u64::from(cap.get()) {
                out.push(ShadowHit {
                    scope: format!("{kind} {id} max_tokens {cap}"),
                    code: "max_tokens_exceeded",
                });
            }
        }
    }
}

/// The `max_tokens` cap: the tightest of key, group and org.
pub fn check_max_tokens(key: &KeyEntry, requested: Option<u64>) -> Result<(), GatewayError> {
    match (requested, key.max_tokens) {
        (Some(r), Some(cap)) if r > u64::from(cap.limit) => Err(GatewayError::MaxTokensExceeded {
            requested: r,
            scope: key.scope(cap.layer),
            limit: u64::from(cap.limit),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn xff_is_read_right_to_left_through_trusted_hops() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.1".parse().unwrap());
        let ip = client_ip(peer, Some(b"6.6.6.6, 1.2.3.4, 10.9.9.9"), &trusted);
        assert_eq!(ip, Some("1.2.3.4".parse().unwrap()));
        // An untrusted peer's header is ignored: clients cannot spoof their address.
        let ip = client_ip(Some("5.5.5.5".parse().unwrap()), Some(b"1.1.1.1"), &trusted);
        assert_eq!(ip, Some("5.5.5.5".parse().unwrap()));
        // Garbage stops the walk at the last trusted hop.
        let ip = client_ip(peer, Some(b"1.1.1.1, junk"), &trusted);
        assert_eq!(ip, peer);
    }
}
