//! End to end: SIGHUP reload (docs/operations.md "Reload"), `-t`, `keygen`, and every file in conf/.

use crate::harness::*;
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A chat completion of `model` with key(1): the status and the error code ("" if none).
async fn chat(g: &GatewayProc, model: &str) -> (u16, String) {
    let a = g.call(CHAT, &key(1), &[], &chat_body(model)).await;
    (a.status, a.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_policy_and_keeps_the_old_one_on_error() {
    let mock = mock().await;
    let base = basic_policy(mock.addr(), "");
    let g = start_gateway(&base);
    assert_eq!(chat(&g, "gpt-4o").await.0, 200);

    // Narrow the key's model list: the next request follows the new policy.
    let narrowed = base.replace(
        &format!("sha256 = \"{}\"", sha(&key(1))),
        &format!("sha256 = \"{}\"\nmodels = [\"gpt-4o-mini\"]", sha(&key(1))),
    );
    g.rewrite_and_reload(&narrowed);
    g.wait_reloads(1, 0);
    assert_eq!(chat(&g, "gpt-4o").await, (403, "model_not_allowed".into()));
    assert_eq!(chat(&g, "gpt-4o-mini").await.0, 200);

    // Pause the group.
    let paused = narrowed.replace(
        "id = \"grp_prod\"\norg = \"acme\"",
        "id = \"grp_prod\"\norg = \"acme\"\nstate = \"paused\"",
    );
    assert_ne!(paused, narrowed);
    g.rewrite_and_reload(&paused);
    g.wait_reloads(2, 0);
    assert_eq!(chat(&g, "gpt-4o-mini").await, (403, "group_paused".into()));

    // An invalid file changes nothing: the paused policy stays in force.
    g.rewrite_and_reload("[server]\nlisten = [\"{LISTEN}\"]\nbogus_field = 1\n");
    g.wait_reloads(2, 1);
    assert_eq!(chat(&g, "gpt-4o-mini").await, (403, "group_paused".into()));

    // And a valid one afterwards is applied again.
    g.rewrite_and_reload(&base);
    g.wait_reloads(3, 1);
    assert_eq!(chat(&g, "gpt-4o").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sighups_during_steady_traffic_fail_no_request() {
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), "");
    let g = Arc::new(start_gateway(&policy));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..4 {
        let (g, stop, ok, failed) = (g.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match chat(&g, "gpt-4o-mini").await.0 {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..20 {
        // Alternate between two valid policies so every reload really swaps.
        let p = if i % 2 == 0 {
            policy.replace("max_tokens = 4000", "max_tokens = 3999")
        } else {
            policy.clone()
        };
        g.rewrite_and_reload(&p);
        g.wait_reloads(i + 1, 0);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "too little traffic: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert_eq!(g.reload_count(), (20, 0));
}

#[test]
fn check_mode_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[server]
listen = ["127.0.0.1:8080"]

[[providers]]
id = "oa"
api = "openai"
base_url = "http://127.0.0.1:1"

[[models]]
name = "m"
targets = [{ provider = "nope" }]

[[orgs]]
id = "acme"
rpm = 100

[[groups]]
id = "g"
org = "acme"
rpm = 500

[[keys]]
id = "k"
group = "g"
sha256 = "abc"
"#,
    )
    .unwrap();
    let out = check_policy(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(
        err.contains("bad.toml:9:1: models[0] (m).targets[0].provider: unknown provider \"nope\""),
        "{err}"
    );
    assert!(
        err.contains("groups[0] (g).rpm: 500 exceeds org acme rpm 100"),
        "{err}"
    );
    assert!(err.contains("keys[0] (k).sha256"), "{err}");

    // Unknown fields are errors too, reported with their element's line.
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[orgs]]\nid = \"a\"\nrmp = 5\n",
    )
    .unwrap();
    let out = check_policy(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(":4:1: orgs[0]: unknown field `rmp`"), "{err}");
}

#[test]
fn every_file_in_conf_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    let files = std::fs::read_dir(root.join("conf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain([root.join("loadtest/gateway.toml")]);
    for path in files {
        // Read through `include` by conf/tollgate.toml, not a policy file on its own.
        if path.file_name().is_some_and(|n| n == "presets.toml") {
            continue;
        }
        if path.extension().is_some_and(|e| e == "toml") {
            let out = check_policy(&path);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
            n += 1;
        }
    }
    assert!(n >= 2, "conf/ should hold the example and the demo config");
}

#[test]
fn keygen_prints_a_key_and_its_digest() {
    let out = tollgate().arg("keygen").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim();
    assert!(key.starts_with("tg-") && key.len() >= 43, "{key}");
    assert!(
        text.contains(&format!("sha256 = \"{}\"", sha(key))),
        "{text}"
    );
}

#[test]
fn systemd_unit_verifies_when_the_tool_is_present() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/tollgate.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needle in [
        "ExecStartPre=",
        " -t ",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=tollgate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(text.contains(needle), "unit lacks {needle}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The binary path does not exist on a build machine; anything else is a defect.
        let real: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/tollgate") && !l.trim().is_empty())
            .collect();
        assert!(real.is_empty(), "systemd-analyze verify: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_streams_finish_and_flushes_spend() {
    let mock = mock().await;
    let policy =
        basic_policy(mock.addr(), "").replace("grace_period = \"1s\"", "grace_period = \"5s\"");
    let mut g = start_gateway(&policy);
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let slow = [
        ("x-mock-chunk-interval-ms", "100"),
        ("x-mock-output-tokens", "15"),
    ];
    let resp = g.post(CHAT, &key(1), &slow, &body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let sent = Instant::now();
    g.signal(libc::SIGTERM);
    // The stream in flight completes...
    let text = resp.text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");
    // ...and the process exits once it is done, well before the 5 s grace period ends.
    let status = tokio::task::spawn_blocking(move || {
        let s = g.child.wait().unwrap();
        (s, g)
    })
    .await
    .unwrap();
    let (st, g) = status;
    assert!(st.success(), "{st:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    // Its spend was flushed on the way out.
    let ledger = Ledger::open(&g.data_dir(), Duration::from_secs(2)).unwrap();
    let out: u64 = ledger
        .usage_between(0, u64::MAX)
        .iter()
        .map(|(_, t)| t.output_tokens)
        .sum();
    assert_eq!(out, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighups_during_start_up_do_not_kill_the_process() {
    let mock = mock().await;
    let mut g = GatewayProc::launch(&basic_policy(mock.addr(), ""), &[]);
    let pid = g.child.id();
    // Before `main` runs (dynamic loader, runtime set-up) no process can catch a signal. The
    // handler is the first thing main installs: from the moment the kernel shows SIGHUP as
    // caught, hangups must be harmless at any point of start-up. (Polled every 200 µs, and
    // hangups sent every 3 ms: as early and as often in start-up as can be.)
    let caught = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 == 1)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !caught() {
        assert!(Instant::now() < deadline, "SIGHUP handler never installed");
        std::thread::sleep(Duration::from_micros(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(g.addr).is_err() {
        assert!(Instant::now() < deadline, "gateway never came up");
        assert!(
            g.child.try_wait().unwrap().is_none(),
            "killed by SIGHUP during start-up"
        );
        g.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(3));
    }
    g.signal(libc::SIGHUP);
    let a = g
        .call(
            CHAT,
            &key(1),
            &[],
            &json!({"model": "gpt-4o-mini", "messages": []}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert!(g.child.try_wait().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_has_one_json_line_per_request_with_attempts_and_no_secret() {
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), "")
        .with_request_log()
        .with_dead_target("");
    let g = start_gateway(&policy);
    let ok = g
        .call(
            CHAT,
            &key(1),
            &[],
            &json!({"model": "gpt-4o", "messages": []}),
        )
        .await;
    assert_eq!(ok.status, 200);
    let refused = g
        .call(CHAT, &key(1), &[], &json!({"model": "o1-preview"}))
        .await;
    assert_eq!(refused.status, 403);
    let read = || {
        let text = std::fs::read_to_string(g.request_log()).unwrap_or_default();
        text.lines().map(str::to_string).collect::<Vec<_>>()
    };
    // A line is written just after its answer is sent.
    let _ = poll_until(Duration::from_secs(10), || async {
        (read().len() >= 2).then_some(())
    })
    .await;
    let lines = read();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let text = lines.join("\n");
    assert!(
        !text.contains(&key(1)) && !text.contains("sk-provider-secret"),
        "secret in the request log"
    );
    // A line is written after its answer is sent, so the two may appear in either order.
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = parsed.iter().find(|v| v["status"] == 200).unwrap().clone();
    assert_eq!(first["status"], 200);
    assert_eq!(first["group"], "grp_prod");
    assert_eq!(first["key_id"], "key_main");
    assert_eq!(first["target"], "oa/gpt-4o");
    assert_eq!(first["attempts"][0]["outcome"], "connect_failed");
    assert_eq!(
        first["attempts"][1],
        json!({"target": "oa/gpt-4o", "outcome": "200"})
    );
    assert!(first["output_tokens"].as_u64().unwrap() > 0);
    for field in [
        "ts",
        "request_id",
        "org",
        "model",
        "code",
        "input_tokens",
        "cost_usd",
        "duration_ms",
        "overhead_ms",
        "client_ip",
        "stream",
    ] {
        assert!(first.get(field).is_some(), "missing {field}");
    }
    let second = parsed.iter().find(|v| v["status"] == 403).unwrap().clone();
    assert_eq!(
        (second["status"].as_u64(), second["code"].as_str()),
        (Some(403), Some("model_not_allowed"))
    );
}
