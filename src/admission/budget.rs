//! USD budgets in integer micro-dollars, reserved then settled, over UTC calendar periods.

use crate::policy::config::BudgetPeriod;

const DAY_MS: u64 = 86_400_000;

/// Identifies a budget period: days since the epoch (daily), Monday-based weeks since the
/// epoch (weekly), `year * 12 + month0` (monthly), 0 (never).
pub(crate) fn period_id(period: BudgetPeriod, now_ms: u64) -> u64 {
    let days = now_ms / DAY_MS;
    match period {
        BudgetPeriod::Daily => days,
        // 1970-01-01 was a Thursday: shift by 3 days so weeks start on Monday.
        BudgetPeriod::Weekly => (days + 3) / 7,
        BudgetPeriod::Monthly => {
            let (y, m) = year_month(now_ms);
            y as u64 * 12 + (m as u64 - 1)
        }
        BudgetPeriod::Never => 0,
    }
}

fn year_month(now_ms: u64) -> (i32, u8) {
    let t = time::OffsetDateTime::from_unix_timestamp((now_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (t.year(), t.month() as u8)
}

/// When the period containing `now_ms` began (0 for `never`).
pub fn period_start(period: BudgetPeriod, now_ms: u64) -> u64 {
    match period {
        BudgetPeriod::Daily => now_ms / DAY_MS * DAY_MS,
        BudgetPeriod::Weekly => ((now_ms / DAY_MS + 3) / 7 * 7).saturating_sub(3) * DAY_MS,
        BudgetPeriod::Monthly => {
            let t = time::OffsetDateTime::from_unix_timestamp((now_ms / 1000) as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let day1 = t.date().replace_day(1).unwrap_or(t.date());
            (day1.midnight().assume_utc().unix_timestamp().max(0) as u64) * 1000
        }
        BudgetPeriod::Never => 0,
    }
}

/// Milliseconds from `now_ms` to the start of the next period (`None` for `never`).
pub(crate) fn until_next_period(period: BudgetPeriod, now_ms: u64) -> Option<u64> {
    let next_start = match period {
        BudgetPeriod::Daily => (now_ms / DAY_MS + 1) * DAY_MS,
        BudgetPeriod::Weekly => {
            let week = (now_ms / DAY_MS + 3) / 7 + 1;
            (week * 7 - 3) * DAY_MS
        }
        BudgetPeriod::Monthly => {
            let (y, m) = year_month(now_ms);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let month = time::Month::try_from(nm).ok()?;
            let d = time::Date::from_calendar_date(ny, month, 1).ok()?;
            (d.midnight().assume_utc().unix_timestamp() as u64) * 1000
        }
        BudgetPeriod::Never => return None,
    };
    Some(next_start.saturating_sub(now_ms))
}

/// Spend of one layer in its current period.
#[derive(Debug, Clone, Default)]
pub(crate) struct BudgetState {
    pub(crate) period: u64,
    /// Settled spend this period.
    pub(crate) spent: u64,
    /// Worst-case cost of requests admitted and not yet settled.
    pub(crate) reserved: u64,
    /// Highest alert threshold index already fired this period (+1); 0 = none.
    pub(crate) fired: usize,
    /// Soft budget already fired this period.
    pub(crate) soft_fired: bool,
    /// Spend this period found in the store when the period was taken up: thresholds at
    /// or below it were announced by the process that stored it (events go out before the
    /// spend is flushed), so they are not announced again after a restart.
    pub(crate) loaded: u64,
    /// Changed since the last flush to the store.
    pub(crate) dirty: bool,
}

impl BudgetState {
    /// Moves to the period of `now`, starting it from `loaded` (the store's value for it).
    pub(crate) fn roll(&mut self, period: u64, loaded: impl FnOnce() -> u64) {
        if self.period != period {
            self.period = period;
            self.spent = loaded();
            self.loaded = self.spent;
            self.fired = 0;
            self.soft_fired = false;
            // Reservations made in the old period settle into the new one.
        }
    }

    pub(crate) fn fits(&self, worst: u64, limit: u64) -> bool {
        self.spent
            .saturating_add(self.reserved)
            .saturating_add(worst)
            <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        humantime::parse_rfc3339(s)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn period_starts() {
        let t = ms("2026-11-25T03:04:05Z");
        assert_eq!(
            period_start(BudgetPeriod::Daily, t),
            ms("2026-11-25T00:00:00Z")
        );
        assert_eq!(
            period_start(BudgetPeriod::Weekly, t),
            ms("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            period_start(BudgetPeriod::Monthly, t),
            ms("2026-11-01T00:00:00Z")
        );
        assert_eq!(period_start(BudgetPeriod::Never, t), 0);
        let mon = ms("2026-11-23T00:00:00Z");
        assert_eq!(period_start(BudgetPeriod::Weekly, mon), mon);
    }

    #[test]
    fn calendar_periods_in_utc() {
        // Sunday 2026-11-22 and Monday 2026-11-23 are in different weeks.
        let sun = ms("2026-11-22T23:59:59Z");
        let mon = ms("2026-11-23T00:00:00Z");
        assert_ne!(
            period_id(BudgetPeriod::Weekly, sun),
            period_id(BudgetPeriod::Weekly, mon)
        );
        assert_eq!(
            period_id(BudgetPeriod::Weekly, mon),
            period_id(BudgetPeriod::Weekly, ms("2026-11-29T23:00:00Z"))
        );
        assert_eq!(until_next_period(BudgetPeriod::Weekly, sun), Some(1000));
        assert_eq!(
            until_next_period(BudgetPeriod::Monthly, ms("2026-12-31T23:59:00Z")),
            Some(60_000)
        );
        assert_ne!(
            period_id(BudgetPeriod::Monthly, ms("2026-12-31T23:59:00Z")),
            period_id(BudgetPeriod::Monthly, ms("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            until_next_period(BudgetPeriod::Daily, ms("2026-11-22T12:00:00Z")),
            Some(12 * 3_600_000)
        );
        assert_eq!(until_next_period(BudgetPeriod::Never, 5), None);
    }
}
