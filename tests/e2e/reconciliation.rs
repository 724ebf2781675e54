//! End to end: reconciliation with the providers' usage APIs (docs/operations.md
//! "Reconciliation") — traffic through the real gateway to an OpenAI-style and an
//! Anthropic-style target, then `POST /v1/reconciliation/run` against the mock's usage
//! APIs: equal counts → diff 0; the mock reporting 10 % more → diff ≈ 10 %, one audit
//! event and one signed `spend.drift` webhook to the org's receiver per day × provider ×
//! model, never again on a re-run; a usage API down or an admin key missing → a recorded
//! failure with no rows and no alert, and the next run after it comes back succeeds.

use crate::harness::receiver::{verify, Receiver};
use crate::harness::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const SECRET: &str = "whsec-reconcile-51c2";
/// The usage APIs' admin key: not the provider key the data plane sends.
const ADMIN_KEY: &str = "sk-admin-Reconcile0123456789";
const PROVIDER_KEY: &str = "sk-provider-ordinary-key";

/// `basic_policy` with an admin listener, both providers reading their usage API, and
/// org acme's own webhook receiver `hook`.
fn policy(mock: SocketAddr, hook: &str) -> String {
    basic_policy(mock, "")
        .with_admin()
        .replace(
            "id = \"oa\"\napi = \"openai\"\n",
            "id = \"oa\"\napi = \"openai\"\nusage_api = { admin_key_env = \"TEST_OA_ADMIN_KEY\" }\n",
        )
        .replace(
            "id = \"an\"\napi = \"anthropic\"\n",
            "id = \"an\"\napi = \"anthropic\"\ndrift_alert = 5\nusage_api = { admin_key_env = \"TEST_AN_ADMIN_KEY\" }\n",
        )
        .replace(
            "[[orgs]]\nid = \"acme\"\n",
            &format!(
                "[[orgs]]\nid = \"acme\"\nwebhook = \"{hook}\"\nwebhook_secret_env = \"TEST_WEBHOOK_SECRET\"\n"
            ),
        )
}

fn env(with_an_key: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("TEST_ADMIN_TOKEN", ROOT),
        ("TEST_PROVIDER_KEY", PROVIDER_KEY),
        ("TEST_WEBHOOK_SECRET", SECRET),
        ("TEST_OA_ADMIN_KEY", ADMIN_KEY),
        ("TOLLGATE_WEBHOOK_RETRY_MS", "200"),
        // The daily run never starts during a test.
        ("TOLLGATE_RECONCILE_EVERY_MS", "3600000"),
    ];
    if with_an_key {
        v.push(("TEST_AN_ADMIN_KEY", ADMIN_KEY));
    }
    v
}

fn today() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now[..10].to_string()
}

/// Three chat calls to gpt-4o-mini (OpenAI-style) and two messages calls to
/// claude-sonnet-4-5 (Anthropic-style), 300 output tokens each.
async fn traffic(g: &GatewayProc) {
    let h = [("x-mock-output-tokens", "300")];
    for _ in 0..3 {
        let a = g.call(CHAT, &key(1), &h, &chat_body("gpt-4o-mini")).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 400,
        "messages": [{"role": "user", "content": "hello there"}]});
    for _ in 0..2 {
        let a = g.call(MESSAGES, &key(1), &h, &body).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

async fn run(admin: &Admin, day: &str) -> Value {
    let (s, v) = admin
        .post(
            &format!("/v1/reconciliation/run?from={day}&to={day}"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn rows(admin: &Admin, day: &str) -> Vec<Value> {
    let (s, v) = admin
        .get(&format!("/v1/reconciliation?from={day}&to={day}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], provider: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["provider"] == provider)
        .unwrap_or_else(|| panic!("no row of {provider}: {rows:?}"))
}

/// Waits until the gateway has settled all `n` requests of `key_main` (settling follows
/// the answer by a moment: a run before it would see the provider ahead), then runs once.
async fn run_when_settled(admin: &Admin, day: &str, n: u64) -> Vec<Value> {
    let settled = poll_until(Duration::from_secs(10), || async {
        let (s, v) = admin.get("/v1/spend/keys/key_main").await;
        (s == 200 && v["requests"] == n).then_some(())
    })
    .await;
    assert!(settled.is_some(), "{n} requests never settled");
    run(admin, day).await;
    let r = rows(admin, day).await;
    assert!(
        r.len() == 2 && r.iter().all(|r| r["diff_pct"] == json!(0.0)),
        "counts not equal: {r:?}"
    );
    r
}

async fn drift_audit(admin: &Admin) -> Vec<Value> {
    let (s, v) = admin.get("/v1/audit?type=spend.drift").await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn equal_counts_then_ten_percent_more_alerts_once_per_row() {
    let mock = mock().await;
    mock.set_behaviour(Behaviour {
        usage_key: Some(ADMIN_KEY.into()),
        ..Default::default()
    });
    let hook = Receiver::start(200).await;
    let mut g = start_gateway_env(&policy(mock.addr(), &hook.url()), &env(true));
    let admin = g.admin(ROOT);
    let day = today();
    traffic(&g).await;

    // Equal: diff 0 on both, no alert.
    let equal = run_when_settled(&admin, &day, 5).await;
    let oa = row(&equal, "oa");
    assert_eq!(oa["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(oa["provider_requests"], 3);
    assert_eq!(oa["gateway_requests"], 3);
    assert_eq!(oa["provider_output_tokens"], 900);
    assert_eq!(oa["provider_tokens"], oa["gateway_tokens"]);
    assert_eq!(oa["drift"], false);
    let an = row(&equal, "an");
    assert_eq!(an["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(
        an["provider_requests"],
        Value::Null,
        "Anthropic reports no request count"
    );
    assert_eq!(an["gateway_requests"], 2);
    assert_eq!(an["drift_alert"], 5.0);
    assert!(an["gateway_tokens"].as_u64().unwrap() > 600);
    assert!(drift_audit(&admin).await.is_empty());

    // The usage APIs were called with the admin key, never the provider key.
    let usage_calls: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/organization"))
        .collect();
    assert!(usage_calls
        .iter()
        .any(|r| r.path.starts_with("/v1/organization/usage/completions")));
    assert!(usage_calls.iter().any(|r| r
        .path
        .starts_with("/v1/organizations/usage_report/messages")));
    for r in &usage_calls {
        let auth = r
            .header("authorization")
            .or(r.header("x-api-key"))
            .unwrap_or("");
        assert!(auth.contains(ADMIN_KEY), "{} sent {auth:?}", r.path);
        assert!(!auth.contains(PROVIDER_KEY));
        if r.path.contains("usage_report") {
            assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        }
    }

    // 10 % more: diff ≈ 10 % on both, one alert each.
    mock.set_behaviour(Behaviour {
        usage_key: Some(ADMIN_KEY.into()),
        usage_extra_pct: 10,
        ..Default::default()
    });
    let v = run(&admin, &day).await;
    assert_eq!(v["ok"], true, "{v}");
    let alerts: u64 = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alerts"].as_u64().unwrap())
        .sum();
    assert_eq!(alerts, 2, "{v}");
    let drifted = rows(&admin, &day).await;
    for p in ["oa", "an"] {
        let r = row(&drifted, p);
        let d = r["diff_pct"].as_f64().unwrap();
        assert!((d - 10.0).abs() < 0.5, "{p}: {d}");
        assert_eq!(r["drift"], true);
        assert_eq!(r["alerted"], true);
    }
    hook.wait(Duration::from_secs(10), "two spend.drift webhooks", |got| {
        got.iter()
            .filter(|g| g.json["event"] == "spend.drift")
            .count()
            >= 2
    })
    .await;
    let audit = drift_audit(&admin).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|e| e["org"] == "acme"), "{audit:?}");

    // A re-run finds the same drift: no second alert.
    let v = run(&admin, &day).await;
    assert!(
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["alerts"] == 0),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hooks = hook.events("spend.drift");
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let mut seen: Vec<(String, String)> = hooks
        .iter()
        .map(|h| {
            assert_eq!(h["org"], "acme");
            assert_eq!(h["detail"]["day"], day.as_str());
            (
                h["detail"]["provider"].as_str().unwrap().to_string(),
                h["detail"]["model"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("an".to_string(), "claude-sonnet-4-5-20250929".to_string()),
            ("oa".to_string(), "gpt-4o-mini-2024-07-18".to_string())
        ]
    );
    for got in hook
        .got()
        .iter()
        .filter(|g| g.json["event"] == "spend.drift")
    {
        assert!(verify(SECRET, got), "unsigned {}", got.body);
    }
    assert_eq!(drift_audit(&admin).await.len(), 2);

    // After a graceful restart the gateway's counts and the alerts already sent are still
    // there: the same rows, no new alert.
    g.stop(libc::SIGTERM);
    g.restart(&env(true));
    let v = run(&admin, &day).await;
    assert!(
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["alerts"] == 0 && p["ok"] == true),
        "{v}"
    );
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("checked_at");
                r
            })
            .collect()
    };
    assert_eq!(strip(rows(&admin, &day).await), strip(drifted));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.events("spend.drift").len(), 2);
    assert_no_secret_in_logs(g.dir.path(), &[ADMIN_KEY]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_usage_api_down_is_a_recorded_failure_then_retried() {
    let mock = mock().await;
    mock.set_behaviour(Behaviour {
        usage_status: Some(500),
        ..Default::default()
    });
    let hook = Receiver::start(200).await;
    // Anthropic's admin key is not set: its part fails on every run, saying so.
    let g = start_gateway_env(&policy(mock.addr(), &hook.url()), &env(false));
    let admin = g.admin(ROOT);
    let day = today();
    traffic(&g).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let v = run(&admin, &day).await;
    assert_eq!(v["ok"], false, "{v}");
    let providers = v["providers"].as_array().unwrap();
    let oa = providers.iter().find(|p| p["provider"] == "oa").unwrap();
    assert_eq!(oa["ok"], false);
    assert!(oa["error"].as_str().unwrap().contains("HTTP 500"), "{oa}");
    let an = providers.iter().find(|p| p["provider"] == "an").unwrap();
    assert_eq!(an["error"], "TEST_AN_ADMIN_KEY is not set");
    assert!(
        rows(&admin, &day).await.is_empty(),
        "no rows for days not fetched"
    );
    assert!(drift_audit(&admin).await.is_empty(), "no false drift");
    let (_, listed) = admin
        .get(&format!("/v1/reconciliation?from={day}&to={day}"))
        .await;
    assert_eq!(listed["runs"][0]["id"], v["id"]);
    assert_eq!(listed["runs"][0]["ok"], false);

    // Back up: the next run succeeds for the provider that came back.
    mock.set_behaviour(Behaviour::default());
    let v = run(&admin, &day).await;
    let oa = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "oa")
        .unwrap()
        .clone();
    assert_eq!(oa["ok"], true, "{v}");
    assert_eq!(oa["rows"], 1, "{v}");
    let r = rows(&admin, &day).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["diff_pct"], 0.0, "{r:?}");
    assert!(drift_audit(&admin).await.is_empty());
    assert!(hook.events("spend.drift").is_empty());

    // Bad input: 400 naming the parameter; a scoped token may not read providers' usage.
    for (q, param) in [
        ("from=yesterday", "from"),
        ("from=2026-01-02&to=2026-01-01", "from"),
        ("to=2999-01-01", "to"),
        ("from=2026-01-01&to=2026-03-01", "from"),
    ] {
        let (s, v) = admin
            .post(&format!("/v1/reconciliation/run?{q}"), json!({}))
            .await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["param"], param, "{q}: {v}");
    }
    let (s, v) = admin.get("/v1/reconciliation?provider=oa&nope=1").await;
    assert_eq!(s, 400, "{v}");
    let (s, t) = admin
        .post(
            "/v1/tokens",
            json!({"name": "fin", "role": "viewer", "groups": ["grp_prod"]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = admin
        .call_as(
            t["token"].as_str().unwrap(),
            "GET",
            "/v1/reconciliation",
            None,
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    let (s, t) = admin
        .post("/v1/tokens", json!({"name": "fin2", "role": "viewer"}))
        .await;
    assert_eq!(s, 201);
    let (s, v) = admin
        .call_as(
            t["token"].as_str().unwrap(),
            "GET",
            "/v1/reconciliation?provider=oa",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_no_secret_in_logs(g.dir.path(), &[ADMIN_KEY]);
}
