//! The daily run: a background service that checks every minute whether today's run is
//! due — none yet today, or today's last one could not read some provider and is an hour
//! old — and then reconciles the two complete UTC days before today.

use super::Reconciler;
use crate::storage::RunRecord;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Newest runs looked through for the last scheduled one (API runs come between).
const RUNS_SCANNED: usize = 50;

/// A failed provider is asked again this long after the run that failed.
const RETRY_MS: u64 = 3_600_000;

pub(crate) struct ReconcileService {
    pub(crate) reconciler: Arc<Reconciler>,
    /// How often it checks whether a run is due (`TOLLGATE_RECONCILE_EVERY_MS`, tests).
    pub(crate) every: Duration,
}

impl ReconcileService {
    /// Whether the scheduled run is due now, from the stored runs (so a restart neither
    /// repeats nor skips a day).
    fn due(&self) -> bool {
        let r = &self.reconciler;
        if !r.configured() {
            return false;
        }
        match r.store.runs(RUNS_SCANNED) {
            Ok(runs) => due(
                r.clock.now_ms(),
                runs.iter().find(|run| run.trigger == "schedule"),
            ),
            Err(e) => {
                log::error!("reconciliation: reading runs: {e}");
                false
            }
        }
    }
}

/// Due when no scheduled run happened yet this UTC day, or today's could not read every
/// provider and is [`RETRY_MS`] old.
fn due(now_ms: u64, last_scheduled: Option<&RunRecord>) -> bool {
    match last_scheduled {
        None => true,
        Some(run) if run.at_ms / super::DAY_MS != now_ms / super::DAY_MS => true,
        Some(run) => {
            !run.providers.iter().all(|p| p.ok) && now_ms.saturating_sub(run.at_ms) >= RETRY_MS
        }
    }
}

#[async_trait]
impl BackgroundService for ReconcileService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            if self.due() {
                let (from, to) = self.reconciler.default_days();
                let run = self.reconciler.run(from, to, "schedule", "system").await;
                log::info!(
                    "reconciliation {}: days {}..={} for {} provider(s)",
                    run.id,
                    super::day_name(from),
                    super::day_name(to),
                    run.providers.len()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ProviderRun;

    fn run(at_ms: u64, ok: bool) -> RunRecord {
        RunRecord {
            id: "rec_1".into(),
            at_ms,
            trigger: "schedule".into(),
            actor: "system".into(),
            from_day: 0,
            to_day: 0,
            providers: vec![ProviderRun {
                provider: "p".into(),
                ok,
                error: None,
                rows: 0,
                alerts: 0,
            }],
        }
    }

    #[test]
    fn once_a_day_and_hourly_retries_after_a_failure() {
        let day = 86_400_000;
        let now = 20_000 * day + 5 * 3_600_000;
        assert!(due(now, None));
        assert!(due(now, Some(&run(now - day, true))), "yesterday's run");
        assert!(!due(now, Some(&run(now - 60_000, true))), "done today");
        assert!(
            !due(now, Some(&run(now - 60_000, false))),
            "failed a minute ago"
        );
        assert!(
            due(now, Some(&run(now - RETRY_MS, false))),
            "failed an hour ago"
        );
    }
}
