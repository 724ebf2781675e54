//! Streams, event by event: each upstream SSE event is translated into the client's events
//! as soon as it is complete. Only a partial line is held across chunk boundaries.

mod to_chat;
mod to_messages;

pub use to_chat::AnthropicToOpenAi;
pub use to_messages::OpenAiToAnthropic;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Splits an SSE byte stream into events (their `data`, lines joined by `\n`).
#[derive(Debug, Default)]
struct Events {
    partial: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

impl Events {
    fn feed(&mut self, chunk: &[u8], end: bool, mut on_event: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, &mut on_event);
            } else {
                self.partial.extend_from_slice(line);
                let whole = self.partial.split();
                self.line(&whole, &mut on_event);
            }
        }
        self.partial.extend_from_slice(rest);
        if end {
            if !self.partial.is_empty() {
                let whole = self.partial.split();
                self.line(&whole, &mut on_event);
            }
            self.line(b"", &mut on_event);
        }
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
        } else if let Some(d) = line.strip_prefix(b"data:") {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data
                .extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
            self.has_data = true;
        }
        // `event:`, `id:`, `retry:` and comments: the type is in the data of both APIs.
    }
}

fn write_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing a Value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

fn write_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, v);
}

/// Puts the translated bytes of a chunk in its place (nothing at all if none).
fn emit(body: &mut Option<Bytes>, out: Vec<u8>) {
    *body = (!out.is_empty()).then(|| Bytes::from(out));
}

#[cfg(test)]
mod tests;
