//! End to end: the admin listener — health, readiness, `POST /v1/reload` (same as SIGHUP),
//! `/metrics` with the docs/operations.md "Metrics" series, and the admin token.

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

/// The admin listener's own refusals (a body over its limit, an unknown path, a wrong
/// method) and typed-field refusals answer in the documented error shape, saying what a field takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_are_in_the_error_shape_and_the_users_words() {
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), "").with_admin();
    let g = start_gateway_env(&policy, ADMIN_ENV);
    let admin = g.admin(ROOT);
    let url = |p: &str| admin.url(p);
    let c = client();
    let shape = |v: &serde_json::Value| {
        let e = &v["error"];
        assert!(e["message"].is_string(), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some(), "{v}");
    };
    // 413: a body over the admin limit (2 MiB). The listener closes that connection
    // unread: a client of its own.
    let r = client()
        .post(url("/v1/keys"))
        .bearer_auth(ROOT)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    // 404: no such route.
    let r = c
        .get(url("/v1/nope"))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["code"], "unknown_route", "{v}");
    // 405: a served path, another method.
    let r = c
        .put(url("/v1/keys"))
        .bearer_auth(ROOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: serde_json::Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    // 400: what a field takes, naming it.
    for (body, param, start) in [
        (
            json!({"name": "x", "group": "grp_prod", "rpm": -1}),
            "rpm",
            "rpm: expected a whole number ≥ 0",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "budget_usd": "lots"}),
            "budget_usd",
            "budget_usd: expected an amount in USD",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "ttl": 30}),
            "ttl",
            "ttl: expected a duration",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "ttl": "soon"}),
            "ttl",
            "ttl: expected a duration",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "allowed_cidrs": "10.0.0.0/8"}),
            "allowed_cidrs",
            "allowed_cidrs: expected a list",
        ),
    ] {
        let r = c
            .post(url("/v1/keys"))
            .bearer_auth(ROOT)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(start), "{body}: {msg}");
    }
    let r = c
        .post(url("/v1/tokens"))
        .bearer_auth(ROOT)
        .json(&json!({"name": "t", "role": "boss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "role", "{v}");
}
