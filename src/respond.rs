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
    if err.status() == 413 || err.status() == 400 {
        // The rest of the body may still be on the wire: do not reuse the connection.
        session.set_keepalive(None);
    }
    write_json(session, err.status(), err.body(api), request_id, Some(err)).await
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
        session
            .write_response_header(Box::new(ResponseHeader::build(100, Some(0))?), false)
            .await?;
    }
    session.enable_retry_buffering();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(max) as usize);
    while let Some(chunk) = session.read_request_body().await? {
        if (buf.len() + chunk.len()) as u64 > max {
            return Ok(Err(too_large));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf.freeze()))
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
