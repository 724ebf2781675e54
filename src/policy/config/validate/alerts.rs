//! Alert channels (docs/policy.md "Alert channels"): `webhook_format` and `alert_email` on
//! orgs and groups, and the `[smtp]` section mail goes through.

use super::super::raw::RawSmtp;
use super::super::{Alerts, Smtp};
use super::{Checker, Loc};
use crate::control::webhooks::channels::{Format, Secret};

/// An org's or a group's channels. `webhook` and `secret_env` are the layer's own fields:
/// whether the secret is required, optional or refused depends on the format.
pub(super) fn check_alerts(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    (webhook, secret_env): (Option<&str>, Option<&str>),
    format: Option<&str>,
    email: Vec<String>,
) -> Alerts {
    let format = match format {
        None => Format::Json,
        Some(f) => Format::parse_webhook(f).unwrap_or_else(|| {
            c.problem(
                loc,
                format!("{path}.webhook_format"),
                format!("{f:?}: want json, slack, feishu or dingtalk"),
            );
            Format::Json
        }),
    };
    if format != Format::Json && webhook.is_none() {
        c.problem(loc, format!("{path}.webhook_format"), "needs webhook");
    }
    match (webhook.is_some(), secret_env.is_some(), format.secret()) {
        (true, false, Secret::Required) => c.problem(
            loc,
            format!("{path}.webhook_secret_env"),
            "a webhook needs webhook_secret_env (the env var holding its signing secret)",
        ),
        (_, true, Secret::Unused) => c.problem(
            loc,
            format!("{path}.webhook_secret_env"),
            "Slack incoming webhooks are not signed: remove webhook_secret_env",
        ),
        _ => {}
    }
    for (i, a) in email.iter().enumerate() {
        if a.parse::<lettre::Address>().is_err() {
            c.problem(
                loc,
                format!("{path}.alert_email[{i}]"),
                format!("{a:?} is not an email address"),
            );
        }
    }
    Alerts { format, email }
}

pub(super) fn check_smtp(c: &mut Checker, loc: Loc, raw: RawSmtp) -> Smtp {
    let RawSmtp {
        host,
        port,
        from,
        username_env,
        password_env,
        starttls,
    } = raw;
    if host.is_empty() {
        c.problem(loc, "smtp.host", "must not be empty");
    }
    if from.parse::<lettre::message::Mailbox>().is_err() {
        c.problem(
            loc,
            "smtp.from",
            format!("{from:?} is not an address (\"ops@example.com\" or \"Tollgate <ops@example.com>\")"),
        );
    }
    if username_env.is_some() != password_env.is_some() {
        c.problem(
            loc,
            "smtp.password_env",
            "username_env and password_env go together",
        );
    }
    let starttls = starttls.unwrap_or(true);
    let port = match port {
        None => 587,
        Some(p @ 1..=65535) => p as u16,
        Some(p) => {
            c.problem(loc, "smtp.port", format!("{p}: want 1..=65535"));
            587
        }
    };
    Smtp {
        host,
        port,
        from,
        username_env,
        password_env,
        starttls,
    }
}
