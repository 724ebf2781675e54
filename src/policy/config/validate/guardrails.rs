//! `[[guardrails]]` blocks, and the `guardrails = [...]` lists of orgs, groups and keys.

use super::super::guardrails::{Check, External, Guardrail, OnError, Service, DEFAULT_TIMEOUT};
use super::*;
use crate::llm::guard::{Action, Builtin, PiiEntity, Rule};

/// Every `[[guardrails]]` block; the bad ones are reported and left out.
pub(super) fn check_guardrails(
    c: &mut Checker,
    raw: Vec<(RawGuardrail, Loc, String)>,
    providers: &[Provider],
) -> Vec<Guardrail> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (g, loc, path) in raw {
        check_unique(c, loc, &path, "guardrail", &g.id, &mut seen);
        let path = format!("{path} ({})", g.id);
        if let Some(g) = check_guardrail(c, loc, &path, g, providers) {
            out.push(g);
        }
    }
    out
}

fn check_guardrail(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    g: RawGuardrail,
    providers: &[Provider],
) -> Option<Guardrail> {
    let RawGuardrail {
        id,
        kind,
        entities,
        patterns,
        threshold,
        action,
        on,
        provider,
        categories,
        url,
        secret_env,
        timeout,
        on_error,
    } = g;
    let at = |field: &str| format!("{path}.{field}");
    let external = matches!(kind.as_str(), "moderation" | "webhook");
    let action = match action.as_deref() {
        Some("block") => Action::Block,
        Some("redact") if kind == "moderation" => {
            c.problem(
                loc,
                at("action"),
                "moderation can block or log, not redact (it names categories, not spans)",
            );
            Action::Block
        }
        Some("redact") => Action::Redact,
        Some("log") => Action::Log,
        None => {
            c.problem(loc, at("action"), "missing: want block, redact or log");
            Action::Block
        }
        Some(o) => {
            c.problem(
                loc,
                at("action"),
                format!("{o:?}: want block, redact or log"),
            );
            Action::Block
        }
    };
    let (mut on_request, mut on_response) = (true, false);
    if let Some(on) = on {
        on_request = false;
        for o in &on {
            match o.as_str() {
                "request" => on_request = true,
                "response" => on_response = true,
                o => c.problem(loc, at("on"), format!("{o:?}: want request or response")),
            }
        }
        if on.is_empty() {
            c.problem(loc, at("on"), "empty: want request, response or both");
        }
    }
    if external && on_response {
        // An answer is checked as it passes, in a synchronous filter: there is no point
        // where the gateway could wait for another service without holding the answer.
        c.problem(
            loc,
            at("on"),
            "moderation and webhook guardrails check requests only: use a built-in kind on responses",
        );
    }
    // Fields that only some kinds read: a field given to another kind is a mistake.
    let only = |c: &mut Checker, field: &str, given: bool, kinds: &str| {
        if given {
            c.problem(
                loc,
                at(field),
                format!("only {kinds} guardrails take {field}"),
            );
        }
    };
    only(c, "entities", entities.is_some() && kind != "pii", "pii");
    only(
        c,
        "patterns",
        !patterns.is_empty() && kind != "regex",
        "regex",
    );
    only(
        c,
        "threshold",
        threshold.is_some() && kind != "injection",
        "injection",
    );
    only(
        c,
        "provider",
        provider.is_some() && kind != "moderation",
        "moderation",
    );
    only(
        c,
        "categories",
        categories.is_some() && kind != "moderation",
        "moderation",
    );
    only(c, "url", url.is_some() && kind != "webhook", "webhook");
    only(
        c,
        "secret_env",
        secret_env.is_some() && kind != "webhook",
        "webhook",
    );
    only(
        c,
        "timeout",
        timeout.is_some() && !external,
        "moderation and webhook",
    );
    only(
        c,
        "on_error",
        on_error.is_some() && !external,
        "moderation and webhook",
    );
    let id: Arc<str> = id.into();
    let builtin = |b: Builtin| {
        Check::Builtin(Arc::new(Rule {
            id: id.clone(),
            action,
            builtin: b,
        }))
    };
    let check = match kind.as_str() {
        "pii" => {
            let list = match entities {
                None => PiiEntity::ALL.to_vec(),
                Some(names) => {
                    let mut list = vec![];
                    for n in &names {
                        match PiiEntity::parse(n) {
                            Some(e) if !list.contains(&e) => list.push(e),
                            Some(_) => {}
                            None => c.problem(
                                loc,
                                at("entities"),
                                format!(
                                    "unknown entity {n:?}: want {}",
                                    PiiEntity::ALL.map(PiiEntity::name).join(", ")
                                ),
                            ),
                        }
                    }
                    if names.is_empty() {
                        c.problem(loc, at("entities"), "empty: leave it out for every entity");
                    }
                    list
                }
            };
            builtin(Builtin::Pii(list))
        }
        "secrets" => builtin(Builtin::Secrets),
        "regex" => {
            if patterns.is_empty() {
                c.problem(loc, at("patterns"), "a regex guardrail needs patterns");
            }
            match Builtin::regex(&patterns) {
                Ok(b) => builtin(b),
                Err((i, e)) if i < patterns.len() => {
                    c.problem(
                        loc,
                        format!("{path}.patterns[{i}]"),
                        format!("pattern {i} does not compile: {}", one_line(&e)),
                    );
                    return None;
                }
                // Past the last pattern: about the list (too many of them).
                Err((_, e)) => {
                    c.problem(loc, at("patterns"), one_line(&e));
                    return None;
                }
            }
        }
        "injection" => {
            let t = threshold.unwrap_or(0.8);
            if !(t > 0.0 && t <= 1.0) {
                c.problem(loc, at("threshold"), format!("{t}: want a score in (0, 1]"));
            }
            builtin(Builtin::Injection {
                threshold: t as f32,
            })
        }
        "moderation" | "webhook" => {
            let timeout = duration(c, loc, &at("timeout"), timeout.as_deref(), DEFAULT_TIMEOUT);
            if timeout.is_zero() || timeout > Duration::from_secs(60) {
                c.problem(
                    loc,
                    at("timeout"),
                    format!("{timeout:?}: want more than 0 and at most 60s"),
                );
            }
            let on_error = match on_error.as_deref() {
                None | Some("block") => OnError::Block,
                Some("allow") => OnError::Allow,
                Some(o) => {
                    c.problem(loc, at("on_error"), format!("{o:?}: want block or allow"));
                    OnError::Block
                }
            };
            let service = if kind == "moderation" {
                moderation(c, loc, path, provider, categories, providers)?
            } else {
                webhook(c, loc, path, url, secret_env)?
            };
            Check::External(Arc::new(External {
                id: id.clone(),
                action,
                timeout,
                on_error,
                service,
            }))
        }
        k => {
            c.problem(
                loc,
                at("kind"),
                format!("{k:?}: want pii, secrets, regex, injection, moderation or webhook"),
            );
            return None;
        }
    };
    Some(Guardrail {
        id,
        on_request,
        on_response,
        check,
    })
}

fn one_line(e: &str) -> String {
    e.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn moderation(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    provider: Option<String>,
    categories: Option<Vec<String>>,
    providers: &[Provider],
) -> Option<Service> {
    let Some(p) = provider else {
        c.problem(
            loc,
            format!("{path}.provider"),
            "missing: the OpenAI-style provider whose /v1/moderations is asked",
        );
        return None;
    };
    let Some(i) = providers.iter().position(|x| *x.id == *p) else {
        c.problem(
            loc,
            format!("{path}.provider"),
            format!("unknown provider {p:?}"),
        );
        return None;
    };
    if providers[i].api != Api::OpenAi {
        c.problem(
            loc,
            format!("{path}.provider"),
            format!("provider {p:?} speaks {}: moderation needs an OpenAI-style provider (/v1/moderations)", providers[i].api.as_str()),
        );
        return None;
    }
    let categories = categories.unwrap_or_default();
    if categories.iter().any(|c| c.is_empty()) {
        c.problem(loc, format!("{path}.categories"), "an empty category name");
    }
    Some(Service::Moderation {
        provider: i,
        categories,
    })
}

fn webhook(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    url: Option<String>,
    secret_env: Option<String>,
) -> Option<Service> {
    let Some(url) = url else {
        c.problem(
            loc,
            format!("{path}.url"),
            "missing: where the texts are sent",
        );
        return None;
    };
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.parse::<http::Uri>().is_err()
    {
        c.problem(
            loc,
            format!("{path}.url"),
            format!("{url:?} is not an http(s) URL"),
        );
    }
    if let Some(env) = &secret_env {
        if env.is_empty() || env.contains('=') || env.contains('\0') {
            c.problem(
                loc,
                format!("{path}.secret_env"),
                format!("{env:?} is not an environment variable name"),
            );
        }
    }
    Some(Service::Webhook { url, secret_env })
}

/// A layer's `guardrails = [...]` as indices into `guards`; unknown ids are reported.
pub(super) fn guard_refs(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    list: &[String],
    guards: &[Guardrail],
) -> Box<[u16]> {
    let mut out: Vec<u16> = vec![];
    for id in list {
        match guards.iter().position(|g| *g.id == **id) {
            Some(i) => {
                let i = i as u16;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            None => c.problem(
                loc,
                format!("{path}.guardrails"),
                format!("unknown guardrail {id:?}"),
            ),
        }
    }
    out.into_boxed_slice()
}
