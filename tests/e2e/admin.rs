//! End to end: the admin listener — health, readiness, `POST /v1/reload` (same as SIGHUP),
//! `/metrics` with the SPEC §8 series, and the admin token.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn chat(g: &GatewayProc, model: &str) -> u16 {
    let body = json!({"model": model, "messages": []});
    g.call(CHAT, &key(1), &[], &body).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_metrics_and_auth() {
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), "").with_admin();
    let g = start_gateway_env(&policy, ADMIN_ENV);
    let admin = g.admin(ROOT);
    // Health checks need no token.
    for probe in ["/healthz", "/readyz"] {
        let r = client().get(admin.url(probe)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{probe}");
    }
    // Everything else does.
    let r = client().post(admin.url("/v1/reload")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_admin_token"
    );
    assert_eq!(admin.call_as("wrong", "GET", "/metrics", None).await.0, 401);

    // Traffic: one served, one refused.
    assert_eq!(chat(&g, "gpt-4o-mini").await, 200);
    let no = g
        .call(CHAT, &key(1), &[], &json!({"model": "o1-preview"}))
        .await;
    assert_eq!(no.status, 403);

    // POST /v1/reload: an invalid file is refused and changes nothing...
    write_policy(
        &g.conf,
        "[server]\nlisten = [\"{LISTEN}\"]\nnope = 1\n",
        g.addr,
        g.dir.path(),
    );
    let (s, v) = admin.call("POST", "/v1/reload", None).await;
    assert_eq!(s, 400);
    assert!(v.to_string().contains("unknown field `nope`"), "{v}");
    assert_eq!(chat(&g, "gpt-4o").await, 200);
    // ...a valid one is applied before the answer.
    let narrowed = policy.replace(
        "deny_models = [\"*-preview\"]",
        "deny_models = [\"*-preview\", \"gpt-4o\"]",
    );
    write_policy(&g.conf, &narrowed, g.addr, g.dir.path());
    let (s, v) = admin.call("POST", "/v1/reload", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["reloaded"], true);
    assert_eq!(chat(&g, "gpt-4o").await, 403);

    // Metrics are counted after each answer is sent: wait until the last request shows.
    let last_counted = |t: &str| {
        t.contains(r#"reason="model_not_allowed"} 2"#) && t.contains("tollgate_inflight_requests 0")
    };
    let text = match poll_until(Duration::from_secs(10), || async {
        Some(admin.metrics().await).filter(|t| last_counted(t))
    })
    .await
    {
        Some(text) => text,
        None => admin.metrics().await,
    };
    for series in [
        r#"tollgate_requests_total{group="grp_prod",model="gpt-4o-mini",status="200"} 1"#,
        r#"tollgate_rejections_total{group="grp_prod",reason="model_not_allowed"} 2"#,
        r#"tollgate_tokens_total{direction="output",group="grp_prod",model="gpt-4o-mini"} 8"#,
        "tollgate_spend_usd_total{",
        "tollgate_request_duration_seconds_bucket{group=\"grp_prod\"",
        "tollgate_overhead_seconds_count",
        "tollgate_upstream_duration_seconds_count{target=\"oa/gpt-4o-mini-2024-07-18\"}",
        "tollgate_target_healthy{target=\"oa/gpt-4o-mini-2024-07-18\"} 1",
        "tollgate_inflight_requests 0",
        r#"tollgate_config_reloads_total{result="error"} 1"#,
        r#"tollgate_config_reloads_total{result="ok"} 1"#,
        r#"tollgate_keys{group="grp_prod",status="active"} 1"#,
        r#"tollgate_admin_requests_total{route="POST /v1/reload",status="200"} 1"#,
        r#"tollgate_admin_requests_total{route="POST /v1/reload",status="400"} 1"#,
        r#"tollgate_admin_requests_total{route="POST /v1/reload",status="401"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
    assert!(
        !text.contains("key_main") && !text.contains(&key(1)),
        "key ids or secrets in metrics"
    );
}
