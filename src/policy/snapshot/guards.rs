//! The guardrails in force for a key, resolved when the snapshot is built: the union of
//! its org's, its group's and its own, split by where they look, so the request path only
//! reads slices.

use crate::llm::guard::Rule;
use crate::policy::config::guardrails::{Check, External, Guardrail};
use std::sync::Arc;

/// One key's (or group's) guardrails. Shared: a key without guardrails of its own holds its
/// group's set.
#[derive(Debug, Default)]
pub(crate) struct GuardSet {
    /// Every guardrail in force, org's first, then group's, then key's (views, `-t`).
    pub(crate) all: Box<[Arc<Guardrail>]>,
    /// Built-in checks of the request's texts.
    pub(crate) request: Arc<[Arc<Rule>]>,
    /// Built-in checks of the answer (JSON and streams).
    pub(crate) response: Arc<[Arc<Rule>]>,
    /// Moderation and webhook checks of the request's texts.
    pub(crate) external: Box<[Arc<External>]>,
}

impl GuardSet {
    /// The union of `layers` (each a list of guardrails), in order, each id once. `None`
    /// when nothing is attached.
    pub(crate) fn union<'a>(
        layers: impl IntoIterator<Item = &'a [Arc<Guardrail>]>,
    ) -> Option<Arc<GuardSet>> {
        let mut all: Vec<Arc<Guardrail>> = vec![];
        for layer in layers {
            for g in layer {
                if !all.iter().any(|a| a.id == g.id) {
                    all.push(g.clone());
                }
            }
        }
        if all.is_empty() {
            return None;
        }
        let mut request = vec![];
        let mut response = vec![];
        let mut external = vec![];
        for g in &all {
            match &g.check {
                Check::Builtin(r) => {
                    if g.on_request {
                        request.push(r.clone());
                    }
                    if g.on_response {
                        response.push(r.clone());
                    }
                }
                Check::External(e) => {
                    if g.on_request {
                        external.push(e.clone());
                    }
                }
            }
        }
        Some(Arc::new(GuardSet {
            all: all.into_boxed_slice(),
            request: request.into(),
            response: response.into(),
            external: external.into_boxed_slice(),
        }))
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.all.iter().map(|g| &*g.id)
    }
}
