//! End to end: admin tokens, roles and scopes (docs/admin-api.md "Tokens and roles", "Self-service
//! policy"). The table test walks every route the router serves × every role × an object
//! inside and outside the token's scope; a route without a row fails it.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

struct Env {
    g: GatewayProc,
    admin: Admin,
    _mock: MockProvider,
}

fn policy(mock: SocketAddr) -> String {
    basic_policy(
        mock,
        r#"
[[groups]]
id = "grp_b"
org = "acme"
models = ["claude-*"]

[[groups]]
id = "grp_c"
org = "acme"

[[groups]]
id = "grp_ss"
org = "acme"
rpm = 1000
self_service = { enabled = true, max_keys_per_owner = 3, require_expiry = true, max_ttl = "30d", limits = { rpm = 600, budget_usd = 50 } }
"#,
    )
    .with_admin()
    .replace(
        "max_tokens = 4000\n",
        "max_tokens = 4000\nself_service = { enabled = true, max_keys_per_owner = 1000 }\n",
    )
}

async fn start() -> Env {
    let mock = mock().await;
    let g = start_gateway_env(&policy(mock.addr()), ADMIN_ENV);
    Env {
        admin: g.admin(ROOT),
        g,
        _mock: mock,
    }
}

impl Env {
    async fn token(&self, body: Value) -> (String, String) {
        let (s, v) = self.admin.post("/v1/tokens", body).await;
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().into(),
            v["token"].as_str().unwrap().into(),
        )
    }

    /// A key made by root; returns its id.
    async fn key(&self, group: &str, owner: &str) -> String {
        let body = json!({"name": "k", "group": group, "owner": owner, "ttl": "1d"});
        self.admin.new_key(body).await["id"]
            .as_str()
            .unwrap()
            .into()
    }
}

/// The ids of a list's `data`.
fn ids(list: &Value) -> Vec<&str> {
    let data = list["data"].as_array().unwrap();
    data.iter().map(|k| k["id"].as_str().unwrap()).collect()
}

/// Expected status per role, `[in scope, out of scope]` for admin, group_admin, viewer,
/// developer.
fn expected() -> HashMap<(&'static str, &'static str), [[u16; 2]; 4]> {
    let all200 = [[200, 200]; 4];
    let admin_only = |ok: u16| [[ok, ok], [403, 403], [403, 403], [403, 403]];
    let manage = [[200, 200], [200, 404], [403, 403], [200, 404]];
    let edit = [[200, 200], [200, 404], [403, 403], [403, 403]];
    let group_write = edit;
    let spend_scoped = [[200, 200], [200, 404], [200, 404], [403, 403]];
    let spend_all = [[200, 200], [200, 200], [200, 200], [403, 403]];
    HashMap::from([
        (("GET", "/healthz"), all200),
        (("GET", "/readyz"), all200),
        (("GET", "/metrics"), admin_only(200)),
        (("POST", "/v1/reload"), admin_only(200)),
        (("GET", "/v1/whoami"), all200),
        (("GET", "/v1/policy"), admin_only(200)),
        (("POST", "/v1/tokens"), admin_only(201)),
        (("GET", "/v1/tokens"), admin_only(200)),
        (("DELETE", "/v1/tokens/{id}"), admin_only(200)),
        (
            ("POST", "/v1/keys"),
            [[201, 201], [201, 404], [403, 403], [201, 404]],
        ),
        (("GET", "/v1/keys"), all200),
        (
            ("POST", "/v1/keys/batch"),
            [[201, 201], [201, 404], [403, 403], [403, 403]],
        ),
        (
            ("GET", "/v1/keys/{id}"),
            [[200, 200], [200, 404], [200, 404], [200, 404]],
        ),
        (("PATCH", "/v1/keys/{id}"), edit),
        (("DELETE", "/v1/keys/{id}"), manage),
        (("POST", "/v1/keys/{id}/disable"), manage),
        (("POST", "/v1/keys/{id}/enable"), manage),
        (("POST", "/v1/keys/{id}/regenerate"), manage),
        (("POST", "/v1/keys/{id}/move"), edit),
        (
            ("GET", "/v1/groups"),
            [[200, 200], [200, 200], [200, 200], [403, 403]],
        ),
        (
            ("GET", "/v1/groups/{id}"),
            [[200, 200], [200, 404], [200, 404], [403, 403]],
        ),
        (("POST", "/v1/groups/{id}/pause"), group_write),
        (("POST", "/v1/groups/{id}/resume"), group_write),
        (("POST", "/v1/groups/{id}/quarantine"), group_write),
        (("POST", "/v1/groups/{id}/keys/disable"), group_write),
        (("POST", "/v1/groups/{id}/keys/enable"), group_write),
        (("POST", "/v1/groups/{id}/keys/revoke"), group_write),
        (("PATCH", "/v1/groups/{id}/keys"), group_write),
        (("GET", "/v1/spend/groups/{id}"), spend_scoped),
        (("GET", "/v1/spend/groups/{id}/by-model"), spend_scoped),
        (("GET", "/v1/spend/groups/{id}/by-key"), spend_scoped),
        (("GET", "/v1/spend/groups/{id}/timeline"), spend_scoped),
        (("GET", "/v1/spend/keys/{id}"), spend_scoped),
        (("GET", "/v1/spend/orgs/{id}"), spend_all),
        (("GET", "/v1/spend/tags/{tag}"), spend_all),
        (("GET", "/v1/invoices"), spend_all),
        (("GET", "/v1/audit"), spend_all),
        (("GET", "/v1/audit/verify"), admin_only(200)),
        // Providers are shared by every group: unscoped tokens only (the viewer is scoped).
        (
            ("GET", "/v1/reconciliation"),
            [[200, 200], [403, 403], [403, 403], [403, 403]],
        ),
        (("POST", "/v1/reconciliation/run"), admin_only(200)),
        // Log sinks are shared by every group: unscoped tokens only.
        (
            ("GET", "/v1/log_sinks"),
            [[200, 200], [403, 403], [403, 403], [403, 403]],
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_by_role_and_scope() {
    let env = start().await;
    let scope = json!(["grp_prod", "grp_b"]);
    let roles = [
        env.token(json!({"name": "a", "role": "admin"})).await.1,
        env.token(json!({"name": "ga", "role": "group_admin", "groups": scope}))
            .await
            .1,
        env.token(json!({"name": "v", "role": "viewer", "groups": scope}))
            .await
            .1,
        env.token(json!({"name": "d", "role": "developer", "groups": scope, "owner": "dev1"}))
            .await
            .1,
    ];
    let table = expected();
    let routes = route_list();
    for (method, path) in &routes {
        let row = table
            .get(&(method.as_str(), path.as_str()))
            .unwrap_or_else(|| panic!("no row for {method} {path}: add one to expected()"));
        for (r, token) in roles.iter().enumerate() {
            for (inside, want) in [(true, row[r][0]), (false, row[r][1])] {
                // Fresh objects for each call: destructive routes must not affect the next.
                let group = if inside { "grp_prod" } else { "grp_c" };
                let key = env.key(group, "dev1").await;
                let tok = env
                    .token(json!({"name": "victim", "role": "viewer"}))
                    .await
                    .0;
                let url = path
                    .replace("/v1/keys/{id}", &format!("/v1/keys/{key}"))
                    .replace("/v1/groups/{id}", &format!("/v1/groups/{group}"))
                    .replace("/v1/tokens/{id}", &format!("/v1/tokens/{tok}"))
                    .replace(
                        "/v1/spend/groups/{id}",
                        &format!("/v1/spend/groups/{group}"),
                    )
                    .replace("/v1/spend/keys/{id}", &format!("/v1/spend/keys/{key}"))
                    .replace("/v1/spend/orgs/{id}", "/v1/spend/orgs/acme")
                    .replace("/v1/spend/tags/{tag}", "/v1/spend/tags/team");
                let body = match (method.as_str(), path.as_str()) {
                    ("POST", "/v1/keys") => {
                        Some(json!({"name": "new", "group": group, "ttl": "1d"}))
                    }
                    ("POST", "/v1/keys/batch") => Some(json!({"count": 2, "group": group})),
                    ("PATCH", _) => Some(json!({"metadata": {"touched": true}})),
                    ("POST", "/v1/keys/{id}/move") => Some(json!({"group": "grp_b"})),
                    ("POST", "/v1/tokens") => Some(json!({"name": "t", "role": "viewer"})),
                    ("POST", _) => Some(json!({})),
                    _ => None,
                };
                let (got, v) = env.admin.call_as(token, method, &url, body).await;
                assert_eq!(
                    got,
                    want,
                    "{method} {path} as {} ({}): {v}",
                    ["admin", "group_admin", "viewer", "developer"][r],
                    if inside { "in scope" } else { "out of scope" }
                );
                if got == 403 {
                    assert_eq!(v["error"]["code"], "forbidden", "{v}");
                }
                if got == 404 {
                    assert_eq!(v["error"]["code"], "not_found", "{v}");
                }
            }
        }
        // The root token resumes groups the row may have paused.
        for g in ["grp_prod", "grp_c"] {
            env.admin
                .post(&format!("/v1/groups/{g}/resume"), json!({}))
                .await;
        }
    }
    assert_eq!(
        routes.len(),
        table.len(),
        "rows for routes that are not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_service_for_a_developer() {
    let env = start().await;
    let (_, dev) = env
        .token(json!({"name": "dev", "role": "developer", "groups": ["grp_ss", "grp_c"], "owner": "alice"}))
        .await;
    let (_, other) = env
        .token(json!({"name": "dev2", "role": "developer", "groups": ["grp_ss"], "owner": "bob"}))
        .await;
    // Within the ceilings: owner forced, ceilings defaulted; the key works.
    let (s, v) = env
        .admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "mine", "group": "grp_ss", "owner": "mallory", "ttl": "7d"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["owner"], "alice");
    assert_eq!(v["limits"]["rpm"], 600);
    assert_eq!(v["limits"]["budget_usd"], 50.0);
    let mine = v["id"].as_str().unwrap().to_string();
    let secret = v["key"].as_str().unwrap().to_string();
    let chat = json!({"model": "gpt-4o-mini", "messages": []});
    assert_eq!(env.g.call(CHAT, &secret, &[], &chat).await.status, 200);
    let refused = [
        // Above a ceiling: 400 naming the field.
        (
            json!({"name": "x", "group": "grp_ss", "rpm": 700, "ttl": "1d"}),
            400,
            "param",
            "rpm",
        ),
        (
            json!({"name": "x", "group": "grp_ss", "budget_usd": 60, "ttl": "1d"}),
            400,
            "param",
            "budget_usd",
        ),
        // Expiry required, and capped by max_ttl.
        (
            json!({"name": "x", "group": "grp_ss"}),
            400,
            "param",
            "expires_at",
        ),
        (
            json!({"name": "x", "group": "grp_ss", "ttl": "60d"}),
            400,
            "param",
            "expires_at",
        ),
        // Self-service off in grp_c.
        (
            json!({"name": "x", "group": "grp_c", "ttl": "1d"}),
            403,
            "code",
            "self_service_disabled",
        ),
    ];
    for (body, status, field, want) in refused {
        let (s, v) = env
            .admin
            .call_as(&dev, "POST", "/v1/keys", Some(body))
            .await;
        assert_eq!((s, v["error"][field].as_str()), (status, Some(want)), "{v}");
    }
    // max_keys_per_owner = 3 live keys: two more fit, the fourth does not; revoking one frees a slot.
    for _ in 0..2 {
        let (s, v) = env
            .admin
            .call_as(
                &dev,
                "POST",
                "/v1/keys",
                Some(json!({"name": "more", "group": "grp_ss", "ttl": "1d"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = env
        .admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "one too many", "group": "grp_ss", "ttl": "1d"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("key_quota_exceeded")),
        "{v}"
    );
    // Another developer: cannot see, read, regenerate or revoke alice's key.
    let (_, list) = env.admin.call_as(&other, "GET", "/v1/keys", None).await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
    for (m, p) in [
        ("GET", format!("/v1/keys/{mine}")),
        ("POST", format!("/v1/keys/{mine}/regenerate")),
        ("DELETE", format!("/v1/keys/{mine}")),
        ("POST", format!("/v1/keys/{mine}/disable")),
    ] {
        let (s, v) = env.admin.call_as(&other, m, &p, Some(json!({}))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{p}: {v}"
        );
    }
    // Alice sees only her own keys (not root's in the same group).
    let roots = env.key("grp_ss", "carol").await;
    let (_, list) = env.admin.call_as(&dev, "GET", "/v1/keys", None).await;
    let listed = ids(&list);
    assert_eq!(listed.len(), 3, "{list}");
    assert!(!listed.contains(&roots.as_str()));
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["owner"] == "alice"));
    // Revoking one of hers frees a slot.
    let (s, _) = env
        .admin
        .call_as(&dev, "DELETE", &format!("/v1/keys/{mine}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .admin
        .call_as(
            &dev,
            "POST",
            "/v1/keys",
            Some(json!({"name": "again", "group": "grp_ss", "ttl": "1d"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(env.g.call(CHAT, &secret, &[], &chat).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_group_admins_and_token_lifetimes() {
    let mut env = start().await;
    let (_, viewer) = env
        .token(json!({"name": "finance", "role": "viewer", "groups": ["grp_prod"]}))
        .await;
    let (ga_id, ga) = env
        .token(json!({"name": "lead", "role": "group_admin", "groups": ["grp_prod"]}))
        .await;
    let inside = env.key("grp_prod", "x").await;
    let outside = env.key("grp_c", "x").await;
    // A viewer reads its groups' keys and groups; every write is 403.
    let (s, list) = env.admin.call_as(&viewer, "GET", "/v1/keys", None).await;
    assert_eq!(s, 200);
    let listed = ids(&list);
    assert!(
        listed.contains(&inside.as_str()) && !listed.contains(&outside.as_str()),
        "{list}"
    );
    let (_, groups) = env.admin.call_as(&viewer, "GET", "/v1/groups", None).await;
    assert_eq!(ids(&groups), vec!["grp_prod"]);
    for (m, p) in [
        ("POST", "/v1/keys".to_string()),
        ("DELETE", format!("/v1/keys/{inside}")),
        ("POST", "/v1/groups/grp_prod/pause".to_string()),
        ("POST", "/v1/tokens".to_string()),
    ] {
        let (s, v) = env
            .admin
            .call_as(
                &viewer,
                m,
                &p,
                Some(json!({"name": "x", "group": "grp_prod", "role": "viewer"})),
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{p}: {v}"
        );
    }
    // Admin tokens are never scoped (a scoped admin could mint an unscoped one).
    let (s, v) = env
        .admin
        .post(
            "/v1/tokens",
            json!({"name": "x", "role": "admin", "groups": ["grp_prod"]}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("groups")),
        "{v}"
    );
    // A group admin cannot touch another group's keys (404) or make tokens (403).
    let (s, _) = env
        .admin
        .call_as(
            &ga,
            "POST",
            &format!("/v1/keys/{outside}/disable"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = env
        .admin
        .call_as(
            &ga,
            "POST",
            "/v1/tokens",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = env
        .admin
        .call_as(
            &ga,
            "POST",
            &format!("/v1/keys/{inside}/disable"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Tokens are never listed raw; they survive a restart; a revoked one is 401 next call.
    let (_, tokens) = env.admin.get("/v1/tokens").await;
    let text = tokens.to_string();
    assert!(!text.contains(&ga) && !text.contains(&viewer));
    env.g.restart(ADMIN_ENV);
    let (s, _) = env.admin.call_as(&ga, "GET", "/v1/keys", None).await;
    assert_eq!(s, 200);
    let (s, _) = env
        .admin
        .call("DELETE", &format!("/v1/tokens/{ga_id}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = env.admin.call_as(&ga, "GET", "/v1/keys", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_admin_token"))
    );
    env.g.restart(ADMIN_ENV);
    let (s, _) = env.admin.call_as(&ga, "GET", "/v1/keys", None).await;
    assert_eq!(s, 401);
    // The audit trail names the acting token: the group admin's disable, in the log.
    let log = env.g.log_text();
    assert!(
        log.contains(&format!(
            "event key.disabled actor={ga_id} group=grp_prod key={inside}"
        )),
        "{log}"
    );
    assert!(log.contains("event token.revoked actor=root"));
    assert!(
        !log.contains(&ga) && !log.contains(&viewer),
        "a raw token in the log"
    );
}

#[test]
fn readme_carries_the_permission_matrix_of_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = "<!-- permission-matrix:begin -->\n";
    let start = readme
        .find(begin)
        .expect("README has no permission-matrix markers")
        + begin.len();
    let end = readme[start..]
        .find("<!-- permission-matrix:end -->")
        .unwrap()
        + start;
    assert_eq!(
        &readme[start..end],
        permission_matrix(),
        "README's permission matrix differs from tollgate::control::admin::authz::matrix()"
    );
}
