//! `alert_email`: the same events as mail, sent by SMTP (`[smtp]`, lettre over rustls and
//! tokio) from the webhook queue, so a restart loses none and a failure is retried with
//! the webhooks' backoff.

use crate::policy::config::Smtp;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Why a mail was not sent; `retry`: whether trying again can help.
pub(crate) struct Failure {
    pub(crate) retry: bool,
    pub(crate) error: String,
}

fn hopeless(error: impl Into<String>) -> Failure {
    Failure {
        retry: false,
        error: error.into(),
    }
}

/// Sends one message to every address of `to` (comma separated).
pub(crate) async fn send(
    smtp: &Smtp,
    to: &str,
    subject: &str,
    text: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| hopeless(format!("smtp.from: {e}")))?;
    let mut b = Message::builder().from(from).subject(subject);
    for addr in to.split(',').filter(|a| !a.is_empty()) {
        let mbox: Mailbox = addr
            .parse()
            .map_err(|e| hopeless(format!("alert_email {addr:?}: {e}")))?;
        b = b.to(mbox);
    }
    let msg = b
        .header(ContentType::TEXT_PLAIN)
        .body(text.to_string())
        .map_err(|e| hopeless(e.to_string()))?;
    let mut t = if smtp.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| hopeless(e.to_string()))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
    }
    .port(smtp.port)
    .timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&smtp.username_env, &smtp.password_env) {
        let user = std::env::var(u).map_err(|_| hopeless(format!("{u} is not set")))?;
        let pass = std::env::var(p).map_err(|_| hopeless(format!("{p} is not set")))?;
        t = t.credentials(Credentials::new(user, pass));
    }
    t.build().send(msg).await.map(|_| ()).map_err(|e| Failure {
        // A permanent SMTP answer (5xx) will not change on retry.
        retry: !e.is_permanent(),
        error: e.to_string(),
    })
}
