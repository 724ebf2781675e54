//! Answers the gateway writes itself: refusals, `GET /v1/models`, and the body read that
//! comes before them.

use crate::error::GatewayError;
use crate::llm::body::Endpoint;
use crate::policy::config::{Api, ServerConfig};
use crate::proxy::conn::body_memory::{self, BodyHold};
use crate::proxy::ctx::RequestCtx;
use bytes::{Bytes, BytesMut};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete JSON response.
pub(crate) async fn write_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
    err: Option<&GatewayError>,
    cors: Option<&http::HeaderValue>,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(6))?;
    if let Some(origin) = cors {
        crate::proxy::cors::add_headers(&mut h, origin)?;
    }
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    h.insert_header("x-request-id", request_id)?;
    if let Some(s) = err.and_then(GatewayError::retry_after) {
        h.insert_header(http::header::RETRY_AFTER, s)?;
    }
    if let Some((kind, limit)) = err.and_then(GatewayError::blocked_window) {
        h.insert_header(format!("x-ratelimit-limit-{kind}"), limit)?;
        h.insert_header(format!("x-ratelimit-remaining-{kind}"), 0)?;
    }
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(())
}

/// Writes a refusal in the route's error shape.
pub(crate) async fn write_error(
    session: &mut Session,
    err: &GatewayError,
    api: Api,
    request_id: &str,
    cors: Option<&http::HeaderValue>,
) -> Result<()> {
    if matches!(err.status(), 400 | 408 | 413) || !session.is_body_done() {
        // The rest of the body may still be on the wire: do not reuse the connection
        // (draining it would let a client hold the connection as long as it likes).
        session.set_keepalive(None);
    }
    write_json(
        session,
        err.status(),
        err.body(api),
        request_id,
        Some(err),
        cors,
    )
    .await
}

/// Answers a refusal from `request_filter`: written in the route's shape, unless the
/// client is gone (then the error ends the request, and `logging` records the abort).
pub(crate) async fn refuse(
    session: &mut Session,
    err: &GatewayError,
    api: Api,
    request_id: &str,
    cors: Option<&http::HeaderValue>,
) -> Result<()> {
    if !err.writable() {
        return Err(pingora_error::Error::explain(
            pingora_error::ErrorType::ConnectionClosed,
            "client closed the connection",
        )
        .into_down());
    }
    write_error(session, err, api, request_id, cors).await
}

/// Bytes of body memory reserved ahead of a chunked body: one read's worth, so what is
/// read is always already counted.
const CHUNK_STEP: u64 = 64 * 1024;

/// Reads the whole request body, refusing more than `max_body` bytes, a body slower than
/// `body_timeout` (408) and a body that does not fit in `body_memory` (503 `overloaded`,
/// after a short wait). Memory is reserved in `hold` before it is read.
///
/// A body of known length is read into one buffer of that size: no growth, no copies
/// left behind in the allocator, so a stalled client holds what it sent, once. Pingora's
/// retry buffer (which must not be empty for Pingora to send a body upstream at all; the
/// body sent is ours, see `request_body_filter`) is enabled only for the last
/// [`CHUNK_STEP`] bytes. A chunked body has no known end: it goes through the retry buffer
/// as well as ours.
pub(crate) async fn read_body(
    session: &mut Session,
    server: &ServerConfig,
    hold: &mut BodyHold,
) -> std::result::Result<Bytes, GatewayError> {
    let max = server.max_body;
    let limits = &server.clients;
    let too_large = GatewayError::RequestTooLarge { limit: max };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large);
    }
    let busy = || {
        GatewayError::Overloaded(format!(
            "request bodies in memory at server.body_memory {}; retry shortly",
            bytesize::ByteSize(limits.body_memory).display().iec()
        ))
    };
    // A chunked body is held twice while it is read (ours and the retry buffer): it is
    // counted twice.
    let weight = if declared.is_some() { 1 } else { 2 };
    let charge = |n: u64| (n * weight).min(limits.body_memory);
    let first = declared.unwrap_or(CHUNK_STEP.min(max));
    if !hold
        .grow_to(charge(first), limits.body_memory, body_memory::WAIT)
        .await
    {
        return Err(busy());
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // We read the body ourselves, so the interim answer is ours to send.
        let continue_ =
            Box::new(ResponseHeader::build(100, Some(0)).map_err(|_| GatewayError::Internal)?);
        if let Err(e) = session.write_response_header(continue_, false).await {
            return Err(crate::observe::fault::client_error(&e));
        }
    }
    let mut buf = BytesMut::with_capacity(first as usize);
    let read = async {
        let mut replaying = false;
        loop {
            let left = declared.map_or(0, |d| d.saturating_sub(buf.len() as u64));
            if !replaying && left <= CHUNK_STEP {
                session.enable_retry_buffering();
                replaying = true;
            }
            // Every failure here is the client's: bad framing, a closed connection.
            let chunk = match session.read_request_body().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(crate::observe::fault::client_error(&e)),
            };
            let received = (buf.len() + chunk.len()) as u64;
            if received > max {
                return Err(too_large);
            }
            let ahead = (received + CHUNK_STEP)
                .min(declared.unwrap_or(max))
                .max(first);
            if !hold
                .grow_to(charge(ahead), limits.body_memory, body_memory::WAIT)
                .await
            {
                return Err(busy());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(limits.body_timeout, read).await;
    match outcome {
        Err(_) => Err(GatewayError::RequestTimeout {
            what: "request body",
            setting: "body_timeout",
            limit: limits.body_timeout,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(buf.freeze()),
    }
}

/// `GET /v1/models` for an identified key.
pub(crate) async fn list_models(session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    let key = ctx
        .key()
        .ok_or_else(|| Error::new(ErrorType::InternalError))?;
    let body = models_list(ctx.snapshot(), key);
    write_json(session, 200, body, ctx.request_id(), None, ctx.cors()).await
}

/// `count_tokens` for a model without an Anthropic target: the gateway's estimate, in
/// Anthropic's answer shape.
pub(crate) async fn count_estimate(session: &mut Session, ctx: &RequestCtx, n: u64) -> Result<()> {
    let body = format!("{{\"input_tokens\":{n}}}").into_bytes();
    write_json(session, 200, body, ctx.request_id(), None, ctx.cors()).await
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 with the CORS
/// headers for a listed origin, else 403 `origin_not_allowed` without them. No key needed.
pub(crate) async fn preflight(
    session: &mut Session,
    ctx: &mut RequestCtx,
    directory: &crate::proxy::directory::Directory,
) -> Result<bool> {
    let snapshot = ctx.snapshot().clone();
    match crate::proxy::cors::preflight(session.req_header(), &snapshot, directory) {
        Ok(mut h) => {
            h.insert_header("x-request-id", ctx.request_id())?;
            session.write_response_header(Box::new(h), true).await?;
            Ok(true)
        }
        Err(e) => {
            let api = Endpoint::api_for_path(session.req_header().uri.path());
            let written = refuse(session, &e, api, ctx.request_id(), None).await;
            ctx.refused(e);
            written.map(|()| true)
        }
    }
}

/// `fail_to_proxy`: writes `err` if nothing (but a 1xx) reached the client yet and the
/// client is still there; the status written, or 0.
pub(crate) async fn write_failure(
    session: &mut Session,
    err: &GatewayError,
    ctx: &RequestCtx,
) -> u16 {
    let unanswered = session
        .response_written()
        .is_none_or(|h| h.status.is_informational());
    if !(unanswered && err.writable()) {
        return 0;
    }
    let api = ctx.endpoint().map_or(Api::OpenAi, Endpoint::api);
    if let Err(w) = write_error(session, err, api, ctx.request_id(), ctx.cors()).await {
        log::debug!("cannot write error response: {w}");
    }
    err.status()
}

/// The body of the errors Pingora answers by itself, before any route is known (a request
/// header it cannot parse: bad framing, too many or too large headers; CONNECT). One shape
/// both APIs' clients read: OpenAI's `error.{message,type,code,param}` and Anthropic's
/// `type: "error"` with `error.{type,message}`.
pub(crate) fn pingora_error_body(status: u16) -> Option<Bytes> {
    let (code, message) = match status {
        400 => (
            "invalid_request",
            "malformed request: the request line or headers could not be parsed \
             (bad framing, invalid Content-Length, too many or too large headers)",
        ),
        405 => ("unknown_route", "method not allowed"),
        _ => return None,
    };
    let v = serde_json::json!({
        "type": "error",
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "code": code,
            "param": null,
        }
    });
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// `GET /v1/models`: the catalogue models this key may call, OpenAI list format.
pub(crate) fn models_list(
    snapshot: &crate::policy::snapshot::Snapshot,
    key: &crate::policy::snapshot::KeyEntry,
) -> Vec<u8> {
    let data: Vec<serde_json::Value> = snapshot
        .models
        .iter()
        .filter(|m| key.allowed[m.index])
        .filter(|m| {
            // `allowed_providers`: only models with a target the key may reach.
            key.req_policy()
                .and_then(|p| p.providers.as_ref())
                .is_none_or(|p| {
                    m.targets
                        .iter()
                        .any(|t| p.iter().any(|id| **id == *t.provider.id))
                })
        })
        .map(|m| serde_json::json!({"id": &*m.name, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
}
