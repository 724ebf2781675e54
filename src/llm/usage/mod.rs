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
    /// The part of `input` served from the provider's prompt cache (priced at the model's
    /// `cache_read_usd_per_mtok`).
    pub cached_input: u64,
    /// The part of `input` written to the provider's prompt cache (Anthropic; priced at
    /// `cache_write_usd_per_mtok`).
    pub cache_write: u64,
    /// The part of `output` the model spent reasoning (OpenAI; priced as output).
    pub reasoning: u64,
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
    /// The part of `input` written to the prompt cache: Anthropic's
    /// `cache_creation_input_tokens` (OpenAI does not bill cache writes).
    pub cache_write: Option<u64>,
    /// The part of `output` spent reasoning: OpenAI's
    /// `completion_tokens_details.reasoning_tokens` (Responses API:
    /// `output_tokens_details`).
    pub reasoning: Option<u64>,
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
        if later.cache_write.is_some() {
            self.cache_write = later.cache_write;
        }
        if later.reasoning.is_some() {
            self.reasoning = later.reasoning;
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
        let reasoning = ["completion_tokens_details", "output_tokens_details"]
            .into_iter()
            .find_map(|d| u.get(d)?.get("reasoning_tokens")?.as_u64());
        TokenUsage {
            input,
            output,
            cached_input,
            cache_write: n("cache_creation_input_tokens"),
            reasoning,
        }
    }
}

/// `prompt_tokens_details` / `input_tokens_details` (the cached count) and
/// `completion_tokens_details` / `output_tokens_details` (the reasoning count).
#[derive(serde::Deserialize)]
pub(crate) struct TokenDetails {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
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
    completion_tokens_details: Option<TokenDetails>,
    output_tokens_details: Option<TokenDetails>,
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
        let reasoning = |d: &Option<TokenDetails>| d.as_ref().and_then(|d| d.reasoning_tokens);
        TokenUsage {
            input,
            output,
            cached_input,
            cache_write: self.cache_creation_input_tokens,
            reasoning: reasoning(&self.completion_tokens_details)
                .or_else(|| reasoning(&self.output_tokens_details)),
        }
    }
}

/// Tokens of one answer as billed: `input` and `output` are totals; the cache counts are
/// parts of `input`, priced apart (reasoning, a part of `output`, is priced as output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) input: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
    pub(crate) output: u64,
}

/// The most `input` and `output` tokens can cost at `price`, wherever the provider's
/// cache puts the input (a cache write may cost more than plain input): reservations.
pub(crate) fn worst_cost_micros(price: &Price, input: u64, output: u64) -> u64 {
    let input_price = price
        .input_micros_per_mtok
        .max(price.cache_read_micros_per_mtok)
        .max(price.cache_write_micros_per_mtok);
    let num =
        input as u128 * input_price as u128 + output as u128 * price.output_micros_per_mtok as u128;
    num.div_ceil(1_000_000).min(u64::MAX as u128) as u64
}

/// Cost in micro-dollars of `t` at `price`, rounded up once: the input not read from or
/// written to the cache at the input price, cache reads and writes at theirs, output at
/// the output price. (OpenAI's `prompt_tokens` includes its cached tokens and Anthropic's
/// parts are summed into `input` when read, so both bill as the provider does.)
pub(crate) fn cost_of(price: &Price, t: Tokens) -> u64 {
    let cache_read = t.cache_read.min(t.input);
    let cache_write = t.cache_write.min(t.input - cache_read);
    let fresh = t.input - cache_read - cache_write;
    let num = fresh as u128 * price.input_micros_per_mtok as u128
        + cache_read as u128 * price.cache_read_micros_per_mtok as u128
        + cache_write as u128 * price.cache_write_micros_per_mtok as u128
        + t.output as u128 * price.output_micros_per_mtok as u128;
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
            json!({"prompt_tokens": 10, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0}}),
            json!({"input_tokens": 10, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 5}}),
            json!({"prompt_tokens": 10, "completion_tokens_details": null}),
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
                ..TokenUsage::default()
            }
        );
        let emb = TokenUsage::from_json(&json!({"usage": {"prompt_tokens": 7, "total_tokens": 7}}));
        assert_eq!(
            emb,
            TokenUsage {
                input: Some(7),
                output: Some(0),
                cached_input: None,
                ..TokenUsage::default()
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
                ..TokenUsage::default()
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
                ..TokenUsage::default()
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
                ..TokenUsage::default()
            }
        );
    }

    #[test]
    fn prices_round_up_in_micro_dollars() {
        let p = Price {
            input_micros_per_mtok: 150_000,
            output_micros_per_mtok: 600_000,
            cache_read_micros_per_mtok: 150_000,
            cache_write_micros_per_mtok: 150_000,
        };
        let plain = |input, output| {
            cost_of(
                &p,
                Tokens {
                    input,
                    output,
                    ..Tokens::default()
                },
            )
        };
        assert_eq!(plain(1_000_000, 0), 150_000);
        assert_eq!(plain(1, 0), 1);
        assert_eq!(plain(1000, 1000), 750);
        assert_eq!(worst_cost_micros(&p, 1000, 1000), 750);
    }

    /// The providers' own bills, by hand: OpenAI's `prompt_tokens` includes the cached
    /// tokens (and `completion_tokens` the reasoning ones); Anthropic's parts are disjoint.
    #[test]
    fn cache_reads_and_writes_are_priced_as_billed() {
        // gpt-4o-like: $2.50 in, $1.25 cached, $10 out.
        let oa = Price {
            input_micros_per_mtok: 2_500_000,
            output_micros_per_mtok: 10_000_000,
            cache_read_micros_per_mtok: 1_250_000,
            cache_write_micros_per_mtok: 2_500_000,
        };
        let u = TokenUsage::from_json(&json!({"usage": {
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 256}}}));
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.reasoning),
            (Some(2006), Some(1920), None, Some(256))
        );
        let t = Tokens {
            input: 2006,
            cache_read: 1920,
            cache_write: 0,
            output: 300,
        };
        // (2006 − 1920)·2.5 + 1920·1.25 + 300·10 = 215 + 2400 + 3000 = 5615 µ$.
        assert_eq!(cost_of(&oa, t), 5615);
        // claude-like: $3 in, $0.30 read, $3.75 write, $15 out.
        let an = Price {
            input_micros_per_mtok: 3_000_000,
            output_micros_per_mtok: 15_000_000,
            cache_read_micros_per_mtok: 300_000,
            cache_write_micros_per_mtok: 3_750_000,
        };
        let u = TokenUsage::from_json(&json!({"usage": {
            "input_tokens": 21, "cache_read_input_tokens": 1800,
            "cache_creation_input_tokens": 400, "output_tokens": 150}}));
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.output),
            (Some(2221), Some(1800), Some(400), Some(150))
        );
        let t = Tokens {
            input: 2221,
            cache_read: 1800,
            cache_write: 400,
            output: 150,
        };
        // 21·3 + 1800·0.3 + 400·3.75 + 150·15 = 63 + 540 + 1500 + 2250 = 4353 µ$.
        assert_eq!(cost_of(&an, t), 4353);
        // Rounded up once, not per part: 3 + 0.3 + 3.75 = 7.05 µ$ → 8 (per part: 9).
        let t = Tokens {
            input: 3,
            cache_read: 1,
            cache_write: 1,
            output: 0,
        };
        assert_eq!(cost_of(&an, t), 8);
        // Parts larger than the total are capped, never negative.
        let t = Tokens {
            input: 10,
            cache_read: 8,
            cache_write: 8,
            output: 0,
        };
        assert_eq!(
            cost_of(&an, t),
            (8 * 300_000u64 + 2 * 3_750_000).div_ceil(1_000_000)
        );
        // The worst case prices the prompt at the dearest of its three prices.
        assert_eq!(worst_cost_micros(&an, 1_000_000, 0), 3_750_000);
    }

    #[test]
    fn reasoning_from_chat_and_responses() {
        let chat = TokenUsage::from_json(
            &json!({"usage": {"prompt_tokens": 5, "completion_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 32}}}),
        );
        assert_eq!((chat.output, chat.reasoning), (Some(40), Some(32)));
        let resp = TokenUsage::from_json(
            &json!({"type": "response.completed", "response": {"usage": {
            "input_tokens": 5, "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 24}}}}),
        );
        assert_eq!((resp.output, resp.reasoning), (Some(40), Some(24)));
    }
}
