//! The one error type of the data plane: every refusal the gateway writes itself.
//!
//! `status()`, `code()` (also the metrics label) and `body()` follow the docs/data-plane.md table.
//! Messages name the scope and limit that blocked, never a secret.

use crate::policy::config::Api;
use std::net::IpAddr;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>` (other Authorization schemes, such as Basic, are not accepted)")]
    MissingApiKey,
    /// `Authorization: Bearer` and `x-api-key` (or two of either) name different keys.
    #[error("conflicting credentials: the request carries two different keys (`Authorization: Bearer` and `x-api-key`, or one of them twice); send one key")]
    ConflictingCredentials,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("key {0} has been revoked")]
    KeyRevoked(String),
    #[error("key {0} has expired")]
    KeyExpired(String),
    #[error("key {0} is disabled")]
    KeyDisabled(String),
    #[error("{0}")]
    GroupPaused(String),
    #[error("client IP {ip} is not allowed by {scope} allowed_cidrs")]
    IpNotAllowed { ip: IpAddr, scope: String },
    #[error("model {model} is not allowed for {scope}")]
    ModelNotAllowed { model: String, scope: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("max_tokens {requested} exceeds {scope} max_tokens {limit}")]
    MaxTokensExceeded {
        requested: u64,
        scope: String,
        limit: u64,
    },
    /// A request field the target's API cannot honour (translation between APIs).
    #[error("`{param}` is not supported when this model is served by {target} ({reason})")]
    UnsupportedParameter {
        param: String,
        target: &'static str,
        reason: &'static str,
    },
    #[error("{0}")]
    ModelNotFound(String),
    #[error("no route {method} {path}")]
    UnknownRoute { method: String, path: String },
    #[error("request body exceeds max_body {limit} bytes")]
    RequestTooLarge { limit: u64 },
    #[error("{scope} exceeded; retry after {retry_after}s")]
    RateLimitExceeded {
        scope: String,
        retry_after: u64,
        limit: u64,
    },
    #[error("{scope} exceeded; retry after {retry_after}s")]
    TokenLimitExceeded {
        scope: String,
        retry_after: u64,
        limit: u64,
    },
    #[error("{scope} requests already in flight")]
    ConcurrencyLimitExceeded { scope: String },
    #[error("{scope} exhausted")]
    BudgetExceeded {
        scope: String,
        retry_after: Option<u64>,
    },
    /// A `token_budget` (tokens per period) cannot take the request's worst case.
    #[error("{scope} exhausted")]
    TokenBudgetExceeded {
        scope: String,
        retry_after: Option<u64>,
    },
    /// The client was too slow: `what` did not arrive within the `[server]` deadline.
    #[error("{what} not received within server.{setting} {limit:?}")]
    RequestTimeout {
        what: &'static str,
        setting: &'static str,
        limit: std::time::Duration,
    },
    #[error("request header exceeds server.max_header_bytes {limit} bytes")]
    HeaderTooLarge { limit: usize },
    /// The gateway is at a global cap (connections, body memory); retry shortly.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    UpstreamError(String),
    #[error("{0}")]
    NoHealthyTarget(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    /// The client went away before the answer was complete (logged as 499, never written).
    #[error("{0}")]
    ClientClosed(String),
    /// The client stopped sending (its body, or the rest of it) for too long.
    #[error("{0}")]
    ClientTimeout(String),
    /// A guardrail with `action = "block"` matched the request: names the guardrail and the
    /// kind (entity, pattern index, category), never the matched text.
    #[error("guardrail {id} blocked the request: {kind}")]
    GuardrailBlocked { id: String, kind: String },
    /// An external guardrail with `on_error = "block"` failed or timed out.
    #[error("guardrail {id} is unavailable ({reason}); the request was not forwarded")]
    GuardrailUnavailable { id: String, reason: String },
    /// `require_client_cert`: no verified client certificate came with the request.
    #[error("{scope} requires a client certificate signed by the gateway's client CA (mTLS)")]
    ClientCertRequired { scope: String },
    /// `client_cert_sha256`: the certificate presented is not one of the key's.
    #[error("key {key} does not accept this client certificate (sha256 {sha256})")]
    ClientCertMismatch { key: String, sha256: String },
    /// `allowed_providers`: no target of an allowed provider serves the model.
    #[error("{0}")]
    ProviderNotAllowed(String),
    /// `required_params`: the body lacks a field (absent or null).
    #[error("missing required parameter `{param}` ({scope} required_params)")]
    MissingParameter { param: String, scope: String },
    /// `allowed_origins`: the request's `Origin` is not listed.
    #[error("{0}")]
    OriginNotAllowed(String),
    /// A failure of the gateway itself (a bug): never the client's or a provider's.
    #[error("the gateway could not handle this request; quote its x-request-id when reporting it")]
    Internal,
}

impl GatewayError {
    pub(crate) fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            MissingApiKey | InvalidApiKey | ConflictingCredentials => 401,
            KeyRevoked(_) | KeyExpired(_) | KeyDisabled(_) | GroupPaused(_) => 403,
            IpNotAllowed { .. } | ModelNotAllowed { .. } => 403,
            ProviderNotAllowed(_) | OriginNotAllowed(_) => 403,
            MissingParameter { .. } => 400,
            InvalidRequest(_) | MaxTokensExceeded { .. } | UnsupportedParameter { .. } => 400,
            GuardrailBlocked { .. } => 400,
            GuardrailUnavailable { .. } => 503,
            ModelNotFound(_) | UnknownRoute { .. } => 404,
            RequestTooLarge { .. } => 413,
            RequestTimeout { .. } => 408,
            HeaderTooLarge { .. } => 431,
            Overloaded(_) => 503,
            RateLimitExceeded { .. } | TokenLimitExceeded { .. } => 429,
            ConcurrencyLimitExceeded { .. } | BudgetExceeded { .. } => 429,
            TokenBudgetExceeded { .. } => 429,
            UpstreamError(_) => 502,
            NoHealthyTarget(_) => 503,
            UpstreamTimeout(_) => 504,
            ClientClosed(_) => 499,
            ClientTimeout(_) => 408,
            Internal => 500,
            ClientCertRequired { .. } | ClientCertMismatch { .. } => 403,
        }
    }

    /// The documented error code; also the `reason` label of `tollgate_rejections_total`.
    pub(crate) fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingApiKey => "missing_api_key",
            InvalidApiKey | ConflictingCredentials => "invalid_api_key",
            KeyRevoked(_) => "key_revoked",
            KeyExpired(_) => "key_expired",
            KeyDisabled(_) => "key_disabled",
            GroupPaused(_) => "group_paused",
            IpNotAllowed { .. } => "ip_not_allowed",
            ModelNotAllowed { .. } => "model_not_allowed",
            InvalidRequest(_) => "invalid_request",
            MaxTokensExceeded { .. } => "max_tokens_exceeded",
            UnsupportedParameter { .. } => "unsupported_parameter",
            ModelNotFound(_) => "model_not_found",
            UnknownRoute { .. } => "unknown_route",
            RequestTooLarge { .. } => "request_too_large",
            RequestTimeout { .. } => "request_timeout",
            HeaderTooLarge { .. } => "header_too_large",
            Overloaded(_) => "overloaded",
            RateLimitExceeded { .. } => "rate_limit_exceeded",
            TokenLimitExceeded { .. } => "token_limit_exceeded",
            ConcurrencyLimitExceeded { .. } => "concurrency_limit_exceeded",
            BudgetExceeded { .. } => "budget_exceeded",
            TokenBudgetExceeded { .. } => "token_budget_exceeded",
            UpstreamError(_) => "upstream_error",
            NoHealthyTarget(_) => "no_healthy_target",
            UpstreamTimeout(_) => "upstream_timeout",
            ClientClosed(_) => "client_closed_request",
            ClientTimeout(_) => "request_timeout",
            GuardrailBlocked { .. } => "guardrail_blocked",
            GuardrailUnavailable { .. } => "guardrail_unavailable",
            Internal => "internal_error",
            ClientCertRequired { .. } => "client_cert_required",
            ClientCertMismatch { .. } => "client_cert_mismatch",
            ProviderNotAllowed(_) => "provider_not_allowed",
            MissingParameter { .. } => "missing_parameter",
            OriginNotAllowed(_) => "origin_not_allowed",
        }
    }

    /// Whether an answer can be written for it (not to a client that is gone).
    pub(crate) fn writable(&self) -> bool {
        !matches!(self, GatewayError::ClientClosed(_))
    }

    /// The error `type` field.
    pub(crate) fn kind(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// Seconds for the `retry-after` header of a 429.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimitExceeded { retry_after, .. }
            | GatewayError::TokenLimitExceeded { retry_after, .. } => Some(*retry_after),
            GatewayError::BudgetExceeded { retry_after, .. }
            | GatewayError::TokenBudgetExceeded { retry_after, .. } => *retry_after,
            GatewayError::ConcurrencyLimitExceeded { .. }
            | GatewayError::Overloaded(_)
            | GatewayError::GuardrailUnavailable { .. } => Some(1),
            _ => None,
        }
    }

    /// `(header name prefix, limit)` for the `x-ratelimit-*` headers of a window refusal.
    pub(crate) fn blocked_window(&self) -> Option<(&'static str, u64)> {
        match self {
            GatewayError::RateLimitExceeded { limit, .. } => Some(("requests", *limit)),
            GatewayError::TokenLimitExceeded { limit, .. } => Some(("tokens", *limit)),
            _ => None,
        }
    }

    /// The request field an error is about (`param` of the OpenAI error shape).
    pub(crate) fn param(&self) -> Option<&str> {
        match self {
            GatewayError::UnsupportedParameter { param, .. }
            | GatewayError::MissingParameter { param, .. } => Some(param),
            _ => None,
        }
    }

    /// The JSON body in the shape of the route's API (OpenAI or Anthropic).
    pub(crate) fn body(&self, api: Api) -> Vec<u8> {
        let message = self.to_string();
        let v = match api {
            Api::OpenAi => serde_json::json!({
                "error": {
                    "message": message,
                    "type": self.kind(),
                    "code": self.code(),
                    "param": self.param(),
                }
            }),
            Api::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": self.kind(), "message": message }
            }),
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_spec() {
        let e = GatewayError::ModelNotAllowed {
            model: "gpt-4o".into(),
            scope: "group grp_prod".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body(Api::OpenAi)).unwrap();
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert_eq!(v["error"]["type"], "permission_error");
        assert!(v["error"]["param"].is_null());
        let v: serde_json::Value = serde_json::from_slice(&e.body(Api::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(e.status(), 403);
    }
}
