//! Off the data plane: old snapshots are freed, and reloads are built, on background
//! threads at a lower CPU priority.
//!
//! A reload swaps the snapshot while requests still hold the old one; whichever request
//! finished last used to free it — 100k key entries, tens of milliseconds — on a proxy
//! thread, between other requests. And building a 100k-key snapshot takes a core for about
//! a second, which on a small machine competes with the proxy threads (p99 under load went
//! from 4 ms to 64 ms during reloads of a 100k-key file).

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// nice value of the reload and reaper threads: under contention the proxy threads get
/// ~90% of a core against them (CFS weights 1024 : 110), idle cores are used in full.
const BACKGROUND_NICE: i32 = 10;

/// How often retired values are checked for their last holder.
const REAP_EVERY: Duration = Duration::from_millis(100);

type Retired = Mutex<Vec<Arc<dyn Any + Send + Sync>>>;

fn retired() -> &'static Retired {
    static RETIRED: OnceLock<Retired> = OnceLock::new();
    RETIRED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("tollgate-retire".into())
            .spawn(|| {
                lower_priority();
                loop {
                    std::thread::sleep(REAP_EVERY);
                    reap();
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the thread that frees old snapshots: {e}");
        }
        Mutex::new(Vec::new())
    })
}

/// Frees `old` on the reaper thread once nothing else holds it.
pub(crate) fn retire<T: Send + Sync + 'static>(old: Arc<T>) {
    let mut list = retired().lock().unwrap_or_else(|p| p.into_inner());
    list.push(old);
}

/// Drops the retired values nobody else holds any more.
fn reap() {
    let free: Vec<_> = {
        let mut list = retired().lock().unwrap_or_else(|p| p.into_inner());
        let (free, keep) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|a| Arc::strong_count(a) == 1);
        *list = keep;
        free
    };
    drop(free);
}

/// Lowers the calling thread's CPU priority (Linux: nice values are per thread).
fn lower_priority() {
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), BACKGROUND_NICE) {
        log::debug!("cannot lower the priority of a background thread: {e}");
    }
}

/// Runs `work` on its own thread at the background priority and waits for it without
/// blocking the async runtime (reloads: SIGHUP and `POST /v1/reload`).
pub(crate) async fn in_background<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(work());
        });
    match spawned {
        Ok(_) => rx.await.ok(),
        Err(e) => {
            log::error!("cannot start thread {name}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    struct Noted(Arc<Mutex<Option<String>>>);

    impl Drop for Noted {
        fn drop(&mut self) {
            let me = std::thread::current().name().map(str::to_string);
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = me;
        }
    }

    #[test]
    fn the_last_holder_does_not_free_a_retired_value() {
        let dropped_on = Arc::new(Mutex::new(None));
        let old = Arc::new(Noted(dropped_on.clone()));
        let request = old.clone();
        retire(old);
        drop(request);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(name) = dropped_on.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                assert_eq!(name, "tollgate-retire");
                break;
            }
            assert!(Instant::now() < deadline, "never freed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn background_work_runs_on_its_own_lower_priority_thread() {
        let got = in_background("tollgate-test-bg", || {
            let name = std::thread::current().name().map(str::to_string);
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            (name, nice.ok())
        })
        .await;
        let (name, nice) = got.unwrap_or_else(|| panic!("no result"));
        assert_eq!(name.as_deref(), Some("tollgate-test-bg"));
        assert_eq!(nice, Some(BACKGROUND_NICE));
    }
}
