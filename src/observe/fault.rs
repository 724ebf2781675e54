//! Who caused a refusal or an abort: the client, the gateway or the upstream.
//!
//! Only upstream faults are upstream errors: they alone count against a target's health
//! (ejection), in `error_rate.high` and as `fault="upstream"` in `tollgate_errors_total`.
//! A client that sends a malformed body, closes its connection or stops sending is the
//! client's fault, logged with its own status (400, 499, 408) and never a gateway 5xx.
//!
//! | what happened                                   | status | code                   | fault    |
//! |-------------------------------------------------|--------|------------------------|----------|
//! | malformed body framing (bad chunk size, …)      | 400    | `invalid_request`      | client   |
//! | client closed the connection before the end     | 499    | `client_closed_request`| client   |
//! | client stopped sending its body (read timeout)  | 408    | `request_timeout`      | client   |
//! | upstream status outside 200..=599 (1xx, 999)    | 502    | `upstream_error`       | upstream |
//! | connect / reset / timeout upstream              | 502/504| `upstream_error`, …    | upstream |
//! | a bug in the gateway's own hooks                | 500    | `internal_error`       | gateway  |

use crate::error::GatewayError;
use pingora_error::{Error, ErrorSource, ErrorType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Client,
    Gateway,
    Upstream,
}

impl Fault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Gateway => "gateway",
            Fault::Upstream => "upstream",
        }
    }

    /// The fault of a finished request: its error's, else a provider's own answer passed
    /// through (429 and 5xx are the provider's trouble, other 4xx the request's).
    pub(crate) fn of(error: Option<&GatewayError>, status: u16) -> Option<Fault> {
        match error {
            Some(e) => Some(e.fault()),
            None if status == 429 || status >= 500 => Some(Fault::Upstream),
            None if status >= 400 => Some(Fault::Client),
            None => None,
        }
    }
}

impl GatewayError {
    /// Who caused it: only [`Fault::Upstream`] counts as an upstream error (metrics,
    /// `error_rate.high`, target health).
    pub(crate) fn fault(&self) -> Fault {
        use GatewayError::*;
        match self {
            UpstreamError(_) | NoHealthyTarget(_) | UpstreamTimeout(_) => Fault::Upstream,
            // A gateway cap (connections, body memory): the gateway's own refusal.
            Internal | Overloaded(_) | GuardrailUnavailable { .. } => Fault::Gateway,
            _ => Fault::Client,
        }
    }
}

/// A failure while talking to the client (reading its body, writing the answer).
pub(crate) fn client_error(e: &Error) -> GatewayError {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::ClientTimeout(
            "the client sent nothing for too long while the gateway read the request body".into(),
        ),
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2 => malformed(e),
        // INVALID_CHUNK, INVALID_TRAILER_END, PREMATURE_BODY_END (a body shorter than its
        // Content-Length is a closed connection, not bad syntax).
        ErrorType::Custom(name) if *name != "PrematureBodyEnd" => malformed(e),
        _ => GatewayError::ClientClosed(format!(
            "the client closed the connection ({})",
            e.etype().as_str()
        )),
    }
}

/// The request could not be parsed. Only the error's kind is named, never the bytes.
fn malformed(e: &Error) -> GatewayError {
    GatewayError::InvalidRequest(format!(
        "malformed request body framing ({}); check Content-Length / Transfer-Encoding",
        e.etype().as_str()
    ))
}

/// Attributes the error that ended a proxied request (`fail_to_proxy`). `target` is the
/// last target tried (`None`: no upstream attempt was made, so whatever failed was not an
/// upstream — Pingora leaves the source of a failed body read unset); `timed_out` whether
/// the last attempt timed out before the first byte.
pub(crate) fn attribute(e: &Error, target: Option<&str>, timed_out: bool) -> GatewayError {
    match e.esource() {
        ErrorSource::Internal => return GatewayError::Internal,
        _ if matches!(e.etype(), ErrorType::InternalError) => return GatewayError::Internal,
        ErrorSource::Downstream => return client_error(e),
        _ if target.is_none() => return client_error(e),
        _ => {}
    }
    let target = target.unwrap_or("upstream");
    if timed_out {
        return GatewayError::UpstreamTimeout(format!(
            "{target}: no response within the group timeout"
        ));
    }
    GatewayError::UpstreamError(format!(
        "every target failed; last: {target}: {}",
        e.etype().as_str()
    ))
}

/// An upstream status the gateway cannot relay as a final answer: interim 1xx (101
/// included: the gateway never asks for an upgrade, nor sends `Expect` upstream) and
/// anything above 599.
pub(crate) fn unrelayable(status: u16, target: Option<&str>) -> Option<GatewayError> {
    if (200..=599).contains(&status) {
        return None;
    }
    Some(GatewayError::UpstreamError(format!(
        "{}: answered status {status}, which the gateway cannot relay",
        target.unwrap_or("upstream")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: ErrorType, source: Option<ErrorSource>) -> Box<Error> {
        let mut e = Error::new(t);
        match source {
            Some(ErrorSource::Downstream) => e.as_down(),
            Some(ErrorSource::Upstream) => e.as_up(),
            Some(ErrorSource::Internal) => e.as_in(),
            _ => {}
        }
        e
    }

    #[test]
    fn client_failures_are_the_clients() {
        let cases = [
            (ErrorType::new("InvalidChunk"), 400, "invalid_request"),
            (ErrorType::InvalidHTTPHeader, 400, "invalid_request"),
            (
                ErrorType::new("PrematureBodyEnd"),
                499,
                "client_closed_request",
            ),
            (ErrorType::ConnectionClosed, 499, "client_closed_request"),
            (ErrorType::ReadError, 499, "client_closed_request"),
            (ErrorType::ReadTimedout, 408, "request_timeout"),
        ];
        for (t, status, code) in cases {
            let g = client_error(&err(t.clone(), None));
            assert_eq!(
                (g.status(), g.code(), g.fault()),
                (status, code, Fault::Client)
            );
            let g = attribute(&err(t, Some(ErrorSource::Downstream)), Some("oa/m"), false);
            assert_eq!(g.fault(), Fault::Client);
        }
    }

    #[test]
    fn upstream_and_gateway_failures() {
        let up = attribute(
            &err(ErrorType::ConnectRefused, Some(ErrorSource::Upstream)),
            Some("oa/m"),
            false,
        );
        assert_eq!((up.code(), up.fault()), ("upstream_error", Fault::Upstream));
        let t = attribute(
            &err(ErrorType::ReadTimedout, Some(ErrorSource::Upstream)),
            Some("oa/m"),
            true,
        );
        assert_eq!(t.code(), "upstream_timeout");
        // No upstream attempt: a failed read of the body cannot be an upstream error.
        let body = attribute(&err(ErrorType::new("InvalidChunk"), None), None, false);
        assert_eq!(
            (body.code(), body.fault()),
            ("invalid_request", Fault::Client)
        );
        let bug = attribute(&err(ErrorType::InternalError, None), None, false);
        assert_eq!((bug.status(), bug.fault()), (500, Fault::Gateway));
        for s in [100, 101, 103, 199, 600, 999] {
            assert_eq!(unrelayable(s, None).map(|e| e.status()), Some(502), "{s}");
        }
        for s in [200, 204, 404, 429, 599] {
            assert!(unrelayable(s, None).is_none(), "{s}");
        }
        assert_eq!(Fault::of(None, 503), Some(Fault::Upstream));
        assert_eq!(Fault::of(None, 400), Some(Fault::Client));
        assert_eq!(Fault::of(None, 200), None);
    }
}
