//! Browser keys (`allowed_origins`): CORS preflights answered by the gateway, and the
//! CORS headers on answers to listed origins (docs/data-plane.md "Browsers (CORS)").
//!
//! A request without `Origin` (every server-side client) pays one header lookup.

use crate::error::GatewayError;
use crate::policy::snapshot::{KeyEntry, Snapshot};
use crate::proxy::directory::Directory;
use http::header::{self, HeaderValue};
use pingora_error::Result;
use pingora_http::ResponseHeader;

/// Request headers a preflight may ask for: what the OpenAI and Anthropic SDKs send
/// (`x-stainless-*` are their telemetry headers) and the gateway's own.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-request-id",
    "x-tollgate-tags",
    "x-tollgate-session",
];

/// Header-name prefixes a preflight may ask for.
const ALLOWED_PREFIXES: &[&str] = &["x-stainless-"];

/// The answer headers a page may read.
const EXPOSE: &str = "x-request-id, x-tollgate-target, x-ratelimit-limit-requests, \
x-ratelimit-remaining-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, \
x-tollgate-shadow-limited, retry-after";

/// How long a browser may cache a preflight answer (seconds).
pub(crate) const MAX_AGE: &str = "600";

fn header_allowed(name: &str) -> bool {
    let n = name.trim();
    ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(n))
        || ALLOWED_PREFIXES.iter().any(|p| {
            n.len() >= p.len() && n.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        })
}

/// Whether a request is a CORS preflight.
pub(crate) fn is_preflight(req: &pingora_http::RequestHeader) -> bool {
    req.method == http::Method::OPTIONS
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether some key, group or org lists `origin` (a preflight carries no key).
pub(crate) fn listed_anywhere(origin: &str, snapshot: &Snapshot, directory: &Directory) -> bool {
    let lower = origin.to_ascii_lowercase();
    snapshot.origins.contains(lower.as_str()) || directory.has_origin(&lower)
}

/// The preflight's answer: `Ok(headers)` of a 204 for a listed origin that asks for an
/// allowed method and headers, else the refusal (403 `origin_not_allowed`, no CORS headers).
pub(crate) fn preflight(
    req: &pingora_http::RequestHeader,
    snapshot: &Snapshot,
    directory: &Directory,
) -> std::result::Result<ResponseHeader, GatewayError> {
    let origin = req
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let refuse = |why: String| GatewayError::OriginNotAllowed(why);
    if origin.is_empty() || !listed_anywhere(origin, snapshot, directory) {
        return Err(refuse(format!(
            "origin {origin:?} is not in any allowed_origins (CORS preflight)"
        )));
    }
    let method = req
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if !matches!(method, b"POST" | b"GET" | b"OPTIONS") {
        return Err(refuse(format!(
            "method {} is not served to browsers (POST, GET, OPTIONS)",
            String::from_utf8_lossy(method)
        )));
    }
    let asked = req
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(bad) = asked
        .split(',')
        .map(str::trim)
        .find(|h| !h.is_empty() && !header_allowed(h))
    {
        return Err(refuse(format!(
            "request header {bad:?} is not allowed from browsers"
        )));
    }
    let build = || -> Result<ResponseHeader> {
        let mut h = ResponseHeader::build(204, Some(8))?;
        h.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        h.insert_header(header::ACCESS_CONTROL_ALLOW_METHODS, "POST, GET, OPTIONS")?;
        if !asked.is_empty() {
            // Every asked header is allowed (checked above): echoed as asked.
            h.insert_header(header::ACCESS_CONTROL_ALLOW_HEADERS, asked)?;
        }
        h.insert_header(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE)?;
        h.insert_header(header::VARY, "Origin")?;
        h.insert_header(header::CONTENT_LENGTH, "0")?;
        Ok(h)
    };
    build().map_err(|_| GatewayError::Internal)
}

/// The request's `Origin` when its answer may carry CORS headers: the key's
/// `allowed_origins` in force list it (a key without a list is not a browser key: no
/// headers), or — before a key is known (401) — some layer lists it.
pub(crate) fn answer_origin(
    req: &pingora_http::RequestHeader,
    key: Option<&KeyEntry>,
    snapshot: &Snapshot,
    directory: &Directory,
) -> Option<HeaderValue> {
    let origin = req.headers.get(header::ORIGIN)?;
    let listed = match key {
        Some(k) => k
            .req_policy()
            .and_then(|p| p.origins.as_ref())
            .is_some_and(|list| {
                list.iter()
                    .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
            }),
        None => origin
            .to_str()
            .is_ok_and(|o| listed_anywhere(o, snapshot, directory)),
    };
    listed.then(|| origin.clone())
}

/// Adds the CORS headers for `origin` to an answer (the provider's own removed).
pub(crate) fn add_headers(resp: &mut ResponseHeader, origin: &HeaderValue) -> Result<()> {
    strip(resp);
    resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
    resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE)?;
    resp.append_header(header::VARY, "Origin")?;
    Ok(())
}

/// Removes a provider's CORS headers (only the gateway decides who may read an answer).
pub(crate) fn strip(resp: &mut ResponseHeader) {
    for h in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        resp.remove_header(&h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_headers_are_allowed_others_not() {
        for h in [
            "Authorization",
            "content-type",
            "x-stainless-os",
            "X-Stainless-Retry-Count",
            "anthropic-dangerous-direct-browser-access",
        ] {
            assert!(header_allowed(h), "{h}");
        }
        for h in ["cookie", "x-evil", "x-stainless"] {
            assert!(!header_allowed(h), "{h}");
        }
    }
}
