//! The daily run: a background service that checks every minute whether today's run is
//! due — none yet today, or today's last one could not read some provider and is an hour
//! old — and then reconciles the two complete UTC days before today.

use super::Reconciler;
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
        let now = r.clock.now_ms();
        let today = now / super::DAY_MS;
        let last = match r.store.runs(RUNS_SCANNED) {
            Ok(runs) => runs.into_iter().find(|run| run.trigger == "schedule"),
            Err(e) => {
                log::error!("reconciliation: reading runs: {e}");
                return false;
            }
        };
        match last {
            None => true,
            Some(run) if run.at_ms / super::DAY_MS != today => true,
            Some(run) => {
                !run.providers.iter().all(|p| p.ok) && now.saturating_sub(run.at_ms) >= RETRY_MS
            }
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
