//! `model_limits` (limits per model glob, each pattern its own pool) and `token_budget`.
//!
//! A pattern's pool is an admission scope of its own, named by the layer's id and the
//! pattern (see [`PatternLimits::scope_id`]), so windows, in-flight counts, budgets and
//! their persistence are the ones every layer uses: nothing is implemented twice.

use super::{BudgetPeriod, Limits};
use std::sync::Arc;

/// Separates a layer's id from a pattern (or `tokens`) in the id of a derived admission
/// scope: a control character, which no id of the policy file or the API may contain.
pub const SCOPE_SEP: char = '\u{1f}';

/// A token budget: tokens (input + output) per calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    pub limit: u64,
    pub period: BudgetPeriod,
}

/// One `model_limits` entry: the pattern, its compiled glob and its limits (any limit
/// field; budget periods are the layer's).
#[derive(Debug, Clone)]
pub struct PatternLimits {
    pub pattern: Box<str>,
    pub glob: globset::GlobMatcher,
    pub limits: Limits,
    /// `<layer id>\x1f<pattern>`: the admission scope of this pool, made once when the
    /// layer's id is known ([`ModelLimits::bind`]), so a request allocates nothing.
    pub scope_id: Arc<str>,
}

/// A layer's `token_budget` and `model_limits` (patterns in the file's sorted order).
#[derive(Debug, Clone, Default)]
pub struct MoreLimits {
    pub token_budget: Option<TokenBudget>,
    pub entries: Box<[PatternLimits]>,
}

impl PartialEq for MoreLimits {
    fn eq(&self, other: &MoreLimits) -> bool {
        self.token_budget == other.token_budget
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(other.entries.iter())
                .all(|(a, b)| a.pattern == b.pattern && a.limits == b.limits)
    }
}

impl Eq for MoreLimits {}

impl MoreLimits {
    /// `None` when there is nothing to keep.
    pub fn new(
        token_budget: Option<TokenBudget>,
        entries: Box<[PatternLimits]>,
    ) -> Option<Arc<MoreLimits>> {
        (token_budget.is_some() || !entries.is_empty()).then(|| {
            Arc::new(MoreLimits {
                token_budget,
                entries,
            })
        })
    }
}

/// The derived scope id of a pattern's pool.
pub fn pattern_scope(id: &str, pattern: &str) -> Arc<str> {
    format!("{id}{SCOPE_SEP}{pattern}").into()
}

/// The derived scope id under which a layer's token budget is stored.
pub fn tokens_scope(id: &str) -> Arc<str> {
    format!("{id}{SCOPE_SEP}{SCOPE_SEP}tokens").into()
}

/// A scope id for messages: `k1` or `k1 model_limits "gpt-4o*"`.
pub fn scope_display(id: &str) -> std::borrow::Cow<'_, str> {
    match id.split_once(SCOPE_SEP) {
        None => std::borrow::Cow::Borrowed(id),
        Some((id, pattern)) => format!("{id} model_limits {pattern:?}").into(),
    }
}

impl Limits {
    /// `token_budget`, enforced or shadow.
    pub fn token_budget(&self) -> Option<TokenBudget> {
        self.more.as_ref().and_then(|m| m.token_budget)
    }

    /// `token_budget` when it refuses (not a shadow limit).
    pub fn enforced_token_budget(&self) -> Option<TokenBudget> {
        self.token_budget()
            .filter(|_| !self.shadow.has(super::Shadow::TOKEN_BUDGET))
    }

    /// The `model_limits` patterns (none for most layers).
    pub fn model_limits(&self) -> &[PatternLimits] {
        self.more.as_ref().map_or(&[], |m| &m.entries)
    }

    /// The entry for exactly `pattern`, if the layer has it.
    pub fn pattern(&self, pattern: &str) -> Option<&PatternLimits> {
        self.model_limits().iter().find(|e| &*e.pattern == pattern)
    }

    /// Names this layer's pattern pools after the layer's id (see
    /// [`PatternLimits::scope_id`]). Call once the id is known.
    pub fn bind(&mut self, id: &str) {
        let Some(m) = &self.more else { return };
        if m.entries.is_empty() {
            return;
        }
        let entries = m
            .entries
            .iter()
            .map(|e| PatternLimits {
                scope_id: pattern_scope(id, &e.pattern),
                ..e.clone()
            })
            .collect();
        self.more = MoreLimits::new(m.token_budget, entries);
    }
}
