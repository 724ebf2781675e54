//! `[[guardrails]]` as validated: built-in checks hold their compiled detector (the
//! `llm::guard` library), external ones where and how they are asked.

use crate::llm::guard::{Action, Rule};
use std::sync::Arc;
use std::time::Duration;

/// One `[[guardrails]]` block.
#[derive(Debug, Clone)]
pub(crate) struct Guardrail {
    pub(crate) id: Arc<str>,
    pub(crate) on_request: bool,
    pub(crate) on_response: bool,
    pub(crate) check: Check,
}

#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// `pii`, `secrets`, `regex`, `injection`: run in the gateway.
    Builtin(Arc<Rule>),
    /// `moderation`, `webhook`: another service is asked.
    External(Arc<External>),
}

impl Guardrail {
    pub(crate) fn kind(&self) -> &'static str {
        match &self.check {
            Check::Builtin(r) => builtin_kind(r),
            Check::External(e) => match e.service {
                Service::Moderation { .. } => "moderation",
                Service::Webhook { .. } => "webhook",
            },
        }
    }

    pub(crate) fn action(&self) -> Action {
        match &self.check {
            Check::Builtin(r) => r.action,
            Check::External(e) => e.action,
        }
    }
}

fn builtin_kind(r: &Rule) -> &'static str {
    use crate::llm::guard::Builtin;
    match r.builtin {
        Builtin::Pii(_) => "pii",
        Builtin::Secrets => "secrets",
        Builtin::Regex(..) => "regex",
        Builtin::Injection { .. } => "injection",
    }
}

/// What a failed or timed-out external check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Fail closed: 503 `guardrail_unavailable`.
    Block,
    /// Fail open: the request goes on; the failure is recorded.
    Allow,
}

/// A `moderation` or `webhook` guardrail.
#[derive(Debug, Clone)]
pub(crate) struct External {
    pub(crate) id: Arc<str>,
    pub(crate) action: Action,
    pub(crate) timeout: Duration,
    pub(crate) on_error: OnError,
    pub(crate) service: Service,
}

#[derive(Debug, Clone)]
pub(crate) enum Service {
    /// An OpenAI-style provider's `/v1/moderations`. `provider` indexes
    /// [`super::Config::providers`]; empty `categories`: the provider's `flagged`.
    Moderation {
        provider: usize,
        categories: Vec<String>,
    },
    /// The user's own checker; the signing key is read from `secret_env` when sending.
    Webhook {
        url: String,
        secret_env: Option<String>,
    },
}

/// Default `timeout` of an external guardrail.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
