use super::deliver::Tuning;
use super::*;
use crate::secret::Secret;
use std::time::Duration;

fn event(kind: EventKind) -> Event {
    Event {
        kind,
        at_ms: 1_767_225_600_000,
        actor: "system".into(),
        org: Some("acme".into()),
        group: Some("grp".into()),
        key_id: Some("key_1".into()),
        before: Some(json!({"status": "active"})),
        after: Some(json!({"status": "revoked"})),
        secret: None,
    }
}

/// Known answer: HMAC-SHA256 of "1700000000.{}" keyed by "whsec" (checked with Python's
/// `hmac.new(b"whsec", b"1700000000.{}", "sha256").hexdigest()`).
#[test]
fn signature_is_hmac_of_t_dot_body() {
    let s = signature(b"whsec", 1_700_000_000, b"{}");
    assert_eq!(
        s,
        "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
    );
    assert_ne!(s, signature(b"other", 1_700_000_000, b"{}"));
    assert_ne!(s, signature(b"whsec", 1_700_000_001, b"{}"));
}

#[test]
fn body_shape_and_the_rotated_secret() {
    let b: Value = serde_json::from_str(&body(
        &event(EventKind::KeyRevoked),
        "evt_1",
        Some("acme"),
        Some("grp"),
    ))
    .expect("json");
    assert_eq!(b["id"], "evt_1");
    assert_eq!(b["event"], "key.revoked");
    assert_eq!(b["org"], "acme");
    assert_eq!(b["group"], "grp");
    assert_eq!(b["key_id"], "key_1");
    assert_eq!(b["at"], "2026-01-01T00:00:00Z");
    assert_eq!(b["detail"]["status"], "revoked");
    assert_eq!(b["detail"]["before"]["status"], "active");
    assert!(b["detail"].get("key").is_none());
    let mut e = event(EventKind::KeyRotated);
    e.secret = Some(Secret::new("tg-new-secret".into()));
    let b: Value = serde_json::from_str(&body(&e, "evt_2", None, None)).expect("json");
    assert_eq!(b["detail"]["key"], "tg-new-secret");
    // The event itself never prints it.
    assert!(!format!("{e:?}").contains("tg-new-secret"));
}

/// 1 s doubling to 10 min; the attempts before giving up span more than an hour.
#[test]
fn backoff_spans_more_than_an_hour() {
    let t = Tuning::default();
    assert_eq!(t.backoff(1), Duration::from_secs(1));
    assert_eq!(t.backoff(2), Duration::from_secs(2));
    assert_eq!(t.backoff(10), Duration::from_secs(512));
    assert_eq!(t.backoff(11), Duration::from_secs(600));
    assert_eq!(t.backoff(1000), Duration::from_secs(600));
    let (mut elapsed, mut attempts) = (Duration::ZERO, 0u32);
    while elapsed < t.give_up_after {
        attempts += 1;
        elapsed += t.backoff(attempts);
    }
    assert!(attempts >= 15, "{attempts} attempts");
}

/// The retry schedule as the delivery service walks it: each failed attempt at the clock's
/// time, the next one when the clock reaches `retry_at`; given up once an attempt fails an
/// hour or more after the event.
#[test]
fn backoff_schedule_on_a_manual_clock() {
    use crate::clock::{Clock, ManualClock};
    let t = Tuning::default();
    let clock = ManualClock::new(1_767_225_600_000);
    let mut p = crate::storage::Pending {
        id: "evt_1".into(),
        event: "key.revoked".into(),
        org: None,
        group: Some("grp".into()),
        key_id: None,
        url: "http://127.0.0.1:1/".into(),
        secret_env: "S".into(),
        body: "{}".into(),
        attempts: 0,
        created_ms: clock.now_ms(),
        next_ms: 0,
        format: None,
    };
    let mut waits = vec![];
    loop {
        p.attempts += 1;
        let now = clock.now_ms();
        let Some(next) = t.retry_at(&p, now) else {
            break;
        };
        waits.push((next - now) / 1000);
        clock.set(next);
    }
    assert_eq!(&waits[..11], [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600]);
    assert!(waits[11..].iter().all(|w| *w == 600), "{waits:?}");
    let last_failed = clock.now_ms() - p.created_ms;
    assert!(last_failed >= 3_600_000, "gave up after {last_failed} ms");
    assert!(
        last_failed - waits.last().unwrap_or(&0) * 1000 < 3_600_000,
        "the attempt before was still within the hour"
    );
}
