//! End to end: the admin listener — health, readiness, `POST /v1/reload` (same as SIGHUP),
//! `/metrics` with the SPEC §8 series, and the admin token.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

const TOKEN: &str = "admin-secret-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_metrics_and_auth() {
    let mock = MockProvider::start("127.0.0.1:0").await.unwrap();
    let admin = admin_addr();
    let policy = basic_policy(mock.addr(), "").with_admin(admin);
    let g = start_gateway_env(&policy, &[("TEST_ADMIN_TOKEN", TOKEN)]);
    let url = |p: &str| format!("http://{admin}{p}");
    let c = client();
    // Health checks need no token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while c.get(url("/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "admin listener not up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.get(url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        c.get(url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Everything else does.
    let r = c.post(url("/v1/reload")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "invalid_admin_token"
    );
    let r = c
        .get(url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Traffic: one served, one refused.
    let ok = post_json(
        &g,
        "/v1/chat/completions",
        &key(1),
        &json!({"model": "gpt-4o-mini", "messages": []}),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
    let no = post_json(
        &g,
        "/v1/chat/completions",
        &key(1),
        &json!({"model": "o1-preview"}),
    )
    .await;
    assert_eq!(no.status().as_u16(), 403);

    // POST /v1/reload: an invalid file is refused and changes nothing...
    write_policy(
        &g.conf,
        "[server]\nlisten = [\"{LISTEN}\"]\nnope = 1\n",
        g.addr,
        g.dir.path(),
    );
    let r = c
        .post(url("/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("unknown field `nope`"));
    let still = post_json(
        &g,
        "/v1/chat/completions",
        &key(1),
        &json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(still.status().as_u16(), 200);
    // ...a valid one is applied before the answer.
    let narrowed = policy.replace(
        "deny_models = [\"*-preview\"]",
        "deny_models = [\"*-preview\", \"gpt-4o\"]",
    );
    write_policy(&g.conf, &narrowed, g.addr, g.dir.path());
    let r = c
        .post(url("/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["reloaded"],
        true
    );
    let denied = post_json(
        &g,
        "/v1/chat/completions",
        &key(1),
        &json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(denied.status().as_u16(), 403);

    // Metrics are counted after each answer is sent: poll until the last request shows.
    let mut text = String::new();
    for _ in 0..40 {
        text = c
            .get(url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(r#"reason="model_not_allowed"} 2"#)
            && text.contains("tollgate_inflight_requests 0")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
