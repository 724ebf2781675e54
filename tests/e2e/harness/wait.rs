//! Waiting for something to happen: polled on what is observable, under a deadline, never
//! a fixed sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const EVERY: Duration = Duration::from_millis(20);

/// Polls `done` until it holds; panics naming `what` once `within` has passed.
pub async fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(EVERY).await;
    }
}

/// Polls `done` blocking this thread: `true` once it holds, `false` once `within` has passed.
pub fn poll_blocking(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(EVERY);
    }
}

/// Polls `f` (a request, a read) until it gives `Some`; `None` once `within` has passed.
pub async fn poll_until<T, Fut>(within: Duration, f: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    poll_every(EVERY, within, f).await
}

/// [`poll_until`] with a pause of `every` between two tries: for a try that costs the
/// gateway something (requests, slots taken) and must leave it time to recover.
pub async fn poll_every<T, Fut>(
    every: Duration,
    within: Duration,
    mut f: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll_until`], panicking naming `what` once `within` has passed.
pub async fn wait_for<T, Fut>(within: Duration, what: &str, f: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    poll_until(within, f)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {within:?}"))
}
