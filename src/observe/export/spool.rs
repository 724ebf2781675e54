//! One sink's spool (docs/operations.md "Log export"): `data_dir/spool/<sink>/`, a run of
//! append-only segment files `<seq>.jsonl` of request-log lines and an `ack` file holding
//! the position delivered so far (`<seq> <offset>`).
//!
//! - The request-log writer thread appends (one `write` per drain) and fsyncs every
//!   [`super::FSYNC_EVERY`]; a segment is closed at [`Spool::segment_max`] bytes.
//! - The sink's delivery task reads complete lines from the acknowledged position, and
//!   after a delivery moves the position (written to `ack` through a rename) and deletes
//!   the segments wholly behind it.
//! - Past `spool_max`, the writer deletes the oldest segments: their undelivered lines are
//!   the dropped ones (counted and audited by the caller).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A position in the spool: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub(crate) seq: u64,
    pub(crate) off: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    len: u64,
}

pub(crate) struct Spool {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    /// The newest segment, open for appending (`None` until the first line).
    active: Option<File>,
    /// Written since the last fsync.
    pub(crate) dirty: bool,
    ack: Pos,
    segment_max: u64,
    max: u64,
}

/// Lines dropped from the oldest segments and the bytes they held.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) lines: u64,
    pub(crate) bytes: u64,
}

fn seg_name(seq: u64) -> String {
    format!("{seq:016}.jsonl")
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: the segments on disk and the acknowledged
    /// position, so delivery resumes exactly where it stopped.
    pub(crate) fn open(dir: &Path, max: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut seqs: Vec<(u64, u64)> = vec![];
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            seqs.push((seq, e.metadata()?.len()));
        }
        seqs.sort_unstable();
        let ack = std::fs::read_to_string(dir.join("ack"))
            .ok()
            .and_then(|s| {
                let (a, b) = s.trim().split_once(' ')?;
                Some(Pos {
                    seq: a.parse().ok()?,
                    off: b.parse().ok()?,
                })
            })
            .unwrap_or_default();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segments: seqs
                .into_iter()
                .map(|(seq, len)| Segment { seq, len })
                .collect(),
            active: None,
            dirty: false,
            ack,
            segment_max: (max / 8).clamp(4 << 10, 64 << 20),
            max,
        };
        // Segments wholly acknowledged before a crash.
        spool.forget_acknowledged();
        if let Some(first) = spool.segments.front() {
            if spool.ack.seq < first.seq {
                spool.ack = Pos {
                    seq: first.seq,
                    off: 0,
                };
            }
        }
        // A torn last line (killed mid-write) must not be glued to the next one: start a
        // new segment for the new lines.
        Ok(spool)
    }

    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(seg_name(seq))
    }

    /// Appends whole lines (each ending in `\n`). Returns what `spool_max` made drop.
    pub(crate) fn append(&mut self, lines: &[u8]) -> std::io::Result<Dropped> {
        if lines.is_empty() {
            return Ok(Dropped::default());
        }
        let roll = match (&self.active, self.segments.back()) {
            (Some(_), Some(s)) => s.len >= self.segment_max,
            _ => true,
        };
        if roll {
            if let Some(f) = self.active.take() {
                f.sync_data()?;
            }
            let seq = self
                .segments
                .back()
                .map_or(self.ack.seq.max(1), |s| s.seq + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(seq))?;
            self.segments.push_back(Segment { seq, len: 0 });
            self.active = Some(f);
        }
        let (Some(f), Some(seg)) = (&mut self.active, self.segments.back_mut()) else {
            return Ok(Dropped::default());
        };
        f.write_all(lines)?;
        seg.len += lines.len() as u64;
        self.dirty = true;
        self.enforce_max()
    }

    /// fsyncs the active segment if anything was written since the last one.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            if let Some(f) = &self.active {
                f.sync_data()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Bytes not yet delivered.
    pub(crate) fn pending_bytes(&self) -> u64 {
        let total: u64 = self.segments.iter().map(|s| s.len).sum();
        let acked = self
            .segments
            .iter()
            .find(|s| s.seq == self.ack.seq)
            .map_or(0, |_| self.ack.off);
        total.saturating_sub(acked)
    }

    fn enforce_max(&mut self) -> std::io::Result<Dropped> {
        let mut dropped = Dropped::default();
        while self.pending_bytes() > self.max && self.segments.len() > 1 {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            let from = if old.seq == self.ack.seq {
                self.ack.off
            } else {
                0
            };
            let mut text = vec![];
            if let Ok(mut f) = File::open(self.path(old.seq)) {
                f.seek(SeekFrom::Start(from))?;
                f.read_to_end(&mut text)?;
            }
            dropped.lines += memchr::memchr_iter(b'\n', &text).count() as u64;
            dropped.bytes += old.len.saturating_sub(from);
            let _ = std::fs::remove_file(self.path(old.seq));
            if let Some(next) = self.segments.front() {
                self.ack = Pos {
                    seq: next.seq,
                    off: 0,
                };
            }
        }
        if dropped.lines > 0 {
            self.write_ack()?;
        }
        Ok(dropped)
    }

    /// Where delivery stands and the segments from there with their current lengths.
    pub(crate) fn unread(&self) -> (Pos, Vec<(u64, u64)>) {
        let segs = self
            .segments
            .iter()
            .filter(|s| s.seq >= self.ack.seq)
            .map(|s| (s.seq, s.len))
            .collect();
        (self.ack, segs)
    }

    /// Delivery reached `to` (read from position `from`): persists it and deletes the
    /// segments behind it. A `from` that lines were dropped past is ignored.
    pub(crate) fn acknowledge(&mut self, from: Pos, to: Pos) -> std::io::Result<()> {
        let _ = from;
        if to <= self.ack {
            // The lines were dropped under the reader (spool_max): keep the later position.
            return Ok(());
        }
        self.ack = to;
        self.write_ack()?;
        self.forget_acknowledged();
        Ok(())
    }

    fn forget_acknowledged(&mut self) {
        while self.segments.len() > 1 {
            let Some(first) = self.segments.front() else {
                break;
            };
            let done = first.seq < self.ack.seq;
            if !done {
                break;
            }
            let seq = first.seq;
            self.segments.pop_front();
            let _ = std::fs::remove_file(self.path(seq));
        }
    }

    fn write_ack(&self) -> std::io::Result<()> {
        let tmp = self.dir.join("ack.tmp");
        let mut f = File::create(&tmp)?;
        write!(f, "{} {}", self.ack.seq, self.ack.off)?;
        f.sync_data()?;
        std::fs::rename(tmp, self.dir.join("ack"))
    }
}

/// Reads complete lines from `from` over `segs` (number, length), up to `max_lines` and
/// `max_bytes` (at least one line). Returns the text, its line count and the position
/// after it. The torn tail of a segment (a writer killed mid-line) is skipped once a later
/// segment exists.
pub(crate) fn read_lines(
    spool_dir: &Path,
    from: Pos,
    segs: &[(u64, u64)],
    max_lines: usize,
    max_bytes: usize,
) -> std::io::Result<(Vec<u8>, usize, Pos)> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut pos = from;
    for (i, &(seq, len)) in segs.iter().enumerate() {
        if seq < pos.seq {
            continue;
        }
        let off = if seq == pos.seq { pos.off } else { 0 };
        pos = Pos { seq, off };
        if off >= len {
            continue;
        }
        let mut f = match File::open(spool_dir.join(seg_name(seq))) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut cap = max_bytes.saturating_sub(out.len()).saturating_add(1 << 20) as u64;
        let (buf, used) = loop {
            let want = (len - off).min(cap);
            // Read into fresh capacity: no zeroing of a buffer the read overwrites.
            let mut buf = Vec::with_capacity(want as usize);
            f.seek(SeekFrom::Start(off))?;
            (&mut f).take(want).read_to_end(&mut buf)?;
            if (buf.len() as u64) < want {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut used = 0;
            for end in memchr::memchr_iter(b'\n', &buf) {
                let line = &buf[used..=end];
                if n > 0 && (n >= max_lines || out.len() + line.len() > max_bytes) {
                    let at = Pos {
                        seq,
                        off: off + used as u64,
                    };
                    return Ok((out, n, at));
                }
                out.extend_from_slice(line);
                n += 1;
                used = end + 1;
            }
            if used == 0 && want < len - off {
                cap = len - off; // one line longer than the budget: read it whole
                continue;
            }
            break (buf, used);
        };
        pos.off = off + used as u64;
        if used < buf.len() {
            let to_end = off + buf.len() as u64 == len;
            if to_end && i + 1 < segs.len() {
                pos.off = len; // torn tail: a later segment exists, skip it
                continue;
            }
            return Ok((out, n, pos));
        }
        if n >= max_lines || out.len() >= max_bytes {
            return Ok((out, n, pos));
        }
    }
    Ok((out, n, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: std::ops::Range<u32>) -> Vec<u8> {
        let mut v = vec![];
        for i in n {
            v.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        v
    }

    #[test]
    fn delivery_resumes_at_the_acknowledged_position_after_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = Spool::open(dir.path(), 1 << 30).expect("open");
        s.append(&lines(0..10)).expect("append");
        s.sync().expect("sync");
        let (from, segs) = s.unread();
        let (text, n, to) = read_lines(s.dir(), from, &segs, 4, 1 << 20).expect("read");
        assert_eq!(n, 4);
        assert_eq!(text, lines(0..4));
        s.acknowledge(from, to).expect("ack");
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 30).expect("reopen");
        let (from, segs) = s.unread();
        let (text, n, _) = read_lines(s.dir(), from, &segs, 100, 1 << 20).expect("read");
        assert_eq!(n, 6);
        assert_eq!(text, lines(4..10));
        s.append(&lines(10..12)).expect("append");
        let (from, segs) = s.unread();
        let (text, n, _) = read_lines(s.dir(), from, &segs, 100, 1 << 20).expect("read");
        assert_eq!(n, 8);
        assert_eq!(text, lines(4..12));
    }

    #[test]
    fn past_the_maximum_the_oldest_lines_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = Spool::open(dir.path(), 64 << 10).expect("open");
        let mut dropped = 0;
        for i in 0..100u32 {
            dropped += s
                .append(&lines(i * 100..(i + 1) * 100))
                .expect("append")
                .lines;
        }
        assert!(s.pending_bytes() <= 64 << 10);
        let (from, segs) = s.unread();
        let (text, n, _) = read_lines(s.dir(), from, &segs, usize::MAX, usize::MAX).expect("read");
        assert_eq!(n as u64 + dropped, 10_000);
        // The newest lines are the ones kept, in order.
        assert!(text.ends_with(b"{\"n\":9999}\n"));
        let first: serde_json::Value =
            serde_json::from_slice(text.split(|&b| b == b'\n').next().expect("line"))
                .expect("json");
        assert_eq!(first["n"].as_u64(), Some(dropped));
    }

    #[test]
    fn segments_roll_and_acknowledged_ones_are_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = Spool::open(dir.path(), 64 << 10).expect("open");
        for i in 0..20u32 {
            s.append(&lines(i * 100..(i + 1) * 100)).expect("append");
        }
        let files = || std::fs::read_dir(dir.path()).expect("ls").count();
        assert!(files() > 2);
        loop {
            let (from, segs) = s.unread();
            let (_, n, to) = read_lines(s.dir(), from, &segs, 500, 1 << 20).expect("read");
            if n == 0 {
                break;
            }
            s.acknowledge(from, to).expect("ack");
        }
        assert_eq!(s.pending_bytes(), 0);
        // The active segment and `ack`.
        assert_eq!(files(), 2);
    }
}
