//! End to end: the audit trail (docs/admin-api.md): admin changes with actor and before/after,
//! reloads, refusals aggregated per key, code and minute, filters and pagination, scope,
//! and the hash chain catching an event altered in the store offline.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A refusal "minute" of a thousand years: 10,000 refusals fall into one bucket whatever
/// the wall clock (an hour-long one split them when the run crossed hh:00).
const ENV: &[(&str, &str)] = &[
    ("TEST_ADMIN_TOKEN", ROOT),
    ("TOLLGATE_REFUSAL_MINUTE_MS", "31557600000000"),
];

/// The audit events `query` selects.
async fn events(admin: &Admin, query: &str) -> Vec<Value> {
    let (s, v) = admin.get(&format!("/v1/audit?{query}")).await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_trail_of_changes_refusals_and_tampering() {
    let mock = mock().await;
    let policy =
        basic_policy(mock.addr(), "[[groups]]\nid = \"grp_c\"\norg = \"acme\"\n").with_admin();
    let mut g = start_gateway_env(&policy, ENV);
    let admin = g.admin(ROOT);
    // A group admin token makes changes: its id is the actor.
    let (_, t) = admin
        .post(
            "/v1/tokens",
            json!({"name": "lead", "role": "group_admin", "groups": ["grp_prod"]}),
        )
        .await;
    let (lead_id, lead) = (
        t["id"].as_str().unwrap().to_string(),
        t["token"].as_str().unwrap().to_string(),
    );
    let (s, k) = admin
        .call_as(
            &lead,
            "POST",
            "/v1/keys",
            Some(json!({"name": "svc", "group": "grp_prod", "rpm": 1})),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let kid = k["id"].as_str().unwrap().to_string();
    let secret = k["key"].as_str().unwrap().to_string();
    admin
        .call_as(
            &lead,
            "PATCH",
            &format!("/v1/keys/{kid}"),
            Some(json!({"name": "svc-renamed"})),
        )
        .await;
    admin
        .call_as(&lead, "POST", "/v1/groups/grp_prod/pause", Some(json!({})))
        .await;
    admin
        .call_as(&lead, "POST", "/v1/groups/grp_prod/resume", Some(json!({})))
        .await;
    g.signal(libc::SIGHUP);
    g.wait_reloads(1, 0);

    let created = events(&admin, "type=key.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor"], lead_id.as_str());
    assert_eq!(created[0]["key_id"], kid.as_str());
    assert_eq!(created[0]["group"], "grp_prod");
    assert_eq!(created[0]["org"], "acme");
    assert!(
        !created[0].to_string().contains(&secret),
        "no secret in the audit trail"
    );
    let updated = events(&admin, &format!("type=key.updated&key={kid}")).await;
    assert_eq!(updated[0]["detail"]["before"]["spec"]["name"], "svc");
    assert_eq!(updated[0]["detail"]["after"]["spec"]["name"], "svc-renamed");
    let paused = events(&admin, "type=group.paused").await;
    assert_eq!(paused[0]["actor"], lead_id.as_str());
    assert_eq!(paused[0]["detail"]["before"]["state"], "active");
    assert_eq!(paused[0]["detail"]["after"]["state"], "paused");
    let token_made = events(&admin, "type=token.created").await;
    assert_eq!(token_made[0]["actor"], "root");
    // Newest first; actor filter; a reload is there too.
    let mine = events(&admin, &format!("actor={lead_id}")).await;
    let types: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "group.resumed",
            "group.paused",
            "key.updated",
            "key.created"
        ]
    );
    wait_for(
        Duration::from_secs(5),
        "a config.reloaded event",
        || async {
            let reloads = events(&admin, "type=config.reloaded").await;
            (!reloads.is_empty()).then_some(())
        },
    )
    .await;

    // 10,000 refusals: one event per key and code, with the count.
    let client = client();
    let url = g.url("/v1/chat/completions");
    let mut tasks = vec![];
    for _ in 0..20 {
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u64;
            for _ in 0..501 {
                let r = client
                    .post(&url)
                    .bearer_auth(&secret)
                    .json(&json!({"model": "gpt-4o-mini", "messages": []}))
                    .send()
                    .await
                    .unwrap();
                refused += u64::from(r.status().as_u16() == 429);
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert!(refused >= 10_000, "{refused}");
    // A graceful stop writes the open bucket; then start again.
    g.stop(libc::SIGTERM);
    g.restart(ENV);
    let agg = events(&admin, &format!("type=request.refused&key={kid}")).await;
    assert_eq!(agg.len(), 1, "{agg:?}");
    assert_eq!(agg[0]["detail"]["after"]["code"], "rate_limit_exceeded");
    assert_eq!(agg[0]["detail"]["after"]["count"], refused);

    // Pagination walks everything once, newest first.
    let all = events(&admin, "limit=1000").await;
    let mut walked = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let (_, v) = admin.get(&format!("/v1/audit?{q}")).await;
        walked.extend(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.into()),
            None => break,
        }
    }
    assert_eq!(
        walked,
        all.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
    );
    // A scoped viewer sees its group's events only; the chain check is for admins.
    let (_, t) = admin
        .post(
            "/v1/tokens",
            json!({"name": "v", "role": "viewer", "groups": ["grp_c"]}),
        )
        .await;
    let viewer = t["token"].as_str().unwrap().to_string();
    let (s, v) = admin.call_as(&viewer, "GET", "/v1/audit", None).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["group"] == "grp_c"),
        "{v}"
    );
    let (s, _) = admin
        .call_as(&viewer, "GET", "/v1/audit/verify", None)
        .await;
    assert_eq!(s, 403);

    // The chain holds; then one event is altered in the store with the gateway stopped.
    let (_, v) = admin.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    let n = v["events"].as_u64().unwrap();
    assert_eq!(n as usize, events(&admin, "limit=1000").await.len());
    let victim = events(&admin, "type=key.created").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    g.stop(libc::SIGKILL);
    {
        let store = Store::open(&g.data_dir(), Duration::from_secs(5)).unwrap();
        let key = hex::decode(victim.strip_prefix("evt_").unwrap()).unwrap();
        let raw = store.audit.get(&key).unwrap().unwrap();
        let forged = String::from_utf8(raw.to_vec())
            .unwrap()
            .replace(&lead_id, "root");
        store.audit.insert(key, forged.as_bytes()).unwrap();
        store.flush().unwrap();
    }
    g.restart(ENV);
    let (_, v) = admin.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_bad"], victim.as_str());
}
