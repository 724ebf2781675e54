//! Injectable time for limiters, budgets and the ledger: tests advance a [`ManualClock`]
//! instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

/// The wall clock: the process's one read of it. Limiters, budgets and the ledger take a
/// [`Clock`] (tests move a [`ManualClock`]); what is only stamped or aged by real time (log
/// lines, exported objects, spans, retention) reads it here.
pub fn wall() -> SystemTime {
    SystemTime::now()
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that moves only when told to.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(start_ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-11-25T03:00:00Z`), as the admin API shows times.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
