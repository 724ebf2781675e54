//! End to end: shadow limits (docs/policy.md "Limit fields") — `{ value = N, mode = "shadow" }` in the file and
//! through the API: counted and reported (header, metric, audit), never refusing.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_limits_count_and_report_but_never_refuse() {
    let mock = mock().await;
    let policy = basic_policy(
        mock.addr(),
        "[[groups]]\nid = \"grp_s\"\norg = \"acme\"\nrpm = { value = 2, mode = \"shadow\" }\nmax_parallel = 100\n",
    )
    .with_admin();
    let g = start_gateway_env(
        &policy,
        &[
            ("TEST_ADMIN_TOKEN", ROOT),
            ("TOLLGATE_REFUSAL_MINUTE_MS", "300"),
        ],
    );
    let admin = g.admin(ROOT);
    // An API key with a shadow tpm of its own (looser than nothing: no bound applies).
    let created = admin
        .new_key(json!({"name": "s", "group": "grp_s", "tpm": {"value": 1, "mode": "shadow"}, "max_parallel": 50}))
        .await;
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
        let body = json!({"model": "gpt-4o-mini", "messages": [], "max_tokens": 10});
        let a = g.call(CHAT, &secret, &[], &body).await;
        assert_eq!(a.status, 200);
        headers.push(a.header("x-tollgate-shadow-limited").map(str::to_string));
        // No enforced request limit, so no x-ratelimit request headers.
        assert!(a.header("x-ratelimit-limit-requests").is_none());
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
    let counted = |text: &str| {
        text.contains(
            r#"tollgate_shadow_limited_total{group="grp_s",reason="rate_limit_exceeded"} 3"#,
        ) && text.contains(
            r#"tollgate_shadow_limited_total{group="grp_s",reason="token_limit_exceeded"} 5"#,
        )
    };
    if poll_until(Duration::from_secs(10), || async {
        counted(&admin.metrics().await).then_some(())
    })
    .await
    .is_none()
    {
        panic!("shadow metric missing:\n{}", admin.metrics().await);
    }
    // …and in the audit trail, aggregated per key, code and minute.
    let rate_limited = |v: &Value| -> u64 {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["after"]["code"] == "rate_limit_exceeded")
            .map(|e| e["detail"]["after"]["count"].as_u64().unwrap())
            .sum()
    };
    let events = "/v1/audit?type=request.shadow_limited";
    if poll_until(Duration::from_secs(10), || async {
        (rate_limited(&admin.get(events).await.1) == 3).then_some(())
    })
    .await
    .is_none()
    {
        panic!("no shadow audit events: {}", admin.get(events).await.1);
    }
    // A bad mode is a clear 400 naming the field.
    let (s, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "s", "group": "grp_s", "rpm": {"value": 1, "mode": "sometimes"}}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "rpm", "{v}");
}
