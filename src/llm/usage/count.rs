//! Output tokens counted from a stream's text, for answers whose provider usage never
//! arrived (the upstream was cut, timed out after its first byte, or ended in an error).
//!
//! No tokenizer: the generated text's bytes are summed from the string values of the
//! fields that carry it (`content`, `text`, `delta`, `arguments`, `partial_json`,
//! `thinking`, `refusal`, `reasoning_content`), and the count is
//! `max(events with text, ceil(bytes / 4))` — one token per 4 bytes is the usual ratio for
//! English text, and providers stream at most a few tokens per event, so a stream of short
//! deltas is not under-counted. The error is documented in docs/billing.md. Per event this
//! costs one SIMD substring pass over the `data:` payload, no JSON parse.

use memchr::memmem;
use std::sync::LazyLock;

/// Keys whose string values are generated text.
const TEXT_KEYS: [&[u8]; 9] = [
    b"content",
    b"text",
    b"delta",
    b"arguments",
    b"partial_json",
    b"thinking",
    b"refusal",
    b"reasoning_content",
    b"reasoning",
];

/// `":"`: the end of a key whose value is a string, as providers write JSON (compact, no
/// space after the colon). Built once: one SIMD pass per event finds every string field.
static STRING_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\":\""));

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    bytes: u64,
    events: u64,
}

impl Counted {
    /// One SSE `data:` payload.
    pub(crate) fn event(&mut self, data: &[u8]) {
        let n = text_bytes(data);
        if n > 0 {
            self.bytes += n;
            self.events += 1;
        }
    }

    /// The estimate of the output tokens streamed so far.
    pub fn tokens(&self) -> u64 {
        self.events.max(self.bytes.div_ceil(4))
    }
}

/// Bytes of text in the string values of [`TEXT_KEYS`] in one JSON event (an escape
/// counts as the character it stands for; `\uXXXX` as 3, a typical UTF-8 length). The
/// Responses API repeats the whole text in its `.done` and `response.completed` events:
/// of its events only `.delta` ones are new text.
fn text_bytes(json: &[u8]) -> u64 {
    let mut total = 0;
    for at in STRING_FIELD.find_iter(json) {
        let key = &json[..at];
        let Some(open) = memchr::memrchr(b'"', key) else {
            continue;
        };
        let key = &key[open + 1..];
        let value = &json[at + 3..];
        if key == b"type" {
            if value.starts_with(b"response.") {
                let end = memchr::memchr(b'"', value).unwrap_or(value.len());
                if !value[..end].ends_with(b".delta") {
                    return 0;
                }
            }
            continue;
        }
        if TEXT_KEYS.contains(&key) {
            total += string_len(value);
        }
    }
    total
}

/// Length of a JSON string's text from just after its opening quote.
fn string_len(s: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => break,
            b'\\' if s.get(i + 1) == Some(&b'u') => {
                n += 3;
                i += 6;
            }
            b'\\' => {
                n += 1;
                i += 2;
            }
            _ => {
                n += 1;
                i += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(events: &[&str]) -> Counted {
        let mut c = Counted::default();
        for e in events {
            c.event(e.as_bytes());
        }
        c
    }

    #[test]
    fn openai_chat_deltas_and_tool_arguments() {
        let c = count(&[
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hello"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":" world, \"quoted\"\n"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        ]);
        // 5 + 17 + 7 bytes over three events.
        assert_eq!(
            c,
            Counted {
                bytes: 29,
                events: 3
            }
        );
        assert_eq!(c.tokens(), 8);
    }

    #[test]
    fn anthropic_deltas_count_and_starts_do_not() {
        let c = count(&[
            r#"{"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":9,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi there"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\": 1}"}}"#,
        ]);
        assert_eq!(
            c,
            Counted {
                bytes: 8 + 8,
                events: 2
            }
        );
    }

    #[test]
    fn responses_api_counts_deltas_not_the_repeated_text() {
        let c = count(&[
            r#"{"type":"response.output_text.delta","output_index":0,"delta":"abcd"}"#,
            r#"{"type":"response.output_text.done","text":"abcd"}"#,
            r#"{"type":"response.completed","response":{"output":[{"content":[{"text":"abcd"}]}]}}"#,
        ]);
        assert_eq!(
            c,
            Counted {
                bytes: 4,
                events: 1
            }
        );
    }

    #[test]
    fn escapes_and_many_short_events() {
        assert_eq!(string_len(br#"a\u00e9b" tail"#), 5);
        assert_eq!(string_len(br#"unterminated"#), 12);
        // One-byte deltas: at least a token per event.
        let one = r#"{"choices":[{"delta":{"content":"a"}}]}"#;
        assert_eq!(count(&[one; 10]).tokens(), 10);
    }
}
