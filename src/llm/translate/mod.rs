//! Translation between the OpenAI chat completions API and the Anthropic Messages API,
//! chosen per attempt: when the route's API and the chosen target's differ, the request is
//! translated in `upstream_peer` ([`render`]) and the answer chunk by chunk in
//! `response_body_filter` ([`Responder`]). The mapping table is in README.md
//! ("Translation").
//!
//! ```text
//!  request   RequestBody ──► request/to_messages.rs, request/to_chat.rs ──► upstream body
//!  answer    JSON   : collected, translated once at the end (one document)   response.rs
//!            SSE    : event by event, only a partial line is held   stream/to_chat.rs,
//!                                                                   stream/to_messages.rs
//!            error  : collected, rewritten into the route's shape and status response.rs
//! ```
//!
//! Usage is settled from the upstream's own bytes: the usage scanner runs on each chunk
//! before the translator rewrites it.

mod request;
mod response;
mod stream;

pub use request::{chat_to_messages, messages_to_chat};
pub(crate) use response::error_to_route;
pub use response::{chat_json_to_messages, messages_json_to_chat};
pub use stream::{AnthropicToOpenAi, OpenAiToAnthropic};

use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody};
use crate::policy::config::{Api, ServerConfig};
use crate::policy::snapshot::KeyEntry;
use bytes::{Bytes, BytesMut};
use pingora_http::ResponseHeader;

/// Which way an attempt is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `/v1/chat/completions` served by an Anthropic target.
    ChatToMessages,
    /// `/v1/messages` served by an OpenAI target.
    MessagesToChat,
}

impl Direction {
    /// The translation an attempt needs, if any. Only chat ⇄ messages are translated; the
    /// routing plan never offers another route a target of the other API.
    pub(crate) fn between(route: Endpoint, target: Api) -> Option<Direction> {
        match (route, target) {
            (Endpoint::ChatCompletions, Api::Anthropic) => Some(Direction::ChatToMessages),
            (Endpoint::Messages, Api::OpenAi) => Some(Direction::MessagesToChat),
            _ => None,
        }
    }

    /// The upstream path of the target's API.
    pub(crate) fn upstream_path(self) -> &'static str {
        match self {
            Direction::ChatToMessages => "/v1/messages",
            Direction::MessagesToChat => "/v1/chat/completions",
        }
    }
}

/// What one translated attempt needs to remember for the answer.
#[derive(Debug, Clone)]
pub(crate) struct Translation {
    pub(crate) direction: Direction,
    /// The model name the client asked for: answers carry it, not the target's id.
    pub(crate) model: String,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub(crate) include_usage: bool,
}

/// The body for one attempt on `target_api`, translated when the APIs differ.
/// `ask_usage`: the gateway asks an OpenAI stream for usage on the client's behalf.
pub(crate) fn render(
    body: &RequestBody,
    route: Endpoint,
    target_api: Api,
    target_model: &str,
    client_model: &str,
    ask_usage: bool,
    default_max_tokens: u64,
) -> Result<(Bytes, Option<Translation>), GatewayError> {
    let Some(direction) = Direction::between(route, target_api) else {
        return Ok((body.render(target_model, ask_usage), None));
    };
    let out = match direction {
        Direction::ChatToMessages => chat_to_messages(body, target_model, default_max_tokens)?,
        Direction::MessagesToChat => messages_to_chat(body, target_model)?,
    };
    let t = Translation {
        direction,
        model: client_model.to_string(),
        include_usage: body.client_wants_stream_usage(),
    };
    Ok((Bytes::from(out), Some(t)))
}

/// `max_tokens` for an Anthropic target when the client sent none: the server default,
/// within the key's `max_tokens` cap.
pub(crate) fn default_max_tokens(server: &ServerConfig, key: &KeyEntry) -> u64 {
    let d = u64::from(server.default_max_tokens);
    key.max_tokens.map_or(d, |cap| d.min(u64::from(cap.limit)))
}

/// Rewrites an answer, chunk by chunk, into the client's API.
#[derive(Debug)]
pub(crate) enum Responder {
    /// A JSON answer: collected, translated at the end.
    /// `buf` is `None` once the document outgrew [`MAX_COLLECT`] and is passed through.
    Json {
        t: Translation,
        buf: Option<BytesMut>,
    },
    /// A provider error: collected, rewritten into the route's shape at the end.
    Error {
        t: Translation,
        status: u16,
        buf: Option<BytesMut>,
    },
    ChatStream(Box<AnthropicToOpenAi>),
    MessagesStream(Box<OpenAiToAnthropic>),
}

/// A JSON answer or error is held until its end; above this it is passed on untranslated.
const MAX_COLLECT: usize = 32 * 1024 * 1024;

impl Responder {
    /// Chooses the translator for an upstream answer and adjusts its header: the route's
    /// error status, and no `content-length` (the translated body has another length).
    pub(crate) fn for_response(
        t: &Translation,
        resp: &mut ResponseHeader,
    ) -> pingora_error::Result<Responder> {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        let status = resp.status.as_u16();
        let t = t.clone();
        if !resp.status.is_success() {
            let (to, _) = response::error_status(t.direction, status);
            resp.set_status(to)?;
            resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
            return Ok(Responder::Error {
                t,
                status,
                buf: Some(BytesMut::new()),
            });
        }
        let sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        Ok(match (sse, t.direction) {
            (false, _) => Responder::Json {
                t,
                buf: Some(BytesMut::new()),
            },
            (true, Direction::ChatToMessages) => {
                Responder::ChatStream(Box::new(AnthropicToOpenAi::new(&t.model, t.include_usage)))
            }
            (true, Direction::MessagesToChat) => {
                Responder::MessagesStream(Box::new(OpenAiToAnthropic::new(&t.model)))
            }
        })
    }

    /// Translates one chunk of the answer in place.
    pub(crate) fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) {
        match self {
            Responder::ChatStream(s) => s.chunk(body, end),
            Responder::MessagesStream(s) => s.chunk(body, end),
            Responder::Json { t, buf } => {
                if let Some(doc) = collect(buf, body, end) {
                    let out = match t.direction {
                        Direction::ChatToMessages => messages_json_to_chat(&doc, &t.model),
                        Direction::MessagesToChat => chat_json_to_messages(&doc, &t.model),
                    };
                    *body = Some(out.map_or_else(|| doc.freeze(), Bytes::from));
                }
            }
            Responder::Error { t, status, buf } => {
                if let Some(doc) = collect(buf, body, end) {
                    *body = Some(Bytes::from(error_to_route(t.direction, *status, &doc)));
                }
            }
        }
    }
}

/// Moves the chunk into `buf`; the whole document once it is there. A document over
/// [`MAX_COLLECT`] is let through as it is, from then on.
fn collect(buf: &mut Option<BytesMut>, body: &mut Option<Bytes>, end: bool) -> Option<BytesMut> {
    let held = buf.as_mut()?;
    if let Some(b) = body.take() {
        held.extend_from_slice(&b);
    }
    if held.len() > MAX_COLLECT {
        *body = buf.take().map(BytesMut::freeze);
        return None;
    }
    if end {
        return buf.take();
    }
    None
}

#[cfg(test)]
mod tests;
