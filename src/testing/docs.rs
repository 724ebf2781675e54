//! The reference pages in `docs/` keep up with the code: every field the policy file's
//! parser accepts is in `docs/policy.md`, every data-plane error code in
//! `docs/data-plane.md`, every admin error code in `docs/admin-api.md` (each in backticks).

use crate::error::GatewayError;
use crate::policy::config::raw::*;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::path::Path;

/// Fails naming every item of `names` that `docs/<page>` does not show in backticks.
fn assert_documented<S: AsRef<str>>(page: &str, names: impl IntoIterator<Item = S>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let missing: Vec<String> = names
        .into_iter()
        .map(|n| n.as_ref().to_string())
        .filter(|n| !text.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/{page} does not document {missing:?}"
    );
}

/// The fields a `deny_unknown_fields` table accepts, from serde's own refusal of an
/// unknown one ("unknown field `x`, expected one of `a`, `b`").
fn accepted<T: DeserializeOwned>() -> Vec<String> {
    let probe = "__probe__ = 1";
    let err = match toml::from_str::<T>(probe) {
        Ok(_) => panic!("{} accepts unknown fields", std::any::type_name::<T>()),
        Err(e) => e.message().to_string(),
    };
    let list = err
        .split_once("expected one of ")
        .or_else(|| err.split_once("expected "))
        .unwrap_or_else(|| panic!("{}: {err}", std::any::type_name::<T>()))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_policy_field_is_documented() {
    let mut fields = BTreeSet::new();
    for list in [
        accepted::<RawServer>(),
        accepted::<RawTls>(),
        accepted::<RawProvider>(),
        accepted::<RawModel>(),
        accepted::<RawTarget>(),
        accepted::<RawOrg>(),
        accepted::<RawGroup>(),
        accepted::<RawKey>(),
        accepted::<RawLimits>(),
        accepted::<RawErrorRateAlert>(),
        accepted::<RawSelfService>(),
        accepted::<RawUsageApi>(),
        accepted::<RawGuardrail>(),
        accepted::<RawSmtp>(),
        accepted::<RawTracing>(),
        accepted::<RawLogSink>(),
        accepted::<RawLogBatch>(),
    ] {
        assert!(!list.is_empty());
        fields.extend(list);
    }
    for section in [
        "server",
        "providers",
        "models",
        "orgs",
        "groups",
        "keys",
        "guardrails",
        "presets",
        "include",
        "smtp",
        "tracing",
        "log_sinks",
    ] {
        fields.insert(section.to_string());
    }
    assert_documented("policy.md", &fields);
}

/// One value of every variant: the match below stops compiling when a variant is added,
/// so the list cannot fall behind.
fn every_gateway_error() -> Vec<GatewayError> {
    use GatewayError::*;
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let all = vec![
        MissingApiKey,
        ConflictingCredentials,
        InvalidApiKey,
        KeyRevoked(String::new()),
        KeyExpired(String::new()),
        KeyDisabled(String::new()),
        GroupPaused(String::new()),
        IpNotAllowed {
            ip,
            scope: String::new(),
        },
        ModelNotAllowed {
            model: String::new(),
            scope: String::new(),
        },
        InvalidRequest(String::new()),
        ModelNotFound(String::new()),
        UnknownRoute {
            method: String::new(),
            path: String::new(),
        },
        RequestTooLarge { limit: 1 },
        Overloaded(String::new()),
        ConcurrencyLimitExceeded {
            scope: String::new(),
        },
        UpstreamError(String::new()),
        NoHealthyTarget(String::new()),
        UpstreamTimeout(String::new()),
        ClientClosed(String::new()),
        ClientTimeout(String::new()),
        GuardrailBlocked {
            id: String::new(),
            kind: String::new(),
        },
        GuardrailUnavailable {
            id: String::new(),
            reason: String::new(),
        },
        Internal,
        ClientCertRequired {
            scope: String::new(),
        },
        ClientCertMismatch {
            key: String::new(),
            sha256: String::new(),
        },
        ProviderNotAllowed(String::new()),
        OriginNotAllowed(String::new()),
    ];
    for e in &all {
        match e {
            MissingApiKey
            | ConflictingCredentials
            | InvalidApiKey
            | KeyRevoked(_)
            | KeyExpired(_)
            | KeyDisabled(_)
            | GroupPaused(_)
            | IpNotAllowed { .. }
            | ModelNotAllowed { .. }
            | InvalidRequest(_)
            | ModelNotFound(_)
            | UnknownRoute { .. }
            | RequestTooLarge { .. }
            | Overloaded(_)
            | ConcurrencyLimitExceeded { .. }
            | UpstreamError(_)
            | NoHealthyTarget(_)
            | UpstreamTimeout(_)
            | ClientClosed(_)
            | ClientTimeout(_)
            | GuardrailBlocked { .. }
            | GuardrailUnavailable { .. }
            | ClientCertRequired { .. }
            | ClientCertMismatch { .. }
            | ProviderNotAllowed(_)
            | OriginNotAllowed(_)
            | Internal => {}
            // Variants with fields that are awkward to build here: their codes are
            // listed in `WITH_FIELDS` below.
            MaxTokensExceeded { .. }
            | UnsupportedParameter { .. }
            | RequestTimeout { .. }
            | HeaderTooLarge { .. }
            | RateLimitExceeded { .. }
            | TokenLimitExceeded { .. }
            | MissingParameter { .. }
            | TokenBudgetExceeded { .. }
            | BudgetExceeded { .. } => {}
        }
    }
    all
}

const WITH_FIELDS: [&str; 9] = [
    "missing_parameter",
    "token_budget_exceeded",
    "max_tokens_exceeded",
    "unsupported_parameter",
    "request_timeout",
    "header_too_large",
    "rate_limit_exceeded",
    "token_limit_exceeded",
    "budget_exceeded",
];

#[test]
fn every_error_code_is_documented() {
    let mut codes: BTreeSet<&str> = every_gateway_error().iter().map(|e| e.code()).collect();
    codes.extend(WITH_FIELDS);
    assert_documented("data-plane.md", &codes);
}

/// Every `code: "…"` the control plane writes, and the admin listener's own.
#[test]
fn every_admin_error_code_is_documented() {
    let mut codes = BTreeSet::from([
        "invalid_admin_token".to_string(),
        "forbidden".to_string(),
        "unknown_route".to_string(),
        "method_not_allowed".to_string(),
        "request_too_large".to_string(),
    ]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control");
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("code: \"").skip(1) {
                    if let Some((code, _)) = part.split_once('"') {
                        codes.insert(code.to_string());
                    }
                }
            }
        }
    }
    assert_documented("admin-api.md", &codes);
}
