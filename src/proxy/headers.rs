//! The names of the headers the request path writes, built at compile time. Pingora's
//! `insert_header` parses and copies a custom name on every call; `insert_static_header`
//! (our pingora-http patch, vendor/README.md) takes these as they are.

use pingora_http::StaticHeaderName;

pub(crate) static REQUEST_ID: StaticHeaderName = StaticHeaderName::new("x-request-id");
pub(crate) static TARGET: StaticHeaderName = StaticHeaderName::new("x-tollgate-target");
pub(crate) static LIMIT_REQUESTS: StaticHeaderName =
    StaticHeaderName::new("x-ratelimit-limit-requests");
pub(crate) static REMAINING_REQUESTS: StaticHeaderName =
    StaticHeaderName::new("x-ratelimit-remaining-requests");
pub(crate) static LIMIT_TOKENS: StaticHeaderName =
    StaticHeaderName::new("x-ratelimit-limit-tokens");
pub(crate) static REMAINING_TOKENS: StaticHeaderName =
    StaticHeaderName::new("x-ratelimit-remaining-tokens");
pub(crate) static SHADOW_LIMITED: StaticHeaderName =
    StaticHeaderName::new("x-tollgate-shadow-limited");
/// `budget_clamp`: the `max_tokens` the request was sent with, lowered to what the budget
/// can still pay for.
pub(crate) static MAX_TOKENS: StaticHeaderName = StaticHeaderName::new("x-tollgate-max-tokens");
pub(crate) static API_KEY: StaticHeaderName = StaticHeaderName::new("x-api-key");
/// W3C Trace Context: the attempt's span, sent upstream when `[tracing]` is on.
pub(crate) static TRACEPARENT: StaticHeaderName = StaticHeaderName::new("traceparent");
/// Standard names the upstream request sets, in the case Pingora's `insert_header` writes.
pub(crate) static HOST: StaticHeaderName = StaticHeaderName::with_case("host", "Host");
pub(crate) static CONTENT_LENGTH: StaticHeaderName =
    StaticHeaderName::with_case("content-length", "Content-Length");
pub(crate) static AUTHORIZATION: StaticHeaderName =
    StaticHeaderName::with_case("authorization", "Authorization");

/// The headers the gateway adds to an answer (`append_wire_header`, our pingora-http
/// patch: written after the provider's, no map touched).
static ADDED: [&StaticHeaderName; 8] = [
    &REQUEST_ID,
    &TARGET,
    &LIMIT_REQUESTS,
    &REMAINING_REQUESTS,
    &LIMIT_TOKENS,
    &REMAINING_TOKENS,
    &SHADOW_LIMITED,
    &MAX_TOKENS,
];

/// Removes the provider's headers of the names the gateway adds (OpenAI sends its own
/// `x-request-id` and `x-ratelimit-*`): ours replace them. One pass over the names, no
/// hashing, when there are none.
pub(crate) fn remove_added(resp: &mut pingora_http::ResponseHeader) {
    while let Some(name) = resp
        .headers
        .keys()
        .find(|k| ADDED.iter().any(|a| a.name() == *k))
        .cloned()
    {
        resp.remove_header(&name);
    }
}

/// A value built once ahead of the request path, or — when `text` could not be a header
/// value — the error inserting `text` gives.
pub(crate) fn prebuilt(
    v: &Option<http::HeaderValue>,
    text: &str,
) -> pingora_error::Result<http::HeaderValue> {
    match v {
        Some(v) => Ok(v.clone()),
        None => value(text),
    }
}

/// `v` as a header value, or the error Pingora's `insert_header` gives for a bad one.
pub(crate) fn value(v: &str) -> pingora_error::Result<http::HeaderValue> {
    use pingora_error::OrErr;
    http::HeaderValue::from_str(v).or_err(
        pingora_error::ErrorType::InvalidHTTPHeader,
        "invalid value while insert",
    )
}

/// Request headers the gateway reads (looked up by a ready name, not a parsed `&str`).
pub(crate) static FORWARDED_FOR: StaticHeaderName = StaticHeaderName::new("x-forwarded-for");
pub(crate) static TAGS: StaticHeaderName = StaticHeaderName::new("x-tollgate-tags");
pub(crate) static SESSION: StaticHeaderName = StaticHeaderName::new("x-tollgate-session");
