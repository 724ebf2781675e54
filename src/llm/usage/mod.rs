//! Step 6: token usage from the provider's answer — JSON bodies and SSE streams, chunk by
//! chunk without holding the stream back — and its price.

mod count;
mod scan;
mod text;

pub use scan::{Scanner, StreamFormat};
pub(crate) use text::Completion;

use crate::policy::config::Price;

/// What one request was billed: tokens and micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub input: u64,
    pub output: u64,
    pub cost_micros: u64,
    /// Where the token counts came from (none when nothing was billed).
    pub source: Option<UsageSource>,
    /// The part of `input` served from the provider's prompt cache (priced as input).
    pub cached_input: u64,
}

impl Billed {
    pub(crate) fn is_zero(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cost_micros == 0
    }
}

/// Where a request's billed usage came from (the log line's `usage_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider's own usage report.
    Provider,
    /// The stream ended before the provider's report: output counted from the streamed
    /// text, input from the provider's count or the prompt estimate.
    Counted,
    /// Nothing to count (a JSON answer without usage): charged what was reserved.
    Reserved,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Counted => "counted",
            UsageSource::Reserved => "reserved",
        }
    }
}

/// Tokens a provider reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    /// The part of `input` read from the provider's prompt cache: OpenAI's
    /// `prompt_tokens_details.cached_tokens` (Responses API: `input_tokens_details`),
    /// Anthropic's `cache_read_input_tokens`.
    pub cached_input: Option<u64>,
}

impl TokenUsage {
    pub fn is_known(&self) -> bool {
        self.input.is_some() || self.output.is_some()
    }

    /// Merges a later report: each field present replaces the earlier value (Anthropic's
    /// `message_delta` carries the running output total).
    pub(crate) fn merge(&mut self, later: TokenUsage) {
        if later.input.is_some() {
            self.input = later.input;
        }
        if later.output.is_some() {
            self.output = later.output;
        }
        if later.cached_input.is_some() {
            self.cached_input = later.cached_input;
        }
    }

    /// Extracts usage from one JSON event or body, whatever the API.
    pub(crate) fn from_json(v: &serde_json::Value) -> TokenUsage {
        let u = [&v["usage"], &v["message"]["usage"], &v["response"]["usage"]]
            .into_iter()
            .find(|u| u.is_object());
        let Some(u) = u else {
            return TokenUsage::default();
        };
        let n = |k: &str| u.get(k).and_then(|x| x.as_u64());
        let input = n("prompt_tokens").or_else(|| {
            let base = n("input_tokens")?;
            // Anthropic reports cached prompt tokens separately.
            Some(
                base + n("cache_creation_input_tokens").unwrap_or(0)
                    + n("cache_read_input_tokens").unwrap_or(0),
            )
        });
        let output = n("completion_tokens").or_else(|| n("output_tokens"));
        // Embeddings report only prompt tokens: their output is zero, not unknown.
        let output = output.or_else(|| {
            input
                .filter(|_| n("total_tokens").is_some() && u.get("completion_tokens").is_none())
                .map(|_| 0)
        });
        let cached_input = ["prompt_tokens_details", "input_tokens_details"]
            .into_iter()
            .find_map(|d| u.get(d)?.get("cached_tokens")?.as_u64())
            .or_else(|| n("cache_read_input_tokens"));
        TokenUsage {
            input,
            output,
            cached_input,
        }
    }
}

/// `prompt_tokens_details` / `input_tokens_details`: only the cached count is read.
#[derive(serde::Deserialize)]
pub(crate) struct TokenDetails {
    cached_tokens: Option<u64>,
}

/// A `usage` object read typed (the fields [`TokenUsage::from_json`] looks at; the rest
/// is skipped without being built).
#[derive(serde::Deserialize)]
pub(crate) struct UsageFields {
    prompt_tokens: Option<u64>,
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    prompt_tokens_details: Option<TokenDetails>,
    input_tokens_details: Option<TokenDetails>,
}

impl UsageFields {
    /// The same rules as [`TokenUsage::from_json`].
    pub(crate) fn usage(&self) -> TokenUsage {
        let input = self.prompt_tokens.or_else(|| {
            Some(
                self.input_tokens?
                    + self.cache_creation_input_tokens.unwrap_or(0)
                    + self.cache_read_input_tokens.unwrap_or(0),
            )
        });
        let output = self.completion_tokens.or(self.output_tokens).or_else(|| {
            input
                .filter(|_| self.total_tokens.is_some() && self.completion_tokens.is_none())
                .map(|_| 0)
        });
        let detail = |d: &Option<TokenDetails>| d.as_ref().and_then(|d| d.cached_tokens);
        let cached_input = detail(&self.prompt_tokens_details)
            .or_else(|| detail(&self.input_tokens_details))
            .or(self.cache_read_input_tokens);
        TokenUsage {
            input,
            output,
            cached_input,
        }
    }
}

/// Cost in micro-dollars of `input` and `output` tokens at `price`, rounded up.
pub(crate) fn cost_micros(price: &Price, input: u64, output: u64) -> u64 {
    let num = input as u128 * price.input_micros_per_mtok as u128
        + output as u128 * price.output_micros_per_mtok as u128;
    num.div_ceil(1_000_000).min(u64::MAX as u128) as u64
}

/// The prompt-size estimate used for reservations: one token per 4 bytes of body, the
/// usual ratio for English text and JSON (documented in the README).
pub(crate) fn estimate_input_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_usage_agrees_with_the_value_path() {
        for u in [
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 0}}),
            json!({"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}}),
            json!({"input_tokens": 10, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 6}}),
            json!({"prompt_tokens": 10, "prompt_tokens_details": null}),
            json!({"input_tokens": 10, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 7}),
            json!({"prompt_tokens": 8, "total_tokens": 8}),
            json!({"output_tokens": 4}),
            json!({}),
        ] {
            let typed: UsageFields = serde_json::from_value(u.clone()).expect("typed");
            assert_eq!(
                typed.usage(),
                TokenUsage::from_json(&json!({ "usage": u })),
                "{u}"
            );
        }
    }

    #[test]
    fn usage_from_every_api() {
        let oa = TokenUsage::from_json(
            &json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
        );
        assert_eq!(
            oa,
            TokenUsage {
                input: Some(10),
                output: Some(5),
                cached_input: None,
            }
        );
        let emb = TokenUsage::from_json(&json!({"usage": {"prompt_tokens": 7, "total_tokens": 7}}));
        assert_eq!(
            emb,
            TokenUsage {
                input: Some(7),
                output: Some(0),
                cached_input: None,
            }
        );
        let start = TokenUsage::from_json(
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
        );
        assert_eq!(
            start,
            TokenUsage {
                input: Some(25),
                output: Some(1),
                cached_input: Some(5),
            }
        );
        let resp = TokenUsage::from_json(
            &json!({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 4}}}),
        );
        assert_eq!(
            resp,
            TokenUsage {
                input: Some(3),
                output: Some(4),
                cached_input: None,
            }
        );
        assert!(!TokenUsage::from_json(&json!({"usage": null})).is_known());
    }

    /// Cached prompt tokens, as each API reports them: a part of the input, not added to it.
    #[test]
    fn cached_input_from_every_api() {
        let cases = [
            // OpenAI chat / completions: `prompt_tokens` includes the cached ones.
            (
                json!({"usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 64}}}),
                (100, 64),
            ),
            // Responses API.
            (
                json!({"type": "response.completed", "response": {"usage": {"input_tokens": 100, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 32}}}}),
                (100, 32),
            ),
            // Anthropic: `input_tokens` excludes the cache reads (and writes).
            (
                json!({"usage": {"input_tokens": 36, "cache_read_input_tokens": 64, "output_tokens": 7}}),
                (100, 64),
            ),
        ];
        for (v, (input, cached)) in cases {
            let u = TokenUsage::from_json(&v);
            assert_eq!(
                (u.input, u.cached_input),
                (Some(input), Some(cached)),
                "{v}"
            );
        }
        // A later report without a cached count keeps the earlier one (Anthropic's
        // message_delta after message_start).
        let mut u = TokenUsage::from_json(
            &json!({"message": {"usage": {"input_tokens": 1, "cache_read_input_tokens": 9}}}),
        );
        u.merge(TokenUsage::from_json(
            &json!({"usage": {"output_tokens": 3}}),
        ));
        assert_eq!(
            u,
            TokenUsage {
                input: Some(10),
                output: Some(3),
                cached_input: Some(9),
            }
        );
    }

    #[test]
    fn prices_round_up_in_micro_dollars() {
        let p = Price {
            input_micros_per_mtok: 150_000,
            output_micros_per_mtok: 600_000,
        };
        assert_eq!(cost_micros(&p, 1_000_000, 0), 150_000);
        assert_eq!(cost_micros(&p, 1, 0), 1);
        assert_eq!(cost_micros(&p, 1000, 1000), 750);
    }
}
