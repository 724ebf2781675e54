//! Guardrails across modules: the request side, the response guard per client API, the
//! labelled corpus, and the properties (chunk boundaries, idempotent redaction).

mod corpus;
mod props;
mod request;
mod response;

use super::{Action, Builtin, PiiEntity, ResponseGuard, Rule};
use bytes::Bytes;
use std::sync::Arc;

pub(super) fn rule(id: &str, action: Action, builtin: Builtin) -> Arc<Rule> {
    Arc::new(Rule {
        id: id.into(),
        action,
        builtin,
    })
}

pub(super) fn pii(action: Action) -> Arc<Rule> {
    rule("pii", action, Builtin::Pii(PiiEntity::ALL.to_vec()))
}

pub(super) fn secrets(action: Action) -> Arc<Rule> {
    rule("no-secrets", action, Builtin::Secrets)
}

pub(super) fn injection(action: Action) -> Arc<Rule> {
    rule("injection", action, Builtin::Injection { threshold: 0.8 })
}

/// Feeds `chunks` (then the end) through `g`; the bytes the client receives.
pub(super) fn run(g: &mut ResponseGuard, chunks: &[&[u8]]) -> String {
    let mut out = Vec::new();
    for c in chunks {
        let mut body = Some(Bytes::copy_from_slice(c));
        g.chunk(&mut body, false);
        if let Some(b) = body {
            out.extend_from_slice(&b);
        }
    }
    let mut body = None;
    g.chunk(&mut body, true);
    if let Some(b) = body {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).expect("utf-8")
}
