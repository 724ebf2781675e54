//! End to end: signed webhooks (docs/operations.md "Webhooks") from the real binary to a receiver in the test —
//! budget thresholds once per period, a receiver down then up across a kill -9 (same ids,
//! nothing lost), `error_rate.high` once per excursion, `key.rotated` carrying a secret
//! that works and is never logged, `key.expiring` once.

use crate::harness::receiver::{verify, Got, Receiver};
use crate::harness::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec-test-3f9a1c";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_ADMIN_TOKEN", ROOT),
        ("TEST_WEBHOOK_SECRET", SECRET),
        ("TOLLGATE_LIFECYCLE_EVERY_MS", "200"),
        ("TOLLGATE_WEBHOOK_RETRY_MS", "200"),
    ]
}

/// `basic_policy` plus an admin listener and `grp_hook` (with `key_hook` = key(2)) whose
/// receiver is `hook`.
fn policy(mock: SocketAddr, hook: &str, group_extra: &str) -> String {
    basic_policy(mock, &webhook_group(hook, group_extra)).with_admin()
}

/// gpt-4o with key(2), 300 output tokens reported.
async fn gpt4o(g: &GatewayProc) -> u16 {
    chat(g, &key(2), "gpt-4o", &[("x-mock-output-tokens", "300")]).await
}

async fn chat(g: &GatewayProc, key: &str, model: &str, headers: &[(&str, &str)]) -> u16 {
    let body = json!({"model": model, "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    g.call(CHAT, key, headers, &body).await.status
}

fn assert_signed(got: &[Got]) {
    for g in got {
        assert!(
            verify(SECRET, g),
            "bad signature {:?} on {}",
            g.signature,
            g.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_threshold_and_exhausted_fire_once_across_a_restart_signed() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    // gpt-4o: $10 per million output tokens; 300 tokens = $0.003 a request, reserved as 10.
    let mut g = start_gateway_env(
        &policy(
            mock.addr(),
            &hook.url(),
            "budget_usd = 0.01\nalert_thresholds = [0.8, 1.0]",
        ),
        &env(),
    );
    let admin = g.admin(ROOT);
    // Three requests pass 80 %.
    for _ in 0..3 {
        assert_eq!(gpt4o(&g).await, 200);
    }
    hook.wait(Duration::from_secs(10), "budget.threshold", |got| {
        got.iter().any(|g| g.json["event"] == "budget.threshold")
    })
    .await;
    // kill -9 once the spend is flushed (every 250 ms, at least every second): the
    // threshold already announced is not announced again by the new process. (Real time:
    // a flush shows nowhere but on disk.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    g.restart(&env());
    // The 4th overshoots (reserved as 10 tokens, billed 300); the rest are refused.
    let mut ok = 0;
    for _ in 0..4 {
        ok += u32::from(gpt4o(&g).await == 200);
    }
    assert_eq!(ok, 1, "the 4th request overshoots, the rest are refused");
    hook.wait(Duration::from_secs(10), "threshold and exhausted", |got| {
        got.iter().any(|g| g.json["event"] == "budget.exhausted")
            && got.iter().any(|g| g.json["event"] == "budget.threshold")
    })
    .await;
    // More ticks, more refused requests: nothing new (an absence, watched for 1.5 s: seven
    // lifecycle ticks and delivery rounds).
    for _ in 0..3 {
        chat(&g, &key(2), "gpt-4o", &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = hook.got();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_signed(&got);
    let t = &hook.events("budget.threshold")[0];
    assert_eq!(t["org"], "acme");
    assert_eq!(t["group"], "grp_hook");
    assert_eq!(t["detail"]["threshold"], 0.8);
    assert_eq!(t["detail"]["limit_usd"], 0.01);
    assert!(t["id"].as_str().unwrap().starts_with("evt_"));
    let x = &hook.events("budget.exhausted")[0];
    assert_eq!(x["detail"]["threshold"], 1.0);
    assert!(x["detail"]["spent_usd"].as_f64().unwrap() >= 0.01);
    assert_ne!(t["id"], x["id"]);
    // A tampered body or another secret does not verify.
    let mut forged = got[0].clone();
    forged.body = forged.body.replace("grp_hook", "grp_prod");
    assert!(!verify(SECRET, &forged));
    assert!(!verify("another-secret", &got[0]));
    // Counted by the process that delivered it (the second one, for this event).
    let m = admin.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "tollgate_webhook_deliveries_total{event=\"budget.exhausted\",result=\"delivered\"}",
            &[]
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_down_then_up_gets_everything_across_a_restart() {
    let mock = mock().await;
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("http://{hook_addr}/hooks");
    let mut g = start_gateway_env(&policy(mock.addr(), &url, ""), &env());
    let admin = g.admin(ROOT);
    // Events while nobody listens: two revocations, a pause, a resume.
    let down_since = Instant::now();
    let mut revoked = vec![];
    for n in 0..2 {
        let v = admin
            .new_key(json!({"name": format!("k{n}"), "group": "grp_hook"}))
            .await;
        let id = v["id"].as_str().unwrap().to_string();
        admin.ok("DELETE", &format!("/v1/keys/{id}"), None).await;
        revoked.push(id);
    }
    admin.ok("POST", "/v1/groups/grp_hook/pause", None).await;
    admin.ok("POST", "/v1/groups/grp_hook/resume", None).await;
    // Attempts fail (connection refused) and are retried.
    let retries = |n: f64| {
        let admin = &admin;
        move || async move {
            let series =
                "tollgate_webhook_deliveries_total{event=\"key.revoked\",result=\"retry\"}";
            (admin.metric(series, &[]).await >= n).then_some(())
        }
    };
    wait_for(Duration::from_secs(10), "retries counted", retries(2.0)).await;
    // kill -9 with everything still queued; the new process picks the queue up.
    g.restart(&env());
    wait_for(
        Duration::from_secs(10),
        "retries after the restart",
        retries(1.0),
    )
    .await;
    // Connection refused for ~7 s, then up but answering 503 until ~10 s: those
    // attempts are seen, with their ids. (Real time: the receiver's outage is scripted.)
    tokio::time::sleep_until((down_since + Duration::from_secs(7)).into()).await;
    let hook = Receiver::start_on(hook_addr, 503).await;
    hook.wait(Duration::from_secs(20), "4 refused attempts", |got| {
        got.iter()
            .map(|g| g.json["id"].clone())
            .collect::<HashSet<_>>()
            .len()
            == 4
    })
    .await;
    tokio::time::sleep_until((down_since + Duration::from_secs(10)).into()).await;
    let down_for = down_since.elapsed();
    hook.set_status(200);
    hook.wait(Duration::from_secs(30), "4 deliveries", |got| {
        got.iter()
            .filter(|g| g.status == 200)
            .map(|g| g.json["id"].clone())
            .collect::<HashSet<_>>()
            .len()
            == 4
    })
    .await;
    let got = hook.got();
    assert_signed(&got);
    // Same id, same body, on every attempt of an event.
    let mut by_id: HashMap<String, &Got> = HashMap::new();
    for g in &got {
        let id = g.json["id"].as_str().unwrap().to_string();
        if let Some(first) = by_id.get(&id) {
            assert_eq!(first.body, g.body, "retries resend the same body");
        }
        by_id.insert(id, g);
    }
    assert_eq!(by_id.len(), 4);
    let mut kinds: Vec<(String, Option<String>)> = by_id
        .values()
        .map(|g| {
            (
                g.json["event"].as_str().unwrap().to_string(),
                g.json["key_id"].as_str().map(String::from),
            )
        })
        .collect();
    kinds.sort();
    let mut want = vec![
        ("group.paused".to_string(), None),
        ("group.resumed".to_string(), None),
        ("key.revoked".to_string(), Some(revoked[0].clone())),
        ("key.revoked".to_string(), Some(revoked[1].clone())),
    ];
    want.sort();
    assert_eq!(kinds, want);
    let paused = got
        .iter()
        .find(|g| g.json["event"] == "group.paused")
        .unwrap();
    assert_eq!(paused.json["detail"]["state"], "paused");
    assert_eq!(paused.json["detail"]["before"]["state"], "active");
    assert_eq!(paused.json["detail"]["actor"], "root");
    // Delivered ones leave the queue: no more attempts (an absence, watched for 1.5 s:
    // seven retry rounds).
    let n = hook.got().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.got().len(), n);
    let m = admin.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "tollgate_webhook_deliveries_total{event=\"key.revoked\",result=\"delivered\"}",
            &[]
        ),
        2.0
    );
    // Each outcome is an event (the audit trail's and the log's).
    let log = g.log_text();
    assert!(log.contains("event webhook.failed actor=system group=grp_hook"));
    assert!(log.contains("event webhook.delivered actor=system group=grp_hook"));
    eprintln!(
        "receiver down/refusing for {down_for:?}; {} POSTs for 4 events",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_rate_high_fires_once_per_excursion() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start_gateway_env(
        &policy(
            mock.addr(),
            &hook.url(),
            "retries = 0\nerror_rate_alert = { threshold = 0.5, window = \"4s\", min_requests = 5 }",
        ),
        &env(),
    );
    let fail = [("x-mock-status", "500")];
    let count = |h: &Receiver| h.events("error_rate.high").len();
    // Healthy traffic: nothing.
    for _ in 0..3 {
        assert_eq!(chat(&g, &key(2), "gpt-4o-mini", &[]).await, 200);
    }
    // The target starts failing.
    for _ in 0..6 {
        assert!(chat(&g, &key(2), "gpt-4o-mini", &fail).await >= 500);
    }
    hook.wait(Duration::from_secs(10), "error_rate.high", |_| {
        count(&hook) == 1
    })
    .await;
    // Still failing: no second alert (an absence, watched for 1.2 s).
    for _ in 0..6 {
        chat(&g, &key(2), "gpt-4o-mini", &fail).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(count(&hook), 1);
    let e = &hook.events("error_rate.high")[0];
    assert_eq!(e["group"], "grp_hook");
    assert_eq!(e["org"], "acme");
    assert!(e["detail"]["rate"].as_f64().unwrap() > 0.5, "{e}");
    assert!(e["detail"]["requests"].as_u64().unwrap() >= 5, "{e}");
    assert_eq!(e["detail"]["threshold"], 0.5);
    // It recovers (the target may be ejected for a while: keep going until answers are ok
    // and the share is back below).
    let rearmed = poll_until(Duration::from_secs(20), || async {
        if g.log_text().contains("group grp_hook is back at or below") {
            return Some(());
        }
        chat(&g, &key(2), "gpt-4o-mini", &[]).await;
        None
    })
    .await;
    assert!(rearmed.is_some(), "never re-armed:\n{}", g.log_text());
    assert_eq!(count(&hook), 1);
    // And fails again: a second alert.
    wait_for(Duration::from_secs(20), "a second alert", || async {
        if count(&hook) >= 2 {
            return Some(());
        }
        chat(&g, &key(2), "gpt-4o-mini", &fail).await;
        None
    })
    .await;
    // And no third (an absence, watched for 0.8 s).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = hook.events("error_rate.high");
    assert_eq!(all.len(), 2);
    assert_ne!(all[0]["id"], all[1]["id"]);
    assert_signed(&hook.got());
    // grp_prod has no alert: its failures count nowhere.
    drop(g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotated_carries_a_working_secret_never_logged_and_key_expiring_once() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let policy = policy(mock.addr(), &hook.url(), "").with_request_log();
    let g = start_gateway_env(&policy, &env());
    let admin = g.admin(ROOT);
    let rot = admin
        .new_key(json!({"name": "rot", "group": "grp_hook", "rotation_interval": "2s"}))
        .await;
    let rot_id = rot["id"].as_str().unwrap().to_string();
    let in_3_days = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(3 * 86400),
    )
    .to_string();
    let exp = admin
        .new_key(json!({"name": "exp", "group": "grp_hook", "expires_at": in_3_days}))
        .await;
    let exp_id = exp["id"].as_str().unwrap().to_string();
    // A key far from expiry is not announced.
    let far = admin
        .new_key(json!({"name": "far", "group": "grp_hook", "ttl": "30d"}))
        .await;
    hook.wait(Duration::from_secs(15), "key.rotated", |got| {
        got.iter().any(|g| g.json["event"] == "key.rotated")
    })
    .await;
    // The newest secret delivered works on the data plane.
    let rotated = hook.events("key.rotated");
    let last = rotated.last().unwrap();
    assert_eq!(last["key_id"], rot_id.as_str());
    assert_eq!(last["group"], "grp_hook");
    let secret = last["detail"]["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tg-"), "{last}");
    assert_eq!(chat(&g, &secret, "gpt-4o-mini", &[]).await, 200);
    // key.expiring: once for the key due in 3 days, whatever the number of passes.
    hook.wait(Duration::from_secs(10), "key.expiring", |got| {
        got.iter().any(|g| g.json["event"] == "key.expiring")
    })
    .await;
    // And no second (an absence, watched for 1.2 s: six lifecycle passes).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expiring = hook.events("key.expiring");
    assert_eq!(expiring.len(), 1, "{expiring:#?}");
    assert_eq!(expiring[0]["key_id"], exp_id.as_str());
    assert_eq!(expiring[0]["detail"]["expires_at"], in_3_days.as_str());
    assert_ne!(expiring[0]["key_id"], far["id"]);
    assert_signed(&hook.got());
    // No secret delivered by webhook appears in any log line.
    let secrets: Vec<String> = hook
        .events("key.rotated")
        .iter()
        .map(|e| e["detail"]["key"].as_str().unwrap().to_string())
        .collect();
    let logs = g.log_text() + &std::fs::read_to_string(g.request_log()).unwrap_or_default();
    assert!(
        logs.contains("event key.rotated"),
        "the event itself is logged"
    );
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a rotated secret is in the logs"
        );
    }
}

#[test]
fn webhook_config_problems_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.toml");
    let check = |groups: &str| {
        std::fs::write(
            &path,
            format!("[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[orgs]]\nid = \"acme\"\n{groups}"),
        )
        .unwrap();
        let out = check_policy(&path);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check(
        r#"
[[groups]]
id = "a"
org = "acme"
webhook = "https://hooks.example.com/t"
error_rate_alert = { threshold = 1.5, window = "soon", min_requests = 0 }

[[groups]]
id = "b"
org = "acme"
error_rate_alert = { threshold = 0.1, window = "60s" }

[[groups]]
id = "c"
org = "acme"
webhook_secret_env = "HOOK_SECRET"
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("6 problem(s)"), "{err}");
    for want in [
        "groups[0] (a).webhook_secret_env: a webhook needs webhook_secret_env",
        "groups[0] (a).error_rate_alert.threshold: 1.5: want a fraction between 0 and 1",
        "groups[0] (a).error_rate_alert.window: invalid duration \"soon\"",
        "groups[0] (a).error_rate_alert.min_requests: want at least 1",
        "groups[1]: missing field `min_requests`",
        "groups[2] (c).webhook_secret_env: needs webhook",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let (code, err) = check(
        r#"
[[groups]]
id = "a"
org = "acme"
webhook = "http://127.0.0.1:9/hook"
webhook_secret_env = "HOOK_SECRET"
error_rate_alert = { threshold = 0.05, window = "60s", min_requests = 20 }
"#,
    );
    assert_eq!(code, Some(0), "{err}");
}
