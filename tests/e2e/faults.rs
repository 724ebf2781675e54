//! End to end: every refusal or abort is attributed to the client, the gateway or the
//! upstream (issue 12), and only upstream faults count as upstream errors — in the request
//! log, `tollgate_requests_total` / `tollgate_errors_total`, `error_rate.high` and target
//! health. Credentials are parsed per RFC 9110. Pingora's own 400s carry the documented error shape.

use crate::harness::http::{exchange, json_body, read_to_close, status_of};
use crate::harness::receiver::Receiver;
use crate::harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOOK_SECRET: &str = "whsec-faults-0123456789abcdef";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_ADMIN_TOKEN", ROOT),
        ("TEST_WEBHOOK_SECRET", HOOK_SECRET),
    ]
}

/// `basic_policy` with a request log file, an admin listener, and `grp_hook` (key(2))
/// whose `error_rate.high` goes to `hook`.
fn policy(mock: std::net::SocketAddr, hook: &str) -> String {
    basic_policy(
        mock,
        &format!(
            r#"
[[models]]
name = "gpt-4o-twin"
targets = [{{ provider = "oa", model = "twin-a" }}, {{ provider = "oa", model = "twin-b" }}]
{}"#,
            webhook_group(
                hook,
                "retries = 0\nerror_rate_alert = { threshold = 0.3, window = \"60s\", min_requests = 4 }"
            )
        ),
    )
    .with_request_log()
    .in_server("body_timeout = \"400ms\"")
    .with_admin()
}

fn secrets() -> Vec<String> {
    vec![
        key(1),
        key(2),
        ROOT.into(),
        HOOK_SECRET.into(),
        "sk-provider-secret".into(),
    ]
}

fn head(path: &str, key: &str, id: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\nx-request-id: {id}\r\n{extra}\r\n"
    )
}

async fn assert_logged(g: &GatewayProc, id: &str, status: u16, code: &str, fault: &str) {
    let l = g.log_line(id).await;
    assert_eq!(
        (
            l["status"].as_u64(),
            l["code"].as_str(),
            l["fault"].as_str()
        ),
        (Some(u64::from(status)), Some(code), Some(fault)),
        "{l}"
    );
}

/// Sends `body` to the chat route, the upstream's answer slowed, as key `k`, and hangs up
/// as soon as the mock has it (the request is routed). Returns what the mock had before.
async fn give_up_once_forwarded(
    g: &GatewayProc,
    mock: &MockProvider,
    k: &str,
    id: &str,
    body: &str,
) -> usize {
    let slow = format!(
        "content-length: {}\r\nx-mock-latency-ms: 1500\r\n",
        body.len()
    );
    let req = format!("{}{body}", head(CHAT, k, id, &slow));
    let before = mock.received().len();
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    wait_until(Duration::from_secs(5), "request reaching the mock", || {
        mock.received().len() > before
    })
    .await;
    drop(s);
    before
}

const BODY: &str =
    r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_faults_are_logged_as_such_and_never_count_as_upstream_errors() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start_gateway_env(&policy(mock.addr(), &hook.url()), &env());
    let admin = g.admin(ROOT);
    let k = key(2);
    let short = Duration::from_secs(5);

    // A chunked body with a garbage chunk-size line: 400 invalid_request, documented error shape.
    let req = format!(
        "{}zz\r\n{BODY}\r\n0\r\n\r\n",
        head(CHAT, &k, "chunk-1", "transfer-encoding: chunked\r\n")
    );
    let a = exchange(g.addr, req.as_bytes(), short).await;
    assert_eq!(status_of(&a), 400, "{a}");
    let v = json_body(&a);
    assert_eq!(v["error"]["code"], "invalid_request", "{a}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{a}");
    assert_logged(&g, "chunk-1", 400, "invalid_request", "client").await;
    // The same on the Anthropic route, in its shape.
    let req = format!(
        "{}zz\r\n{{}}\r\n0\r\n\r\n",
        head(MESSAGES, &k, "chunk-2", "transfer-encoding: chunked\r\n")
    );
    let a = exchange(g.addr, req.as_bytes(), short).await;
    assert_eq!(status_of(&a), 400, "{a}");
    assert_eq!(json_body(&a)["type"], "error", "{a}");
    assert_logged(&g, "chunk-2", 400, "invalid_request", "client").await;

    // The client closes mid-body: a client abort, 499 in the log.
    for i in 0..3 {
        let id = format!("midbody-{i}");
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        // `Expect: 100-continue` tells when the gateway is reading the body.
        let h = head(
            CHAT,
            &k,
            &id,
            "content-length: 5000\r\nexpect: 100-continue\r\n",
        );
        s.write_all(h.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(short, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 100"));
        s.write_all(&BODY.as_bytes()[..40]).await.unwrap();
        s.flush().await.unwrap();
        drop(s);
        assert_logged(&g, &id, 499, "client_closed_request", "client").await;
    }

    // Expect: 100-continue, then no body: the gateway answers 100, times the client out.
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let h = head(
        CHAT,
        &k,
        "expect-1",
        "content-length: 100\r\nexpect: 100-continue\r\n",
    );
    s.write_all(h.as_bytes()).await.unwrap();
    let a = String::from_utf8_lossy(&read_to_close(&mut s, short).await.0).into_owned();
    assert!(a.starts_with("HTTP/1.1 100"), "{a}");
    assert_eq!(status_of(&a), 408, "{a}");
    assert_eq!(json_body(&a)["error"]["code"], "request_timeout", "{a}");
    assert_logged(&g, "expect-1", 408, "request_timeout", "client").await;

    // The client gives up while the upstream is still thinking (after routing).
    for i in 0..6 {
        let id = format!("gaveup-{i}");
        give_up_once_forwarded(&g, &mock, &k, &id, BODY).await;
        assert_logged(&g, &id, 499, "client_closed_request", "client").await;
    }

    // Nor is it retried on another target: the client is gone (key(1)'s group retries).
    let body = BODY.replace("gpt-4o-mini", "gpt-4o-twin");
    let before = give_up_once_forwarded(&g, &mock, &key(1), "gaveup-twin", &body).await;
    assert_logged(&g, "gaveup-twin", 499, "client_closed_request", "client").await;
    let l = g.log_line("gaveup-twin").await;
    assert_eq!(l["attempts"].as_array().map(Vec::len), Some(1), "{l}");
    assert_eq!(l["attempts"][0]["outcome"], "client_closed", "{l}");
    assert_eq!(
        mock.received().len(),
        before + 1,
        "retried for a client that is gone"
    );

    // The client goes away mid-stream: the status it was sent, with the abort's code.
    let body = BODY.replace("\"max_tokens\":5", "\"max_tokens\":50,\"stream\":true");
    let req = format!(
        "{}{body}",
        head(
            CHAT,
            &k,
            "midstream-1",
            &format!(
                "content-length: {}\r\nx-mock-chunk-interval-ms: 150\r\nx-mock-output-tokens: 40\r\n",
                body.len()
            )
        )
    );
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("data:") {
        let n = tokio::time::timeout(short, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    assert_logged(&g, "midstream-1", 200, "client_closed_request", "client").await;

    // Pingora's own 400s (a header it cannot parse) carry the documented error shape.
    let bad_framing = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {k}\r\n\
         content-length: 12\r\ncontent-length: 13\r\n\r\n{BODY}"
    );
    let mut many = String::from("GET /v1/models HTTP/1.1\r\nhost: x\r\n");
    for i in 0..300 {
        many.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    for req in [bad_framing, many] {
        let a = exchange(g.addr, req.as_bytes(), short).await;
        assert_eq!(status_of(&a), 400, "{a}");
        assert!(
            a.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{a}"
        );
        let v = json_body(&a);
        assert_eq!(v["error"]["code"], "invalid_request", "{a}");
        assert_eq!(v["type"], "error", "{a}");
    }

    // None of it is an upstream error, anywhere.
    let m = admin.metrics().await;
    for status in ["502", "503", "504"] {
        let series = format!("status=\"{status}\"");
        assert_eq!(
            metric_sum(&m, "tollgate_requests_total{", &[&series]),
            0.0,
            "{status}:\n{m}"
        );
    }
    assert_eq!(
        metric_sum(&m, "tollgate_errors_total{", &["fault=\"upstream\""]),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "tollgate_errors_total{",
            &["fault=\"client\"", "code=\"client_closed_request\""]
        ),
        11.0,
        "{m}"
    );
    // 10 aborts before any answer (499), one mid-stream (its 200 was sent).
    assert_eq!(
        metric_sum(&m, "tollgate_requests_total{", &["status=\"499\""]),
        10.0,
        "{m}"
    );
    assert!(
        m.contains("tollgate_target_healthy{target=\"oa/gpt-4o-mini-2024-07-18\"} 1"),
        "{m}"
    );

    // Now the upstream really fails (4 of them): the alert counts those only. The six
    // aborts after routing are requests of the window, none of them failed.
    for _ in 0..4 {
        let r = client()
            .post(g.url(CHAT))
            .bearer_auth(&k)
            .header("x-mock-status", "500")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500);
    }
    hook.wait(Duration::from_secs(10), "error_rate.high", |_| {
        !hook.events("error_rate.high").is_empty()
    })
    .await;
    let e = &hook.events("error_rate.high")[0];
    let (requests, failed) = (
        e["detail"]["requests"].as_u64().unwrap(),
        e["detail"]["failed"].as_u64().unwrap(),
    );
    assert!((3..=4).contains(&failed), "{e}");
    assert!(
        requests - failed >= 6,
        "client aborts counted as failures: {e}"
    );

    let files = assert_no_secret_in_logs(g.dir.path(), &secrets());
    assert!(files >= 2, "request log and gateway log searched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_statuses_the_gateway_cannot_relay_are_502() {
    let mock = mock().await;
    let hook = Receiver::start(200).await;
    let g = start_gateway_env(&policy(mock.addr(), &hook.url()), &env());
    let admin = g.admin(ROOT);
    for status in ["100", "103", "101", "999"] {
        let id = format!("odd-{status}");
        let r = client()
            .post(g.url(CHAT))
            .bearer_auth(key(1))
            .header("x-mock-status", status)
            .header("x-request-id", &id)
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 502, "{status}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_error", "{status}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot relay"),
            "{v}"
        );
        assert_logged(&g, &id, 502, "upstream_error", "upstream").await;
    }
    let m = admin.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "tollgate_errors_total{",
            &["fault=\"upstream\"", "code=\"upstream_error\""]
        ),
        4.0,
        "{m}"
    );
    // They are upstream failures: the target was ejected.
    assert!(
        m.contains("tollgate_target_healthy{target=\"oa/gpt-4o-mini-2024-07-18\"} 0"),
        "{m}"
    );
    assert_no_secret_in_logs(g.dir.path(), &secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_follow_rfc_9110_with_a_documented_precedence() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), ""));
    let k = key(1);
    let send = |headers: Vec<(&'static str, String)>| {
        let mut r = client()
            .post(g.url(CHAT))
            .header("content-type", "application/json")
            .body(BODY);
        for (n, v) in headers {
            r = r.header(n, v);
        }
        async move {
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            (s, v)
        }
    };
    for auth in [
        format!("BEARER {k}"),
        format!("bearer {k}"),
        format!("Bearer\t{k}"),
        format!("Bearer   {k}"),
    ] {
        let (s, v) = send(vec![("authorization", auth.clone())]).await;
        assert_eq!(s, 200, "{auth:?}: {v}");
    }
    // Basic is not a tollgate credential: x-api-key decides.
    let basic = "Basic dXNlcjpwYXNzd29yZA==".to_string();
    let (s, v) = send(vec![
        ("authorization", basic.clone()),
        ("x-api-key", k.clone()),
    ])
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(vec![("authorization", basic)]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{v}"
    );
    // The same key twice is fine; two different keys are refused, saying why.
    let (s, v) = send(vec![
        ("authorization", format!("Bearer {k}")),
        ("x-api-key", k.clone()),
    ])
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(vec![
        ("authorization", format!("Bearer {k}")),
        ("x-api-key", key(9)),
    ])
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("conflicting credentials"),
        "{v}"
    );
    assert_no_secret_in_logs(g.dir.path(), &[k.as_str(), &key(9), "sk-provider-secret"]);
}

/// The search every harness run ends with finds a full key or token, not a display prefix.
#[test]
fn the_log_search_finds_full_credentials_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    std::fs::write(&log, "key tg-TestKe… id key_main tga-a1b2c3…\n").unwrap();
    assert!(leaked_credentials(dir.path()).is_empty());
    std::fs::write(&log, format!("oops {}\n", key(1))).unwrap();
    assert_eq!(leaked_credentials(dir.path()).len(), 1);
    std::fs::write(
        dir.path().join("requests.log"),
        format!("{ROOT} sk-provider-secret"),
    )
    .unwrap();
    assert_eq!(leaked_credentials(dir.path()).len(), 3);
}

/// Pingora's debug and trace output prints raw request headers (the buffer of a header it
/// cannot parse, every request's and upstream request's header): it stays at info even
/// under `RUST_LOG=trace`, so no credential reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_prints_no_credential() {
    let mock = mock().await;
    let g = start_gateway_env(&basic_policy(mock.addr(), ""), &[("RUST_LOG", "trace")]);
    let (addr, dir) = (g.addr, g.dir.path());
    let k = key(1);
    let bad = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {k}\r\n\
         content-length: 12\r\ncontent-length: 13\r\n\r\n{BODY}"
    );
    assert_eq!(
        status_of(&exchange(addr, bad.as_bytes(), Duration::from_secs(5)).await),
        400
    );
    let r = client()
        .post(g.url(CHAT))
        .bearer_auth(&k)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = g.log_text();
    assert!(text.lines().count() > 10, "trace logging is on:\n{text}");
    assert!(leaked_credentials(dir).is_empty(), "{text}");
    assert_no_secret_in_logs(dir, &[k.as_str(), "sk-provider-secret"]);
}
