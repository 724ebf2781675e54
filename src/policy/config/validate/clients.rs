//! Validation of the `[server]` deadlines and caps against slow and hostile clients.

use super::super::ClientLimits;
use super::{duration, Checker, Loc};
use std::time::Duration;

/// The fields as written.
pub(super) struct Raw {
    pub(crate) header_timeout: Option<String>,
    pub(crate) body_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) max_connections: Option<u64>,
    pub(crate) max_header_bytes: Option<String>,
    pub(crate) body_memory: Option<String>,
}

pub(super) fn check(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    max_body: u64,
    raw: Raw,
) -> ClientLimits {
    let Raw {
        header_timeout,
        body_timeout,
        idle_timeout,
        max_connections,
        max_header_bytes,
        body_memory,
    } = raw;
    let d = ClientLimits::default();
    let timeout = |c: &mut Checker, name: &str, v: Option<String>, default: Duration| {
        let field = format!("{path}.{name}");
        let t = duration(c, loc, &field, v.as_deref(), default);
        if t < Duration::from_millis(100) || t > Duration::from_secs(3600) {
            c.problem(loc, field, format!("{t:?}: want 100ms..=1h"));
            return default;
        }
        t
    };
    let header_timeout = timeout(c, "header_timeout", header_timeout, d.header_timeout);
    let body_timeout = timeout(c, "body_timeout", body_timeout, d.body_timeout);
    let idle_timeout = timeout(c, "idle_timeout", idle_timeout, d.idle_timeout);
    let max_connections = match max_connections {
        None => d.max_connections,
        Some(n @ 1..=1_000_000) => n as usize,
        Some(n) => {
            c.problem(
                loc,
                format!("{path}.max_connections"),
                format!("{n}: want 1..=1000000"),
            );
            d.max_connections
        }
    };
    let max_header_bytes = size(
        c,
        loc,
        &format!("{path}.max_header_bytes"),
        max_header_bytes,
        d.max_header_bytes as u64,
        (1024, 1024 * 1024),
        "at least 1KiB and at most 1MiB",
    ) as usize;
    let body_memory = size(
        c,
        loc,
        &format!("{path}.body_memory"),
        body_memory,
        d.body_memory.max(max_body),
        (max_body, 1 << 40),
        "at least max_body and at most 1TiB",
    );
    ClientLimits {
        header_timeout,
        body_timeout,
        idle_timeout,
        max_connections,
        max_header_bytes,
        body_memory,
    }
}

fn size(
    c: &mut Checker,
    loc: Loc,
    field: &str,
    v: Option<String>,
    default: u64,
    (min, max): (u64, u64),
    want: &str,
) -> u64 {
    let Some(s) = v else { return default };
    match s.parse::<bytesize::ByteSize>() {
        Ok(b) if (min..=max).contains(&b.as_u64()) => b.as_u64(),
        Ok(b) => {
            c.problem(loc, field, format!("{b}: want {want}"));
            default
        }
        Err(e) => {
            c.problem(loc, field, format!("invalid size {s:?}: {e}"));
            default
        }
    }
}
