//! `error_rate.high` (docs/operations.md "Webhooks"): per group with an `error_rate_alert`, requests and
//! failures in a sliding window of 60 sub-buckets. The request path only counts (one map
//! lookup and a short per-group lock in `logging`); the delivery service checks every tick
//! and emits the event once per excursion: it fires when the share of failures goes above
//! `threshold` with at least `min_requests`, and is armed again only once the share is back
//! at or below `threshold` (an empty window counts as below).
//!
//! Counted: requests that reached routing (an upstream attempt was made) or ended in a
//! 5xx; failed: an upstream fault (a provider's 5xx passed through, or the gateway's
//! 502/503/504 for an upstream that failed, timed out or was unavailable). Client and
//! gateway faults never fail: a client that closes its connection, stalls or sends a
//! malformed body, or a gateway bug, is not an error of the group's upstreams
//! (`crate::observe::fault`; gateway faults show in `tollgate_errors_total{fault="gateway"}`).
//! Gateway refusals (auth, limits, budgets) are not counted.
//!
//! Bounded: one entry per group with an alert; entries of groups that lost theirs in a
//! reload are dropped at the next check.

use crate::control::events::Event;
use crate::observe::Finished;
use crate::policy::config::ErrorRateAlert;
use crate::policy::snapshot::Snapshot;
use dashmap::DashMap;
use std::sync::{Arc, Mutex};

const SLOTS: usize = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which sub-bucket (unix ms / slot length) the counts belong to.
    index: u64,
    total: u64,
    failed: u64,
}

#[derive(Debug)]
struct Window {
    alert: ErrorRateAlert,
    slot_ms: u64,
    slots: [Slot; SLOTS],
    /// An alert was sent and the share has not come back below since.
    firing: bool,
}

impl Window {
    fn new(alert: ErrorRateAlert) -> Window {
        let window_ms = u64::try_from(alert.window.as_millis()).unwrap_or(u64::MAX);
        Window {
            alert,
            slot_ms: (window_ms / SLOTS as u64).max(1),
            slots: [Slot::default(); SLOTS],
            firing: false,
        }
    }

    fn count(&mut self, now_ms: u64, failed: bool) {
        let index = now_ms / self.slot_ms;
        let s = &mut self.slots[(index % SLOTS as u64) as usize];
        if s.index != index {
            *s = Slot {
                index,
                ..Slot::default()
            };
        }
        s.total += 1;
        s.failed += u64::from(failed);
    }

    /// (requests, failures) in the window ending at `now_ms`.
    fn totals(&self, now_ms: u64) -> (u64, u64) {
        let now = now_ms / self.slot_ms;
        self.slots
            .iter()
            .filter(|s| s.index + (SLOTS as u64) > now && s.index <= now)
            .fold((0, 0), |(t, f), s| (t + s.total, f + s.failed))
    }

    /// Moves the alert's state at `now_ms`: fired, re-armed, or nothing new.
    fn step(&mut self, now_ms: u64) -> Option<Change> {
        let (total, failed) = self.totals(now_ms);
        let a = self.alert;
        let above = total > 0 && failed as f64 > a.threshold * total as f64;
        if !self.firing && above && total >= a.min_requests.get() {
            self.firing = true;
            return Some(Change::Fired { total, failed });
        }
        if self.firing && !above {
            self.firing = false;
            return Some(Change::Rearmed);
        }
        None
    }
}

/// What a check decided for one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    Fired { total: u64, failed: u64 },
    Rearmed,
}

#[derive(Default)]
pub(crate) struct ErrorRates {
    groups: DashMap<Arc<str>, Mutex<Window>>,
}

impl ErrorRates {
    /// Counts a finished request (the `logging` phase).
    /// `now_ms` is read only for a group with an alert (no clock read per request else).
    pub(crate) fn record(&self, f: &Finished<'_>, now_ms: impl FnOnce() -> u64) {
        let Some(key) = f.key else { return };
        let Some(alert) = key.group.error_rate_alert else {
            return;
        };
        let failed = match f.error {
            Some(e) => e.fault() == crate::observe::fault::Fault::Upstream,
            // The provider's own answer, passed through.
            None => f.status >= 500,
        };
        if !failed && f.first_attempt_at.is_none() {
            return;
        }
        self.count(&key.group.id, alert, now_ms(), failed);
    }

    pub(crate) fn count(&self, group: &Arc<str>, alert: ErrorRateAlert, now_ms: u64, failed: bool) {
        let entry = match self.groups.get(group) {
            Some(e) => e,
            None => self
                .groups
                .entry(group.clone())
                .or_insert_with(|| Mutex::new(Window::new(alert)))
                .downgrade(),
        };
        let mut w = entry.lock().unwrap_or_else(|p| p.into_inner());
        if w.alert != alert {
            // The alert changed in a reload: start over with the new window.
            *w = Window::new(alert);
        }
        w.count(now_ms, failed);
    }

    /// Checks every group against its alert; returns what changed.
    pub(crate) fn check(&self, snapshot: &Snapshot, now_ms: u64) -> Vec<(Arc<str>, Change)> {
        self.groups.retain(|g, _| {
            snapshot
                .groups
                .get(&**g)
                .is_some_and(|g| g.error_rate_alert.is_some())
        });
        let mut out = vec![];
        for e in self.groups.iter() {
            let mut w = e.value().lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = w.step(now_ms) {
                out.push((e.key().clone(), c));
            }
        }
        out
    }

    /// Runs a check and turns each alert into an `error_rate.high` event.
    pub(crate) fn events(&self, snapshot: &Snapshot, now_ms: u64) -> Vec<Event> {
        let mut out = vec![];
        for (group, change) in self.check(snapshot, now_ms) {
            let Some(g) = snapshot.groups.get(&*group) else {
                continue;
            };
            let Some(a) = g.error_rate_alert else {
                continue;
            };
            let Change::Fired { total, failed } = change else {
                log::info!("error_rate: group {group} is back at or below its threshold");
                continue;
            };
            log::warn!(
                "error_rate.high: group {group}: {failed} of {total} requests failed in {}",
                humantime::format_duration(a.window)
            );
            out.push(Event {
                kind: crate::control::events::EventKind::ErrorRateHigh,
                at_ms: now_ms,
                actor: "system".into(),
                org: Some(g.org.id.to_string()),
                group: Some(group.to_string()),
                key_id: None,
                before: None,
                after: Some(serde_json::json!({
                    "rate": failed as f64 / total as f64,
                    "requests": total,
                    "failed": failed,
                    "threshold": a.threshold,
                    "window_s": a.window.as_secs_f64(),
                    "min_requests": a.min_requests.get(),
                })),
                secret: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;
    use std::time::Duration;

    fn alert() -> ErrorRateAlert {
        ErrorRateAlert {
            threshold: 0.5,
            window: Duration::from_secs(60),
            min_requests: NonZeroU64::new(4).unwrap_or(NonZeroU64::MIN),
        }
    }

    /// Fires once above the threshold with enough requests, stays quiet while above,
    /// re-arms below, fires again.
    #[test]
    fn fires_once_per_excursion() {
        let mut w = Window::new(alert());
        let t0 = 1_000_000_000;
        let check = |w: &mut Window, now: u64| match w.step(now)? {
            Change::Fired { .. } => Some(true),
            Change::Rearmed => Some(false),
        };
        for _ in 0..3 {
            w.count(t0, true);
        }
        assert_eq!(check(&mut w, t0), None, "below min_requests");
        w.count(t0, true);
        assert_eq!(check(&mut w, t0), Some(true));
        w.count(t0 + 1000, true);
        assert_eq!(check(&mut w, t0 + 1000), None, "still firing: quiet");
        for _ in 0..5 {
            w.count(t0 + 2000, false);
        }
        assert_eq!(check(&mut w, t0 + 2000), Some(false), "5 of 10: re-armed");
        // The window slides: a minute later the old counts are gone.
        let later = t0 + 63_000;
        assert_eq!(w.totals(later), (0, 0));
        for _ in 0..4 {
            w.count(later, true);
        }
        assert_eq!(check(&mut w, later), Some(true));
    }
}
