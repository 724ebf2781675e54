//! `token_budget` and `model_limits` of one layer, and the "lower layers only tighten"
//! rule per pattern: a pattern's limit may exceed neither the same pattern's limit of the
//! layers above nor their overall limit.

use super::super::raw::*;
use super::super::*;
use super::layers::{layer_limits, looser_than};
use super::{Checker, Loc};
use std::collections::BTreeMap;

/// `token_budget` (a whole number of tokens, plain or shadow) and its period.
pub(super) fn token_budget(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    raw: Option<LimitField<u64>>,
    period: Option<&str>,
    shadow: &mut Shadow,
) -> Option<TokenBudget> {
    let period = match period {
        None | Some("monthly") => BudgetPeriod::Monthly,
        Some("daily") => BudgetPeriod::Daily,
        Some("weekly") => BudgetPeriod::Weekly,
        Some("never") => BudgetPeriod::Never,
        Some(other) => {
            c.problem(
                loc,
                format!("{path}.token_budget_period"),
                format!("{other:?}: want daily, weekly, monthly or never"),
            );
            BudgetPeriod::Monthly
        }
    };
    let (limit, is_shadow) = raw?.split();
    if limit == 0 {
        c.problem(
            loc,
            format!("{path}.token_budget"),
            "0 is not a limit; pause the group or disable the key instead",
        );
        return None;
    }
    if is_shadow {
        shadow.set(Shadow::TOKEN_BUDGET);
    }
    Some(TokenBudget { limit, period })
}

/// `model_limits`: each pattern's limits, checked like a layer's (budget periods are the
/// layer's `budget_period` and `token_budget_period`).
pub(super) fn model_limits(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    raw: Option<BTreeMap<String, RawPatternLimits>>,
    (budget_period, token_budget_period): (Option<&str>, Option<&str>),
) -> Box<[PatternLimits]> {
    let Some(raw) = raw else {
        return Box::default();
    };
    let mut entries = Vec::with_capacity(raw.len());
    for (pattern, p) in raw {
        let at = format!("{path}.model_limits.{pattern:?}");
        if pattern.is_empty() || pattern.chars().any(char::is_control) {
            c.problem(loc, at, "want a model name or glob");
            continue;
        }
        let glob = match globset::Glob::new(&pattern) {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                c.problem(loc, at, format!("invalid glob {pattern:?}: {}", e.kind()));
                continue;
            }
        };
        let RawPatternLimits {
            rpm,
            rph,
            rpd,
            tpm,
            tpd,
            max_parallel,
            max_tokens,
            budget_usd,
            token_budget,
        } = p;
        if [
            rpm,
            rph,
            rpd,
            tpm,
            tpd,
            max_parallel,
            max_tokens,
            token_budget,
        ]
        .iter()
        .all(Option::is_none)
            && budget_usd.is_none()
        {
            c.problem(loc, at, "sets no limit");
            continue;
        }
        let lim = RawLimits {
            rpm,
            rph,
            rpd,
            tpm,
            tpd,
            max_parallel,
            max_tokens,
            budget_period: budget_usd.and(budget_period.map(str::to_string)),
            budget_usd,
            soft_budget_usd: None,
            token_budget_period: token_budget.and(token_budget_period.map(str::to_string)),
            token_budget,
            model_limits: None,
        };
        let limits = layer_limits(c, loc, &at, lim, None);
        entries.push(PatternLimits {
            scope_id: pattern.as_str().into(),
            pattern: pattern.into_boxed_str(),
            glob,
            limits,
        });
    }
    entries.into_boxed_slice()
}

/// Every pattern limit of `child` above the parent's limit for the same pattern or the
/// parent's overall limit, as `(child's field, child's value, parent's field, parent's
/// value)`; fields as written (`model_limits."gpt-4o*".rpm`).
pub(crate) fn looser_patterns(
    child: &Limits,
    parent: &Limits,
) -> Vec<(String, String, String, String)> {
    let mut out = vec![];
    for e in child.model_limits() {
        let mine = format!("model_limits.{:?}", &*e.pattern);
        if let Some(theirs) = parent.pattern(&e.pattern) {
            for (field, m, t) in looser_than(&e.limits, &theirs.limits) {
                let theirs = format!("model_limits {:?} {field}", &*e.pattern);
                out.push((format!("{mine}.{field}"), m, theirs, t));
            }
        }
        for (field, m, t) in looser_than(&e.limits, parent) {
            out.push((format!("{mine}.{field}"), m, field.to_string(), t));
        }
    }
    out
}

/// The bound a lower layer is checked against: the smaller enforced token budget, and per
/// pattern the tightest of the two layers' limits for it.
pub(super) fn tightest_more(a: &Limits, b: &Limits) -> Option<Arc<MoreLimits>> {
    let token_budget = match (a.enforced_token_budget(), b.enforced_token_budget()) {
        (Some(x), Some(y)) => Some(if x.limit <= y.limit { x } else { y }),
        (x, y) => x.or(y),
    };
    let mut entries: Vec<PatternLimits> = a.model_limits().to_vec();
    for e in b.model_limits() {
        match entries.iter_mut().find(|m| m.pattern == e.pattern) {
            Some(m) => m.limits = super::layers::tightest(&m.limits, &e.limits),
            None => entries.push(e.clone()),
        }
    }
    MoreLimits::new(token_budget, entries.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::super::parse_config;
    use std::path::Path;

    const HEAD: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:2\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n";

    fn problems(org: &str, group: &str, key: &str) -> Vec<String> {
        let text = format!(
            "{HEAD}\n[[orgs]]\nid = \"o\"\n{org}\n\n[[groups]]\nid = \"g\"\norg = \"o\"\n{group}\n\n[[keys]]\nid = \"k\"\ngroup = \"g\"\nsha256 = \"{}\"\n{key}\n",
            "ab".repeat(32)
        );
        match parse_config(&text, Path::new("t.toml")) {
            Ok(_) => vec![],
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn an_org_pattern_binds_keys_through_a_group_without_it() {
        let got = problems(
            r#"model_limits = { "m*" = { rpm = 10, budget_usd = 1 } }"#,
            "",
            r#"model_limits = { "m*" = { rpm = 20, budget_usd = 0.5 } }"#,
        );
        assert_eq!(
            got,
            [
                r#"keys[0] (k).model_limits."m*".rpm: 20 exceeds group g model_limits "m*" rpm 10 (lower layers only tighten)"#
            ]
        );
        // The tighter of group and org binds.
        let got = problems(
            r#"model_limits = { "m*" = { rpm = 10 } }"#,
            r#"model_limits = { "m*" = { rpm = 5 } }"#,
            r#"model_limits = { "m*" = { rpm = 7 } }"#,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("7 exceeds group g model_limits \"m*\" rpm 5"),
            "{got:?}"
        );
    }

    #[test]
    fn shadow_patterns_neither_bind_nor_are_bound_and_budgets_need_nothing_more() {
        assert!(problems(
            r#"model_limits = { "m*" = { rpm = { value = 1, mode = "shadow" } } }"#,
            r#"model_limits = { "m*" = { rpm = 5, token_budget = { value = 10, mode = "shadow" } } }"#,
            r#"token_budget = 7
model_limits = { "m*" = { rpm = 5, budget_usd = 2, token_budget = 100 } }"#,
        )
        .is_empty());
        let got = problems("", "", r#"model_limits = { "m*" = { rpm = 0 } }"#);
        assert_eq!(
            got,
            [
                r#"keys[0] (k).model_limits."m*".rpm: 0 is not a limit; pause the group or disable the key instead"#
            ]
        );
    }
}
