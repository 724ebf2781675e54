//! End to end: guardrails (docs/guardrails.md). Built-in checks redact and block requests on
//! both routes (translated too); a blocked secret leaves no trace in the answer, the log
//! files or the audit trail; the set in force is org ∪ group ∪ key, and an API PATCH cannot
//! drop the org's; answers are checked in JSON and streams; moderation and webhook kinds
//! fail open or closed as `on_error` says; `-t` shows each group's guardrails.

use crate::harness::receiver::{verify, Receiver};
use crate::harness::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const SECRET: &str = "sk-proj-Zx81KqPw93LmNb27VcRt64YuHs05JdFg";
const GUARD_SECRET: &str = "guard-signing-secret";

fn guardrails(hook: &str) -> String {
    format!(
        r#"
[[guardrails]]
id = "pii"
kind = "pii"
action = "redact"

[[guardrails]]
id = "no-secrets"
kind = "secrets"
action = "block"

[[guardrails]]
id = "codenames"
kind = "regex"
patterns = ["(?i)project\\s+falcon", "(?i)project\\s+bluebird"]
action = "block"

[[guardrails]]
id = "pii-out"
kind = "pii"
entities = ["email"]
action = "redact"
on = ["response"]

[[guardrails]]
id = "codenames-out"
kind = "regex"
patterns = ["(?i)bluebird"]
action = "block"
on = ["response"]

[[guardrails]]
id = "mod"
kind = "moderation"
provider = "oa"
categories = ["violence"]
action = "block"
timeout = "400ms"

[[guardrails]]
id = "mod-open"
kind = "moderation"
provider = "oa"
action = "block"
timeout = "400ms"
on_error = "allow"

[[guardrails]]
id = "corp"
kind = "webhook"
url = "{hook}"
secret_env = "GUARD_SECRET"
action = "block"
timeout = "400ms"

[[guardrails]]
id = "corp-open"
kind = "webhook"
url = "{hook}"
secret_env = "GUARD_SECRET"
action = "block"
timeout = "400ms"
on_error = "allow"

[[orgs]]
id = "guarded"
guardrails = ["no-secrets"]
"#
    )
}

/// A group of org `guarded` with `guards`, and its file key `key(n)` with `key_guards`.
fn group(id: &str, guards: &str, n: u32, key_guards: &str) -> String {
    format!(
        r#"
[[groups]]
id = "{id}"
org = "guarded"
guardrails = [{guards}]

[[keys]]
id = "key_{id}"
group = "{id}"
sha256 = "{sha}"
guardrails = [{key_guards}]
"#,
        sha = sha(&key(n))
    )
}

fn policy(mock: SocketAddr, hook: &str) -> String {
    let extra = [
        guardrails(hook),
        group("grp_g", "\"pii\"", 11, "\"codenames\""),
        group("grp_plain", "", 12, ""),
        group("grp_out", "\"pii-out\", \"codenames-out\"", 13, ""),
        group("grp_mod", "\"mod\"", 14, ""),
        group("grp_mod_open", "\"mod-open\"", 15, ""),
        group("grp_hook", "\"corp\"", 16, ""),
        group("grp_hook_open", "\"corp-open\"", 17, ""),
        group("grp_q", "", 18, "").replace(
            "guardrails = []\n\n[[keys]]",
            "guardrails = []\nstate = \"quarantined\"\nquarantine_cidrs = [\"127.0.0.1/32\"]\nquarantine_models = [\"gpt-4o-mini\"]\n\n[[keys]]",
        ),
    ]
    .concat();
    basic_policy(mock, &extra).with_admin().with_request_log()
}

async fn start(mock: &MockProvider, hook: &Receiver) -> GatewayProc {
    start_gateway_env(
        &policy(mock.addr(), &hook.url()),
        &[
            ("TEST_ADMIN_TOKEN", ROOT),
            ("TOLLGATE_REFUSAL_MINUTE_MS", "300"),
            ("GUARD_SECRET", GUARD_SECRET),
        ],
    )
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 12,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

fn messages(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 12, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]})
}

/// The body the mock received last.
fn last_received(mock: &MockProvider) -> (String, String) {
    let r = mock.received();
    let last = r.last().expect("the mock got a request");
    (
        last.path.clone(),
        String::from_utf8_lossy(&last.body).into_owned(),
    )
}

/// The text and the finish/stop reason of an answer, JSON or SSE, in either API.
async fn read_answer(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if !sse {
        let v: Value = r.json().await.unwrap_or_default();
        if let Some(c) = v["choices"].get(0) {
            let text = c["message"]["content"].as_str().unwrap_or("").to_string();
            return (
                status,
                text,
                c["finish_reason"].as_str().unwrap_or("").into(),
            );
        }
        let text = v["content"]
            .as_array()
            .map(|a| a.iter().filter_map(|b| b["text"].as_str()).collect())
            .unwrap_or_default();
        return (status, text, v["stop_reason"].as_str().unwrap_or("").into());
    }
    let mut s = r.bytes_stream();
    let mut raw = String::new();
    while let Some(c) = s.next().await {
        raw.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    let (mut text, mut reason) = (String::new(), String::new());
    for l in raw.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            reason = f.into();
        }
        if let Some(t) = v["delta"]["text"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = v["delta"]["stop_reason"].as_str() {
            reason = f.into();
        }
    }
    (status, text, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_guardrails_redact_block_and_inherit() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start(&mock, &hook).await;
    let admin = g.admin(ROOT);
    let (guarded, plain) = (key(11), key(12));
    let pii = "mail me at jane.doe@example.com or call +44 20 7946 0958";

    // Redaction, seen at the mock: chat, messages, and chat translated to messages.
    for (path, body, upstream) in [
        (
            CHAT,
            chat("gpt-4o-mini", pii, false),
            "/v1/chat/completions",
        ),
        (
            MESSAGES,
            messages("claude-sonnet-4-5", pii, false),
            "/v1/messages",
        ),
        (CHAT, chat("claude-sonnet-4-5", pii, true), "/v1/messages"),
    ] {
        let a = g.call(path, &guarded, &[], &body).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        let (at, sent) = last_received(&mock);
        assert_eq!(at, upstream);
        assert!(sent.contains("[EMAIL]"), "{sent}");
        assert!(sent.contains("[PHONE]"), "{sent}");
        assert!(!sent.contains("jane.doe"), "{sent}");
        assert!(sent.contains("be brief"), "the rest is kept: {sent}");
    }
    let a = g
        .call(
            CHAT,
            &guarded,
            &[("x-request-id", "g-redact")],
            &chat("gpt-4o-mini", pii, false),
        )
        .await;
    assert_eq!(a.status, 200);
    let line = g.log_line("g-redact").await;
    assert_eq!(
        line["guardrails"],
        json!([{"id": "pii", "action": "redact", "kinds": ["email", "phone"]}]),
        "{line}"
    );

    // A secret: blocked by the org's guardrail in every group of the org, never forwarded,
    // never echoed.
    let before = mock.received().len();
    for (k, id) in [(&guarded, "g-secret-1"), (&plain, "g-secret-2")] {
        let a = g
            .call(
                CHAT,
                k,
                &[("x-request-id", id)],
                &chat("gpt-4o-mini", &format!("use {SECRET} please"), false),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert_eq!(a.code(), "guardrail_blocked");
        let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("no-secrets") && msg.contains("openai_key"),
            "{msg}"
        );
        assert!(
            !a.text.contains(SECRET) && !a.text.contains("Zx81"),
            "{}",
            a.text
        );
    }
    let a = g
        .call(
            MESSAGES,
            &plain,
            &[],
            &messages("claude-sonnet-4-5", &format!("key: {SECRET}"), false),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert!(!a.text.contains(SECRET));
    assert_eq!(
        mock.received().len(),
        before,
        "nothing blocked went upstream"
    );
    let line = g.log_line("g-secret-2").await;
    assert_eq!(line["code"], "guardrail_blocked");
    assert_eq!(
        line["guardrails"],
        json!([{"id": "no-secrets", "action": "block", "kinds": ["openai_key"]}])
    );

    // The file key's own guardrail adds to its group's: pattern named by index.
    let a = g
        .call(
            CHAT,
            &guarded,
            &[],
            &chat("gpt-4o-mini", "about Project Bluebird", false),
        )
        .await;
    assert_eq!(a.status, 400);
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("codenames") && msg.contains("pattern 1"),
        "{msg}"
    );
    assert!(!msg.to_lowercase().contains("bluebird"), "{msg}");
    let a = g
        .call(
            CHAT,
            &plain,
            &[],
            &chat("gpt-4o-mini", "about Project Bluebird", false),
        )
        .await;
    assert_eq!(a.status, 200, "grp_plain has no codenames guardrail");

    // API keys: a key's own guardrails add to the group's and org's; a PATCH cannot drop
    // those; an unknown id is a 400 naming the field.
    let made = admin
        .new_key(json!({"name": "api", "group": "grp_g", "guardrails": ["codenames"]}))
        .await;
    let api = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["guardrails"], json!(["codenames"]));
    assert_eq!(
        made["guardrails_in_force"],
        json!(["no-secrets", "pii", "codenames"])
    );
    let a = g
        .call(
            CHAT,
            &api,
            &[],
            &chat("gpt-4o-mini", "project falcon", false),
        )
        .await;
    assert_eq!(a.code(), "guardrail_blocked");
    let v = admin
        .ok(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"guardrails": null})),
        )
        .await;
    assert_eq!(v["guardrails_in_force"], json!(["no-secrets", "pii"]));
    let a = g
        .call(
            CHAT,
            &api,
            &[],
            &chat("gpt-4o-mini", "project falcon", false),
        )
        .await;
    assert_eq!(a.status, 200, "the key's own guardrail is gone");
    let a = g
        .call(
            CHAT,
            &api,
            &[],
            &chat("gpt-4o-mini", &format!("x {SECRET}"), false),
        )
        .await;
    assert_eq!(a.code(), "guardrail_blocked", "the org's guardrail stays");
    g.call(CHAT, &api, &[], &chat("gpt-4o-mini", pii, false))
        .await;
    assert!(
        last_received(&mock).1.contains("[EMAIL]"),
        "the group's stays"
    );
    let (s, v) = admin
        .call(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"guardrails": ["nope"]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "guardrails");

    // Evidence: the metric, and audit events aggregated per key, guardrail and minute.
    let blocked = admin
        .metric(
            "tollgate_guardrail_actions_total",
            &[
                "group=\"grp_plain\"",
                "guardrail=\"no-secrets\"",
                "action=\"block\"",
            ],
        )
        .await;
    assert_eq!(blocked, 2.0);
    let events = "/v1/audit?type=guardrail.triggered";
    let seen = poll_until(Duration::from_secs(10), || async {
        let v = admin.get(events).await.1;
        let n: u64 = v["data"]
            .as_array()?
            .iter()
            .filter(|e| {
                e["key_id"] == "key_grp_plain" && e["detail"]["after"]["guardrail"] == "no-secrets"
            })
            .map(|e| e["detail"]["after"]["count"].as_u64().unwrap_or(0))
            .sum();
        (n == 2).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("no guardrail audit events"));
    assert!(
        !seen.to_string().contains("Zx81"),
        "no text in the audit trail"
    );
    let all = admin.get("/v1/audit?limit=1000").await.1.to_string();
    assert!(
        !all.contains("Zx81") && !all.contains("jane.doe"),
        "audit holds no text"
    );

    // A quarantined group logs at `full` whatever its own level (metadata here).
    let a = g
        .call(
            CHAT,
            &key(18),
            &[("x-request-id", "g-quarantine")],
            &chat("gpt-4o-mini", "what now", false),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let line = g.log_line("g-quarantine").await;
    assert!(
        line["prompt"].as_str().unwrap().contains("what now"),
        "{line}"
    );
    assert!(line["completion"].is_string(), "{line}");
    let line = g.log_line("g-redact").await;
    assert!(line.get("prompt").is_none(), "grp_g logs metadata: {line}");

    // No trace of the secret or the PII in any log file.
    assert_no_secret_in_logs(g.dir.path(), &[SECRET, "jane.doe@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_guardrails_redact_and_block_json_and_streams() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start(&mock, &hook).await;
    let out = key(13);
    let said = "write to bob@example.org about it";
    let cases = [
        (CHAT, "gpt-4o-mini", false),
        (CHAT, "gpt-4o-mini", true),
        (MESSAGES, "claude-sonnet-4-5", false),
        (MESSAGES, "claude-sonnet-4-5", true),
        (CHAT, "claude-sonnet-4-5", false),
        (CHAT, "claude-sonnet-4-5", true),
        (MESSAGES, "gpt-4o-mini", true),
    ];
    for (path, model, stream) in cases {
        let body = if path == CHAT {
            chat(model, "hi", stream)
        } else {
            messages(model, "hi", stream)
        };
        let what = format!("{path} {model} stream={stream}");
        // Redact: the address is replaced, the rest arrives.
        let r = g
            .post(path, &out, &[("x-mock-reply-text", said)], &body)
            .send()
            .await
            .unwrap();
        let (status, text, _) = read_answer(r).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(text, "write to [EMAIL] about it", "{what}");
        // Block: the answer ends the provider's way, without the blocked text.
        let r = g
            .post(
                path,
                &out,
                &[(
                    "x-mock-reply-text",
                    "the plan is called bluebird, keep it quiet",
                )],
                &body,
            )
            .send()
            .await
            .unwrap();
        let (status, text, reason) = read_answer(r).await;
        assert_eq!(status, 200, "{what}");
        assert!(!text.to_lowercase().contains("bluebird"), "{what}: {text}");
        let want = if path == CHAT {
            "content_filter"
        } else {
            "refusal"
        };
        assert_eq!(reason, want, "{what}");
    }
    // The verdicts on the answer are on the log line; the usage is still charged.
    let r = g
        .post(
            CHAT,
            &out,
            &[("x-mock-reply-text", "bluebird"), ("x-request-id", "out-1")],
            &chat("gpt-4o-mini", "hi", true),
        )
        .send()
        .await
        .unwrap();
    let (_, text, reason) = read_answer(r).await;
    assert_eq!((text.as_str(), reason.as_str()), ("", "content_filter"));
    let line = g.log_line("out-1").await;
    assert_eq!(
        line["guardrails"],
        json!([{"id": "codenames-out", "action": "block", "kinds": ["pattern 0"]}]),
        "{line}"
    );
    assert!(line["output_tokens"].as_u64().unwrap() > 0, "{line}");
    assert!(line["cost_usd"].as_f64().unwrap() > 0.0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_and_webhook_kinds_fail_as_on_error_says() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start(&mock, &hook).await;
    let (modk, mod_open, corp, corp_open) = (key(14), key(15), key(16), key(17));
    let body = |t: &str| chat("gpt-4o-mini", t, false);

    // Moderation: the marker is flagged (violence), other text passes.
    let a = g.call(CHAT, &modk, &[], &body("hello there")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let asked = mock
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/moderations")
        .expect("moderation asked");
    assert_eq!(
        asked.header("authorization"),
        Some("Bearer sk-provider-secret")
    );
    let input = asked.json().unwrap()["input"].clone();
    assert!(
        input.as_array().unwrap().iter().any(|t| t == "hello there"),
        "{input}"
    );
    let a = g.call(CHAT, &modk, &[], &body("FLAGME now")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "guardrail_blocked");
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("mod") && msg.contains("violence"), "{msg}");
    assert!(!msg.contains("FLAGME"), "{msg}");
    // A category not listed does not count.
    let a = g.call(CHAT, &modk, &[], &body("FLAGSELF")).await;
    assert_eq!(
        a.status, 200,
        "self-harm is not in the guardrail's categories"
    );
    let a = g.call(CHAT, &mod_open, &[], &body("FLAGSELF")).await;
    assert_eq!(a.status, 400, "no categories: the provider's flagged");

    // Moderation slow, then failing: closed refuses 503 with retry-after, open lets through
    // and records the failure.
    for b in [
        Behaviour {
            moderation_latency_ms: 1500,
            ..Default::default()
        },
        Behaviour {
            moderation_status: Some(500),
            ..Default::default()
        },
    ] {
        mock.set_behaviour(b);
        let a = g.call(CHAT, &modk, &[], &body("hello")).await;
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(a.code(), "guardrail_unavailable");
        assert!(a.header("retry-after").is_some());
        let a = g
            .call(
                CHAT,
                &mod_open,
                &[("x-request-id", "open-1")],
                &body("hello"),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    mock.set_behaviour(Behaviour::default());
    let line = g.log_line("open-1").await;
    assert_eq!(
        line["guardrails"],
        json!([{"id": "mod-open", "action": "error", "kinds": []}]),
        "{line}"
    );

    // Webhook: signed JSON {direction, group, key_id, model, texts}; block, redact, allow.
    hook.set_reply(json!({"action": "allow"}));
    let a = g.call(CHAT, &corp, &[], &body("ship it")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let got = hook.got().pop().expect("the checker was asked");
    assert!(verify(GUARD_SECRET, &got), "signed like the webhooks");
    assert_eq!(got.json["direction"], "request");
    assert_eq!(got.json["group"], "grp_hook");
    assert_eq!(got.json["key_id"], "key_grp_hook");
    assert_eq!(got.json["model"], "gpt-4o-mini");
    assert_eq!(got.json["texts"], json!(["be brief", "ship it"]));
    hook.set_reply(json!({"action": "block", "reason": "nope"}));
    let a = g.call(CHAT, &corp, &[], &body("ship it")).await;
    assert_eq!(a.code(), "guardrail_blocked");
    assert!(a.text.contains("corp"), "{}", a.text);
    hook.set_reply(json!({"action": "redact", "texts": ["be brief", "ship [WHAT]"]}));
    let a = g.call(CHAT, &corp, &[], &body("ship the gold")).await;
    assert_eq!(a.status, 200);
    let (_, sent) = last_received(&mock);
    assert!(
        sent.contains("ship [WHAT]") && !sent.contains("gold"),
        "{sent}"
    );

    // The checker slow, answering garbage, or an error: closed 503, open through.
    hook.set_reply(json!({"action": "allow"}));
    hook.set_delay_ms(1500);
    let a = g.call(CHAT, &corp, &[], &body("x")).await;
    assert_eq!(a.code(), "guardrail_unavailable");
    let a = g.call(CHAT, &corp_open, &[], &body("x")).await;
    assert_eq!(a.status, 200);
    hook.set_delay_ms(0);
    hook.set_reply(json!({"verdict": "?"}));
    let a = g.call(CHAT, &corp, &[], &body("x")).await;
    assert_eq!(a.code(), "guardrail_unavailable");
    hook.set_status(500);
    let a = g.call(CHAT, &corp, &[], &body("x")).await;
    assert_eq!(a.code(), "guardrail_unavailable");
    let a = g.call(CHAT, &corp_open, &[], &body("x")).await;
    assert_eq!(a.status, 200);
    let admin = g.admin(ROOT);
    let errors = admin
        .metric(
            "tollgate_guardrail_actions_total",
            &["guardrail=\"corp\"", "action=\"unavailable\""],
        )
        .await;
    assert_eq!(errors, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_shows_guardrails_and_reports_bad_ones() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = policy(mock.addr(), "http://127.0.0.1:9/check")
        .replace("{LISTEN}", "127.0.0.1:1")
        .replace("{DATA}", &dir.path().display().to_string())
        .replace("{SOCK}", &dir.path().join("s").display().to_string());
    std::fs::write(&path, &text).unwrap();
    let out = check_policy(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("guardrails: no-secrets (secrets block, from org), pii (pii redact)"),
        "{stdout}"
    );
    assert!(stdout.contains("codenames-out"), "{stdout}");

    let bad = text
        .replace(
            "entities = [\"email\"]",
            "entities = [\"email\", \"shoe_size\"]",
        )
        .replace("\"(?i)project\\\\s+bluebird\"", "\"(unclosed\"")
        .replace(
            "guardrails = [\"no-secrets\"]",
            "guardrails = [\"no-secrets\", \"ghost\"]",
        )
        .replace(
            "provider = \"oa\"\ncategories",
            "provider = \"an\"\ncategories",
        );
    std::fs::write(&path, &bad).unwrap();
    let out = check_policy(&path);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    for want in [
        "(pii-out).entities: unknown entity \"shoe_size\"",
        "(codenames).patterns[1]: pattern 1 does not compile",
        "(guarded).guardrails: unknown guardrail \"ghost\"",
        "(mod).provider: provider \"an\" speaks anthropic",
    ] {
        assert!(all.contains(want), "{want} in:\n{all}");
    }
    // External kinds cannot look at answers.
    let bad = text.replace(
        "on_error = \"allow\"\n\n[[guardrails]]\nid = \"corp\"",
        "on_error = \"allow\"\non = [\"request\", \"response\"]\n\n[[guardrails]]\nid = \"corp\"",
    );
    assert_ne!(bad, text);
    std::fs::write(&path, &bad).unwrap();
    let ext = check_policy(&path);
    let ext =
        String::from_utf8_lossy(&ext.stdout).to_string() + &String::from_utf8_lossy(&ext.stderr);
    assert!(
        ext.contains("(mod-open).on: moderation and webhook guardrails check requests only"),
        "{ext}"
    );
    // Each problem with its line.
    assert!(
        all.lines().filter(|l| l.contains("p.toml:")).count() >= 4,
        "{all}"
    );
}

/// Response guardrails hold back text (at most 256 bytes), never the stream itself: with
/// the provider sending an event every 20 ms, the first bytes reach the client before the
/// provider's last event, with and without response guardrails — and so does text once
/// more than the window has streamed. (The latency figure is a load-test measurement,
/// docs/performance.md, not a timed test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_guardrails_do_not_buffer_the_stream() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start(&mock, &hook).await;
    // 60 words of "tokN " (330 bytes of text, more than the window), one event every 20 ms.
    for key in [key(12), key(13)] {
        let r = client()
            .post(g.url(CHAT))
            .bearer_auth(&key)
            .header("x-mock-output-tokens", "60")
            .header("x-mock-chunk-interval-ms", "20")
            .json(&chat("gpt-4o-mini", "hi", true))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut s = r.bytes_stream();
        let mut seen = String::new();
        let mut first_at = None;
        let mut text_at = None;
        while let Some(c) = s.next().await {
            seen.push_str(&String::from_utf8_lossy(&c.unwrap()));
            let now = std::time::Instant::now();
            first_at.get_or_insert(now);
            if text_at.is_none() && seen.contains("tok1 ") {
                text_at = Some(now);
            }
        }
        let last = mock.last_event_at().unwrap();
        assert!(first_at.unwrap() < last, "{key}: first bytes held back");
        assert!(
            text_at.unwrap() < last,
            "{key}: text held back past the window"
        );
        assert!(seen.contains("tok59 "), "{key}: {seen}");
    }
}
