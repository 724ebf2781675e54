//! Which tests share the machine. The suite is one binary whose tests run two at a time on a
//! 2-core host; a test that measures close times, latency or memory there would measure
//! its neighbour too. Such a test calls [`alone`] first: it waits for the tests under way to
//! end, and the next ones wait for it. Every other test takes a shared turn the first time
//! it starts a mock provider, a gateway or the binary ([`shared`], called by the harness).
//!
//! A turn is held by the test's thread until the thread ends (libtest runs each test on a
//! thread of its own, whatever `--test-threads`). The lock prefers writers: once a test
//! waits to run alone, no new test starts before it.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{PoisonError, RwLock};

static TURNS: RwLock<()> = RwLock::new(());

thread_local! {
    /// The guard of this thread's turn, shared or alone.
    static HELD: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Takes a shared turn for this test, unless it holds one (or runs alone) already.
pub fn shared() {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            let guard = TURNS.read().unwrap_or_else(PoisonError::into_inner);
            *held = Some(Box::new(guard));
        }
    });
}

/// Runs the calling test alone: waits until no other test holds a turn, and keeps every
/// other test waiting until this one ends. The first thing such a test does.
pub fn alone() {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        assert!(held.is_none(), "alone() must come before any harness use");
        let guard = TURNS.write().unwrap_or_else(PoisonError::into_inner);
        *held = Some(Box::new(guard));
    });
}
