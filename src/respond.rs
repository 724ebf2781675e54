//! Answers the gateway writes itself: refusals, `GET /v1/models`, and the body read that
//! comes before them.

use crate::config::Api;
use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete JSON response.
pub async fn write_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
    err: Option<&GatewayError>,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(6))?;
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
pub async fn write_error(
    session: &mut Session,
    err: &GatewayError,
    api: Api,
    request_id: &str,
) -> Result<()> {
    if matches!(err.status(), 400 | 408 | 413) {
        // The rest of the body may still be on the wire: do not reuse the connection.
        session.set_keepalive(None);
    }
    write_json(session, err.status(), err.body(api), request_id, Some(err)).await
}

/// Answers a refusal from `request_filter`: written in the route's shape, unless the
/// client is gone (then the error ends the request, and `logging` records the abort).
pub async fn refuse(
    session: &mut Session,
    err: &GatewayError,
    api: Api,
    request_id: &str,
) -> Result<()> {
    if !err.writable() {
        return Err(pingora_error::Error::explain(
            pingora_error::ErrorType::ConnectionClosed,
            "client closed the connection",
        )
        .into_down());
    }
    write_error(session, err, api, request_id).await
}

/// Reads the whole request body, refusing more than `max` bytes. The body also lands in
/// Pingora's retry buffer (enabled here, before the first read), which replays it to the
/// upstream on every attempt.
pub async fn read_body(
    session: &mut Session,
    max: u64,
) -> Result<std::result::Result<Bytes, GatewayError>> {
    let too_large = GatewayError::RequestTooLarge { limit: max };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(Err(too_large));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // We read the body ourselves, so the interim answer is ours to send.
        let continue_ = Box::new(ResponseHeader::build(100, Some(0))?);
        if let Err(e) = session.write_response_header(continue_, false).await {
            return Ok(Err(crate::fault::client_error(&e)));
        }
    }
    if let Some(t) = crate::fault::body_read_timeout() {
        session.set_read_timeout(Some(t));
    }
    session.enable_retry_buffering();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(max) as usize);
    loop {
        // Every failure here is the client's: bad framing, a closed connection, silence.
        let chunk = match session.read_request_body().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Ok(Err(crate::fault::client_error(&e))),
        };
        if (buf.len() + chunk.len()) as u64 > max {
            return Ok(Err(too_large));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf.freeze()))
}

/// The body of the errors Pingora answers by itself, before any route is known (a request
/// header it cannot parse: bad framing, too many or too large headers; CONNECT). One shape
/// both APIs' clients read: OpenAI's `error.{message,type,code,param}` and Anthropic's
/// `type: "error"` with `error.{type,message}`.
pub fn pingora_error_body(status: u16) -> Option<Bytes> {
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
pub fn models_list(
    snapshot: &crate::snapshot::Snapshot,
    key: &crate::snapshot::KeyEntry,
) -> Vec<u8> {
    let data: Vec<serde_json::Value> = snapshot
        .models
        .iter()
        .filter(|m| key.allowed[m.index])
        .map(|m| serde_json::json!({"id": &*m.name, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
}
