//! End to end: the real binary, in-process mock provider. docs/data-plane.md request path.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn assert_openai_error(v: &Value, code: &str, kind: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["error"]
            .as_object()
            .is_some_and(|o| o.contains_key("param") && o["param"].is_null()),
        "{v}"
    );
}

const EXTRA_KEYS: &str = r#"
[[keys]]
id = "key_expired"
group = "grp_prod"
sha256 = "SHA2"
expires_at = "2020-01-01T00:00:00Z"

[[keys]]
id = "key_disabled"
group = "grp_prod"
sha256 = "SHA3"
state = "disabled"

[[keys]]
id = "key_cidr"
group = "grp_prod"
sha256 = "SHA4"
allowed_cidrs = ["10.0.0.0/8"]

[[keys]]
id = "key_narrow"
group = "grp_prod"
sha256 = "SHA5"
models = ["gpt-4o-mini"]
max_tokens = 100

[[groups]]
id = "grp_paused"
org = "acme"
state = "paused"

[[keys]]
id = "key_paused"
group = "grp_paused"
sha256 = "SHA6"

[[groups]]
id = "grp_quar"
org = "acme"
state = "quarantined"
quarantine_cidrs = ["127.0.0.0/8"]
quarantine_models = ["gpt-4o-mini"]

[[keys]]
id = "key_quar"
group = "grp_quar"
sha256 = "SHA7"

[[groups]]
id = "grp_nodefault"
org = "acme"

[[keys]]
id = "key_nodefault"
group = "grp_nodefault"
sha256 = "SHA8"
"#;

fn extra_keys() -> String {
    let mut s = EXTRA_KEYS.to_string();
    for n in 2..=8 {
        s = s.replace(&format!("SHA{n}"), &sha(&key(n)));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_the_spec_status_code_and_shape() {
    let mock = mock().await;
    let g =
        start_gateway(&basic_policy(mock.addr(), &extra_keys()).in_server("max_body = \"1KiB\""));
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let max_tokens = |field: &str, n: u32| json!({"model": "gpt-4o-mini", field: n});
    let wrong = "tg-wrongwrongwrongwrongwrongwrongwrongwrong0".to_string();
    let cases: Vec<(Option<String>, Value, &str, u16, &str)> = vec![
        (None, chat.clone(), CHAT, 401, "missing_api_key"),
        (Some(wrong), chat.clone(), CHAT, 401, "invalid_api_key"),
        (Some(key(2)), chat.clone(), CHAT, 403, "key_expired"),
        (Some(key(3)), chat.clone(), CHAT, 403, "key_disabled"),
        (Some(key(4)), chat.clone(), CHAT, 403, "ip_not_allowed"),
        (Some(key(6)), chat.clone(), CHAT, 403, "group_paused"),
        (
            Some(key(7)),
            json!({"model": "gpt-4o", "messages": []}),
            CHAT,
            403,
            "group_paused",
        ),
        (
            Some(key(1)),
            json!({"model": "o1-preview", "messages": []}),
            CHAT,
            403,
            "model_not_allowed",
        ),
        (
            Some(key(5)),
            json!({"model": "gpt-4o", "messages": []}),
            CHAT,
            403,
            "model_not_allowed",
        ),
        (
            Some(key(8)),
            json!({"messages": []}),
            CHAT,
            400,
            "invalid_request",
        ),
        (
            Some(key(1)),
            max_tokens("max_tokens", 4001),
            CHAT,
            400,
            "max_tokens_exceeded",
        ),
        (
            Some(key(5)),
            max_tokens("max_completion_tokens", 101),
            CHAT,
            400,
            "max_tokens_exceeded",
        ),
        (
            Some(key(1)),
            json!({"model": "gpt-9"}),
            CHAT,
            404,
            "model_not_found",
        ),
        (
            Some(key(1)),
            json!({"model": "gpt-4o-mini"}),
            "/v1/nope",
            404,
            "unknown_route",
        ),
        (
            Some(key(1)),
            json!({"model": "gpt-4o-mini", "pad": "x".repeat(2000)}),
            CHAT,
            413,
            "request_too_large",
        ),
    ];
    for (k, body, path, status, code) in cases {
        let r = client().post(g.url(path)).json(&body);
        let a = answer(match k {
            Some(k) => r.bearer_auth(k),
            None => r,
        })
        .await;
        let v = a.json();
        assert_eq!(a.status, status, "{code}: {v}");
        // The error type follows from the status.
        let kind = match status {
            401 => "authentication_error",
            403 => "permission_error",
            _ => "invalid_request_error",
        };
        assert_openai_error(&v, code, kind);
        assert!(
            a.header("x-request-id").is_some(),
            "{code}: no x-request-id"
        );
    }
    // The message names the scope that blocked.
    let v = g
        .call(CHAT, &key(1), &[], &max_tokens("max_tokens", 4001))
        .await
        .json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group grp_prod max_tokens 4000"),
        "{v}"
    );
    // Body that is not JSON.
    let resp = client()
        .post(g.url(CHAT))
        .bearer_auth(key(1))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_openai_error(
        &resp.json::<Value>().await.unwrap(),
        "invalid_request",
        "invalid_request_error",
    );
    // Anthropic shape on /v1/messages, same status codes.
    for (k, status, kind) in [
        (None, 401, "authentication_error"),
        (Some(key(6)), 403, "permission_error"),
    ] {
        let mut r = client()
            .post(g.url(MESSAGES))
            .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}));
        if let Some(k) = k {
            r = r.header("x-api-key", k);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string());
    }
    // Chat and messages are translated (the translate module), but a model served only by
    // Anthropic-style targets is not found on the other OpenAI routes.
    let resp = client()
        .post(g.url("/v1/completions"))
        .header("x-api-key", key(1))
        .json(&json!({"model": "claude-sonnet-4-5", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    // None of the refused requests reached the provider.
    assert!(mock.received().is_empty(), "{:?}", mock.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gets_provider_key_and_target_model_never_the_client_key() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), &extra_keys()));
    let a = g.call(CHAT, &key(1), &[], &chat_body("fast")).await;
    let v = a.json();
    assert_eq!(a.status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        a.header("x-tollgate-target"),
        Some("oa/gpt-4o-mini-2024-07-18")
    );
    assert!(a.header("x-request-id").is_some());
    let got = mock.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-provider-secret"));
    assert!(
        !format!("{:?}", r.headers).contains(&key(1)),
        "client key leaked upstream"
    );
    assert_eq!(r.json().unwrap()["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(r.json().unwrap()["messages"][0]["content"], "hi");
    // The client's request id is kept end to end.
    mock.clear_received();
    let resp = client().post(g.url(MESSAGES)).header("x-api-key", key(1)).header("x-request-id", "abc-123")
        .json(&json!({"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let got = mock.received();
    assert_eq!(got[0].header("x-api-key"), Some("sk-provider-secret"));
    assert_eq!(got[0].header("anthropic-version"), Some("2023-06-01"));
    assert!(got[0].header("authorization").is_none());
    assert_eq!(
        got[0].json().unwrap()["model"],
        "claude-sonnet-4-5-20250929"
    );
    // Default model when the request names none; quarantined group still serves its lists.
    mock.clear_received();
    let a = g
        .call(
            CHAT,
            &key(7),
            &[],
            &json!({"model": "gpt-4o-mini", "messages": []}),
        )
        .await;
    assert_eq!(a.status, 200);
    let embed = json!({"model": "text-embedding-3-small", "input": "x"});
    let a = g.call("/v1/embeddings", &key(1), &[], &embed).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-tollgate-target"),
        Some("oa/text-embedding-3-small")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_shows_what_the_key_may_call() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), &extra_keys()));
    let list = |k: String| {
        let url = g.url("/v1/models");
        async move {
            client()
                .get(url)
                .bearer_auth(k)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let v = list(key(1)).await;
    assert_eq!(v["object"], "list");
    let mut ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "claude-sonnet-4-5",
            "gpt-4o",
            "gpt-4o-mini",
            "text-embedding-3-small"
        ]
    );
    let v = list(key(5)).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["id"], "gpt-4o-mini");
    let resp = client().get(g.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

fn big_prompt(bytes: usize) -> String {
    // Varied content so a truncated or reordered body cannot pass by accident.
    (0..)
        .map(|i: u32| format!("w{i} "))
        .take_while({
            let mut n = 0;
            move |w: &String| {
                n += w.len();
                n <= bytes
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_reaches_provider_intact_with_a_retry() {
    let mock = mock().await;
    // The first target refuses connections (nothing listens there), so every request is
    // retried on the second: the 2 MiB body must be replayed intact.
    let policy = basic_policy(mock.addr(), "").with_dead_target("connect_timeout = \"1s\"\n");
    let g = start_gateway(&policy);
    let prompt = big_prompt(2 * 1024 * 1024);
    for stream in [false, true] {
        mock.clear_received();
        let body = json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": prompt}]});
        let resp = g.post(CHAT, &key(1), &[], &body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "stream={stream}");
        assert_eq!(resp.headers()["x-tollgate-target"], "oa/gpt-4o");
        let text = resp.text().await.unwrap();
        if stream {
            assert!(text.contains("data: [DONE]"), "{text}");
        }
        let got = mock.received();
        assert_eq!(got.len(), 1);
        let up = got[0].json().unwrap();
        assert_eq!(
            up["messages"][0]["content"].as_str().unwrap(),
            prompt,
            "stream={stream}: body altered"
        );
        assert_eq!(
            got[0]
                .header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            got[0].body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_unbuffered() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), ""));
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let k = key(1);
        let slow = [
            ("x-api-key", k.as_str()),
            ("x-mock-chunk-interval-ms", "200"),
            ("x-mock-output-tokens", "5"),
        ];
        let started = Instant::now();
        let mut resp = g.post(path, &k, &slow, &body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let first = resp.chunk().await.unwrap().expect("first chunk");
        let first_at = started.elapsed();
        let mut all = first.to_vec();
        while let Some(c) = resp.chunk().await.unwrap() {
            all.extend_from_slice(&c);
        }
        let last_at = started.elapsed();
        // The provider spaces its events 200 ms apart, so the stream takes over a second;
        // the first event must arrive long before the last one.
        assert!(
            last_at >= Duration::from_millis(1000),
            "{path}: stream too fast {last_at:?}"
        );
        assert!(
            first_at + Duration::from_millis(600) < last_at,
            "{path}: first event at {first_at:?}, last at {last_at:?}: buffered"
        );
        let text = String::from_utf8(all).unwrap();
        assert!(text.contains("data: "), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), ""));
    let body = serde_json::to_vec(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(5000)}]})).unwrap();
    let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        key(1),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The client waits for the interim answer before sending its body (as curl does).
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(&body).await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    let got = mock.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].header("expect").is_none(),
        "Expect forwarded upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let mock = mock().await;
    let extra = format!("[[keys]]\nid = \"key_office\"\ngroup = \"grp_prod\"\nsha256 = \"{}\"\nallowed_cidrs = [\"10.0.0.0/8\"]\n", sha(&key(9)));
    let from = |g: &GatewayProc, xff: &'static str| {
        let body = json!({"model": "gpt-4o-mini", "messages": []});
        let req = g.post(CHAT, &key(9), &[("x-forwarded-for", xff)], &body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Loopback is not a trusted proxy: the header is ignored, the client is 127.0.0.1.
    let g = start_gateway(&basic_policy(mock.addr(), &extra));
    assert_eq!(from(&g, "10.1.2.3").await, 403);
    drop(g);
    // Loopback trusted: the first untrusted address from the right is the client.
    let trusted =
        basic_policy(mock.addr(), &extra).in_server("trusted_proxies = [\"127.0.0.0/8\"]");
    let g = start_gateway(&trusted);
    assert_eq!(from(&g, "10.1.2.3").await, 200);
    assert_eq!(from(&g, "10.1.2.3, 8.8.8.8").await, 403);
    assert_eq!(from(&g, "8.8.8.8, 10.1.2.3, 127.0.0.5").await, 200);
}

/// TCP segments the kernel has received on `s` (`segs_in` of its `TCP_INFO`, read with
/// iproute2's `ss`: the project forbids `unsafe`, so no raw `getsockopt` here).
fn segments_in(s: &std::net::TcpStream) -> u32 {
    let (local, peer) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
    let filter = format!("( sport = :{} and dport = :{} )", local.port(), peer.port());
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) runs; scripts/setup.sh installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("segs_in:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no segs_in in `ss` output: {text}"))
}

/// Reads one HTTP/1.1 request (header and `Content-Length` body) from `s`.
fn read_request(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-request");
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if got.len() >= end + 4 + len {
            return got;
        }
    }
}

/// An upstream that serves one request per connection and reports how many TCP segments
/// carried it.
fn segment_counting_upstream() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<u32>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            read_request(&mut s);
            if tx.send(segments_in(&s)).is_err() {
                return;
            }
            let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, rx)
}

/// A request header and a body of known length leave the gateway in one write, so they
/// reach the provider in one TCP segment (one wake-up of the provider, one syscall fewer
/// per request: the `TOLLGATE PATCH` in vendor/pingora-core's upstream connector and
/// HTTP/1 client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_and_body_reach_the_provider_in_one_segment() {
    use std::io::Write;
    let (up, segments) = segment_counting_upstream();
    let wait = || {
        segments
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream saw no request")
    };
    // Calibration: what one write of a whole request looks like on this kernel.
    let mut c = std::net::TcpStream::connect(up).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap();
    let one_write = wait();
    drop(c);
    let g = start_gateway(&basic_policy(up, &extra_keys()));
    for bytes in [10, 12 * 1024] {
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": big_prompt(bytes)}]});
        let a = g.call(CHAT, &key(1), &[], &body).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(
            wait(),
            one_write,
            "a {bytes}-byte prompt took more segments than one write"
        );
    }
}

/// A provider that accepts the connection and never reads: the gateway's body write
/// stalls on a full socket, and the group's `timeout` as the peer's `write_timeout` ends
/// the request (the answer's `read_timeout` is not armed while the body is still being
/// written: without the write timeout this request hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_reads_the_body_times_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    let policy = basic_policy(up, &extra_keys())
        .replace(
            "max_tokens = 4000\n",
            "max_tokens = 4000\ntimeout = \"1s\"\nretries = 0\n",
        )
        .in_server("max_body = \"32MiB\"");
    let g = start_gateway(&policy);
    let started = Instant::now();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": big_prompt(24 * 1024 * 1024)}]});
    let a = g.call(CHAT, &key(1), &[], &body).await;
    let took = started.elapsed();
    let v = a.json();
    assert_eq!(a.status, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WriteTimedout"),
        "{v}"
    );
    // Not a hang (without the write timeout it never ends); a debug build on a loaded host
    // takes seconds to parse and send 24 MiB.
    assert!(took < Duration::from_secs(30), "answered after {took:?}");
}

/// The gateway's answer headers replace the provider's of the same names (OpenAI sends its
/// own `x-request-id` and `x-ratelimit-*`): one of each, ours. They are added without
/// touching Pingora's header maps (`append_wire_header`, our pingora-http patch), so
/// nothing else removes the provider's copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_answer_headers_replace_the_providers() {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let (tx, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = tx.send(read_request(&mut s));
            let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nX-Request-Id: upstream-id\r\ncontent-type: application/json\r\n\
                 x-ratelimit-limit-requests: 5000\r\nX-RateLimit-Remaining-Requests: 4999\r\n\
                 x-ratelimit-remaining-requests: 4998\r\nx-tollgate-target: forged\r\n\
                 openai-processing-ms: 7\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let policy = basic_policy(up, &extra_keys()).replace(
        "id = \"key_main\"\n",
        "id = \"key_main\"\nrpm = 1000\ntpm = 1000000\n",
    );
    let g = start_gateway(&policy);
    let resp = g
        .post(
            CHAT,
            &key(1),
            &[("x-request-id", "client-id-1")],
            &chat_body("gpt-4o-mini"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    let all = |n: &str| -> Vec<String> {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("x-request-id"), ["client-id-1"]);
    assert_eq!(all("x-tollgate-target").len(), 1);
    assert_ne!(all("x-tollgate-target")[0], "forged");
    for n in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
    ] {
        let v = all(n);
        assert_eq!(v.len(), 1, "{n}: {v:?}");
        assert!(v[0].parse::<u64>().is_ok(), "{n}: {v:?}");
        assert!(
            !["5000", "4999", "4998"].contains(&v[0].as_str()),
            "{n}: {v:?}"
        );
    }
    // The provider's other headers pass.
    assert_eq!(all("openai-processing-ms"), ["7"]);
    // The upstream request's standard names are written as Pingora writes them.
    let sent = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let head = String::from_utf8_lossy(&sent);
    for name in [
        "\r\nHost: ",
        "\r\nContent-Length: ",
        "\r\nAuthorization: Bearer ",
    ] {
        assert_eq!(head.matches(name).count(), 1, "{name:?} in {head}");
    }
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "ok");
}
