//! Admin API input → checked key fields, with the policy file's rules (`config::fields`,
//! `config::looser_than`), and stored records → the directory's form.

use super::{ApiError, ApiResult};
use crate::policy::config::mtls::{self, CertRule};
use crate::policy::config::{fields, looser_patterns, looser_than, KeyState, Limits, ModelFilter};
use crate::policy::snapshot::{Digest, GroupEntry};
use crate::proxy::directory::{ApiKey, ApiKeyParts};
use crate::proxy::last_seen::LastUsed;
use crate::storage::{KeyRecord, KeySpec, KeyStatus};
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `metadata` may hold at most this much JSON.
pub(crate) const METADATA_MAX: usize = 4096;
const TEXT_MAX: usize = 256;
const TAGS_MAX: usize = 64;

/// A JSON object body, or 400.
pub(crate) fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(
            "",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// A limit: a whole number, or the shadow form.
const LIMIT: &str =
    "expected a whole number ≥ 0, or {\"value\": n, \"mode\": \"shadow\" or \"enforce\"}, or null";

/// What each typed field of the admin API's bodies takes, in the user's words (serde's own
/// messages name Rust types: "data did not match any variant of untagged enum LimitField").
pub(crate) const EXPECTED: &[(&str, &str)] = &[
    ("rpm", LIMIT),
    ("rph", LIMIT),
    ("rpd", LIMIT),
    ("tpm", LIMIT),
    ("tpd", LIMIT),
    ("max_parallel", LIMIT),
    ("max_tokens", LIMIT),
    (
        "budget_usd",
        "expected an amount in USD ≥ 0, or {\"value\": usd, \"mode\": \"shadow\" or \"enforce\"}, or null",
    ),
    ("soft_budget_usd", "expected an amount in USD ≥ 0, or null"),
    ("token_budget", LIMIT),
    (
        "token_budget_period",
        "expected \"daily\", \"weekly\", \"monthly\" or \"never\", or null",
    ),
    (
        "model_limits",
        "expected an object of model globs to limit fields, e.g. {\"gpt-4o*\": {\"rpm\": 100}}, or null",
    ),
    (
        "budget_period",
        "expected \"daily\", \"weekly\", \"monthly\" or \"never\", or null",
    ),
    ("name", "expected a string"),
    ("name_prefix", "expected a string"),
    ("owner", "expected a string, or null"),
    ("group", "expected a group id (a string)"),
    (
        "expires_at",
        "expected an RFC 3339 UTC time such as \"2027-01-01T00:00:00Z\", or null",
    ),
    ("ttl", "expected a duration such as \"30d\" or \"12h\", or null"),
    (
        "grace_period",
        "expected a duration such as \"1h\" or \"0s\", or null",
    ),
    (
        "rotation_interval",
        "expected a duration such as \"30d\", or null",
    ),
    ("models", "expected a list of model names or globs, or null"),
    ("deny_models", "expected a list of model names or globs, or null"),
    ("allowed_cidrs", "expected a list of CIDRs such as \"10.0.0.0/8\", or null"),
    ("groups", "expected a list of group ids, or null"),
    ("tags", "expected an object of string values, or null"),
    ("metadata", "expected a JSON object, or null"),
    ("count", "expected a whole number from 1 to 1000"),
    ("guardrails", "expected a list of guardrail ids, or null"),
    ("require_client_cert", "expected true or false, or null"),
    (
        "client_cert_sha256",
        "expected a list of SHA-256 fingerprints (64 hex digits), or null",
    ),
    ("allowed_providers", "expected a list of provider ids or globs, or null"),
    ("required_params", "expected a list of top-level request field names, or null"),
    ("fixed_params", "expected an object of request fields and their values, or null"),
    ("allowed_origins", "expected a list of origins such as \"https://app.example.com\", or null"),
    ("role", "expected \"admin\", \"group_admin\", \"viewer\" or \"developer\""),
];

/// `field: expected …` for a field whose value did not deserialize.
pub(crate) fn expected(field: &str) -> Option<String> {
    EXPECTED
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(f, what)| format!("{f}: {what}"))
}

/// Deserializes `v` naming the offending field on error, and saying what it takes.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // "unknown field `x`, expected one of …": the field is in the message.
        if path == "." {
            let param = inner
                .split('`')
                .nth(1)
                .map_or_else(String::new, str::to_string);
            return ApiError::bad_request(param, inner);
        }
        let param = path.split('.').next().unwrap_or(&path).to_string();
        // An unknown field keeps serde's list of the known ones.
        let message = match expected(&param) {
            Some(m) if !inner.starts_with("unknown field") => m,
            _ => inner,
        };
        ApiError::bad_request(param, message)
    })
}

/// Takes `field` out of `m` as a string, if present.
pub(crate) fn take_str(m: &mut Map<String, Value>, field: &str) -> ApiResult<Option<String>> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            field,
            expected(field).unwrap_or_else(|| format!("{field} must be a string")),
        )),
    }
}

/// Parses a humantime duration field.
pub(crate) fn duration(field: &str, s: &str) -> ApiResult<Duration> {
    humantime::parse_duration(s).map_err(|e| {
        ApiError::bad_request(
            field,
            format!("{field}: expected a duration such as \"30d\" or \"12h\"; {s:?}: {e}"),
        )
    })
}

/// The fields of a spec checked on their own (no group).
pub(crate) struct Checked {
    pub(crate) limits: Limits,
    pub(crate) models: Option<Box<ModelFilter>>,
    pub(crate) allowed_cidrs: Option<Vec<IpNet>>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) rotation_s: Option<u64>,
    pub(crate) guardrails: Option<Box<[Arc<str>]>>,
    pub(crate) client_cert: Option<Box<CertRule>>,
    pub(crate) req: Option<Arc<crate::policy::config::reqpolicy::ReqPolicy>>,
}

fn field_err((field, message): (String, String)) -> ApiError {
    ApiError::bad_request(field, message)
}

pub(crate) fn check_spec(spec: &KeySpec) -> ApiResult<Checked> {
    let KeySpec {
        name,
        owner,
        expires_at,
        models,
        deny_models,
        allowed_cidrs,
        tags,
        metadata,
        rotation_interval,
        guardrails,
        require_client_cert,
        client_cert_sha256,
        ..
    } = spec;
    match name.as_deref() {
        None | Some("") => return Err(ApiError::bad_request("name", "name is required")),
        Some(n) if n.len() > TEXT_MAX => {
            return Err(ApiError::bad_request("name", "name: at most 256 bytes"))
        }
        _ => {}
    }
    if owner
        .as_ref()
        .is_some_and(|o| o.is_empty() || o.len() > TEXT_MAX)
    {
        return Err(ApiError::bad_request("owner", "owner: 1 to 256 bytes"));
    }
    let limits = fields::limits(spec.raw_limits()).map_err(field_err)?;
    let filter = if models.is_some() || deny_models.as_ref().is_some_and(|d| !d.is_empty()) {
        let f = fields::model_filter(models.clone(), deny_models.clone().unwrap_or_default())
            .map_err(field_err)?;
        Some(Box::new(f))
    } else {
        None
    };
    let cidrs = match allowed_cidrs.as_deref() {
        Some(l) => Some(fields::cidrs("allowed_cidrs", l).map_err(field_err)?),
        None => None,
    };
    let expires = match expires_at.as_deref() {
        Some(e) => Some(humantime::parse_rfc3339_weak(e).map_err(|err| {
            ApiError::bad_request(
                "expires_at",
                format!("{e:?}: {err} (want RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z)"),
            )
        })?),
        None => None,
    };
    if let Some(t) = tags {
        if t.len() > TAGS_MAX
            || t.iter()
                .any(|(k, v)| k.is_empty() || k.len() > TEXT_MAX || v.len() > TEXT_MAX)
        {
            return Err(ApiError::bad_request(
                "tags",
                "tags: at most 64, names 1 to 256 bytes, values at most 256 bytes",
            ));
        }
    }
    if let Some(m) = metadata {
        let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
        if size > METADATA_MAX {
            return Err(ApiError::bad_request(
                "metadata",
                format!("metadata is {size} bytes of JSON; at most {METADATA_MAX}"),
            ));
        }
    }
    let rotation_s = match rotation_interval.as_deref() {
        Some(r) => {
            let d = duration("rotation_interval", r)?;
            if d < Duration::from_secs(1) {
                return Err(ApiError::bad_request(
                    "rotation_interval",
                    "rotation_interval must be at least 1s",
                ));
            }
            Some(d.as_secs())
        }
        None => None,
    };
    if let Some(g) = guardrails {
        if g.len() > TAGS_MAX || g.iter().any(|id| id.is_empty() || id.len() > TEXT_MAX) {
            return Err(ApiError::bad_request(
                "guardrails",
                "guardrails: at most 64 ids of 1 to 256 bytes",
            ));
        }
    }
    let guardrails = guardrails
        .as_ref()
        .filter(|g| !g.is_empty())
        .map(|g| g.iter().map(|id| Arc::from(id.as_str())).collect());
    let sha256 =
        mtls::fingerprints(client_cert_sha256.as_deref().unwrap_or_default()).map_err(|m| {
            ApiError::bad_request("client_cert_sha256", format!("client_cert_sha256: {m}"))
        })?;
    let req = crate::control::reqpolicy::check_spec_req(spec)?;
    Ok(Checked {
        client_cert: CertRule::new(*require_client_cert, sha256),
        req,
        guardrails,
        limits,
        models: filter,
        allowed_cidrs: cidrs,
        expires_at: expires,
        rotation_s,
    })
}

/// "Lower layers only tighten": the key's limits against its group's and its org's.
pub(crate) fn check_in_group(limits: &Limits, group: &GroupEntry) -> ApiResult<()> {
    let layers = [
        (format!("group {}", group.id), &group.limits),
        (format!("org {}", group.org.id), &group.org.limits),
    ];
    for (name, parent) in layers {
        if let Some((field, mine, theirs)) = looser_than(limits, parent).into_iter().next() {
            return Err(ApiError::bad_request(
                field,
                format!(
                    "{field} {mine} exceeds {name} {field} {theirs} (lower layers only tighten)"
                ),
            ));
        }
        if let Some((field, mine, pfield, theirs)) =
            looser_patterns(limits, parent).into_iter().next()
        {
            return Err(ApiError::bad_request(
                "model_limits",
                format!(
                    "{field} {mine} exceeds {name} {pfield} {theirs} (lower layers only tighten)"
                ),
            ));
        }
    }
    Ok(())
}

/// A key may not turn off its group's `require_client_cert`, and any certificate rule
/// needs `tls.client_ca` (else no request could satisfy it).
pub(crate) fn check_cert_in_group(
    spec: &KeySpec,
    group: &GroupEntry,
    snapshot: &crate::policy::snapshot::Snapshot,
) -> ApiResult<()> {
    let parent = format!("group {}", group.id);
    if let Some(m) = mtls::looser(
        spec.require_client_cert,
        (&parent, group.require_client_cert),
    ) {
        return Err(ApiError::bad_request("require_client_cert", m));
    }
    let asks = spec.require_client_cert == Some(true)
        || spec
            .client_cert_sha256
            .as_ref()
            .is_some_and(|l| !l.is_empty());
    let verifies = snapshot
        .server
        .tls
        .as_ref()
        .and_then(|t| t.client_ca.as_ref());
    if asks && verifies.is_none() {
        let field = if spec.require_client_cert == Some(true) {
            "require_client_cert"
        } else {
            "client_cert_sha256"
        };
        return Err(ApiError::bad_request(
            field,
            format!("{field} {}", mtls::NEEDS_CLIENT_CA),
        ));
    }
    Ok(())
}

/// The key's guardrails must exist in the loaded policy (a key can add guardrails to its
/// group's and org's; it cannot drop theirs, which always apply).
pub(crate) fn check_guardrails(
    spec: &KeySpec,
    snapshot: &crate::policy::snapshot::Snapshot,
) -> ApiResult<()> {
    for id in spec.guardrails.iter().flatten() {
        if !snapshot.guardrails.contains_key(id.as_str()) {
            return Err(ApiError::bad_request(
                "guardrails",
                format!("unknown guardrail {id:?} (not in the policy file's [[guardrails]])"),
            ));
        }
    }
    Ok(())
}

/// An expiry must lie in the future (after `now`) when it is set.
pub(crate) fn check_future(expires_at: Option<SystemTime>, now: SystemTime) -> ApiResult<()> {
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::bad_request(
            "expires_at",
            "expires_at is in the past",
        ));
    }
    Ok(())
}

pub(crate) fn digest_hex(hex_str: &str) -> ApiResult<Digest> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut d).map_err(ApiError::internal)?;
    Ok(d)
}

/// Shares one allocation per distinct group id or owner among a million keys.
#[derive(Default)]
pub(crate) struct Interner(std::collections::HashMap<String, Arc<str>>);

impl Interner {
    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.0.insert(s.to_string(), a.clone());
        a
    }
}

/// A stored record in the directory's form.
pub(crate) fn parse_record(r: &KeyRecord, last_used: Arc<LastUsed>) -> ApiResult<ApiKey> {
    parse_record_interned(r, last_used, &mut Interner::default())
}

pub(crate) fn parse_record_interned(
    r: &KeyRecord,
    last_used: Arc<LastUsed>,
    interner: &mut Interner,
) -> ApiResult<ApiKey> {
    let c = check_spec(&r.spec)?;
    let id: Arc<str> = r.id.as_str().into();
    let previous = match &r.previous {
        Some(p) => Some(Box::new((digest_hex(&p.sha256)?, p.until))),
        None => None,
    };
    let parts = ApiKeyParts {
        group: interner.get(&r.group),
        digest: digest_hex(&r.sha256)?,
        previous,
        state: match r.status {
            KeyStatus::Active => KeyState::Active,
            KeyStatus::Disabled => KeyState::Disabled,
            KeyStatus::Revoked => KeyState::Revoked,
        },
        expires_at: c.expires_at,
        limits: {
            let mut l = c.limits;
            l.bind(&id);
            l
        },
        models: c.models,
        allowed_cidrs: c.allowed_cidrs,
        owner: r.spec.owner.as_deref().map(|o| interner.get(o)),
        // Idleness counts from creation or the last change (an enabled key starts afresh).
        created_at: r.created_at.max(r.updated_at),
        secret_at: r.secret_at,
        rotation_s: c.rotation_s,
        guardrails: c.guardrails,
        client_cert: c.client_cert,
        req: c.req,
        id: id.clone(),
    };
    Ok(ApiKey::new(parts, last_used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: Value) -> (String, String) {
        let e = typed::<KeySpec>(body).expect_err("refused");
        assert_eq!((e.status, e.code), (400, "invalid_request"));
        (e.param.unwrap_or_default(), e.message)
    }

    #[test]
    fn a_bad_field_is_named_with_what_it_takes() {
        let (param, msg) = refusal(json!({"rpm": -1}));
        assert_eq!(param, "rpm");
        assert!(msg.starts_with("rpm: expected a whole number ≥ 0"), "{msg}");
        assert!(msg.ends_with("or null"), "{msg}");
        assert!(!msg.contains("untagged"), "{msg}");
        let (param, msg) = refusal(json!({"max_tokens": {"value": 5, "mode": "loud"}}));
        assert_eq!(param, "max_tokens");
        assert!(msg.contains("\"shadow\" or \"enforce\""), "{msg}");
        let (param, msg) = refusal(json!({"budget_usd": "ten"}));
        assert_eq!(param, "budget_usd");
        assert!(
            msg.starts_with("budget_usd: expected an amount in USD"),
            "{msg}"
        );
        let (param, msg) = refusal(json!({"models": "gpt-4o"}));
        assert_eq!(
            (param.as_str(), msg.as_str()),
            (
                "models",
                "models: expected a list of model names or globs, or null"
            )
        );
        let (param, msg) = refusal(json!({"tags": {"team": 5}}));
        assert_eq!(param, "tags");
        assert!(msg.starts_with("tags: expected an object"), "{msg}");
        let (param, msg) = refusal(json!({"expires_at": 1_800_000_000}));
        assert_eq!(param, "expires_at");
        assert!(msg.contains("RFC 3339"), "{msg}");
        // Unknown fields keep serde's list of the known ones.
        let (param, msg) = refusal(json!({"colour": "red"}));
        assert_eq!(param, "colour");
        assert!(msg.starts_with("unknown field `colour`"), "{msg}");
    }

    #[test]
    fn durations_say_what_they_take() {
        let mut m = object(br#"{"ttl": 30}"#).unwrap();
        let e = take_str(&mut m, "ttl").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("ttl"));
        assert!(
            e.message.starts_with("ttl: expected a duration"),
            "{}",
            e.message
        );
        let e = duration("grace_period", "soon").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("grace_period"));
        assert!(
            e.message.starts_with("grace_period: expected a duration"),
            "{}",
            e.message
        );
    }
}
