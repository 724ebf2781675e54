//! The answer as the client receives it (after translation, in the route's API), checked
//! chunk by chunk like `response_body_filter`.
//!
//! ```text
//!  JSON  held to the end (answers are not streamed), every text checked whole, written
//!        back: redact → placeholders, block → the text cut where the match starts and
//!        the answer ended the provider's way (json.rs)
//!  SSE   complete events only (a partial event is held, so chunk boundaries never
//!        matter); events without text pass at once unless text is held before them;
//!        text deltas go through a window that holds back at most HOLD bytes of text,
//!        so a match split across events is caught (window.rs); events that close the
//!        text (finish, block stop, message delta, [DONE], …) release the window first
//! ```
//!
//! After a block only the events that carry usage (and the stream's own end) still
//! reach the client: the provider charges that usage whatever the client saw.

mod json;
mod sse;
mod window;

use super::{record, Action, Hit, Rule, Verdict};
use crate::llm::body::Endpoint;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Bytes of text a stream holds back at most.
pub const HOLD: usize = 256;

/// How the answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Sse,
}

/// Checks an answer with the response-side rules.
#[derive(Debug)]
pub struct ResponseGuard {
    rules: Arc<[Arc<Rule>]>,
    endpoint: Endpoint,
    format: Format,
    verdicts: Vec<Verdict>,
    /// JSON: the body so far. SSE: a partial event.
    buf: BytesMut,
    stream: sse::Stream,
}

/// The rules' hits on one text: the redactions to make, where a block cuts it (if any).
struct Checked {
    /// Redact hits (merged, sorted), each starting before `cut`.
    redact: Vec<Hit>,
    /// The earliest start of a block rule's hit.
    block: Option<usize>,
}

impl ResponseGuard {
    pub fn new(rules: Arc<[Arc<Rule>]>, endpoint: Endpoint, format: Format) -> ResponseGuard {
        ResponseGuard {
            rules,
            endpoint,
            format,
            verdicts: Vec::new(),
            buf: BytesMut::new(),
            stream: sse::Stream::default(),
        }
    }

    /// Rewrites `body` chunk by chunk, like Pingora's `response_body_filter`: a JSON body
    /// is held and checked whole at the end; an SSE stream is checked event by event.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if self.rules.is_empty() {
            return;
        }
        match self.format {
            Format::Json => {
                if let Some(b) = body.take() {
                    self.buf.extend_from_slice(&b);
                }
                if end_of_stream {
                    let whole = self.buf.split().freeze();
                    *body = Some(self.json(whole));
                }
            }
            Format::Sse => {
                if let Some(b) = body.as_ref() {
                    self.buf.extend_from_slice(b);
                }
                let mut out = BytesMut::new();
                self.sse(&mut out, end_of_stream);
                *body = Some(out.freeze());
            }
        }
    }

    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Runs every rule on `text`; records the verdicts of the hits that start before
    /// `limit` (the part of the text released now) and before a block.
    fn check(&mut self, text: &str, skip: usize, limit: usize) -> Checked {
        let mut redact = Vec::new();
        let mut all: Vec<(usize, Hit)> = Vec::new();
        let mut hits = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            hits.clear();
            rule.builtin.scan(text, &mut hits);
            for h in hits.drain(..) {
                // Hits starting in the look-behind were judged when it was released.
                if h.start >= skip {
                    all.push((
                        i,
                        Hit {
                            start: h.start - skip,
                            end: h.end - skip,
                            kind: h.kind,
                        },
                    ));
                }
            }
        }
        let block = all
            .iter()
            .filter(|(i, _)| self.rules[*i].action == Action::Block)
            .map(|(_, h)| h.start)
            .min();
        let stop = block.unwrap_or(limit);
        for (i, h) in &all {
            let rule = self.rules[*i].clone();
            let counts = h.start < stop || (rule.action == Action::Block && Some(h.start) == block);
            if !counts {
                continue;
            }
            record(&mut self.verdicts, &rule, [h.kind]);
            if rule.action == Action::Redact {
                redact.push(h.clone());
            }
        }
        super::merge(&mut redact);
        Checked { redact, block }
    }

    /// A whole text (JSON answers, Responses `done` events): redacted, and cut where a
    /// block matched. True when a block matched.
    fn check_whole(&mut self, text: &mut String) -> bool {
        let c = self.check(text, 0, text.len());
        let cut = c.block.unwrap_or(text.len());
        if c.redact.is_empty() && c.block.is_none() {
            return false;
        }
        let clipped: Vec<Hit> = c
            .redact
            .into_iter()
            .map(|mut h| {
                h.end = h.end.min(cut);
                h
            })
            .collect();
        *text = super::redact(&text[..cut], &clipped);
        c.block.is_some()
    }
}

/// `s` cut to at most `n` bytes at a char boundary, from the left (`floor`).
fn floor_boundary(s: &str, mut n: usize) -> usize {
    n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}
