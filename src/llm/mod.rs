//! LLM wire formats, without Pingora: the request body as spans of the client's bytes
//! (`body`), translation between the OpenAI and Anthropic APIs (`translate`), and token
//! usage from answers and streams (`usage`), and the guardrails' detectors and text
//! checks on requests and answers (`guard`).

pub mod body;
pub(crate) mod fixed;
pub mod guard;
pub mod translate;
pub mod usage;
