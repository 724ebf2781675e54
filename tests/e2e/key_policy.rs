//! End to end: the request policy (docs/policy.md "Request policy") — `allowed_providers`,
//! `required_params`, `fixed_params`, `allowed_origins` — in the file and through the
//! admin API, narrow-only inheritance refused by `-t` and the API naming both values, the
//! refusal codes, routing that never reaches a disallowed provider (a failing first
//! target, retries and fallbacks), fixed params seen by the mock on direct and translated
//! paths, CORS preflights and headers, and `POST /v1/messages/count_tokens` both ways.

use crate::harness::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

const ALLOWED: &str = "http://allowed.example";
const GROUP_ONLY: &str = "http://also.example";

/// `basic_policy` plus provider "other" (OpenAI-style, on `other`), models it serves, and
/// org `rp` with two groups: `grp_rp` (narrowed, key 31 narrower still) and `grp_open`
/// (the org's policy only, key 32, `rpm = 1`).
fn policy(mock: SocketAddr, other: SocketAddr) -> String {
    let extra = format!(
        r#"
[[providers]]
id = "other"
api = "openai"
base_url = "http://{other}"

[[models]]
name = "multi"
targets = [{{ provider = "other", weight = 1000000 }}, {{ provider = "oa", weight = 1 }}]

[[models]]
name = "only-other"
targets = [{{ provider = "other" }}]

[[models]]
name = "other-fb"
targets = [{{ provider = "other" }}]

[[orgs]]
id = "rp"
allowed_providers = ["oa", "an", "oth*"]
fixed_params = {{ store = false }}

[[groups]]
id = "grp_rp"
org = "rp"
allowed_providers = ["oa", "an"]
required_params = ["user"]
allowed_origins = ["{ALLOWED}", "{GROUP_ONLY}"]
fallbacks = {{ "other-fb" = ["gpt-4o-mini"] }}

[[keys]]
id = "key_rp"
group = "grp_rp"
sha256 = "{k31}"
allowed_origins = ["{ALLOWED}"]
fixed_params = {{ temperature = 0.25 }}

[[groups]]
id = "grp_open"
org = "rp"
models = ["gpt-4o-mini", "claude-*", "multi", "only-other"]
rpm = 1

[[keys]]
id = "key_open"
group = "grp_open"
sha256 = "{k32}"
"#,
        k31 = sha(&key(31)),
        k32 = sha(&key(32)),
    );
    basic_policy(mock, &extra).with_admin().with_request_log()
}

fn chat(model: &str, extra: Value) -> Value {
    let mut v = json!({"model": model, "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

fn messages(model: &str, extra: Value) -> Value {
    let mut v = json!({"model": model, "max_tokens": 8,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Path and JSON body of the last request the mock received.
fn last(mock: &MockProvider) -> (String, Value) {
    let r = mock.received();
    let l = r.last().expect("the mock got a request");
    (l.path.clone(), l.json().unwrap_or_default())
}

async fn setup() -> (MockProvider, MockProvider, GatewayProc) {
    let main = mock().await;
    let other = mock().await;
    other.set_behaviour(answering(500));
    let g = start_gateway_env(
        &policy(main.addr(), other.addr()),
        &[("TEST_ADMIN_TOKEN", ROOT)],
    );
    (main, other, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_never_left_and_models_are_filtered() {
    let (main, other, g) = setup().await;
    let (rp, open) = (key(31), key(32));
    let user = json!({"user": "u1"});

    // The failing first target is really tried for a key the org's policy lets reach it…
    let a = g.call(CHAT, &open, &[], &chat("multi", json!({}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        !other.received().is_empty(),
        "the open key tried provider other first"
    );
    assert_eq!(a.header("x-tollgate-target"), Some("oa/multi"));

    // …and never for the narrowed key: routing, retries and fallbacks skip it.
    other.clear_received();
    for _ in 0..5 {
        let a = g.call(CHAT, &rp, &[], &chat("multi", user.clone())).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header("x-tollgate-target"), Some("oa/multi"));
    }
    let a = g
        .call(CHAT, &rp, &[], &chat("other-fb", user.clone()))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header("x-tollgate-target"),
        Some("oa/gpt-4o-mini-2024-07-18"),
        "served by the fallback"
    );
    assert!(other.received().is_empty(), "provider other was reached");

    // Nothing left: 403 provider_not_allowed, both shapes.
    let a = g
        .call(CHAT, &rp, &[], &chat("only-other", user.clone()))
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "provider_not_allowed"),
        "{}",
        a.text
    );
    assert!(a.text.contains("only-other"), "{}", a.text);
    let a = g
        .call(MESSAGES, &rp, &[], &messages("only-other", user.clone()))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"]["type"], "permission_error");
    assert!(other.received().is_empty());

    // /v1/models: only models with a target the key may reach.
    let models = |k: String| {
        let g = &g;
        async move {
            let r = client()
                .get(g.url("/v1/models"))
                .bearer_auth(k)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let listed = models(rp.clone()).await;
    assert!(listed.contains(&"multi".to_string()), "{listed:?}");
    assert!(
        listed.contains(&"claude-sonnet-4-5".to_string()),
        "{listed:?}"
    );
    assert!(!listed.contains(&"only-other".to_string()), "{listed:?}");
    assert!(!listed.contains(&"other-fb".to_string()), "{listed:?}");
    let listed = models(open.clone()).await;
    assert!(listed.contains(&"only-other".to_string()), "{listed:?}");
    drop(main);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_and_fixed_params_on_direct_and_translated_paths() {
    let (main, _other, g) = setup().await;
    let rp = key(31);

    // required_params: absent or null is 400 missing_parameter naming it.
    for body in [
        chat("gpt-4o-mini", json!({})),
        chat("gpt-4o-mini", json!({"user": null})),
    ] {
        let a = g.call(CHAT, &rp, &[], &body).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (400, "missing_parameter"),
            "{}",
            a.text
        );
        assert_eq!(a.json()["error"]["param"], "user");
    }
    let a = g
        .call(
            MESSAGES,
            &rp,
            &[],
            &messages("claude-sonnet-4-5", json!({})),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");

    // fixed_params: the org's store = false on OpenAI-style targets (whatever the client
    // sent), never on Anthropic ones; the key's temperature on both, after translation.
    // (`user` is no Anthropic field, so translating a messages body that has it is refused:
    // the key without required params sends that one.)
    let open = key(32);
    let cases = [
        (
            &rp,
            CHAT,
            chat(
                "gpt-4o-mini",
                json!({"user": "u", "store": true, "temperature": 1.5}),
            ),
            "/v1/chat/completions",
            true,
        ),
        (
            &open,
            MESSAGES,
            messages("gpt-4o-mini", json!({"temperature": 1.5})),
            "/v1/chat/completions",
            true,
        ),
        (
            &rp,
            MESSAGES,
            messages(
                "claude-sonnet-4-5",
                json!({"user": "u", "temperature": 1.5}),
            ),
            "/v1/messages",
            false,
        ),
        (
            &rp,
            CHAT,
            chat(
                "claude-sonnet-4-5",
                json!({"user": "u", "store": true, "temperature": 1.5}),
            ),
            "/v1/messages",
            false,
        ),
    ];
    for (k, route, body, upstream, openai) in cases {
        let a = g.call(route, k, &[], &body).await;
        assert_eq!(a.status, 200, "{route} {body}: {}", a.text);
        let (path, sent) = last(&main);
        assert_eq!(path, upstream, "{route} {body}");
        let want_temp = if *k == rp { 0.25 } else { 1.5 };
        assert_eq!(
            sent["temperature"], want_temp,
            "{route} → {upstream}: {sent}"
        );
        if openai {
            assert_eq!(sent["store"], false, "{route} → {upstream}: {sent}");
        } else {
            assert!(sent.get("store").is_none(), "no store on Anthropic: {sent}");
        }
    }
    // Streams too.
    let a = g
        .call(
            CHAT,
            &rp,
            &[],
            &chat(
                "gpt-4o-mini",
                json!({"user": "u", "stream": true, "store": true}),
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (_, sent) = last(&main);
    assert_eq!(sent["store"], false, "{sent}");
    assert_eq!(sent["temperature"], 0.25, "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_cors_preflight_and_headers() {
    let (_main, _other, g) = setup().await;
    let rp = key(31);
    let body = chat("gpt-4o-mini", json!({"user": "u"}));

    // The key's origin: 200 with CORS headers; no Origin: 200 without them.
    let a = g.call(CHAT, &rp, &[("origin", ALLOWED)], &body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("access-control-allow-origin"), Some(ALLOWED));
    assert!(a
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-request-id"));
    assert!(a.header("vary").unwrap_or_default().contains("Origin"));
    let a = g.call(CHAT, &rp, &[], &body).await;
    assert_eq!(a.status, 200);
    assert!(a.header("access-control-allow-origin").is_none());

    // The group's but not the key's: refused, without CORS headers.
    let a = g
        .call(
            CHAT,
            &rp,
            &[("origin", GROUP_ONLY), ("x-request-id", "o-refused")],
            &body,
        )
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "origin_not_allowed"),
        "{}",
        a.text
    );
    assert!(a.header("access-control-allow-origin").is_none());
    let line = g.log_line("o-refused").await;
    assert_eq!(line["code"], "origin_not_allowed", "{line}");

    // A gateway error to an allowed origin carries the headers (the page can read it).
    let a = g
        .call(
            CHAT,
            &rp,
            &[("origin", ALLOWED)],
            &chat("gpt-4o-mini", json!({})),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.header("access-control-allow-origin"), Some(ALLOWED));

    // Streams carry them too; a 401 (no key known yet) to a listed origin as well.
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let a = g.call(CHAT, &rp, &[("origin", ALLOWED)], &stream).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains("data: "), "{}", a.text);
    assert_eq!(a.header("access-control-allow-origin"), Some(ALLOWED));
    let a = g
        .call(CHAT, "tg-nope", &[("origin", GROUP_ONLY)], &body)
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.header("access-control-allow-origin"), Some(GROUP_ONLY));
    let a = g
        .call(CHAT, "tg-nope", &[("origin", "http://evil.example")], &body)
        .await;
    assert!(a.header("access-control-allow-origin").is_none());

    // Preflights: answered without a key for any listed origin.
    let preflight = |origin: &'static str, headers: &'static str| {
        let url = g.url(CHAT);
        async move {
            answer(
                client()
                    .request(reqwest::Method::OPTIONS, url)
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", headers),
            )
            .await
        }
    };
    let a = preflight(GROUP_ONLY, "authorization, content-type, x-stainless-os").await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(a.header("access-control-allow-origin"), Some(GROUP_ONLY));
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("authorization, content-type, x-stainless-os")
    );
    assert!(a
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(a.header("access-control-max-age").is_some());
    for (origin, headers) in [
        ("http://evil.example", "authorization"),
        (ALLOWED, "cookie"),
    ] {
        let a = preflight(origin, headers).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (403, "origin_not_allowed"),
            "{}",
            a.text
        );
        assert!(a.header("access-control-allow-origin").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_narrow_only_and_apply_on_the_next_request() {
    let (_main, other, g) = setup().await;
    let admin = g.admin(ROOT);

    // Widening an upper layer is 400, naming the field and both values.
    for (field, value, theirs) in [
        (
            "allowed_providers",
            json!(["other"]),
            "group grp_rp allowed_providers [\"oa\", \"an\"]",
        ),
        (
            "allowed_origins",
            json!(["http://evil.example"]),
            "group grp_rp allowed_origins",
        ),
        (
            "fixed_params",
            json!({"store": true}),
            "org rp fixed_params.store = false",
        ),
    ] {
        let (status, v) = admin
            .post(
                "/v1/keys",
                json!({"name": "w", "group": "grp_rp", field: value}),
            )
            .await;
        assert_eq!(status, 400, "{field}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(theirs), "{msg}");
    }
    let (status, v) = admin
        .post(
            "/v1/keys",
            json!({"name": "w", "group": "grp_rp", "fixed_params": {"model": "x"}}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("fixed_params")),
        "{v}"
    );

    // A key within its own group's policy cannot move where it would widen the new one.
    let k = admin
        .new_key(json!({"name": "mover", "group": "grp_open", "allowed_providers": ["other"]}))
        .await;
    let (status, v) = admin
        .post(
            &format!("/v1/keys/{}/move", k["id"].as_str().unwrap()),
            json!({"group": "grp_rp"}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "allowed_providers", "{v}");

    // A narrower key: its required params add to the group's.
    let k = admin
        .new_key(json!({"name": "browser", "group": "grp_rp",
            "allowed_origins": [GROUP_ONLY], "required_params": ["metadata"],
            "fixed_params": {"store": false, "top_p": 0.5}}))
        .await;
    let (id, secret) = (
        k["id"].as_str().unwrap(),
        k["key"].as_str().unwrap().to_string(),
    );
    assert_eq!(k["allowed_origins"], json!([GROUP_ONLY]));
    let force = &k["request_policy_in_force"];
    assert_eq!(force["allowed_providers"], json!(["oa", "an"]), "{force}");
    assert_eq!(
        force["required_params"],
        json!(["user", "metadata"]),
        "{force}"
    );
    assert_eq!(
        force["fixed_params"],
        json!({"store": false, "top_p": 0.5}),
        "{force}"
    );
    assert_eq!(force["allowed_origins"], json!([GROUP_ONLY]), "{force}");
    let a = g
        .call(
            CHAT,
            &secret,
            &[],
            &chat("gpt-4o-mini", json!({"user": "u"})),
        )
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["param"].as_str()),
        (400, Some("metadata")),
        "{}",
        a.text
    );
    let good = chat("gpt-4o-mini", json!({"user": "u", "metadata": {"a": "b"}}));
    let a = g
        .call(CHAT, &secret, &[("origin", GROUP_ONLY)], &good)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("access-control-allow-origin"), Some(GROUP_ONLY));

    // A PATCH applies from the next request: Anthropic only.
    let v = admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"allowed_providers": ["an"]})),
        )
        .await;
    assert_eq!(v["allowed_providers"], json!(["an"]));
    let a = g.call(CHAT, &secret, &[], &good).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "provider_not_allowed"),
        "{}",
        a.text
    );
    let mut claude = good.clone();
    claude["model"] = json!("claude-sonnet-4-5");
    let a = g.call(CHAT, &secret, &[], &claude).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // GET /v1/keys and the group answer show the fields.
    let list = admin.ok("GET", "/v1/keys?group=grp_rp", None).await;
    let file_key = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "key_rp")
        .unwrap()
        .clone();
    assert_eq!(file_key["allowed_origins"], json!([ALLOWED]));
    assert_eq!(file_key["fixed_params"], json!({"temperature": 0.25}));
    assert_eq!(
        file_key["request_policy_in_force"]["fixed_params"],
        json!({"store": false, "temperature": 0.25})
    );
    let grp = admin.ok("GET", "/v1/groups/grp_rp", None).await;
    assert_eq!(grp["allowed_providers"], json!(["oa", "an"]));
    assert_eq!(grp["required_params"], json!(["user"]));
    assert_eq!(
        grp["request_policy_in_force"]["fixed_params"],
        json!({"store": false})
    );
    assert!(other.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_violations_are_refused_by_check_naming_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let text = policy(addr, addr)
        .replace("{LISTEN}", "127.0.0.1:1")
        .replace("{DATA}", &dir.path().display().to_string())
        .replace("{SOCK}", &dir.path().join("s").display().to_string());
    std::fs::write(&path, &text).unwrap();
    let out = check_policy(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("request policy: allowed_providers [\"oa\", \"an\", \"oth*\"] ∩ [\"oa\", \"an\"]; required_params [\"user\"]; fixed_params { store = false }; allowed_origins [\"http://allowed.example\", \"http://also.example\"]"),
        "{stdout}"
    );
    let bad = text
        .replace(
            "allowed_origins = [\"http://allowed.example\"]\n",
            "allowed_origins = [\"http://evil.example\"]\nallowed_providers = [\"*\"]\n",
        )
        .replace(
            "id = \"grp_open\"\norg = \"rp\"\n",
            "id = \"grp_open\"\norg = \"rp\"\nfixed_params = { store = true, model = \"x\" }\n",
        );
    std::fs::write(&path, &bad).unwrap();
    let out = check_policy(&path);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    for want in [
        "(key_rp).allowed_origins: allowed_origins [\"http://evil.example\"]",
        "is not within group grp_rp allowed_origins [\"http://allowed.example\", \"http://also.example\"]",
        "(key_rp).allowed_providers: allowed_providers [\"*\"] (\"*\") is not within group grp_rp allowed_providers [\"oa\", \"an\"]",
        "(grp_open).fixed_params: \"model\" cannot be fixed",
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }
    // The fixed store = true next to a refused field is not checked against the org: one
    // problem per layer's fields at a time; alone it is refused naming both values.
    let bad = text.replace(
        "id = \"grp_open\"\norg = \"rp\"\n",
        "id = \"grp_open\"\norg = \"rp\"\nfixed_params = { store = true }\n",
    );
    std::fs::write(&path, &bad).unwrap();
    let out = check_policy(&path);
    let all =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        all.contains("fixed_params.store = true differs from org rp fixed_params.store = false"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_forwarded_or_estimated_never_counted() {
    let (main, _other, g) = setup().await;
    let open = key(32);
    let body = json!({"model": "claude-sonnet-4-5", "system": "be brief",
        "messages": [{"role": "user", "content": "how many tokens is this?"}]});
    // grp_open has rpm = 1: counting is not a request of the window.
    for _ in 0..3 {
        main.clear_received();
        let a = g.call("/v1/messages/count_tokens", &open, &[], &body).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let (path, sent) = last(&main);
        assert_eq!(path, "/v1/messages/count_tokens");
        assert_eq!(sent["model"], "claude-sonnet-4-5-20250929", "{sent}");
        let n = a.json()["input_tokens"].as_u64().unwrap();
        assert!(n > 0, "{}", a.text);
    }
    // A model with OpenAI-style targets only: the gateway's estimate, nothing upstream.
    main.clear_received();
    let mut est = body.clone();
    est["model"] = json!("gpt-4o-mini");
    let a = g
        .call(
            "/v1/messages/count_tokens",
            &open,
            &[("x-request-id", "ct-est")],
            &est,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json()["input_tokens"].as_u64().unwrap() > 0, "{}", a.text);
    assert!(main.received().is_empty(), "estimated, not forwarded");
    let line = g.log_line("ct-est").await;
    assert_eq!(line["count_tokens"], true, "{line}");
    assert_eq!(line["cost_usd"], 0.0, "{line}");
    // Gated like /v1/messages: the model lists, in Anthropic's error shape.
    est["model"] = json!("gpt-4o");
    let a = g.call("/v1/messages/count_tokens", &open, &[], &est).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json()["type"], "error");
    let a = g
        .call("/v1/messages/count_tokens", "tg-nope", &[], &est)
        .await;
    assert_eq!(a.status, 401);
    // The first real request still fits rpm = 1; the second does not.
    let a = g
        .call(CHAT, &open, &[], &chat("gpt-4o-mini", json!({})))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = g
        .call(CHAT, &open, &[], &chat("gpt-4o-mini", json!({})))
        .await;
    assert_eq!(a.status, 429, "{}", a.text);
}
