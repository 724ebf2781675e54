//! The completion text of an answer, for groups whose `log_level` is `full`: reassembled
//! from the upstream's own bytes (the scanner's SSE events or JSON body), in the
//! upstream's grammar — the client may have received a translation of it, with the same
//! text.
//!
//! Only the first choice's text is kept (`n > 1` answers log choice 0), tool calls are
//! not text, and the text is capped at [`COMPLETION_CAP`] bytes.

use serde_json::Value;

/// Bytes of completion text kept for the request log; the rest is dropped and the line
/// says `completion_truncated`.
pub(crate) const COMPLETION_CAP: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Completion {
    pub text: String,
    pub truncated: bool,
}

impl Completion {
    fn push(&mut self, s: &str) {
        let room = COMPLETION_CAP.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return;
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        self.truncated = true;
    }

    /// One SSE `data:` payload: OpenAI chat / completions chunks, Anthropic
    /// `content_block_delta`, Responses API `response.output_text.delta`.
    pub(crate) fn event(&mut self, data: &[u8]) {
        if self.truncated {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str() {
            Some("content_block_delta") => {
                if let Some(t) = v["delta"]["text"].as_str() {
                    self.push(t);
                }
            }
            Some("response.output_text.delta") if v["output_index"].as_u64().unwrap_or(0) == 0 => {
                if let Some(t) = v["delta"].as_str() {
                    self.push(t);
                }
            }
            // Other typed events repeat text already seen (`response.completed`) or carry none.
            Some(_) => {}
            None => {
                if let Some(c) = first_choice(&v) {
                    if let Some(t) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                        self.push(t);
                    }
                }
            }
        }
    }

    /// A whole JSON answer: OpenAI `choices[0].message.content` / `choices[0].text`,
    /// Anthropic `content[].text`, Responses API `output[].content[].text`.
    pub(crate) fn body(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if let Some(c) = first_choice(&v) {
            let m = &c["message"]["content"];
            if let Some(t) = m.as_str().or(c["text"].as_str()) {
                self.push(t);
            } else {
                self.blocks(m, "text");
            }
        } else if v["content"].is_array() {
            self.blocks(&v["content"], "text");
        } else if let Some(out) = v["output"].as_array() {
            for item in out.iter().filter(|i| i["type"] == "message") {
                self.blocks(&item["content"], "output_text");
            }
        }
    }

    /// The `text` of each block of type `kind` in an array of content blocks.
    fn blocks(&mut self, blocks: &Value, kind: &str) {
        for b in blocks.as_array().into_iter().flatten() {
            if b["type"] == kind {
                if let Some(t) = b["text"].as_str() {
                    self.push(t);
                }
            }
        }
    }
}

fn first_choice(v: &Value) -> Option<&Value> {
    v["choices"]
        .as_array()?
        .iter()
        .find(|c| c["index"].as_u64().unwrap_or(0) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(lines: &[&str]) -> Completion {
        let mut c = Completion::default();
        for l in lines {
            c.event(l.as_bytes());
        }
        c
    }

    #[test]
    fn stream_deltas_of_every_api() {
        let oa = events(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo \"x\""}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
        ]);
        assert_eq!(oa.text, "Hello \"x\"");
        let cmpl = events(&[
            r#"{"choices":[{"index":0,"text":"a"}]}"#,
            r#"{"choices":[{"index":0,"text":"b"}]}"#,
        ]);
        assert_eq!(cmpl.text, "ab");
        let an = events(&[
            r#"{"type":"message_start","message":{"content":[]}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there"}}"#,
        ]);
        assert_eq!(an.text, "Hi there");
        let resp = events(&[
            r#"{"type":"response.output_text.delta","output_index":0,"delta":"x"}"#,
            r#"{"type":"response.output_text.delta","output_index":0,"delta":"y"}"#,
            r#"{"type":"response.completed","response":{"output":[{"type":"message","content":[{"type":"output_text","text":"xy"}]}]}}"#,
        ]);
        assert_eq!(resp.text, "xy");
    }

    #[test]
    fn json_bodies_of_every_api() {
        let cases = [
            (
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"chat"}}]}"#,
                "chat",
            ),
            (r#"{"choices":[{"index":0,"text":"cmpl"}]}"#, "cmpl"),
            (
                r#"{"content":[{"type":"text","text":"a"},{"type":"tool_use","input":{}},{"type":"text","text":"b"}]}"#,
                "ab",
            ),
            (
                r#"{"output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"resp"}]}]}"#,
                "resp",
            ),
            (r#"{"data":[{"embedding":[0.1]}]}"#, ""),
            ("not json", ""),
        ];
        for (body, want) in cases {
            let mut c = Completion::default();
            c.body(body.as_bytes());
            assert_eq!(c.text, want, "{body}");
        }
    }

    #[test]
    fn text_is_capped_on_a_char_boundary() {
        let mut c = Completion::default();
        c.push(&"a".repeat(COMPLETION_CAP - 1));
        c.push("éé");
        assert_eq!(c.text.len(), COMPLETION_CAP - 1);
        assert!(c.truncated);
    }
}
