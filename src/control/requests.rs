//! The admin API's request bodies for keys, as types (`CreateKeyRequest`, `BatchRequest`,
//! `PatchKeyRequest`, `RegenerateRequest`, `MoveRequest` in `docs/openapi.json`).
//!
//! Each is read from the body in the order the API has always checked it (`group`, then
//! `ttl`, then the key's own fields), so the first refusal and its words (`spec::typed`,
//! `spec::EXPECTED`) are what they were. They serialize back to their documented
//! fields, leaving out what is absent (the schema test compares them with the documented
//! `properties`, and a minimal request's with `required`).

use super::spec::{duration, object, take_str, typed};
use super::{ApiError, ApiResult};
use crate::policy::config::raw::LimitField;
use crate::storage::KeySpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// At most this many keys per `POST /v1/keys/batch`.
pub(crate) const BATCH_MAX: u64 = 1000;

fn humantime_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| humantime::format_duration(d).to_string())
        .serialize(s)
}

/// `field` taken out of `m` as a duration, if present.
fn take_duration(m: &mut Map<String, Value>, field: &str) -> ApiResult<Option<Duration>> {
    take_str(m, field)?.map(|t| duration(field, &t)).transpose()
}

fn required_group(m: &mut Map<String, Value>) -> ApiResult<String> {
    take_str(m, "group")?.ok_or_else(|| ApiError::bad_request("group", "group is required"))
}

/// Refuses any field left in `m` (bodies without a field list of serde's).
fn no_more(m: &Map<String, Value>) -> ApiResult<()> {
    match m.keys().next() {
        Some(k) => Err(ApiError::bad_request(
            k.clone(),
            format!("unknown field {k:?}"),
        )),
        None => Ok(()),
    }
}

/// `POST /v1/keys`: `{group, ttl?, …the key's fields}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewKey {
    pub(crate) group: String,
    #[serde(
        serialize_with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) ttl: Option<Duration>,
    #[serde(flatten)]
    pub(crate) spec: KeySpec,
}

impl NewKey {
    pub(crate) fn parse(body: &[u8]) -> ApiResult<NewKey> {
        let mut m = object(body)?;
        let group = required_group(&mut m)?;
        let ttl = take_duration(&mut m, "ttl")?;
        let spec = typed(Value::Object(m))?;
        Ok(NewKey { group, ttl, spec })
    }
}

/// `POST /v1/keys/batch`: `{count, group, name_prefix?, ttl?, …the key's fields but name}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewBatch {
    pub(crate) count: u64,
    pub(crate) group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name_prefix: Option<String>,
    #[serde(
        serialize_with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) ttl: Option<Duration>,
    /// Its `name` is never set: the keys are named from `name_prefix`.
    #[serde(flatten)]
    pub(crate) spec: KeySpec,
}

impl NewBatch {
    pub(crate) fn parse(body: &[u8]) -> ApiResult<NewBatch> {
        let mut m = object(body)?;
        let count = match m.remove("count") {
            Some(Value::Number(n)) => n.as_u64().filter(|c| (1..=BATCH_MAX).contains(c)),
            _ => None,
        }
        .ok_or_else(|| ApiError::bad_request("count", format!("count: 1 to {BATCH_MAX}")))?;
        let group = required_group(&mut m)?;
        let name_prefix = take_str(&mut m, "name_prefix")?;
        let ttl = take_duration(&mut m, "ttl")?;
        if m.contains_key("name") {
            return Err(ApiError::bad_request(
                "name",
                "a batch names its keys from name_prefix",
            ));
        }
        let spec = typed(Value::Object(m))?;
        Ok(NewBatch {
            count,
            group,
            name_prefix,
            ttl,
            spec,
        })
    }
}

/// One field of a PATCH: absent (unchanged), `null` (cleared) or a new value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    /// The field after the patch.
    pub(crate) fn apply(self, old: Option<T>) -> Option<T> {
        match self {
            Patch::Absent => old,
            Patch::Null => None,
            Patch::Value(v) => Some(v),
        }
    }

    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Patch<T>, D::Error> {
        Option::<T>::deserialize(d).map(|v| v.map_or(Patch::Null, Patch::Value))
    }
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Value(v) => s.serialize_some(v),
            Patch::Absent | Patch::Null => s.serialize_none(),
        }
    }
}

/// `PATCH /v1/keys/{id}`: the key's fields (as [`KeySpec`], in its order, so serde's
/// "expected one of …" lists the same fields), each absent, `null` or a new value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyPatch {
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) name: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) owner: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) expires_at: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) models: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) deny_models: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) allowed_cidrs: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) rpm: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) rph: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) rpd: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) tpm: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) tpd: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) max_parallel: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) max_tokens: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) budget_usd: Patch<LimitField<f64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) budget_period: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) soft_budget_usd: Patch<f64>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) token_budget: Patch<LimitField<u64>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) token_budget_period: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) model_limits: Patch<BTreeMap<String, crate::policy::config::raw::RawPatternLimits>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) tags: Patch<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) metadata: Patch<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) rotation_interval: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) guardrails: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) require_client_cert: Patch<bool>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) client_cert_sha256: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) allowed_providers: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) required_params: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) fixed_params: Patch<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Patch::is_absent")]
    pub(crate) allowed_origins: Patch<Vec<String>>,
}

/// `PATCH /v1/keys/{id}`'s whole body: `ttl` (sets `expires_at` from now) and the fields.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PatchKey {
    #[serde(
        serialize_with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) ttl: Option<Duration>,
    #[serde(flatten)]
    pub(crate) fields: KeyPatch,
}

impl PatchKey {
    /// `group` is refused: a key changes group with `POST /v1/keys/{id}/move`.
    pub(crate) fn parse(body: &[u8]) -> ApiResult<PatchKey> {
        let mut m = object(body)?;
        if m.contains_key("group") {
            return Err(ApiError::bad_request(
                "group",
                "a key changes group with POST /v1/keys/{id}/move",
            ));
        }
        let ttl = take_duration(&mut m, "ttl")?;
        let fields = typed(Value::Object(m))?;
        Ok(PatchKey { ttl, fields })
    }
}

impl KeyPatch {
    /// The key's fields after the patch.
    pub(crate) fn apply(self, spec: KeySpec) -> KeySpec {
        let KeyPatch {
            name,
            owner,
            expires_at,
            models,
            deny_models,
            allowed_cidrs,
            rpm,
            rph,
            rpd,
            tpm,
            tpd,
            max_parallel,
            max_tokens,
            budget_usd,
            budget_period,
            soft_budget_usd,
            token_budget,
            token_budget_period,
            model_limits,
            tags,
            metadata,
            rotation_interval,
            guardrails,
            require_client_cert,
            client_cert_sha256,
            allowed_providers,
            required_params,
            fixed_params,
            allowed_origins,
        } = self;
        KeySpec {
            require_client_cert: require_client_cert.apply(spec.require_client_cert),
            client_cert_sha256: client_cert_sha256.apply(spec.client_cert_sha256),
            name: name.apply(spec.name),
            owner: owner.apply(spec.owner),
            expires_at: expires_at.apply(spec.expires_at),
            models: models.apply(spec.models),
            deny_models: deny_models.apply(spec.deny_models),
            allowed_cidrs: allowed_cidrs.apply(spec.allowed_cidrs),
            rpm: rpm.apply(spec.rpm),
            rph: rph.apply(spec.rph),
            rpd: rpd.apply(spec.rpd),
            tpm: tpm.apply(spec.tpm),
            tpd: tpd.apply(spec.tpd),
            max_parallel: max_parallel.apply(spec.max_parallel),
            max_tokens: max_tokens.apply(spec.max_tokens),
            budget_usd: budget_usd.apply(spec.budget_usd),
            budget_period: budget_period.apply(spec.budget_period),
            soft_budget_usd: soft_budget_usd.apply(spec.soft_budget_usd),
            token_budget: token_budget.apply(spec.token_budget),
            token_budget_period: token_budget_period.apply(spec.token_budget_period),
            model_limits: model_limits.apply(spec.model_limits),
            tags: tags.apply(spec.tags),
            metadata: metadata.apply(spec.metadata),
            rotation_interval: rotation_interval.apply(spec.rotation_interval),
            guardrails: guardrails.apply(spec.guardrails),
            allowed_providers: allowed_providers.apply(spec.allowed_providers),
            required_params: required_params.apply(spec.required_params),
            fixed_params: fixed_params.apply(spec.fixed_params),
            allowed_origins: allowed_origins.apply(spec.allowed_origins),
        }
    }
}

/// `POST /v1/keys/{id}/regenerate`: `{grace_period?}` (none: the old secret stops at once).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Regenerate {
    #[serde(
        serialize_with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) grace_period: Option<Duration>,
}

impl Regenerate {
    pub(crate) fn parse(body: &[u8]) -> ApiResult<Regenerate> {
        let mut m = object(body)?;
        let grace_period = take_duration(&mut m, "grace_period")?;
        no_more(&m)?;
        Ok(Regenerate { grace_period })
    }
}

/// `POST /v1/keys/{id}/move`: `{group}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MoveKey {
    pub(crate) group: String,
}

impl MoveKey {
    pub(crate) fn parse(body: &[u8]) -> ApiResult<MoveKey> {
        let mut m = object(body)?;
        let group = required_group(&mut m)?;
        no_more(&m)?;
        Ok(MoveKey { group })
    }
}
