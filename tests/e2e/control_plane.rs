//! End to end: keys and groups managed through the admin API (docs/admin-api.md), against the real
//! binary and the mock provider. Every write's 2xx must be on disk and followed by the very
//! next data-plane request.

use crate::harness::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Env {
    g: GatewayProc,
    admin: Admin,
    policy: String,
    _mock: MockProvider,
    /// Every admin answer after the create calls (searched for raw keys).
    seen: std::sync::Mutex<Vec<String>>,
}

const GROUPS: &str = r#"
[[groups]]
id = "grp_b"
org = "acme"
models = ["claude-*"]
rpm = 600
max_tokens = 2000

[[groups]]
id = "grp_c"
org = "acme"
"#;

fn policy_with(mock: SocketAddr) -> String {
    let tagged = format!(
        "\n[[keys]]\nid = \"key_tagged\"\ngroup = \"grp_c\"\nsha256 = \"{}\"\nmodels = [\"gpt-4o\"]\ntags = {{ service = \"ci\" }}\n",
        sha(&key(2))
    );
    basic_policy(mock, &format!("{GROUPS}{tagged}"))
        .with_admin()
        .replace("request_log = \"off\"", "request_log = \"stdout\"")
}

/// A gateway on `policy_with`, edited by `edit`.
async fn start_with(edit: impl FnOnce(String) -> String, env: &[(&str, &str)]) -> Env {
    let mock = mock().await;
    let policy = edit(policy_with(mock.addr()));
    let g = start_gateway_env(&policy, env);
    Env {
        admin: g.admin(ROOT),
        g,
        policy,
        _mock: mock,
        seen: Default::default(),
    }
}

async fn start() -> Env {
    start_with(|p| p, ADMIN_ENV).await
}

impl Env {
    async fn restart(&mut self) {
        self.g.restart(ADMIN_ENV);
    }

    /// An admin call with the root token, its answer recorded in `seen`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, v) = self.admin.call(method, path, body).await;
        self.seen.lock().unwrap().push(v.to_string());
        (status, v)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// Creates a key; returns (id, raw key).
    async fn create(&self, body: Value) -> (String, String) {
        let (s, v) = self.post("/v1/keys", body).await;
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    async fn chat(&self, key: &str, model: &str) -> Answer {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});
        self.g.call(CHAT, key, &[], &body).await
    }

    /// "ok", the OpenAI error code, or for Claude models (served on `/v1/messages`, whose
    /// error shape has no code) "status: message".
    async fn code(&self, key: &str, model: &str) -> String {
        let claude = model.starts_with("claude");
        let a = if claude {
            let body = json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
            self.g.call(MESSAGES, key, &[], &body).await
        } else {
            self.chat(key, model).await
        };
        let v = a.json();
        match (a.status, claude) {
            (200, _) => "ok".into(),
            (s, true) => format!("{s}: {}", v["error"]["message"].as_str().unwrap_or("?")),
            _ => v["error"]["code"].as_str().unwrap_or("?").to_string(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_lifecycle_through_the_admin_api() {
    let mut env = start().await;
    // 401 without a token, and with a wrong one.
    let r = client()
        .get(env.admin.url("/v1/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_admin_token");

    // Create: works at once; the raw key appears only in this answer.
    let (s, created) = env
        .post(
            "/v1/keys",
            json!({"name": "svc-a", "group": "grp_prod", "owner": "alice", "tags": {"team": "a"}, "metadata": {"ticket": 42}}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tg-") && secret.len() >= 43);
    assert_eq!(created["source"], "api");
    assert_eq!(created["status"], "active");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap().trim_end_matches('…')));
    env.seen.lock().unwrap().clear();
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "ok");

    // GET and list show it (never the secret), with filters.
    let (s, one) = env.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["name"], "svc-a");
    assert_eq!(one["group"], "grp_prod");
    assert_eq!(one["org"], "acme");
    assert!(one.get("key").is_none());
    let (_, list) = env.get("/v1/keys?owner=alice&tag=team:a").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, list) = env.get("/v1/keys?group=grp_prod").await;
    let sources: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"config") && sources.contains(&"api"),
        "{list}"
    );

    // PATCH rpm: the next requests follow.
    let (s, v) = env
        .call("PATCH", &format!("/v1/keys/{id}"), Some(json!({"rpm": 2})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["limits"]["rpm"], 2);
    // Windows count from when a limit exists: the third request in the minute is refused.
    let codes = [
        env.code(&secret, "gpt-4o-mini").await,
        env.code(&secret, "gpt-4o-mini").await,
        env.code(&secret, "gpt-4o-mini").await,
    ];
    assert_eq!(codes[2], "rate_limit_exceeded", "{codes:?}");
    assert!(
        codes.contains(&"rate_limit_exceeded".to_string()),
        "{codes:?}"
    );
    // null clears it.
    let (s, v) = env
        .call(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rpm": null})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["limits"].get("rpm").is_none());
    // PATCH models: the next request follows.
    env.call(
        "PATCH",
        &format!("/v1/keys/{id}"),
        Some(json!({"models": ["gpt-4o"]})),
    )
    .await;
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "model_not_allowed");
    assert_eq!(env.code(&secret, "gpt-4o").await, "ok");
    env.call(
        "PATCH",
        &format!("/v1/keys/{id}"),
        Some(json!({"models": null})),
    )
    .await;
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "ok");

    // Disable / enable.
    let (s, _) = env.post(&format!("/v1/keys/{id}/disable"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "key_disabled");
    env.post(&format!("/v1/keys/{id}/enable"), json!({})).await;
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "ok");

    // Regenerate with a grace period: both work; then without: only the newest.
    let (s, v) = env
        .post(
            &format!("/v1/keys/{id}/regenerate"),
            json!({"grace_period": "1h"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let second = v["key"].as_str().unwrap().to_string();
    env.seen.lock().unwrap().retain(|t| !t.contains(&second));
    assert_eq!(v["id"].as_str().unwrap(), id);
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "ok");
    assert_eq!(env.code(&second, "gpt-4o-mini").await, "ok");
    let (_, v) = env
        .post(&format!("/v1/keys/{id}/regenerate"), json!({}))
        .await;
    let third = v["key"].as_str().unwrap().to_string();
    env.seen.lock().unwrap().retain(|t| !t.contains(&third));
    assert_eq!(env.code(&secret, "gpt-4o-mini").await, "invalid_api_key");
    assert_eq!(env.code(&second, "gpt-4o-mini").await, "invalid_api_key");
    assert_eq!(env.code(&third, "gpt-4o-mini").await, "ok");

    // Move: same string, the new group's models; limits checked against it.
    let (s, v) = env
        .call(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rpm": 1000})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env
        .post(&format!("/v1/keys/{id}/move"), json!({"group": "grp_b"}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "rpm");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("1000") && msg.contains("600") && msg.contains("grp_b"),
        "{msg}"
    );
    env.call(
        "PATCH",
        &format!("/v1/keys/{id}"),
        Some(json!({"rpm": 500})),
    )
    .await;
    let spent_before = env.get(&format!("/v1/keys/{id}")).await.1["spend_all_time_usd"]
        .as_f64()
        .unwrap();
    assert!(spent_before > 0.0);
    let (s, v) = env
        .post(&format!("/v1/keys/{id}/move"), json!({"group": "grp_b"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group"], "grp_b");
    assert_eq!(env.code(&third, "gpt-4o-mini").await, "model_not_allowed");
    assert_eq!(env.code(&third, "claude-sonnet-4-5").await, "ok");
    let spent_after = env.get(&format!("/v1/keys/{id}")).await.1["spend_all_time_usd"]
        .as_f64()
        .unwrap();
    assert!(
        spent_after >= spent_before,
        "spend history kept: {spent_before} -> {spent_after}"
    );

    // Revoke: 403 key_revoked, permanently.
    let (s, v) = env.call("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "revoked");
    let revoked = env.code(&third, "claude-sonnet-4-5").await;
    assert!(
        revoked.starts_with("403: ") && revoked.contains("revoked"),
        "{revoked}"
    );
    let (s, v) = env.post(&format!("/v1/keys/{id}/enable"), json!({})).await;
    assert_eq!(s, 409, "{v}");

    // Survives a restart.
    env.restart().await;
    let revoked = env.code(&third, "claude-sonnet-4-5").await;
    assert!(
        revoked.starts_with("403: ") && revoked.contains("revoked"),
        "{revoked}"
    );
    let (_, v) = env.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["group"], "grp_b");

    // The raw keys appear in no later answer and in no log line.
    let log = env.g.log_text();
    for s in [&secret, &second, &third] {
        assert!(!log.contains(s.as_str()), "a raw key is in the log");
        for text in env.seen.lock().unwrap().iter() {
            assert!(
                !text.contains(s.as_str()),
                "a raw key in a later answer: {text}"
            );
        }
    }
    // The key id is logged; the audit trail has the changes.
    assert!(log.contains(&format!(
        "event key.revoked actor=root group=grp_b key={id}"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_a_clear_400_and_file_keys_are_read_only() {
    let env = start().await;
    let cases = [
        (json!({"name": "x", "group": "nope"}), "group"),
        (json!({"name": "x", "group": "grp_b", "rpm": 601}), "rpm"),
        (
            json!({"name": "x", "group": "grp_prod", "max_tokens": 9000}),
            "max_tokens",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "rpm": "ten"}),
            "rpm",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "allowed_cidrs": ["10.0.0.0/33"]}),
            "allowed_cidrs",
        ),
        (
            json!({"name": "x", "group": "grp_prod", "metadata": {"blob": "x".repeat(5000)}}),
            "metadata",
        ),
        (json!({"group": "grp_prod"}), "name"),
        (
            json!({"name": "x", "group": "grp_prod", "ttl": "1d", "expires_at": "2099-01-01T00:00:00Z"}),
            "ttl",
        ),
    ];
    for (body, param) in cases {
        let (s, v) = env.post("/v1/keys", body.clone()).await;
        assert_eq!(s, 400, "{body} -> {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
    }
    let (_, v) = env
        .post(
            "/v1/keys",
            json!({"name": "x", "group": "grp_b", "rpm": 601}),
        )
        .await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("601") && msg.contains("600") && msg.contains("group grp_b"),
        "{msg}"
    );
    // Not JSON at all.
    let r = client()
        .post(env.admin.url("/v1/keys"))
        .bearer_auth(ROOT)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    // Unknown ids.
    let (s, v) = env.get("/v1/keys/key_nope").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = env.get("/v1/groups/nope").await;
    assert_eq!(s, 404);
    // File keys: listed, read-only.
    let (s, v) = env.get("/v1/keys/key_main").await;
    assert_eq!(s, 200);
    assert_eq!(v["source"], "config");
    for (m, path) in [
        ("PATCH", "/v1/keys/key_main"),
        ("DELETE", "/v1/keys/key_main"),
        ("POST", "/v1/keys/key_main/disable"),
        ("POST", "/v1/keys/key_main/regenerate"),
        ("POST", "/v1/keys/key_main/move"),
    ] {
        let (s, v) = env.call(m, path, Some(json!({"group": "grp_c"}))).await;
        assert_eq!(s, 409, "{path}: {v}");
        assert_eq!(v["error"]["code"], "managed_by_config");
    }
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "ok");
    // A file key's tags and model lists show as written; the tag filter finds it.
    let (_, v) = env.get("/v1/keys?tag=service:ci").await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{v}");
    assert_eq!(data[0]["id"], "key_tagged");
    assert_eq!(data[0]["models"], json!(["gpt-4o"]));
    assert_eq!(data[0]["source"], "config");
    // PATCH cannot change the group.
    let (id, _) = env.create(json!({"name": "y", "group": "grp_prod"})).await;
    let (s, v) = env
        .call(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"group": "grp_b"})),
        )
        .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("group")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_state_batch_and_bulk() {
    let mut env = start().await;
    // Batch of 1000 in one call.
    let t = Instant::now();
    let (s, v) = env
        .post(
            "/v1/keys/batch",
            json!({"count": 1000, "group": "grp_c", "name_prefix": "student", "rpm": 10}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let made = v["data"].as_array().unwrap();
    assert_eq!(made.len(), 1000);
    eprintln!("batch of 1000: {:?}", t.elapsed());
    let k0 = made[0]["key"].as_str().unwrap().to_string();
    let k999 = made[999]["key"].as_str().unwrap().to_string();
    assert_eq!(made[0]["name"], "student-0001");
    assert_eq!(env.code(&k0, "gpt-4o-mini").await, "ok");
    assert_eq!(env.code(&k999, "gpt-4o-mini").await, "ok");
    // Pagination walks all of them exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?group=grp_c&limit=300&cursor={c}"),
            None => "/v1/keys?group=grp_c&limit=300".to_string(),
        };
        let (s, v) = env.get(&path).await;
        assert_eq!(s, 200, "{v}");
        for k in v["data"].as_array().unwrap() {
            assert!(seen.insert(k["id"].as_str().unwrap().to_string()));
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // The 1000 API keys and the file key in grp_c.
    assert_eq!(seen.len(), 1001);
    assert!(seen.contains("key_tagged"));

    // Pause / quarantine / resume: effective on the next request.
    let (s, v) = env.post("/v1/groups/grp_prod/pause", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "paused");
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "group_paused");
    // Survives SIGHUP and a restart.
    env.g.signal(libc::SIGHUP);
    env.g.wait_reloads(1, 0);
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "group_paused");
    env.restart().await;
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "group_paused");
    let (_, v) = env.get("/v1/groups/grp_prod").await;
    assert_eq!(v["state"], "paused");
    assert_eq!(v["state_source"], "api");
    env.post("/v1/groups/grp_prod/quarantine", json!({})).await;
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "group_paused");
    env.post("/v1/groups/grp_prod/resume", json!({})).await;
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "ok");
    // A reload that changes the file's state wins over the API's.
    env.post("/v1/groups/grp_prod/pause", json!({})).await;
    let quarantined = env.policy.replace(
        "[[groups]]\nid = \"grp_prod\"\norg = \"acme\"\n",
        "[[groups]]\nid = \"grp_prod\"\norg = \"acme\"\nstate = \"quarantined\"\nquarantine_cidrs = [\"127.0.0.1/32\"]\nquarantine_models = [\"gpt-4o-mini\"]\n",
    );
    assert_ne!(quarantined, env.policy);
    env.g.rewrite_and_reload(&quarantined);
    env.g.wait_reloads(2, 0);
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "ok");
    assert_eq!(env.code(&key(1), "gpt-4o").await, "group_paused");
    env.restart().await;
    assert_eq!(env.code(&key(1), "gpt-4o-mini").await, "ok");
    let (_, v) = env.get("/v1/groups/grp_prod").await;
    assert_eq!(v["state"], "quarantined");

    // Bulk revoke of a group: API keys revoked, file keys skipped.
    let (_, list) = env.get("/v1/groups").await;
    let c = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "grp_c")
        .unwrap()
        .clone();
    assert_eq!(c["keys"]["active"], 1001);
    assert_eq!(c["keys"]["config"], 1);
    let (s, v) = env.post("/v1/groups/grp_c/keys/revoke", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["affected"], 1000);
    assert_eq!(env.code(&k0, "gpt-4o-mini").await, "key_revoked");
    assert_eq!(env.code(&k999, "gpt-4o-mini").await, "key_revoked");
    let (_, v) = env.post("/v1/groups/grp_c/keys/enable", json!({})).await;
    assert_eq!(
        (v["affected"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(1001))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_each_kind_of_write_loses_nothing() {
    let mut env = start().await;
    let (a, ka) = env.create(json!({"name": "a", "group": "grp_prod"})).await;
    env.restart().await;
    assert_eq!(env.code(&ka, "gpt-4o-mini").await, "ok");

    env.call(
        "PATCH",
        &format!("/v1/keys/{a}"),
        Some(json!({"models": ["gpt-4o"]})),
    )
    .await;
    env.restart().await;
    assert_eq!(env.code(&ka, "gpt-4o-mini").await, "model_not_allowed");

    env.post(&format!("/v1/keys/{a}/disable"), json!({})).await;
    env.restart().await;
    assert_eq!(env.code(&ka, "gpt-4o").await, "key_disabled");

    env.post(&format!("/v1/keys/{a}/enable"), json!({})).await;
    env.restart().await;
    assert_eq!(env.code(&ka, "gpt-4o").await, "ok");

    let (_, v) = env
        .post(
            &format!("/v1/keys/{a}/regenerate"),
            json!({"grace_period": "1h"}),
        )
        .await;
    let ka2 = v["key"].as_str().unwrap().to_string();
    env.restart().await;
    assert_eq!(env.code(&ka, "gpt-4o").await, "ok");
    assert_eq!(env.code(&ka2, "gpt-4o").await, "ok");

    env.post(&format!("/v1/keys/{a}/move"), json!({"group": "grp_c"}))
        .await;
    env.restart().await;
    assert_eq!(env.get(&format!("/v1/keys/{a}")).await.1["group"], "grp_c");

    let (_, v) = env
        .post("/v1/keys/batch", json!({"count": 5, "group": "grp_c"}))
        .await;
    let kb = v["data"][4]["key"].as_str().unwrap().to_string();
    env.restart().await;
    assert_eq!(env.code(&kb, "gpt-4o").await, "ok");

    env.post("/v1/groups/grp_c/pause", json!({})).await;
    env.restart().await;
    assert_eq!(env.code(&kb, "gpt-4o").await, "group_paused");
    env.post("/v1/groups/grp_c/resume", json!({})).await;
    env.restart().await;
    assert_eq!(env.code(&kb, "gpt-4o").await, "ok");

    env.post("/v1/groups/grp_c/keys/disable", json!({})).await;
    env.restart().await;
    assert_eq!(env.code(&kb, "gpt-4o").await, "key_disabled");

    env.call("DELETE", &format!("/v1/keys/{a}"), None).await;
    env.restart().await;
    assert_eq!(env.code(&ka2, "gpt-4o").await, "key_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_on_one_key_under_traffic() {
    let env = std::sync::Arc::new(start().await);
    let (id, first) = env
        .create(json!({"name": "hot", "group": "grp_prod"}))
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Traffic on the file key while the API key is being rewritten: never a 5xx.
    let mut traffic = vec![];
    for _ in 0..4 {
        let env = env.clone();
        let stop = stop.clone();
        traffic.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = env.chat(&key(1), "gpt-4o-mini").await.status;
                assert!(s < 500, "data plane answered {s}");
                n += 1;
            }
            n
        }));
    }
    // 50 concurrent writes on one key: 25 PATCHes, 25 regenerations (1 h grace).
    let mut writes = vec![];
    for i in 0..50 {
        let env = env.clone();
        let id = id.clone();
        writes.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let (s, v) = env
                    .call(
                        "PATCH",
                        &format!("/v1/keys/{id}"),
                        Some(json!({"metadata": {"i": i}, "tpm": 100000 + i})),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                None
            } else {
                let (s, v) = env
                    .post(
                        &format!("/v1/keys/{id}/regenerate"),
                        json!({"grace_period": "1h"}),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
                let secret = v["key"].as_str().unwrap().to_string();
                // The secret just returned works on the very next request (or has
                // already been superseded by a later regeneration: then it is the grace one
                // or refused, never a 5xx).
                let code = env.chat(&secret, "gpt-4o-mini").await.status;
                assert!(code == 200 || code == 401, "{code}");
                Some(secret)
            }
        }));
    }
    let mut secrets = vec![first];
    for w in writes {
        if let Some(s) = w.await.unwrap() {
            secrets.push(s);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        assert!(t.await.unwrap() > 0);
    }
    // Exactly two secrets work now: the current one and the one before it (in its grace).
    let (_, v) = env.get(&format!("/v1/keys/{id}")).await;
    let prefix = v["prefix"]
        .as_str()
        .unwrap()
        .trim_end_matches('…')
        .to_string();
    let mut working = vec![];
    for s in &secrets {
        if env.code(s, "gpt-4o-mini").await == "ok" {
            working.push(s.clone());
        }
    }
    assert_eq!(working.len(), 2, "{} secrets work", working.len());
    assert!(working.iter().any(|s| s.starts_with(&prefix)));
    // Then the sequential check: each write's 2xx is followed by the next request.
    for _ in 0..10 {
        env.post(&format!("/v1/keys/{id}/disable"), json!({})).await;
        assert_eq!(env.code(&working[0], "gpt-4o-mini").await, "key_disabled");
        env.post(&format!("/v1/keys/{id}/enable"), json!({})).await;
        assert_eq!(env.code(&working[0], "gpt-4o-mini").await, "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_ttl_idle_disable_and_rotation() {
    let lifecycle = |p: String| {
        p.replace(
            "[[groups]]\nid = \"grp_c\"\norg = \"acme\"\n",
            "[[groups]]\nid = \"grp_c\"\norg = \"acme\"\nkey_ttl = \"1h\"\nidle_disable = \"5s\"\n",
        )
    };
    let env_vars = [
        ("TEST_ADMIN_TOKEN", ROOT),
        ("TOLLGATE_LIFECYCLE_EVERY_MS", "200"),
    ];
    let env = start_with(lifecycle, &env_vars).await;
    // key_ttl: a key made without an expiry gets the group's.
    let (idle, idle_key) = env.create(json!({"name": "idle", "group": "grp_c"})).await;
    let (busy, busy_key) = env.create(json!({"name": "busy", "group": "grp_c"})).await;
    let (_, v) = env.get(&format!("/v1/keys/{idle}")).await;
    let expires = humantime::parse_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
    // A rotating key in a group without idle_disable.
    let (rot, rot_key) = env
        .create(json!({"name": "rot", "group": "grp_prod", "rotation_interval": "3s"}))
        .await;
    let first_prefix = env.get(&format!("/v1/keys/{rot}")).await.1["prefix"].clone();
    // idle_disable: the unused key is disabled; the used one stays active. Last use is kept
    // in whole seconds, so 5 s leaves the busy key's every round (a request, a read, 300 ms)
    // four seconds of margin on a loaded host.
    let round = Duration::from_millis(300);
    let disabled = poll_every(round, Duration::from_secs(20), || async {
        assert_eq!(env.code(&busy_key, "gpt-4o-mini").await, "ok");
        let (_, v) = env.get(&format!("/v1/keys/{idle}")).await;
        (v["status"] == "disabled").then_some(())
    })
    .await;
    if disabled.is_none() {
        let (_, v) = env.get(&format!("/v1/keys/{idle}")).await;
        panic!("idle key never disabled: {v}");
    }
    assert_eq!(env.code(&idle_key, "gpt-4o-mini").await, "key_disabled");
    assert_eq!(
        env.get(&format!("/v1/keys/{busy}")).await.1["status"],
        "active"
    );
    // Rotation: a new secret was made; the old one keeps working in its 24 h grace.
    wait_for(Duration::from_secs(10), "key rotation", || async {
        let (_, v) = env.get(&format!("/v1/keys/{rot}")).await;
        (v["prefix"] != first_prefix).then_some(())
    })
    .await;
    assert_eq!(env.code(&rot_key, "gpt-4o-mini").await, "ok");
    let log = env.g.log_text();
    assert!(log.contains(&format!(
        "event key.idle_disabled actor=system group=grp_c key={idle}"
    )));
    assert!(log.contains(&format!(
        "event key.rotated actor=system group=grp_prod key={rot}"
    )));
    assert!(!log.contains(&rot_key) && !log.contains(&idle_key) && !log.contains(&busy_key));
}
