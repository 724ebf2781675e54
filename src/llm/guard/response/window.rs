//! The text window of a stream: the held text is checked each time it grows; all but its
//! last [`HOLD`] bytes are released (a match crossing that point is released whole, so
//! the window never holds more); a block releases the text before the match and ends
//! the answer.

use super::sse::{write_event, Item};
use super::{floor_boundary, Hit, ResponseGuard, HOLD};
use bytes::BytesMut;

/// Bytes of released text kept as look-behind (word boundaries at the window's start).
const BEHIND: usize = 32;

impl ResponseGuard {
    /// Checks the window and releases what may go: everything when `all` (the text
    /// ended), else all but the last HOLD bytes.
    pub(super) fn release(&mut self, all: bool, out: &mut BytesMut) {
        if self.stream.window.is_empty() {
            self.flush_raw(out);
            return;
        }
        let window = std::mem::take(&mut self.stream.window);
        let skip = self.stream.behind.len();
        let mut text = String::with_capacity(skip + window.len());
        text.push_str(&self.stream.behind);
        text.push_str(&window);
        let len = window.len();
        let mut cut = if all {
            len
        } else {
            floor_boundary(&window, len.saturating_sub(HOLD))
        };
        let checked = self.check(&text, skip, cut);
        // A match crossing the cut goes out whole (redacted), never split.
        for h in &checked.redact {
            if h.start < cut && h.end > cut {
                cut = h.end;
            }
        }
        let blocked = checked.block.is_some();
        if let Some(b) = checked.block {
            cut = b;
        }
        let hits: Vec<Hit> = checked
            .redact
            .into_iter()
            .filter(|h| h.start < cut)
            .map(|mut h| {
                h.end = h.end.min(cut);
                h
            })
            .collect();
        self.emit_text(&window, cut, &hits, out);
        // Look-behind: the last bytes released, as they were.
        text.truncate(skip + cut);
        let from = floor_boundary(&text, text.len().saturating_sub(BEHIND));
        self.stream.behind = text[from..].to_string();
        self.stream.window = window[cut..].to_string();
        if blocked {
            self.block_now(out);
            return;
        }
        if all {
            self.flush_raw(out);
        }
    }

    /// Queued events before the first held text.
    fn flush_raw(&mut self, out: &mut BytesMut) {
        while let Some(Item::Raw(_)) = self.stream.queue.front() {
            if let Some(Item::Raw(raw)) = self.stream.queue.pop_front() {
                out.extend_from_slice(&raw);
            }
        }
    }

    /// Sends the queued events whose text lies before `cut` (the last one split when the
    /// cut falls inside its text), with `hits` replaced by placeholders.
    fn emit_text(&mut self, window: &str, cut: usize, hits: &[Hit], out: &mut BytesMut) {
        let mut at = 0;
        while let Some(item) = self.stream.queue.front_mut() {
            match item {
                Item::Raw(raw) => {
                    out.extend_from_slice(raw);
                    self.stream.queue.pop_front();
                }
                Item::Text(t) => {
                    if at >= cut {
                        break;
                    }
                    let end = (at + t.len).min(cut);
                    let piece = segment(window, at, end, hits);
                    let rest = at + t.len - end;
                    if rest == 0 && t.whole && piece.len() == t.len && piece == window[at..end] {
                        out.extend_from_slice(&t.raw);
                    } else {
                        t.at.set(&mut t.json, piece);
                        write_event(out, &t.head, &t.json);
                    }
                    at = end;
                    if rest == 0 {
                        self.stream.queue.pop_front();
                    } else {
                        t.len = rest;
                        t.whole = false;
                        break;
                    }
                }
            }
        }
    }
}

/// The released text of `window[a..b]`: the hits starting in it become their
/// placeholders; the parts of hits that started before `a` are gone.
fn segment(window: &str, a: usize, b: usize, hits: &[Hit]) -> String {
    let mut out = String::with_capacity(b - a);
    let mut at = a;
    for h in hits {
        if h.end <= a || h.start >= b {
            continue;
        }
        if h.start >= at {
            out.push_str(&window[at..h.start]);
            out.push_str(super::super::placeholder(h.kind));
        }
        at = at.max(h.end.min(b));
    }
    if at < b {
        out.push_str(&window[at..b]);
    }
    out
}
