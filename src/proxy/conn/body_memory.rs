//! The global budget for request bodies held in memory (`server.body_memory`).
//!
//! A request reserves its body's bytes *before* they are read: the whole declared
//! `Content-Length` up front, or chunk by chunk for a chunked body. So the bodies being
//! read or held never add up to more than the budget, however many clients stall halfway
//! through theirs. A reservation that does not fit waits briefly for others to end, then
//! the request is refused with 503 `overloaded`. The reservation is held until the request
//! ends (the body is replayed to the upstream on every attempt).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a request waits for body memory before it is refused.
pub(crate) const WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(crate) struct BodyBudget {
    used: AtomicU64,
    freed: Notify,
}

impl BodyBudget {
    /// Bytes reserved now, all requests together.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn try_take(&self, n: u64, cap: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= cap)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }
}

/// Bytes of the budget one request holds; given back on drop.
#[derive(Debug)]
pub(crate) struct BodyHold {
    budget: Arc<BodyBudget>,
    held: u64,
}

impl BodyHold {
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    pub(crate) fn new(budget: &Arc<BodyBudget>) -> BodyHold {
        BodyHold {
            budget: budget.clone(),
            held: 0,
        }
    }

    /// Makes the hold at least `total` bytes, waiting up to `wait` for others to give
    /// memory back. `false`: it did not fit in `cap` in time (the hold is unchanged).
    pub(crate) async fn grow_to(&mut self, total: u64, cap: u64, wait: Duration) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|m| *m > 0) else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the attempt, so a release in between is not missed.
            let freed = self.budget.freed.notified();
            if self.budget.try_take(more, cap) {
                self.held += more;
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_never_add_up_to_more_than_the_cap() {
        let b = Arc::new(BodyBudget::default());
        let mut a = BodyHold::new(&b);
        assert!(a.grow_to(60, 100, Duration::ZERO).await);
        let mut c = BodyHold::new(&b);
        assert!(!c.grow_to(50, 100, Duration::from_millis(10)).await);
        assert_eq!((b.used(), c.held()), (60, 0));
        assert!(c.grow_to(40, 100, Duration::ZERO).await);
        assert!(c.grow_to(30, 100, Duration::ZERO).await, "already held");
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
    }

    #[tokio::test]
    async fn a_waiter_gets_memory_given_back_meanwhile() {
        let b = Arc::new(BodyBudget::default());
        let mut a = BodyHold::new(&b);
        assert!(a.grow_to(100, 100, Duration::ZERO).await);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut c = BodyHold::new(&b2);
            c.grow_to(80, 100, Duration::from_secs(5)).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert!(waiter.await.unwrap());
        assert_eq!(b.used(), 0, "the waiter's hold ended with its task");
    }
}
