//! Passive health and latency of upstream targets, kept outside the policy snapshot (keyed
//! by `provider/model`, so a reload keeps what was learnt). The snapshot hands each target
//! its [`TargetHealth`] when it is built: no lookup on the request path.
//!
//! A target that fails `EJECT_AFTER` times in a row is ejected for a cool-down that doubles
//! on each further ejection (1 s, 2 s, 4 s … up to 60 s). After the cool-down it is eligible
//! again; one more failure ejects it again at once, one success makes it healthy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) const EJECT_AFTER: u32 = 3;
const BASE_COOLDOWN_MS: u64 = 1_000;
const MAX_COOLDOWN_MS: u64 = 60_000;
/// Weight of a new sample in the latency EWMA.
const ALPHA: f64 = 0.3;

#[derive(Debug, Default)]
pub struct TargetHealth {
    /// EWMA of time to first byte, microseconds; 0 = no sample yet.
    ewma_us: AtomicU64,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl TargetHealth {
    pub(crate) fn healthy(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub(crate) fn latency_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    pub fn record_success(&self, ttfb_us: u64) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            ttfb_us.max(1)
        } else {
            ((1.0 - ALPHA) * old as f64 + ALPHA * ttfb_us as f64).max(1.0) as u64
        };
        self.ewma_us.store(new, Ordering::Relaxed);
    }

    /// A failed attempt; `latency_us` (time spent on it) also counts against the EWMA so a
    /// target that times out looks slow, not unknown. Returns true if it was ejected now.
    pub(crate) fn record_failure(&self, now_ms: u64, latency_us: Option<u64>) -> bool {
        if let Some(l) = latency_us {
            let old = self.ewma_us.load(Ordering::Relaxed);
            self.ewma_us.store(
                ((1.0 - ALPHA) * old as f64 + ALPHA * l as f64) as u64,
                Ordering::Relaxed,
            );
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < EJECT_AFTER {
            return false;
        }
        let k = self.ejections.fetch_add(1, Ordering::Relaxed).min(10);
        let cooldown = (BASE_COOLDOWN_MS << k).min(MAX_COOLDOWN_MS);
        self.ejected_until_ms
            .store(now_ms + cooldown, Ordering::Relaxed);
        true
    }
}

/// All targets' health, by `provider/model` label.
#[derive(Default)]
pub struct Health {
    map: Mutex<HashMap<Arc<str>, Arc<TargetHealth>>>,
}

impl Health {
    pub(crate) fn target(&self, label: &Arc<str>) -> Arc<TargetHealth> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(label.clone()).or_default().clone()
    }

    /// `(label, healthy, ewma µs)` of every known target (metrics, admin).
    pub(crate) fn report(&self, now_ms: u64) -> Vec<(Arc<str>, bool, u64)> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(k, h)| (k.clone(), h.healthy(now_ms), h.latency_us()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_backs_off_and_success_heals() {
        let h = TargetHealth::default();
        assert!(!h.record_failure(0, None));
        assert!(!h.record_failure(0, None));
        assert!(h.record_failure(0, None));
        assert!(!h.healthy(500));
        assert!(h.healthy(1_000));
        // Still failing after the cool-down: ejected again, for longer.
        assert!(h.record_failure(1_000, None));
        assert!(!h.healthy(2_500));
        assert!(h.healthy(3_000));
        h.record_success(5_000);
        assert!(!h.record_failure(3_000, None));
        assert_eq!(h.latency_us(), 5_000);
    }
}
