//! The answer as the client receives it, checked chunk by chunk (work in progress: passes
//! everything through for now).

use super::{Rule, Verdict};
use crate::llm::body::Endpoint;
use bytes::Bytes;
use std::sync::Arc;

/// How the answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Sse,
}

/// Checks an answer with the response-side rules.
#[derive(Debug)]
pub struct ResponseGuard {
    #[allow(dead_code)]
    rules: Arc<[Arc<Rule>]>,
    #[allow(dead_code)]
    endpoint: Endpoint,
    #[allow(dead_code)]
    format: Format,
    verdicts: Vec<Verdict>,
}

impl ResponseGuard {
    pub fn new(rules: Arc<[Arc<Rule>]>, endpoint: Endpoint, format: Format) -> ResponseGuard {
        ResponseGuard {
            rules,
            endpoint,
            format,
            verdicts: Vec::new(),
        }
    }

    /// Rewrites `body` chunk by chunk, like Pingora's `response_body_filter`.
    pub fn chunk(&mut self, _body: &mut Option<Bytes>, _end_of_stream: bool) {}

    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }
}
