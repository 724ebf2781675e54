//! An exact sliding window: in any interval of the window's length, the admitted amount
//! never exceeds the limit.
//!
//! The window is kept as `SLOTS` sub-buckets of 1/60 of its length. An admission at time
//! `t` counts every bucket that overlaps `[t - len, t]` — 61 of them — so the check is
//! conservative by at most one bucket (1/60 of the window) and never lets a rolling
//! interval overshoot. Memory: 61 × 8 bytes + 16 per window.

/// Sub-buckets per window (one more than 60, see the module doc).
pub(crate) const SLOTS: usize = 61;

#[derive(Debug, Clone)]
pub(crate) struct Window {
    bucket_ms: u64,
    /// Absolute index (time / bucket_ms) of the newest bucket.
    head: u64,
    counts: [u64; SLOTS],
    /// Sum of `counts`, kept in step so a check is O(1) (buckets are zeroed O(1) amortised).
    total: u64,
}

/// Where an admitted amount was counted, to adjust it at settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u64);

impl Window {
    pub(crate) fn new(len_ms: u64) -> Window {
        Window {
            bucket_ms: (len_ms / 60).max(1),
            head: 0,
            counts: [0; SLOTS],
            total: 0,
        }
    }

    pub(crate) fn len_ms(&self) -> u64 {
        self.bucket_ms * 60
    }

    fn advance(&mut self, now_ms: u64) {
        let idx = now_ms / self.bucket_ms;
        if idx <= self.head {
            return;
        }
        if idx - self.head >= SLOTS as u64 {
            self.counts = [0; SLOTS];
            self.total = 0;
        } else {
            for i in self.head + 1..=idx {
                let c = &mut self.counts[(i % SLOTS as u64) as usize];
                self.total -= *c;
                *c = 0;
            }
        }
        self.head = idx;
    }

    /// The amount counted in the last window length (after advancing to `now_ms`).
    pub(crate) fn used(&mut self, now_ms: u64) -> u64 {
        self.advance(now_ms);
        self.total
    }

    /// `Ok` if `amount` more fits under `limit`; else the milliseconds until it would.
    /// An amount larger than the limit never fits: the answer is then the window length.
    pub(crate) fn check(&mut self, now_ms: u64, amount: u64, limit: u64) -> Result<(), u64> {
        let used = self.used(now_ms);
        if used + amount <= limit {
            return Ok(());
        }
        if amount > limit {
            return Err(self.len_ms());
        }
        let need = used + amount - limit;
        let mut freed = 0;
        let oldest = self.head.saturating_sub(SLOTS as u64 - 1);
        for j in oldest..=self.head {
            freed += self.counts[(j % SLOTS as u64) as usize];
            if freed >= need {
                // Bucket j stops counting once it no longer overlaps [t - len, t].
                let expires = (j + SLOTS as u64) * self.bucket_ms;
                return Err(expires.saturating_sub(now_ms).max(1));
            }
        }
        Err(self.len_ms())
    }

    /// Counts `amount` now. Call after a successful [`check`](Self::check) at the same time.
    pub(crate) fn add(&mut self, now_ms: u64, amount: u64) -> Slot {
        self.advance(now_ms);
        self.counts[(self.head % SLOTS as u64) as usize] += amount;
        self.total += amount;
        Slot(self.head)
    }

    /// Replaces `old` by `new` in the bucket an earlier [`add`](Self::add) used, if that
    /// bucket still counts (settling a token reservation with real usage).
    pub(crate) fn adjust(&mut self, now_ms: u64, slot: Slot, old: u64, new: u64) {
        self.advance(now_ms);
        if slot.0 + (SLOTS as u64) <= self.head || slot.0 > self.head {
            return;
        }
        let c = &mut self.counts[(slot.0 % SLOTS as u64) as usize];
        let before = *c;
        *c = c.saturating_sub(old).saturating_add(new);
        self.total = self.total - before + *c;
    }

    /// Nothing counted any more: the window can be dropped.
    pub(crate) fn is_idle(&mut self, now_ms: u64) -> bool {
        self.used(now_ms) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundary_burst_admits_l_not_2l() {
        let mut w = Window::new(60_000);
        let limit = 10;
        let mut admitted = 0;
        // L requests just before a minute boundary, L just after.
        for t in [59_990u64, 60_010] {
            for _ in 0..limit {
                if w.check(t, 1, limit).is_ok() {
                    w.add(t, 1);
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, limit);
        // They become admissible again once the first burst has slid out.
        assert!(w.check(119_989, 1, limit).is_err());
        let retry = w.check(60_010, 1, limit).unwrap_err();
        assert!(retry > 59_000 && retry <= 61_000, "{retry}");
        assert!(w.check(60_010 + retry, 1, limit).is_ok());
    }

    #[test]
    fn settlement_adjusts_the_reserved_bucket() {
        let mut w = Window::new(60_000);
        let s = w.add(1_000, 500);
        w.adjust(2_000, s, 500, 120);
        assert_eq!(w.used(2_000), 120);
        // Too late: the bucket has slid out, nothing changes.
        w.adjust(200_000, s, 120, 5_000);
        assert_eq!(w.used(200_000), 0);
    }

    /// Reference model: every admission kept with its time; a rolling interval check.
    fn reference_ok(log: &[(u64, u64)], now: u64, amount: u64, limit: u64, len: u64) -> bool {
        let used: u64 = log
            .iter()
            .filter(|(t, _)| *t + len > now)
            .map(|(_, a)| a)
            .sum();
        used + amount <= limit
    }

    proptest! {
        #[test]
        fn no_rolling_interval_ever_exceeds_the_limit(
            steps in proptest::collection::vec((0u64..3_000, 1u64..5), 1..400),
            limit in 1u64..40,
        ) {
            let len = 60_000;
            let mut w = Window::new(len);
            let mut now = 0;
            let mut log: Vec<(u64, u64)> = vec![];
            for (dt, amount) in steps {
                now += dt;
                if w.check(now, amount, limit).is_ok() {
                    // Never admits what the exact model would refuse.
                    prop_assert!(reference_ok(&log, now, amount, limit, len));
                    w.add(now, amount);
                    log.push((now, amount));
                }
            }
            // Every interval of length `len` holds at most `limit`.
            for &(start, _) in &log {
                let sum: u64 = log.iter().filter(|(t, _)| *t >= start && *t < start + len).map(|(_, a)| a).sum();
                prop_assert!(sum <= limit);
            }
        }

        #[test]
        fn admits_whatever_is_clearly_free(limit in 1u64..100, gap in 61_000u64..500_000) {
            // After more than a window of silence the full limit is available again.
            let mut w = Window::new(60_000);
            for _ in 0..limit { w.add(1_000, 1); }
            prop_assert!(w.check(1_000 + gap, limit, limit).is_ok());
        }
    }
}
