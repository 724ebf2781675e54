//! End to end: docs/policy.md "Limit fields" admission and accounting against the real binary and the mock.

use crate::harness::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn policy(mock: std::net::SocketAddr, group_limits: &str, key_limits: &str) -> String {
    format!(
        r#"
{SERVER}default_max_tokens = 100

[[providers]]
id = "oa"
api = "openai"
base_url = "http://{mock}"

[[providers]]
id = "an"
api = "anthropic"
base_url = "http://{mock}"

[[models]]
name = "m"
input_usd_per_mtok = 0
output_usd_per_mtok = 1000
targets = [{{ provider = "oa" }}]

[[models]]
name = "claude"
output_usd_per_mtok = 1000
targets = [{{ provider = "an" }}]

[[orgs]]
id = "o"

[[groups]]
id = "g"
org = "o"
{group_limits}

[[keys]]
id = "k1"
group = "g"
sha256 = "{k1}"
{key_limits}

[[keys]]
id = "k2"
group = "g"
sha256 = "{k2}"
{key_limits}
"#,
        k1 = sha(&key(1)),
        k2 = sha(&key(2)),
    )
}

fn small() -> Value {
    json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

/// A request whose answer shows the tokens left (`x-ratelimit-remaining-tokens`).
fn tiny() -> Value {
    json!({"model": "m", "max_tokens": 1, "messages": []})
}

fn remaining_tokens(a: &Answer) -> u64 {
    let h = a.header("x-ratelimit-remaining-tokens");
    h.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no remaining tokens: {:?}", a.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_separate_pools_and_429s_name_the_scope() {
    let mock = mock().await;
    let g = start_gateway(&policy(mock.addr(), "rpm = 6", "rpm = 5"));
    let mut ok = 0;
    let mut last = None;
    for i in 0..20 {
        let k = key(1 + i % 2);
        let Answer {
            status: s,
            headers: h,
            text: body,
        } = g.call(CHAT, &k, &[], &small()).await;
        if s == 200 {
            ok += 1;
            assert!(h.get("x-ratelimit-limit-requests").is_some());
        } else {
            assert_eq!(s, 429, "{body}");
            last = Some((h, body));
        }
    }
    assert_eq!(ok, 6);
    let (h, body) = last.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group g rpm 6"),
        "{v}"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    assert_eq!(mock.received().len(), 6);
}

/// Real time: 100 concurrent clients offer 3x the limit for several windows. Windows are
/// scaled so a "minute" lasts one second (TOLLGATE_WINDOW_SCALE=60).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_holds_under_concurrent_overload_in_real_time() {
    let mock = mock().await;
    let limit = 20u64;
    let g = Arc::new(start_gateway_env(
        &policy(mock.addr(), "", &format!("rpm = {limit}")),
        &[("TOLLGATE_WINDOW_SCALE", "60")],
    ));
    let started = Instant::now();
    let run_for = Duration::from_millis(4_000);
    // 3 x 20 per second offered, spread over 100 clients.
    let per_client_gap = Duration::from_millis(100 * 1000 / (3 * limit));
    let mut tasks = vec![];
    for c in 0..100u64 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            // Real time is what is tested: the clients start spread over one gap and each
            // offers a request per gap, so the offered rate is steady.
            tokio::time::sleep(Duration::from_millis(
                c * per_client_gap.as_millis() as u64 / 100,
            ))
            .await;
            let mut ok = 0;
            while started.elapsed() < run_for {
                if g.call(CHAT, &key(1), &[], &small()).await.status == 200 {
                    ok += 1;
                }
                tokio::time::sleep(per_client_gap).await;
            }
            ok
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    let mut at: Vec<Instant> = mock.received().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), admitted);
    // No rolling window (less a 250 ms allowance for gateway-to-provider jitter on a loaded
    // host) holds more than the limit: a window that let twice the limit through at its
    // edge would show here...
    let span = Duration::from_millis(750);
    for (i, t) in at.iter().enumerate() {
        let n = at[i..].iter().take_while(|u| **u < *t + span).count() as u64;
        assert!(n <= limit, "{n} requests within {span:?} (limit {limit})");
    }
    // ...and the limit is actually used: about `limit` per second over 4 seconds.
    assert!(admitted as u64 * 2 >= 5 * limit, "only {admitted} admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_burst_admits_the_limit_once() {
    let mock = mock().await;
    let g = Arc::new(start_gateway_env(
        &policy(mock.addr(), "", "rpm = 10"),
        &[("TOLLGATE_WINDOW_SCALE", "20")],
    ));
    let window = Duration::from_secs(3); // a minute at scale 20
    let burst = |g: Arc<GatewayProc>| async move {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.call(CHAT, &key(1), &[], &small()).await.status })
            })
            .collect();
        let mut ok = 0;
        for h in hs {
            if h.await.unwrap() == 200 {
                ok += 1;
            }
        }
        ok
    };
    let first = Instant::now();
    assert_eq!(burst(g.clone()).await, 10);
    let last = Instant::now();
    // Real time is what is tested (the sliding window): half a window after the first
    // admission (a fixed window would have reset at its edge half the time), nothing more.
    tokio::time::sleep_until((first + window / 2).into()).await;
    assert_eq!(burst(g.clone()).await, 0);
    // A window after the last admission: the limit again.
    tokio::time::sleep_until((last + window + Duration::from_millis(200)).into()).await;
    assert_eq!(burst(g.clone()).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_counts_real_usage_including_usage_from_the_last_sse_event() {
    let mock = mock().await;
    let g = start_gateway(&policy(mock.addr(), "", "tpm = 2000"));
    // Each request reserves its prompt estimate + max_tokens 500, but uses only ~20 + 4.
    let body = json!({"model": "m", "max_tokens": 500, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut ok = 0;
    for _ in 0..12 {
        let Answer {
            status: s,
            headers: h,
            text,
        } = g
            .call(CHAT, &key(1), &[("x-mock-output-tokens", "4")], &body)
            .await;
        assert_eq!(s, 200, "{text}");
        // The usage chunk the gateway asked for is not shown to a client that did not.
        assert!(!text.contains("\"usage\":{"), "{text}");
        assert!(text.contains("data: [DONE]"));
        assert!(h.get("x-ratelimit-remaining-tokens").is_some());
        ok += 1;
    }
    assert_eq!(ok, 12, "reservations were not replaced by real usage");
    // The provider was asked for usage.
    assert_eq!(
        mock.received()[0].json().unwrap()["stream_options"]["include_usage"],
        true
    );
    // A client that asks for usage gets it.
    let mut b2 = body.clone();
    b2["stream_options"] = json!({"include_usage": true});
    let text = g.call(CHAT, &key(2), &[], &b2).await.text;
    assert!(text.contains("\"usage\":{"), "{text}");
    // Big estimates are refused once real usage has filled the window.
    let big =
        json!({"model": "m", "max_tokens": 1990, "messages": [{"role": "user", "content": "hi"}]});
    let Answer {
        status: s, text, ..
    } = g.call(CHAT, &key(1), &[], &big).await;
    assert_eq!(s, 429, "{text}");
    assert!(
        text.contains("token_limit_exceeded") && text.contains("key k1 tpm 2000"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_under_concurrency_admits_exactly_what_fits() {
    let mock = mock().await;
    // Worst case per request: 100 max_tokens x $1000/Mtok = $0.10; budget $1.00 -> 10.
    let g = Arc::new(start_gateway(&policy(
        mock.addr(),
        "budget_usd = 1.0\nbudget_period = \"monthly\"",
        "",
    )));
    let body =
        json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]});
    let hs: Vec<_> = (0..200)
        .map(|i| {
            let (g, body) = (g.clone(), body.clone());
            tokio::spawn(async move {
                // Slow answers: nothing settles while the 200 are being admitted.
                let slow = [("x-mock-latency-ms", "5000"), ("x-mock-output-tokens", "8")];
                g.call(CHAT, &key(1 + i % 2), &slow, &body).await
            })
        })
        .collect();
    let mut ok = 0;
    for h in hs {
        let Answer {
            status: s, text, ..
        } = h.await.unwrap();
        match s {
            200 => ok += 1,
            429 => assert!(
                text.contains("budget_exceeded") && text.contains("group g budget_usd 1"),
                "{text}"
            ),
            other => panic!("{other}: {text}"),
        }
    }
    assert_eq!(ok, 10);
    // Settled spend: 10 x 8 tokens x $0.001 = $0.08, under the budget. (The mock counts an
    // answer just after its last byte.)
    wait_until(Duration::from_secs(5), "the mock's count", || {
        mock.reported_usage().1 >= 80
    })
    .await;
    let (_, out) = mock.reported_usage();
    assert_eq!(out, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_slots_are_released_when_clients_disconnect_mid_stream() {
    let mock = mock().await;
    let g = Arc::new(start_gateway(&policy(mock.addr(), "", "max_parallel = 3")));
    let stream = json!({"model": "m", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    // A client that hangs up does not end the upstream request: the gateway reads the
    // answer to its end for its usage (docs/billing.md), and the slot is held until then.
    // Streams of 20 events 100 ms apart (2 s), or 10 events 1 ms apart.
    let open = |g: Arc<GatewayProc>, body: Value, interval: &'static str| async move {
        let tokens = if interval == "100" { "20" } else { "10" };
        let slow = [
            ("x-mock-chunk-interval-ms", interval),
            ("x-mock-output-tokens", tokens),
        ];
        g.post(CHAT, &key(1), &slow, &body).send().await.unwrap()
    };
    let mut held = vec![];
    for _ in 0..3 {
        let mut r = open(g.clone(), stream.clone(), "100").await;
        assert_eq!(r.status().as_u16(), 200);
        r.chunk().await.unwrap();
        held.push(r);
    }
    let Answer {
        status: s, text, ..
    } = g.call(CHAT, &key(1), &[], &small()).await;
    assert_eq!(s, 429, "{text}");
    assert!(text.contains("concurrency_limit_exceeded") && text.contains("key k1 max_parallel 3"));
    drop(held);
    // Still held while the upstream answers run on.
    let a = g.call(CHAT, &key(1), &[], &small()).await;
    assert_eq!(a.status, 429, "{}", a.text);
    // 300 clients that hang up after the first event.
    for i in 0..300 {
        // Slots are freed when the upstream answer ends.
        let mut r = wait_for(Duration::from_secs(10), "a free slot", || async {
            let r = open(g.clone(), stream.clone(), "1").await;
            (r.status().as_u16() == 200).then_some(r)
        })
        .await;
        r.chunk().await.unwrap();
        drop(r);
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Every slot comes back. (A try that gets fewer than three holds slots until the
    // gateway notices its hang-up: tries are spaced to let them go.)
    let every_slot = poll_every(
        Duration::from_millis(200),
        Duration::from_secs(5),
        || async {
            let rs: Vec<_> = futures_util::future::join_all(
                (0..3).map(|_| open(g.clone(), stream.clone(), "1")),
            )
            .await;
            rs.iter().all(|r| r.status().as_u16() == 200).then_some(())
        },
    )
    .await;
    assert!(every_slot.is_some(), "slots leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_usage_is_charged() {
    let mock = mock().await;
    let g = start_gateway(&policy(mock.addr(), "tpm = 100000", "").with_request_log());
    let resp = client()
        .post(g.url(MESSAGES))
        .header("x-api-key", key(1))
        .header("x-request-id", "claude-stream")
        .header("x-mock-output-tokens", "7")
        .json(&json!({"model": "claude", "max_tokens": 1000, "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("message_stop"));
    // The mock counts usage, and the gateway settles (then logs), just after the last byte.
    wait_until(Duration::from_secs(5), "the mock's count", || {
        mock.reported_usage().1 > 0
    })
    .await;
    g.log_line("claude-stream").await;
    let (input, output) = mock.reported_usage();
    assert_eq!(output, 7);
    // The next answer's header shows the real usage, not the 1000-token reservation.
    let remaining = remaining_tokens(&g.call(CHAT, &key(1), &[], &tiny()).await);
    assert!(remaining >= 100_000 - input - output - 100, "{remaining}");
    assert!(remaining < 100_000 - input - output + 1, "{remaining}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_garbled_usage_is_charged_as_reserved_and_never_crashes() {
    let mock = mock().await;
    let g = start_gateway(&policy(mock.addr(), "", "tpm = 100000").with_request_log());
    let body =
        json!({"model": "m", "max_tokens": 5000, "messages": [{"role": "user", "content": "x"}]});
    // An answer whose provider never reports usage: the 5000-token reservation stays charged
    // (a stream pays what it streamed instead: tests/e2e/metering.rs).
    let omit = [("x-mock-omit-usage", "1"), ("x-request-id", "omitted")];
    let Answer {
        status: s, text, ..
    } = g.call(CHAT, &key(1), &omit, &body).await;
    assert_eq!(s, 200, "{text}");
    g.log_line("omitted").await; // settled
    let remaining = remaining_tokens(&g.call(CHAT, &key(1), &[], &tiny()).await);
    assert!(remaining < 100_000 - 5000, "{remaining}");
    // Garbage instead of an answer: a clean 502, nothing charged, the gateway still serves.
    let garbage = [("x-mock-fault", "garbage"), ("x-request-id", "garbage")];
    let Answer {
        status: s, text, ..
    } = g.call(CHAT, &key(2), &garbage, &body).await;
    assert_eq!(s, 502, "{text}");
    assert!(text.contains("upstream_error"));
    g.log_line("garbage").await; // settled
    let a = g.call(CHAT, &key(2), &[], &tiny()).await;
    assert_eq!(a.status, 200);
    let remaining = remaining_tokens(&a);
    assert!(remaining > 100_000 - 100, "{remaining}");
}
