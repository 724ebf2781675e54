//! The control plane over a real store and snapshot, reading a [`ManualClock`]: times it
//! computes follow the clock, not the machine's.

use super::{Actor, ControlPlane};
use crate::clock::ManualClock;
use crate::policy::snapshot::{Loopback, Snapshot};
use crate::proxy::directory::Directory;
use crate::storage::Store;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

/// 2030-01-01T00:00:00Z.
const START_MS: u64 = 1_893_456_000_000;

const POLICY: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n[[orgs]]\nid = \"o\"\n[[groups]]\nid = \"g\"\norg = \"o\"\nkey_ttl = \"1h\"\n";

fn plane(dir: &std::path::Path, clock: Arc<ManualClock>) -> ControlPlane {
    let cfg = crate::policy::config::parse_config(POLICY, std::path::Path::new("t.toml"))
        .expect("the policy parses");
    let snapshot = Snapshot::build(
        cfg,
        &Default::default(),
        None,
        1,
        &Loopback,
        &Default::default(),
    )
    .expect("the snapshot builds");
    let store = Store::open(dir, Duration::ZERO).expect("the store opens");
    ControlPlane::open(
        store.control(),
        Arc::new(Directory::default()),
        Arc::new(ArcSwap::from_pointee(snapshot)),
        None,
        Arc::default(),
    )
    .expect("the control plane opens")
    .with_clock(clock)
}

#[test]
fn expiry_from_key_ttl_and_ttl_and_status_follow_the_clock() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(ManualClock::new(START_MS));
    let cp = plane(dir.path(), clock.clone());
    let root = Actor::root();

    // No expiry given: the group's key_ttl (1h) from the clock's now.
    let made = cp
        .keys()
        .create(&root, br#"{"name": "a", "group": "g"}"#)
        .expect("created");
    assert_eq!(
        made.view.created_at.as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    assert_eq!(
        made.view.expires_at.as_deref(),
        Some("2030-01-01T01:00:00Z")
    );
    assert_eq!(made.view.status, "active");

    // An hour later it is expired, by the clock alone.
    clock.advance(3_600_000);
    let id = made.view.id;
    assert_eq!(cp.keys().get(&root, &id).expect("read").status, "expired");

    // A PATCH ttl counts from now; an expiry at or before now is refused.
    let patched = cp
        .keys()
        .patch(&root, &id, br#"{"ttl": "30m"}"#)
        .expect("patched");
    assert_eq!(patched.expires_at.as_deref(), Some("2030-01-01T01:30:00Z"));
    assert_eq!(patched.updated_at.as_deref(), Some("2030-01-01T01:00:00Z"));
    assert_eq!(patched.status, "active");
    let past = cp
        .keys()
        .patch(&root, &id, br#"{"expires_at": "2030-01-01T00:59:59Z"}"#)
        .expect_err("an expiry in the clock's past");
    assert_eq!(past.param.as_deref(), Some("expires_at"));

    // A regenerated key's grace runs on the clock too.
    let regen = cp
        .keys()
        .regenerate(&root, &id, br#"{"grace_period": "10m"}"#)
        .expect("regenerated");
    assert_eq!(
        regen.view.grace_until,
        Some(Some("2030-01-01T01:10:00Z".to_string()))
    );
    clock.advance(600_000);
    assert_eq!(
        cp.keys().get(&root, &id).expect("read").grace_until,
        Some(None)
    );
}
