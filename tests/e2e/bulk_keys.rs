//! End to end: `PATCH /v1/groups/{id}/keys` (docs/admin-api.md "Bulk key updates"): one
//! change to every API key of a group, with the checks of a single PATCH; keys it cannot
//! apply to are skipped with the reason; durable, audited per key, enforced on the next
//! request; permission as the other bulk operations.

use crate::harness::*;
use serde_json::{json, Value};

fn skipped_reason<'a>(v: &'a Value, id: &str) -> Option<&'a str> {
    v["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["reason"].as_str())
}

async fn token(admin: &Admin, body: Value) -> String {
    let (s, v) = admin.post("/v1/tokens", body).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_patch_changes_every_api_key_of_the_group() {
    let mock = mock().await;
    let policy = basic_policy(
        mock.addr(),
        "[[groups]]\nid = \"grp_other\"\norg = \"acme\"\n",
    )
    .replace("max_tokens = 4000\n", "max_tokens = 4000\nrpm = 500\n")
    .with_admin();
    let mut g = start_gateway_env(&policy, ADMIN_ENV);
    let admin = g.admin(ROOT);
    let mut made = vec![];
    for name in ["a", "b", "c"] {
        let k = admin
            .new_key(json!({"name": name, "group": "grp_prod", "rpm": 10, "tags": {"old": "1"}}))
            .await;
        made.push((
            k["id"].as_str().unwrap().to_string(),
            k["key"].as_str().unwrap().to_string(),
        ));
    }
    let (a, b, c) = (&made[0], &made[1], &made[2]);
    admin.ok("DELETE", &format!("/v1/keys/{}", c.0), None).await;
    assert_eq!(
        g.call(CHAT, &a.1, &[], &chat_body("gpt-4o-mini"))
            .await
            .status,
        200
    );

    // One change: tags, an expiry and a model list for every live API key.
    let v = admin
        .ok(
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(
                json!({"tags": {"team": "growth"}, "ttl": "30d", "models": ["gpt-4o"], "rpm": 100}),
            ),
        )
        .await;
    assert_eq!(v["affected"], 2, "{v}");
    assert!(
        skipped_reason(&v, "key_main")
            .unwrap()
            .starts_with("managed_by_config"),
        "{v}"
    );
    assert!(
        skipped_reason(&v, &c.0).unwrap().starts_with("key_revoked"),
        "{v}"
    );
    for id in [&a.0, &b.0] {
        let (_, k) = admin.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(k["tags"], json!({"team": "growth"}), "{k}");
        assert_eq!(k["models"], json!(["gpt-4o"]), "{k}");
        assert_eq!(k["limits"]["rpm"], 100, "{k}");
        assert!(k["expires_at"].is_string(), "{k}");
    }
    // Enforced from the next request: gpt-4o-mini is outside the keys' new list.
    let r = g.call(CHAT, &a.1, &[], &chat_body("gpt-4o-mini")).await;
    assert_eq!((r.status, r.code()), (403, "model_not_allowed".to_string()));
    assert_eq!(
        g.call(CHAT, &b.1, &[], &chat_body("gpt-4o")).await.status,
        200
    );
    // The file key is untouched.
    let r = g.call(CHAT, &key(1), &[], &chat_body("gpt-4o-mini")).await;
    assert_eq!(r.status, 200);

    // One audit event per changed key, with before and after.
    let (_, audit) = admin.get("/v1/audit?type=key.updated&limit=100").await;
    let events = audit["data"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    for e in events {
        assert_eq!(
            e["detail"]["before"]["spec"]["tags"],
            json!({"old": "1"}),
            "{e}"
        );
        assert_eq!(
            e["detail"]["after"]["spec"]["tags"],
            json!({"team": "growth"}),
            "{e}"
        );
    }

    // Looser than the group: every key skipped, naming both values; nothing changed.
    let v = admin
        .ok(
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"rpm": 900})),
        )
        .await;
    assert_eq!(v["affected"], 0, "{v}");
    let why = skipped_reason(&v, &a.0).unwrap();
    assert!(
        why.contains("900") && why.contains("group grp_prod rpm 500"),
        "{why}"
    );
    let (_, k) = admin.get(&format!("/v1/keys/{}", a.0)).await;
    assert_eq!(k["limits"]["rpm"], 100);

    // A value wrong on its own, an empty body, a group field: 400, nothing changed.
    let (s, e) = admin
        .call(
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"allowed_cidrs": ["nope"]})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("allowed_cidrs")),
        "{e}"
    );
    let (s, _) = admin
        .call("PATCH", "/v1/groups/grp_prod/keys", Some(json!({})))
        .await;
    assert_eq!(s, 400);
    let (s, e) = admin
        .call(
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"group": "x"})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("group")),
        "{e}"
    );
    let (s, _) = admin
        .call("PATCH", "/v1/groups/nope/keys", Some(json!({"rpm": 1})))
        .await;
    assert_eq!(s, 404);

    // Permission: a viewer may not; a group admin of another group sees no such group.
    let viewer = token(&admin, json!({"name": "fin", "role": "viewer"})).await;
    let (s, _) = admin
        .call_as(
            &viewer,
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"rpm": 1})),
        )
        .await;
    assert_eq!(s, 403);
    let other = token(
        &admin,
        json!({"name": "ga", "role": "group_admin", "groups": ["grp_other"]}),
    )
    .await;
    let (s, _) = admin
        .call_as(
            &other,
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"rpm": 1})),
        )
        .await;
    assert_eq!(s, 404);

    // `null` clears, and the change survives a restart (it was durable before the 2xx).
    admin
        .ok(
            "PATCH",
            "/v1/groups/grp_prod/keys",
            Some(json!({"models": null})),
        )
        .await;
    g.restart(ADMIN_ENV);
    let admin = g.admin(ROOT);
    let (_, k) = admin.get(&format!("/v1/keys/{}", b.0)).await;
    assert_eq!(k["models"], Value::Null, "{k}");
    assert_eq!(k["tags"], json!({"team": "growth"}), "{k}");
    assert_eq!(
        g.call(CHAT, &b.1, &[], &chat_body("gpt-4o-mini"))
            .await
            .status,
        200
    );
}
