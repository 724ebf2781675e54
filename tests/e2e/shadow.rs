//! End to end: shadow limits (SPEC §5) — `{ value = N, mode = "shadow" }` in the file and
//! through the API: counted and reported (header, metric, audit), never refusing.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROOT: &str = "root-admin-token-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_limits_count_and_report_but_never_refuse() {
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    let admin = admin_addr();
    let policy = basic_policy(
        mock.addr(),
        "[[groups]]\nid = \"grp_s\"\norg = \"acme\"\nrpm = { value = 2, mode = \"shadow\" }\nmax_parallel = 100\n",
    )
    .with_admin(admin);
    let g = start_gateway_env(
        &policy,
        &[
            ("TEST_ADMIN_TOKEN", ROOT),
            ("TOLLGATE_REFUSAL_MINUTE_MS", "300"),
        ],
    );
    let base = format!("http://{admin}");
    wait_admin(admin).await;
    // An API key with a shadow tpm of its own (looser than nothing: no bound applies).
    let r = client()
        .post(format!("{base}/v1/keys"))
        .bearer_auth(ROOT)
        .json(&json!({"name": "s", "group": "grp_s", "tpm": {"value": 1, "mode": "shadow"}, "max_parallel": 50}))
        .send()
        .await
        .unwrap();
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        created["limits"]["tpm"],
        json!({"value": 1, "mode": "shadow"}),
        "{created}"
    );
    assert_eq!(created["limits"]["max_parallel"], 50);
    let secret = created["key"].as_str().unwrap().to_string();
    // Five requests against a shadow rpm of 2: all served; from the third on, reported.
    let mut headers = vec![];
    for _ in 0..5 {
        let r = post_json(
            &g,
            "/v1/chat/completions",
            &secret,
            &json!({"model": "gpt-4o-mini", "messages": [], "max_tokens": 10}),
        )
        .await;
        assert_eq!(r.status().as_u16(), 200);
        headers.push(
            r.headers()
                .get("x-tollgate-shadow-limited")
                .map(|v| v.to_str().unwrap().to_string()),
        );
        // No enforced request limit, so no x-ratelimit request headers.
        assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
    }
    // The key's shadow tpm of 1 is over from the first request on.
    assert!(
        headers[0]
            .as_deref()
            .unwrap()
            .contains(&format!("key {} tpm 1", created["id"].as_str().unwrap())),
        "{headers:?}"
    );
    assert!(
        !headers[1].as_deref().unwrap().contains("group grp_s rpm 2"),
        "{headers:?}"
    );
    for h in &headers[2..] {
        assert!(
            h.as_deref().unwrap().contains("group grp_s rpm 2"),
            "{headers:?}"
        );
    }
    // Counted in the metric…
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client()
            .get(format!("{base}/metrics"))
            .bearer_auth(ROOT)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(
            r#"tollgate_shadow_limited_total{group="grp_s",reason="rate_limit_exceeded"} 3"#,
        ) && text.contains(
            r#"tollgate_shadow_limited_total{group="grp_s",reason="token_limit_exceeded"} 5"#,
        ) {
            break;
        }
        assert!(Instant::now() < deadline, "shadow metric missing:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …and in the audit trail, aggregated per key, code and minute.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = client()
            .get(format!("{base}/v1/audit?type=request.shadow_limited"))
            .bearer_auth(ROOT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let total: u64 = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["after"]["code"] == "rate_limit_exceeded")
            .map(|e| e["detail"]["after"]["count"].as_u64().unwrap())
            .sum();
        if total == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no shadow audit events: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad mode is a clear 400 naming the field.
    let r = client()
        .post(format!("{base}/v1/keys"))
        .bearer_auth(ROOT)
        .json(&json!({"name": "s", "group": "grp_s", "rpm": {"value": 1, "mode": "sometimes"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "rpm", "{v}");
}
