//! Usage rollups: the hourly `usage` buckets summed along the dimensions the spend routes
//! group by, at hour, day and calendar-month grain, so a query over a year reads a few
//! thousand rows instead of millions.
//!
//! A rollup row is (dim, scope, level, start hour, label) -> requests, input, output, cost,
//! cached input (stored in tree `rollup`: see [`super::tables`] for the encoding,
//! `k`/`m`/`t`/`K` for the dims and `h`/`d`/`M` for the levels):
//!
//! | dim              | scope   | label   | answers                                  |
//! |------------------|---------|---------|------------------------------------------|
//! | [`Dim::Key`]       | group   | key id  | by-key, tags                             |
//! | [`Dim::Model`]     | group   | model   | by-model                                 |
//! | [`Dim::Total`]     | group   | (empty) | group totals, timeline, orgs             |
//! | [`Dim::KeyGroups`] | key id  | group   | a key's spend (in every group it was in) |
//!
//! Levels: an hour, a UTC day (24 hours), a UTC calendar month; `start` is always the first
//! hour of the period (hours since the epoch), so every level scans by hour.
//!
//! **Invariant**: every rollup row equals the sum of the `usage` rows it covers. The store
//! keeps it by writing each batch of hourly buckets and the rollups they touch in one
//! transaction (atomic, also across a crash), each rollup moved by the difference between the
//! bucket's new and stored totals read in that same transaction — so a replayed flush (the
//! same absolute total again) moves nothing, and no crash can leave the two disagreeing. A
//! store without rollups (written before they existed) gets them built at start-up, once,
//! from the hourly rows (see [`super::Ledger::new`]).

use super::{UsageKey, UsageTotals};
use crate::admission::budget::{period_start, until_next_period};
use crate::policy::config::BudgetPeriod;

pub(super) const HOUR_MS: u64 = 3_600_000;

/// What a rollup row is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Per key, within a group.
    Key,
    /// Per model, within a group.
    Model,
    /// The group's total.
    Total,
    /// Per group, within a key.
    KeyGroups,
}

impl Dim {
    pub(crate) const ALL: [Dim; 4] = [Dim::Key, Dim::Model, Dim::Total, Dim::KeyGroups];

    /// The scope and label of an hourly bucket in this dimension.
    pub(crate) fn of(self, k: &UsageKey) -> (&str, &str) {
        match self {
            Dim::Key => (&k.group, &k.key),
            Dim::Model => (&k.group, &k.model),
            Dim::Total => (&k.group, ""),
            Dim::KeyGroups => (&k.key, &k.group),
        }
    }
}

/// How long a rollup row's period is; ordered finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Hour,
    Day,
    Month,
}

impl Level {
    pub(crate) const ALL: [Level; 3] = [Level::Hour, Level::Day, Level::Month];

    /// The first hour of the period of this level holding `hour`.
    pub(crate) fn start(self, hour: u64) -> u64 {
        match self {
            Level::Hour => hour,
            Level::Day => hour / 24 * 24,
            Level::Month => month_start(hour),
        }
    }
}

/// 10000-01-01: months are only used before it (beyond, calendar arithmetic saturates).
const LAST_HOUR: u64 = 253_402_300_800 / 3600;

fn month_start(hour: u64) -> u64 {
    period_start(BudgetPeriod::Monthly, hour.saturating_mul(HOUR_MS)) / HOUR_MS
}

/// The first hour of the next month, for an `hour` that starts a month.
fn month_end(hour: u64) -> u64 {
    let ms = hour.saturating_mul(HOUR_MS);
    until_next_period(BudgetPeriod::Monthly, ms)
        .map_or(u64::MAX, |d| ms.saturating_add(d) / HOUR_MS)
}

/// A run of whole periods of one level: rows with `from <= start < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) level: Level,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// Covers the hours `[from, to)` with whole months, days and hours (no level above `max`),
/// coarsest first where it fits: at most 5 runs (hours, days, months, days, hours).
pub(crate) fn cover(from: u64, to: u64, max: Level) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut cur = from;
    while cur < to {
        let months = max >= Level::Month && cur < LAST_HOUR;
        let (level, next) = if months && month_start(cur) == cur && month_end(cur) <= to {
            (Level::Month, month_end(cur))
        } else if max >= Level::Day && cur % 24 == 0 && cur + 24 <= to {
            // Whole days, up to the next month where months are wanted.
            let days = cur + (to - cur) / 24 * 24;
            let limit = if months {
                month_end(month_start(cur))
            } else {
                u64::MAX
            };
            (Level::Day, days.min(limit))
        } else if max >= Level::Day {
            // Hours up to the next day boundary (or the end).
            (Level::Hour, ((cur / 24 + 1) * 24).min(to))
        } else {
            (Level::Hour, to)
        };
        let next = next.min(to).max(cur + 1);
        match runs.last_mut() {
            Some(r) if r.level == level && r.to == cur => r.to = next,
            _ => runs.push(Run {
                level,
                from: cur,
                to: next,
            }),
        }
        cur = next;
    }
    runs
}

/// `a + (new - old)`, field by field, modulo 2^64: exact as long as the true sums fit.
pub(crate) fn moved(a: UsageTotals, new: &UsageTotals, old: &UsageTotals) -> UsageTotals {
    UsageTotals {
        requests: a
            .requests
            .wrapping_add(new.requests.wrapping_sub(old.requests)),
        input_tokens: a
            .input_tokens
            .wrapping_add(new.input_tokens.wrapping_sub(old.input_tokens)),
        output_tokens: a
            .output_tokens
            .wrapping_add(new.output_tokens.wrapping_sub(old.output_tokens)),
        cost_micros: a
            .cost_micros
            .wrapping_add(new.cost_micros.wrapping_sub(old.cost_micros)),
        cached_input_tokens: a.cached_input_tokens.wrapping_add(
            new.cached_input_tokens
                .wrapping_sub(old.cached_input_tokens),
        ),
        cache_write_tokens: a
            .cache_write_tokens
            .wrapping_add(new.cache_write_tokens.wrapping_sub(old.cache_write_tokens)),
        reasoning_tokens: a
            .reasoning_tokens
            .wrapping_add(new.reasoning_tokens.wrapping_sub(old.reasoning_tokens)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_tiles_the_range_exactly() {
        // 2024-01-30 05:00 .. 2024-04-02 07:00 UTC, and small ranges.
        let h = 1_706_590_800 / 3600;
        for (from, to) in [
            (h, h + 24 * 64 + 2),
            (h, h + 1),
            (h - 5, h + 3),
            (0, 24 * 40),
            (0, 500_000),
            (h + 7, u64::MAX / 2),
        ] {
            for max in Level::ALL {
                let runs = cover(from, to, max);
                let mut cur = from;
                for r in &runs {
                    assert_eq!(r.from, cur);
                    assert!(r.level <= max);
                    let mut s = r.from;
                    match r.level {
                        Level::Hour => s = r.to,
                        Level::Day => {
                            assert_eq!(r.from % 24, 0);
                            assert_eq!((r.to - r.from) % 24, 0);
                            s = r.to;
                        }
                        Level::Month => {
                            while s < r.to {
                                assert_eq!(month_start(s), s, "{r:?}");
                                s = month_end(s);
                            }
                        }
                    }
                    assert_eq!(s, r.to);
                    cur = r.to;
                }
                assert_eq!(cur, to);
                assert!(runs.len() <= 5, "{runs:?}");
            }
        }
    }
}
