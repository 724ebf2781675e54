//! LLM wire formats, without Pingora: the request body as spans of the client's bytes
//! (`body`), translation between the OpenAI and Anthropic APIs (`translate`), and token
//! usage from answers and streams (`usage`).

pub mod body;
pub mod translate;
pub mod usage;
