//! Scans a response as it streams past. SSE: complete `data:` lines that carry a usage
//! object are parsed (a cheap substring test first, so ordinary deltas cost a memchr).
//! JSON: the body is kept up to a cap and its last `"usage"` object parsed at the end.
//!
//! When the gateway added `stream_options.include_usage` itself, the extra usage-only
//! chunk is removed from what the client receives, so its stream is exactly what it asked
//! for.

use super::count::Counted;
use super::text::{Completion, COMPLETION_CAP};
use super::{TokenUsage, UsageSource};
use bytes::{Bytes, BytesMut};
use memchr::memmem;
use std::sync::LazyLock;

/// Bytes of a JSON body kept for the usage lookup; above this only the tail is kept.
const JSON_KEEP: usize = 256 * 1024;
const JSON_TAIL: usize = 64 * 1024;
/// Bytes of a JSON body kept when its completion text is collected (JSON escapes make
/// the body longer than its text).
const JSON_KEEP_TEXT: usize = 2 * COMPLETION_CAP;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    Sse,
    Json,
}

#[derive(Debug)]
pub struct Scanner {
    format: StreamFormat,
    /// Drop OpenAI's usage-only chunk (`"choices":[]`) from the client's stream.
    strip_usage_chunk: bool,
    /// Partial line (SSE) or kept body (JSON).
    buf: BytesMut,
    pub usage: TokenUsage,
    /// The output count in `usage` is the provider's final one (not Anthropic's
    /// `message_start` placeholder).
    output_final: bool,
    /// Output counted from the streamed text, for a stream cut before its usage.
    pub(crate) counted: Counted,
    pub(crate) saw_done: bool,
    /// The answer's text, when the group logs it (`log_level = "full"`).
    pub(crate) completion: Option<Completion>,
    /// The start of a JSON body was dropped (over the cap).
    cut: bool,
    /// The usage-only event was just dropped: drop the blank line that ends it too, even
    /// when it comes in the next chunk.
    skip_blank: bool,
}

/// Built once: `memmem::find` would build its searcher again for every event.
static USAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));

fn has_usage_object(line: &[u8]) -> bool {
    let mut rest = line;
    while let Some(i) = USAGE_KEY.find(rest) {
        let after = &rest[i + 7..];
        let after = after.trim_ascii_start();
        if let Some(after) = after.strip_prefix(b":") {
            if after.trim_ascii_start().first() == Some(&b'{') {
                return true;
            }
        }
        rest = &rest[i + 7..];
    }
    false
}

impl Scanner {
    pub fn new(format: StreamFormat, strip_usage_chunk: bool) -> Scanner {
        Scanner {
            format,
            strip_usage_chunk: strip_usage_chunk && format == StreamFormat::Sse,
            buf: BytesMut::new(),
            usage: TokenUsage::default(),
            output_final: false,
            counted: Counted::default(),
            saw_done: false,
            completion: None,
            cut: false,
            skip_blank: false,
        }
    }

    /// Also reassembles the answer's text (off unless asked: it costs a parse per event).
    pub(crate) fn collect_completion(&mut self) {
        self.completion = Some(Completion::default());
    }

    /// Looks at one chunk of the response; may rewrite it (usage-chunk stripping).
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) {
        match self.format {
            StreamFormat::Json => {
                if let Some(b) = body.as_ref() {
                    self.buf.extend_from_slice(b);
                    let keep = if self.completion.is_some() {
                        JSON_KEEP_TEXT
                    } else {
                        JSON_KEEP
                    };
                    if self.buf.len() > keep {
                        let cut = self.buf.len() - JSON_TAIL;
                        let _ = self.buf.split_to(cut);
                        self.cut = true;
                    }
                }
                if end {
                    self.finish_json();
                }
            }
            StreamFormat::Sse => self.sse(body, end),
        }
    }

    fn finish_json(&mut self) {
        if let Some(c) = self.completion.as_mut() {
            if self.cut {
                c.truncated = true;
            } else {
                c.body(&self.buf);
            }
        }
        let Some(i) = memmem::rfind(&self.buf, b"\"usage\"") else {
            return;
        };
        let rest = &self.buf[i + 7..];
        let Some(colon) = rest.iter().position(|c| *c == b':') else {
            return;
        };
        let rest = &rest[colon + 1..];
        // Typed and borrowed first (no `Value` tree); anything odd takes the general path.
        let mut typed =
            serde_json::Deserializer::from_slice(rest).into_iter::<super::UsageFields>();
        if let Some(Ok(u)) = typed.next() {
            self.usage.merge(u.usage());
            self.output_final = self.usage.output.is_some();
            return;
        }
        let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<serde_json::Value>();
        if let Some(Ok(u)) = it.next() {
            self.usage
                .merge(TokenUsage::from_json(&serde_json::json!({ "usage": u })));
            self.output_final = self.usage.output.is_some();
        }
    }

    /// What the answer is charged, in tokens: the provider's usage when it reported it in
    /// full; for a stream, else what was counted from its text (input: the provider's
    /// count or the prompt estimate); else what was reserved.
    pub(crate) fn charge(
        &self,
        reserved_input: u64,
        reserved_output: u64,
    ) -> (u64, u64, UsageSource) {
        let input = self.usage.input;
        let output = self.usage.output.filter(|_| self.output_final);
        match (input, output) {
            (Some(i), Some(o)) => (i, o, UsageSource::Provider),
            (i, o) if self.format == StreamFormat::Sse => {
                let counted = self.counted.tokens().max(self.usage.output.unwrap_or(0));
                (
                    i.unwrap_or(reserved_input),
                    o.unwrap_or(counted),
                    UsageSource::Counted,
                )
            }
            (i, o) => (
                i.unwrap_or(reserved_input),
                o.unwrap_or(reserved_output),
                UsageSource::Reserved,
            ),
        }
    }

    fn sse(&mut self, body: &mut Option<Bytes>, end: bool) {
        let Some(chunk) = body.as_ref() else {
            if end && !self.buf.is_empty() {
                let rest = self.buf.split().freeze();
                self.line(&rest);
                if self.strip_usage_chunk {
                    *body = Some(rest);
                }
            }
            return;
        };
        if !self.strip_usage_chunk {
            // Pass the chunk through untouched; scan complete lines of a copy.
            let mut start = 0;
            let data = chunk.clone();
            while let Some(nl) = memchr::memchr(b'\n', &data[start..]) {
                let line_end = start + nl;
                if self.buf.is_empty() {
                    self.line(&data[start..line_end]);
                } else {
                    self.buf.extend_from_slice(&data[start..line_end]);
                    let l = self.buf.split();
                    self.line(&l);
                }
                start = line_end + 1;
            }
            self.buf.extend_from_slice(&data[start..]);
            if end && !self.buf.is_empty() {
                let l = self.buf.split();
                self.line(&l);
            }
            return;
        }
        // Stripping: emit complete lines except the usage-only event.
        self.buf.extend_from_slice(chunk);
        let mut out = BytesMut::with_capacity(self.buf.len());
        while let Some(nl) = memchr::memchr(b'\n', &self.buf) {
            let line = self.buf.split_to(nl + 1);
            let content = line.strip_suffix(b"\n").unwrap_or(&line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if std::mem::take(&mut self.skip_blank) && content.is_empty() {
                continue;
            }
            if self.line(content) {
                self.skip_blank = true;
                continue;
            }
            out.extend_from_slice(&line);
        }
        if end && !self.buf.is_empty() {
            let rest = self.buf.split();
            if !self.line(&rest) {
                out.extend_from_slice(&rest);
            }
        }
        *body = Some(out.freeze());
    }

    /// Handles one SSE line; returns true if it is the injected usage-only chunk.
    fn line(&mut self, line: &[u8]) -> bool {
        let Some(data) = line.strip_prefix(b"data:") else {
            return false;
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.saw_done = true;
            return false;
        }
        if let Some(c) = self.completion.as_mut() {
            c.event(data);
        }
        if !has_usage_object(data) {
            self.counted.event(data);
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            return false;
        };
        self.counted.event(data);
        let u = TokenUsage::from_json(&v);
        // Anthropic's `message_start` carries the input and a placeholder output count; the
        // real output total comes with `message_delta`.
        if u.output.is_some() && v["type"] != "message_start" {
            self.output_final = true;
        }
        self.usage.merge(u);
        self.strip_usage_chunk && v["choices"].as_array().is_some_and(|c| c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut Scanner, parts: &[&str]) -> String {
        let mut out = String::new();
        for (i, p) in parts.iter().enumerate() {
            let mut b = Some(Bytes::from(p.to_string()));
            s.chunk(&mut b, i + 1 == parts.len());
            out.push_str(std::str::from_utf8(&b.unwrap_or_default()).unwrap());
        }
        out
    }

    const OA: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";

    #[test]
    fn openai_usage_across_chunk_boundaries() {
        for split in 1..OA.len() {
            let (a, b) = OA.split_at(split);
            let mut s = Scanner::new(StreamFormat::Sse, false);
            assert_eq!(feed(&mut s, &[a, b]), OA);
            assert_eq!(
                s.usage,
                TokenUsage {
                    input: Some(9),
                    output: Some(3),
                    cached_input: None,
                    ..TokenUsage::default()
                },
                "split at {split}"
            );
            assert!(s.saw_done);
        }
    }

    #[test]
    fn injected_usage_chunk_is_stripped() {
        for split in [1, 20, 70, OA.len() - 3] {
            let (a, b) = OA.split_at(split);
            let mut s = Scanner::new(StreamFormat::Sse, true);
            let out = feed(&mut s, &[a, b]);
            assert_eq!(out, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n");
            assert_eq!(s.usage.output, Some(3));
        }
    }

    /// Found by the fuzz property (`tollgate::fuzz::usage_scanner`): the blank line after
    /// the stripped usage event came in the next chunk and reached the client.
    #[test]
    fn stripping_does_not_depend_on_where_chunks_end() {
        let whole = {
            let mut s = Scanner::new(StreamFormat::Sse, true);
            feed(&mut s, &[OA])
        };
        for split in 1..OA.len() {
            let (a, b) = OA.split_at(split);
            let mut s = Scanner::new(StreamFormat::Sse, true);
            assert_eq!(feed(&mut s, &[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn anthropic_usage_from_start_and_delta() {
        let ev = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30}}\n\n";
        let mut s = Scanner::new(StreamFormat::Sse, false);
        feed(&mut s, &[ev]);
        assert_eq!(
            s.usage,
            TokenUsage {
                input: Some(12),
                output: Some(30),
                cached_input: None,
                ..TokenUsage::default()
            }
        );
    }

    /// Cached prompt tokens in a JSON body (typed path) and in a stream's usage chunk.
    #[test]
    fn cached_input_in_bodies_and_streams() {
        let mut s = Scanner::new(StreamFormat::Json, false);
        feed(
            &mut s,
            &[
                "{\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":2,",
                "\"prompt_tokens_details\":{\"cached_tokens\":32,\"audio_tokens\":0}}}",
            ],
        );
        assert_eq!((s.usage.input, s.usage.cached_input), (Some(40), Some(32)));
        let oa = OA.replace(
            "\"completion_tokens\":3",
            "\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":8}",
        );
        let mut s = Scanner::new(StreamFormat::Sse, true);
        feed(&mut s, &[&oa]);
        assert_eq!((s.usage.input, s.usage.cached_input), (Some(9), Some(8)));
    }

    #[test]
    fn json_body_usage_and_garbage() {
        let mut s = Scanner::new(StreamFormat::Json, false);
        feed(
            &mut s,
            &[
                "{\"choices\":[{\"message\":{\"content\":\"the \\\"usage\\\" word\"}}],",
                "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}",
            ],
        );
        assert_eq!(
            s.usage,
            TokenUsage {
                input: Some(4),
                output: Some(2),
                cached_input: None,
                ..TokenUsage::default()
            }
        );
        let mut s = Scanner::new(StreamFormat::Json, false);
        feed(&mut s, &["\"usage\": {not json", "\u{0}\u{1}"]);
        assert!(!s.usage.is_known());
        let mut s = Scanner::new(StreamFormat::Sse, true);
        feed(
            &mut s,
            &["data: {\"usage\":{\"prompt_tokens\":", "garbage\n\n"],
        );
        assert!(!s.usage.is_known());
    }

    #[test]
    fn completion_is_collected_only_when_asked() {
        for split in 1..OA.len() {
            let (a, b) = OA.split_at(split);
            let mut s = Scanner::new(StreamFormat::Sse, split % 2 == 0);
            s.collect_completion();
            feed(&mut s, &[a, b]);
            assert_eq!(s.completion.unwrap().text, "hi", "split at {split}");
        }
        let mut s = Scanner::new(StreamFormat::Sse, false);
        feed(&mut s, &[OA]);
        assert!(s.completion.is_none());
        let mut s = Scanner::new(StreamFormat::Json, false);
        s.collect_completion();
        feed(
            &mut s,
            &["{\"content\":[{\"type\":\"text\",", "\"text\":\"ok\"}]}"],
        );
        assert_eq!(s.completion.unwrap().text, "ok");
    }
}
