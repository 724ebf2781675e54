//! The request policy's checks on the request path (docs/policy.md "Request policy"):
//! `allowed_origins` (stage 1), `required_params` (stage 2), `allowed_providers` (routing
//! plan, stage 4). Each runs only for keys whose policy sets the field.

use crate::error::GatewayError;
use crate::llm::body::RequestBody;
use crate::policy::snapshot::reqpolicy::InForce;
use crate::policy::snapshot::{KeyEntry, ModelEntry};

/// A request whose `Origin` is outside the key's `allowed_origins`: 403. A request without
/// `Origin` passes (browsers always send it cross-origin; server-side clients never do).
pub(crate) fn check_origin(
    p: &InForce,
    key: &KeyEntry,
    req: &pingora_http::RequestHeader,
) -> Result<(), GatewayError> {
    let Some(origin) = req.headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    if p.origin_allowed(origin.as_bytes()) {
        return Ok(());
    }
    let shown: String = String::from_utf8_lossy(origin.as_bytes())
        .chars()
        .take(200)
        .collect();
    Err(GatewayError::OriginNotAllowed(format!(
        "origin {shown:?} is not in the allowed_origins of key {}",
        key.id
    )))
}

/// Every `required_params` field must be in the body, and not null.
pub(crate) fn check_required(
    p: &InForce,
    key: &KeyEntry,
    body: &RequestBody,
) -> Result<(), GatewayError> {
    for name in p.required.iter() {
        let present = body.get(name).is_some_and(|v| v.trim_ascii() != b"null");
        if !present {
            return Err(GatewayError::MissingParameter {
                param: name.to_string(),
                scope: format!("key {}", key.id),
            });
        }
    }
    Ok(())
}

/// No target of an allowed provider serves the model or its fallbacks.
pub(crate) fn no_provider(key: &KeyEntry, model: &ModelEntry) -> GatewayError {
    let allowed = key
        .req_policy()
        .and_then(|p| p.providers.as_deref())
        .map(|l| l.join(", "))
        .unwrap_or_default();
    GatewayError::ProviderNotAllowed(format!(
        "no target of model {} (or its fallbacks) is served by a provider allowed for key {} (allowed_providers in force: [{allowed}])",
        model.name, key.id
    ))
}
