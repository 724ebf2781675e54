//! End to end: docs/policy.md routing — strategies, retries, fallbacks, timeouts, passive health —
//! with several mock providers that behave differently.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `targets` is the TOML list of targets for model "m"; providers p0..pN point at `mocks`.
fn policy(mocks: &[std::net::SocketAddr], targets: &str, group: &str) -> String {
    let mut s = SERVER.to_string();
    for (i, m) in mocks.iter().enumerate() {
        s += &format!("\n[[providers]]\nid = \"p{i}\"\napi = \"openai\"\nbase_url = \"http://{m}\"\nconnect_timeout = \"500ms\"\n");
    }
    s += &format!("\n[[models]]\nname = \"m\"\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 2\ntargets = [{targets}]\n");
    s += "\n[[models]]\nname = \"backup\"\ntargets = [{ provider = \"p0\", model = \"backup-v2\" }]\n";
    s += &format!("\n[[orgs]]\nid = \"o\"\n\n[[groups]]\nid = \"g\"\norg = \"o\"\n{group}\n\n[[keys]]\nid = \"k\"\ngroup = \"g\"\nsha256 = \"{}\"\n", sha(&key(1)));
    s
}

/// A mock provider's behaviour: every answer after `ms`.
fn latency(ms: u64) -> Behaviour {
    Behaviour {
        latency_ms: ms,
        ..Default::default()
    }
}

/// Sends `body` with key(1): the status, the target that served it, and the body.
async fn routed(g: &GatewayProc, body: Value, headers: &[(&str, String)]) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
    let a = g.call(CHAT, &key(1), &headers, &body).await;
    let target = a
        .header("x-tollgate-target")
        .unwrap_or_default()
        .to_string();
    (a.status, target, a.text)
}

fn chat() -> Value {
    json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends `n` requests, 8 at a time; counts answers per target.
async fn spread(
    g: &Arc<GatewayProc>,
    n: usize,
    headers: Vec<(&'static str, String)>,
) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for batch in 0..n.div_ceil(8) {
        let hs: Vec<_> = (0..8.min(n - batch * 8))
            .map(|_| {
                let (g, headers) = (g.clone(), headers.clone());
                tokio::spawn(async move { routed(&g, chat(), &headers).await })
            })
            .collect();
        for h in hs {
            let (s, t, body) = h.await.unwrap();
            assert_eq!(s, 200, "{body}");
            *out.entry(t).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_canary_gets_its_share() {
    let m = mocks(2).await;
    let g = Arc::new(start_gateway(&policy(
        &[m[0].addr(), m[1].addr()],
        r#"{ provider = "p0", model = "old", weight = 90 }, { provider = "p1", model = "new", weight = 10 }"#,
        "",
    )));
    let c = spread(&g, 2000, vec![]).await;
    let canary = c.get("p1/new").copied().unwrap_or(0) as f64 / 2000.0;
    assert!(
        (0.075..=0.125).contains(&canary),
        "canary share {canary}: {c:?}"
    );
    assert_eq!(m[1].received()[0].json().unwrap()["model"], "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_routing_prefers_the_fast_target_and_follows_a_slowdown() {
    let m = mocks(2).await;
    m[0].set_behaviour(latency(5));
    m[1].set_behaviour(latency(80));
    let g = Arc::new(start_gateway(&policy(
        &[m[0].addr(), m[1].addr()],
        r#"{ provider = "p0", model = "fast" }, { provider = "p1", model = "slow" }"#,
        "routing = \"latency\"",
    )));
    spread(&g, 40, vec![]).await; // warm up both EWMAs
    let c = spread(&g, 200, vec![]).await;
    let fast = c.get("p0/fast").copied().unwrap_or(0);
    assert!(fast >= 170, "{c:?}");
    // The fast one slows to 200 ms: within seconds the traffic moves.
    m[0].set_behaviour(latency(200));
    let started = Instant::now();
    loop {
        let c = spread(&g, 16, vec![]).await;
        if c.get("p1/slow").copied().unwrap_or(0) >= 14 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "traffic did not move: {c:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "moved only after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_routing_follows_prices_across_reloads() {
    let m = mocks(2).await;
    let addrs = [m[0].addr(), m[1].addr()];
    let cheap_b = r#"{ provider = "p0", model = "a", input_usd_per_mtok = 3, output_usd_per_mtok = 3 }, { provider = "p1", model = "b", input_usd_per_mtok = 1, output_usd_per_mtok = 1 }"#;
    let cheap_a = r#"{ provider = "p0", model = "a", input_usd_per_mtok = 0.5, output_usd_per_mtok = 0.5 }, { provider = "p1", model = "b", input_usd_per_mtok = 1, output_usd_per_mtok = 1 }"#;
    let g = Arc::new(start_gateway(&policy(
        &addrs,
        cheap_b,
        "routing = \"cost\"",
    )));
    assert_eq!(spread(&g, 40, vec![]).await.get("p1/b"), Some(&40));
    g.rewrite_and_reload(&policy(&addrs, cheap_a, "routing = \"cost\""));
    g.wait_reloads(1, 0);
    assert_eq!(spread(&g, 40, vec![]).await.get("p0/a"), Some(&40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_keep_their_target_and_only_a_removed_targets_sessions_move() {
    let m = mocks(3).await;
    let addrs = [m[0].addr(), m[1].addr(), m[2].addr()];
    let three = r#"{ provider = "p0", model = "x" }, { provider = "p1", model = "y" }, { provider = "p2", model = "z" }"#;
    let two = r#"{ provider = "p0", model = "x" }, { provider = "p1", model = "y" }"#;
    let g = Arc::new(start_gateway(&policy(
        &addrs,
        three,
        "routing = \"sticky\"",
    )));
    let mut home = HashMap::new();
    for s in 0..200 {
        let c = spread(&g, 20, vec![("x-tollgate-session", format!("session-{s}"))]).await;
        assert_eq!(c.len(), 1, "session {s} moved: {c:?}");
        home.insert(s, c.into_keys().next().unwrap());
    }
    g.rewrite_and_reload(&policy(&addrs, two, "routing = \"sticky\""));
    g.wait_reloads(1, 0);
    let mut moved_wrongly = 0;
    for s in 0..200 {
        let (_, t, _) = routed(
            &g,
            chat(),
            &[("x-tollgate-session", format!("session-{s}"))],
        )
        .await;
        if home[&s] != "p2/z" && t != home[&s] {
            moved_wrongly += 1;
        }
    }
    assert_eq!(moved_wrongly, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_routing_reaches_only_tagged_targets() {
    let m = mocks(2).await;
    let g = Arc::new(start_gateway(&policy(
        &[m[0].addr(), m[1].addr()],
        r#"{ provider = "p0", model = "us1", tags = ["us"] }, { provider = "p1", model = "eu1", tags = ["eu", "gdpr"] }"#,
        "routing = \"tag\"",
    )));
    let c = spread(&g, 40, vec![("x-tollgate-tags", "eu".into())]).await;
    assert_eq!(c.get("p1/eu1"), Some(&40));
    let (s, _, body) = routed(&g, chat(), &[("x-tollgate-tags", "eu, asia".into())]).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("no_healthy_target"));
    assert!(m[0].received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_fall_through_to_the_next_target_and_the_fallback_model() {
    let m = mocks(2).await;
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // p0: the fallback model's provider; p1: answers per the test; p2: refuses connections.
    let g = start_gateway(&policy(
        &[m[0].addr(), m[1].addr(), dead],
        r#"{ provider = "p2", model = "primary-a", weight = 1000 }, { provider = "p1", model = "primary-b", weight = 1 }"#,
        "retries = 1\nfallbacks = { m = [\"backup\"] }",
    ));
    // Connection refused on p2 -> p1 answers.
    let (s, t, _) = routed(&g, chat(), &[]).await;
    assert_eq!((s, t.as_str()), (200, "p1/primary-b"));
    // p1 answers 500 (and p2 refuses) -> the fallback model, with its own model id upstream.
    m[1].set_behaviour(answering(500));
    m[0].clear_received();
    let (s, t, body) = routed(&g, chat(), &[]).await;
    assert_eq!((s, t.as_str()), (200, "p0/backup-v2"), "{body}");
    assert_eq!(m[0].received()[0].json().unwrap()["model"], "backup-v2");
    m[1].set_behaviour(answering(429));
    let (s, t, _) = routed(&g, chat(), &[]).await;
    assert_eq!((s, t.as_str()), (200, "p0/backup-v2"));
    // A 400 from the provider is returned as it is, and not retried.
    m[1].set_behaviour(answering(400));
    m[0].clear_received();
    let before = m[1].received().len();
    let (s, t, body) = routed(&g, chat(), &[]).await;
    assert_eq!((s, t.as_str()), (400, "p1/primary-b"), "{body}");
    assert!(body.contains("mock error 400"));
    assert_eq!(m[1].received().len(), before + 1);
    assert!(m[0].received().is_empty(), "a 400 was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_body_survives_two_retries_intact() {
    let m = mocks(3).await;
    m[0].set_behaviour(answering(502));
    m[1].set_behaviour(Behaviour {
        fault: Some(Fault::Reset),
        ..Default::default()
    });
    let g = start_gateway(&policy(
        &[m[0].addr(), m[1].addr(), m[2].addr()],
        r#"{ provider = "p0", model = "t0", weight = 1000000 }, { provider = "p1", model = "t1", weight = 1000 }, { provider = "p2", model = "t2", weight = 1 }"#,
        "retries = 2",
    ));
    let prompt: String =
        (0..140_000).map(|i| format!("{i:07} ")).collect::<String>()[..1024 * 1024].to_string();
    let (s, t, body) = routed(
        &g,
        json!({"model": "m", "messages": [{"role": "user", "content": prompt}]}),
        &[],
    )
    .await;
    assert_eq!((s, t.as_str()), (200, "p2/t2"), "{body}");
    for (i, mock) in m.iter().enumerate() {
        let got = mock.received();
        assert_eq!(got.len(), 1, "target {i}");
        let v = got[0].json().unwrap();
        assert_eq!(v["model"], format!("t{i}"));
        assert_eq!(
            v["messages"][0]["content"].as_str().unwrap(),
            prompt,
            "target {i} got an altered body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_stalling_providers_time_out_and_free_their_slot() {
    let m = mocks(1).await;
    let g = start_gateway(&policy(&[m[0].addr()], r#"{ provider = "p0" }"#, "timeout = \"1s\"\nretries = 0\n\n[[keys]]\nid = \"k_par\"\ngroup = \"g\"\nmax_parallel = 1\nsha256 = \"SHA2\"").replace("SHA2", &sha(&key(2))));
    let started = Instant::now();
    let (s, _, body) = routed(&g, chat(), &[("x-mock-fault", "hang".into())]).await;
    let took = started.elapsed();
    assert_eq!(s, 504, "{body}");
    assert!(body.contains("upstream_timeout"));
    // One timeout, not two (a retry would double it); the margin covers a loaded CI host.
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(1900),
        "{took:?}"
    );
    // A stream that stalls mid-way is closed after the idle limit, and its slot comes back.
    let resp = g
        .post(
            CHAT,
            &key(2),
            &[("x-mock-fault", "stall_mid_stream")],
            &json!({"model": "m", "stream": true, "messages": []}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let started = Instant::now();
    let _ = resp.text().await; // ends (incomplete) when the gateway gives up on the upstream
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stalled stream held for {:?}",
        started.elapsed()
    );
    let ok = poll_until(Duration::from_secs(3), || async {
        (g.call(CHAT, &key(2), &[], &chat()).await.status == 200).then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "max_parallel slot leaked by the stalled stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_ejected_then_probed_and_recovers() {
    let m = mocks(2).await;
    let g = Arc::new(start_gateway(&policy(
        &[m[0].addr(), m[1].addr()],
        r#"{ provider = "p0", model = "a" }, { provider = "p1", model = "b" }"#,
        "retries = 1",
    )));
    m[0].set_behaviour(answering(503));
    // Every request still succeeds (retried on p1); p0 is ejected after 3 failures.
    spread(&g, 16, vec![]).await;
    spread(&g, 24, vec![]).await;
    // Without ejection about half of the 40 would reach p0. With it: the 3 failures that
    // eject it, a few more already in flight (8 at a time), and a probe per cool-down.
    let hits = m[0].received().len();
    assert!(
        (3..=15).contains(&hits),
        "ejected target kept getting traffic: {hits}"
    );
    // Healed: after the cool-down it is tried again and takes its share.
    m[0].set_behaviour(Behaviour::default());
    // Cool-downs double per ejection (1 s, 2 s, 4 s, … 60 s): usually a second or two
    // here, but on a loaded machine the failing phase lasts long enough for several
    // ejections, so the deadline covers the longest cool-down. Eight requests a try, a try
    // every 300 ms.
    let probed = poll_every(
        Duration::from_millis(300),
        Duration::from_secs(65),
        || async {
            spread(&g, 8, vec![])
                .await
                .contains_key("p0/a")
                .then_some(())
        },
    )
    .await;
    assert!(probed.is_some(), "healed target never probed");
    let c = spread(&g, 80, vec![]).await;
    assert!(c.get("p0/a").copied().unwrap_or(0) >= 20, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_host_does_not_resolve_is_skipped() {
    let m = mocks(1).await;
    let policy = policy(
        &[m[0].addr()],
        r#"{ provider = "nowhere", model = "x", weight = 1000000 }, { provider = "p0", model = "y", weight = 1 }"#,
        "retries = 1",
    ) + "\n[[providers]]\nid = \"nowhere\"\napi = \"openai\"\nbase_url = \"http://no-such-host.invalid\"\n";
    let g = start_gateway(&policy);
    let (s, t, body) = routed(&g, chat(), &[]).await;
    assert_eq!((s, t.as_str()), (200, "p0/y"), "{body}");
}
