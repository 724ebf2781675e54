//! The top-level request fields of each API tollgate serves, as the providers' references
//! give them (OpenAI: Chat Completions, Completions, Embeddings, Responses; Anthropic:
//! Messages and count_tokens): what a `fixed_params` name is checked against at load, and
//! what `llm::fixed` applies per target. docs/policy.md "fixed_params" shows the same table.

/// OpenAI `POST /v1/chat/completions`.
pub(crate) const CHAT: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// OpenAI `POST /v1/completions` (legacy).
pub(crate) const COMPLETIONS: &[&str] = &[
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// OpenAI `POST /v1/embeddings`.
pub(crate) const EMBEDDINGS: &[&str] = &["input", "model", "dimensions", "encoding_format", "user"];

/// OpenAI `POST /v1/responses`.
pub(crate) const RESPONSES: &[&str] = &[
    "background",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// Anthropic `POST /v1/messages`.
pub(crate) const MESSAGES: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "container",
    "context_management",
    "mcp_servers",
    "metadata",
    "service_tier",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
];

/// Anthropic `POST /v1/messages/count_tokens`.
pub(crate) const COUNT_TOKENS: &[&str] = &[
    "model",
    "messages",
    "context_management",
    "mcp_servers",
    "system",
    "thinking",
    "tool_choice",
    "tools",
];

/// Whether any API tollgate serves has `field` (a `fixed_params` name must).
pub(crate) fn known_anywhere(field: &str) -> bool {
    [
        CHAT,
        COMPLETIONS,
        EMBEDDINGS,
        RESPONSES,
        MESSAGES,
        COUNT_TOKENS,
    ]
    .iter()
    .any(|t| t.contains(&field))
}
