//! W3C Trace Context: the client's `traceparent` read, ours written, and what one request
//! keeps of its trace while it runs (ids and instants only; spans are built at the end).

use crate::proxy::route::TargetRef;
use smallvec::SmallVec;
use std::time::Instant;

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
const TRACEPARENT_LEN: usize = 55;

/// A client's `traceparent`, when it is well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) sampled: bool,
}

/// Reads a `traceparent` value (W3C Trace Context level 1). Version `ff`, all-zero ids,
/// upper-case hex or a wrong length mean no parent: the request starts a new trace.
pub(crate) fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < TRACEPARENT_LEN || (v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-') {
        return None;
    }
    let version = hex_u64(&v[0..2])?;
    // Version 00 is exactly 55 bytes; a later version may append fields after a dash.
    if version == 0xff || (version == 0 && v.len() != TRACEPARENT_LEN) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = (u128::from(hex_u64(&v[3..19])?) << 64) | u128::from(hex_u64(&v[19..35])?);
    let span_id = hex_u64(&v[36..52])?;
    let flags = hex_u64(&v[53..55])?;
    (trace_id != 0 && span_id != 0).then_some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lower-case hex only (the W3C rule), at most 16 digits.
fn hex_u64(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// `traceparent` for a span of `trace_id`, without the formatter.
pub(crate) fn format_traceparent(
    trace_id: u128,
    span_id: u64,
    sampled: bool,
) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0..2].copy_from_slice(b"00");
    // The slices are exactly twice the bytes' length: encoding cannot fail.
    let _ = hex::encode_to_slice(trace_id.to_be_bytes(), &mut out[3..35]);
    let _ = hex::encode_to_slice(span_id.to_be_bytes(), &mut out[36..52]);
    out[53..55].copy_from_slice(if sampled { b"01" } else { b"00" });
    out
}

/// One upstream attempt: its span id (sent upstream in `traceparent`) and start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) span_id: u64,
    pub(crate) started: Instant,
    pub(crate) target: TargetRef,
}

/// What a traced request keeps while it runs. Only made when `[tracing]` is on.
#[derive(Debug)]
pub(crate) struct RequestTrace {
    pub(crate) trace_id: u128,
    /// The client's span, when it sent a `traceparent`.
    pub(crate) parent: Option<u64>,
    /// The request's own span.
    pub(crate) span_id: u64,
    /// Recorded and exported (ids are still passed upstream when not).
    pub(crate) sampled: bool,
    /// Inline for the usual one or two attempts.
    pub(crate) attempts: SmallVec<[Attempt; 2]>,
}

impl RequestTrace {
    /// The request's trace: the client's continued, else a new one sampled at
    /// `sample_bound` (see [`sampled_at`]).
    pub(crate) fn begin(client: Option<&[u8]>, sample_bound: u64) -> RequestTrace {
        let parent = client.and_then(parse_traceparent);
        let (trace_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.sampled),
            None => {
                let id = rand::random::<u128>().max(1);
                (id, sampled_at(id, sample_bound))
            }
        };
        RequestTrace {
            trace_id,
            parent: parent.map(|p| p.span_id),
            span_id: new_span_id(),
            sampled,
            attempts: SmallVec::new(),
        }
    }

    /// An upstream attempt starts: its span id is what `traceparent` names upstream.
    pub(crate) fn attempt(&mut self, target: TargetRef, started: Instant) {
        self.attempts.push(Attempt {
            span_id: new_span_id(),
            started,
            target,
        });
    }

    /// The `traceparent` the current attempt sends upstream.
    pub(crate) fn upstream_traceparent(&self) -> Option<[u8; TRACEPARENT_LEN]> {
        let a = self.attempts.last()?;
        Some(format_traceparent(self.trace_id, a.span_id, self.sampled))
    }
}

fn new_span_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// The bound of `sample` for [`sampled_at`]: `sample`·2⁶³.
pub(crate) fn sample_bound(sample: f64) -> u64 {
    (sample.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

/// OpenTelemetry's `TraceIdRatioBased` rule: the trace id's low 63 bits below the bound,
/// so every service that samples a trace id at the same ratio decides alike.
pub(crate) fn sampled_at(trace_id: u128, bound: u64) -> bool {
    ((trace_id as u64) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_w3c_example() {
        let p = parse_traceparent(EXAMPLE).expect("valid");
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert!(p.sampled);
        assert_eq!(
            &format_traceparent(p.trace_id, p.span_id, true)[..],
            EXAMPLE
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            b"00+4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may carry more fields.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(parse_traceparent(later).is_some_and(|p| !p.sampled));
    }

    #[test]
    fn the_clients_flag_wins_and_the_ratio_decides_new_traces() {
        let t = RequestTrace::begin(Some(EXAMPLE), 0);
        assert!(t.sampled);
        assert_eq!(t.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(t.parent, Some(0x00f067aa0ba902b7));
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!RequestTrace::begin(Some(unsampled), sample_bound(1.0)).sampled);
        assert!(RequestTrace::begin(None, sample_bound(1.0)).sampled);
        assert!(!RequestTrace::begin(None, sample_bound(0.0)).sampled);
        let bound = sample_bound(0.25);
        let n = (0..4000u128)
            .filter(|i| {
                sampled_at(
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    bound,
                )
            })
            .count();
        assert!((800..1200).contains(&n), "{n} of 4000 at 0.25");
    }
}
