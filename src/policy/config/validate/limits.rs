//! The limit fields of one layer (org, group or key): converted and checked against the
//! layer above ("lower layers only tighten"), with the `model_limits` patterns and the
//! `token_budget` that nest the same fields per model glob.

use super::super::raw::*;
use super::super::*;
use super::{usd_to_micros, Checker, Loc};
use std::collections::BTreeMap;

/// Converts the limit fields of one layer; `parent` is the nearest layer above (for the
/// "lower layers only tighten" rule) with its display name.
pub(super) fn layer_limits(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    raw: RawLimits,
    parent: Option<(&str, &Limits)>,
) -> Limits {
    let RawLimits {
        rpm,
        rph,
        rpd,
        tpm,
        tpd,
        max_parallel,
        max_tokens,
        budget_usd,
        budget_period,
        soft_budget_usd,
        token_budget,
        token_budget_period,
        model_limits,
    } = raw;
    // Shadow fields keep their value; a bit says they count but never refuse.
    let mut shadow = Shadow::default();
    let mut split = |v: Option<LimitField<u64>>, bit: u16| -> Option<u64> {
        let (v, is_shadow) = v?.split();
        if is_shadow {
            shadow.set(bit);
        }
        Some(v)
    };
    let (rpm, rph, rpd) = (
        split(rpm, Shadow::RPM),
        split(rph, Shadow::RPH),
        split(rpd, Shadow::RPD),
    );
    let (tpm, tpd) = (split(tpm, Shadow::TPM), split(tpd, Shadow::TPD));
    let max_parallel = split(max_parallel, Shadow::MAX_PARALLEL);
    let max_tokens = split(max_tokens, Shadow::MAX_TOKENS);
    let budget_usd = budget_usd.map(|b| {
        let (v, is_shadow) = b.split();
        if is_shadow {
            shadow.set(Shadow::BUDGET);
        }
        v
    });
    let nz = |c: &mut Checker, field: &str, v: Option<u64>| -> Option<NonZeroU64> {
        let v = v?;
        match NonZeroU64::new(v) {
            Some(n) => Some(n),
            None => {
                c.problem(
                    loc,
                    format!("{path}.{field}"),
                    "0 is not a limit; pause the group or disable the key instead",
                );
                None
            }
        }
    };
    let mut l = Limits {
        rpm: nz(c, "rpm", rpm),
        rph: nz(c, "rph", rph),
        rpd: nz(c, "rpd", rpd),
        tpm: nz(c, "tpm", tpm),
        tpd: nz(c, "tpd", tpd),
        max_parallel: nz(c, "max_parallel", max_parallel)
            .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX))),
        max_tokens: nz(c, "max_tokens", max_tokens)
            .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX))),
        budget: None,
        shadow,
        more: None,
    };
    let token_budget = check_token_budget(
        c,
        loc,
        path,
        token_budget,
        token_budget_period.as_deref(),
        &mut l.shadow,
    );
    let patterns = check_model_limits(
        c,
        loc,
        path,
        model_limits,
        (budget_period.as_deref(), token_budget_period.as_deref()),
    );
    l.more = MoreLimits::new(token_budget, patterns);
    let period = match budget_period.as_deref() {
        None | Some("monthly") => BudgetPeriod::Monthly,
        Some("daily") => BudgetPeriod::Daily,
        Some("weekly") => BudgetPeriod::Weekly,
        Some("never") => BudgetPeriod::Never,
        Some(other) => {
            c.problem(
                loc,
                format!("{path}.budget_period"),
                format!("{other:?}: want daily, weekly, monthly or never"),
            );
            BudgetPeriod::Monthly
        }
    };
    match (budget_usd, soft_budget_usd) {
        (Some(b), soft) => {
            let limit_micros = usd_to_micros(c, loc, &format!("{path}.budget_usd"), b);
            let soft_micros =
                soft.map(|s| usd_to_micros(c, loc, &format!("{path}.soft_budget_usd"), s));
            if soft_micros.is_some_and(|s| s > limit_micros) {
                c.problem(
                    loc,
                    format!("{path}.soft_budget_usd"),
                    format!("{} exceeds budget_usd {b}", soft.unwrap_or_default()),
                );
            }
            l.budget = Some(Budget {
                limit_micros,
                period,
                soft_micros,
            });
        }
        (None, Some(_)) => c.problem(loc, format!("{path}.soft_budget_usd"), "needs budget_usd"),
        (None, None) if budget_period.is_some() => {
            c.problem(loc, format!("{path}.budget_period"), "needs budget_usd")
        }
        (None, None) => {}
    }
    if let Some((pname, p)) = parent {
        for (field, mine, theirs) in looser_than(&l, p) {
            c.problem(
                loc,
                format!("{path}.{field}"),
                format!("{mine} exceeds {pname} {field} {theirs} (lower layers only tighten)"),
            );
        }
        for (field, mine, pfield, theirs) in looser_patterns(&l, p) {
            c.problem(
                loc,
                format!("{path}.{field}"),
                format!("{mine} exceeds {pname} {pfield} {theirs} (lower layers only tighten)"),
            );
        }
    }
    l
}

/// "Lower layers only tighten", the one rule the policy file and the admin API share: every
/// field of `child` above the same field of `parent`, as `(field, child's, parent's)` in
/// the file's units (budgets in USD).
pub(crate) fn looser_than(child: &Limits, parent: &Limits) -> Vec<(&'static str, String, String)> {
    let tokens = (
        child.enforced_token_budget(),
        parent.enforced_token_budget(),
    );
    // Shadow limits refuse nothing: they neither bind a lower layer nor are bound.
    let (child, parent) = (&child.enforced(), &parent.enforced());
    let mut out = vec![];
    let mut check = |field: &'static str, mine: Option<u64>, theirs: Option<u64>| {
        if let (Some(m), Some(t)) = (mine, theirs) {
            if m > t {
                out.push((field, m.to_string(), t.to_string()));
            }
        }
    };
    let g = |v: Option<NonZeroU64>| v.map(NonZeroU64::get);
    let g32 = |v: Option<NonZeroU32>| v.map(|n| u64::from(n.get()));
    check("rpm", g(child.rpm), g(parent.rpm));
    check("rph", g(child.rph), g(parent.rph));
    check("rpd", g(child.rpd), g(parent.rpd));
    check("tpm", g(child.tpm), g(parent.tpm));
    check("tpd", g(child.tpd), g(parent.tpd));
    check(
        "max_parallel",
        g32(child.max_parallel),
        g32(parent.max_parallel),
    );
    check("max_tokens", g32(child.max_tokens), g32(parent.max_tokens));
    check(
        "token_budget",
        tokens.0.map(|t| t.limit),
        tokens.1.map(|t| t.limit),
    );
    if let (Some(mine), Some(theirs)) = (child.budget, parent.budget) {
        if mine.limit_micros > theirs.limit_micros {
            out.push((
                "budget_usd",
                crate::policy::config::micros_to_usd(mine.limit_micros),
                crate::policy::config::micros_to_usd(theirs.limit_micros),
            ));
        }
    }
    out
}

/// Limits with each field taken from the nearest layer that sets it: the bound a child
/// layer is checked against.
pub(crate) fn tightest(a: &Limits, b: &Limits) -> Limits {
    let (a_all, b_all) = (a, b);
    let (a, b) = (&a.enforced(), &b.enforced());
    fn min<T: Ord + Copy>(x: Option<T>, y: Option<T>) -> Option<T> {
        match (x, y) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }
    Limits {
        rpm: min(a.rpm, b.rpm),
        rph: min(a.rph, b.rph),
        rpd: min(a.rpd, b.rpd),
        tpm: min(a.tpm, b.tpm),
        tpd: min(a.tpd, b.tpd),
        max_parallel: min(a.max_parallel, b.max_parallel),
        max_tokens: min(a.max_tokens, b.max_tokens),
        budget: match (a.budget, b.budget) {
            (Some(x), Some(y)) => Some(if x.limit_micros <= y.limit_micros {
                x
            } else {
                y
            }),
            (x, y) => x.or(y),
        },
        shadow: Shadow::default(),
        more: tightest_more(a_all, b_all),
    }
}

/// `token_budget` (a whole number of tokens, plain or shadow) and its period.
pub(super) fn check_token_budget(
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
pub(super) fn check_model_limits(
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
            Some(m) => m.limits = tightest(&m.limits, &e.limits),
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
