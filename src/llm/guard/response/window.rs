//! The text window of a stream: when the held text passes [`HOLD`] bytes it is checked
//! and released down to [`KEEP`] bytes (at an event's end when that keeps at least HOLD/2
//! held, so events go out as they came; a match crossing the cut goes out whole,
//! redacted); a block releases the text before the match and ends the answer. A match
//! therefore reaches the client unchecked only when it is longer than what stays held:
//! KEEP bytes with small deltas, never less than HOLD/2.

use super::sse::{write_event, Item};
use super::{floor_boundary, Hit, ResponseGuard, HOLD};
use bytes::BytesMut;

/// Bytes of text still held after a release: the window fills up to HOLD, then is
/// checked and released down to KEEP, so it is checked once per HOLD - KEEP bytes of
/// text rather than on every delta.
const KEEP: usize = HOLD - 64;

/// Bytes of released text kept as look-behind (word boundaries at the window's start).
const BEHIND: usize = 32;

impl ResponseGuard {
    /// Checks the window and releases what may go: everything when `all` (the text
    /// ended), else, past HOLD bytes, all but the last KEEP.
    pub(super) fn release(&mut self, all: bool, out: &mut BytesMut) {
        if self.stream.window.is_empty() {
            self.flush_raw(out);
            return;
        }
        let len = self.stream.window.len();
        let mut cut = if all {
            len
        } else if len <= HOLD {
            0
        } else {
            self.cut_at(floor_boundary(&self.stream.window, len - KEEP))
        };
        if cut == 0 {
            // Nothing may go yet (held text cannot leak: a block can wait for it).
            return;
        }
        let window = std::mem::take(&mut self.stream.window);
        let skip = self.stream.behind.len();
        let mut text = String::with_capacity(skip + window.len());
        text.push_str(&self.stream.behind);
        text.push_str(&window);
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

    /// Where to cut the window for at least `min` bytes released: at the end of the
    /// event the point falls in (whole events go out as they came, none is split),
    /// unless that would leave less than HOLD / 2 held (a long delta is split instead,
    /// so a match's start at its end stays held).
    fn cut_at(&self, min: usize) -> usize {
        if min == 0 {
            return 0;
        }
        let mut at = 0;
        for item in &self.stream.queue {
            if let Item::Text(t) = item {
                at += t.len;
                if at >= min {
                    break;
                }
            }
        }
        if self.stream.window.len() - at >= HOLD / 2 {
            at
        } else {
            min
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
