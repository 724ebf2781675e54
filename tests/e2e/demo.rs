//! End to end: `tollgate demo` (what `make demo` runs) on a copy of conf/demo.toml with free
//! ports: the printed demo key works, the printed admin token mints a key that works, and
//! the console the demo points at is served.

use crate::harness::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

const DEMO_KEY: &str = "tg-DemoKeyForTheLocalMockProviderOnly0000000";

#[tokio::test]
async fn the_demo_serves_its_key_mints_keys_and_shows_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"))
        .replace(
            "target/demo-data",
            &dir.path().join("data").display().to_string(),
        )
        .replace(
            "/tmp/tollgate-demo.pid",
            &dir.path().join("pid").display().to_string(),
        )
        .replace(
            "/tmp/tollgate-demo-upgrade.sock",
            &dir.path().join("sock").display().to_string(),
        );
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, conf).unwrap();
    let mut child = tollgate()
        .args(["demo", "-c"])
        .arg(&path)
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = KillOnDrop(child);

    // What the demo prints, up to the console line (or its end).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.starts_with("web console:"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed.push(l),
            Err(_) => panic!("the demo did not print its console line; it printed {printed:?}"),
        }
    }
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("admin token (for this demo run): "))
        .expect("an admin token line")
        .to_string();
    assert!(printed.iter().any(|l| l.contains(DEMO_KEY)));
    let console = format!("http://127.0.0.1:{admin}/console/");
    assert!(printed.iter().any(|l| l.contains(&console)), "{printed:?}");

    // The printed demo key, on the data plane (polled: the listener may still be coming up).
    let c = client();
    let chat = json!({"model": "fast", "messages": [{"role": "user", "content": "hello"}]});
    let url = format!("http://127.0.0.1:{listen}{CHAT}");
    let status = wait_for(
        Duration::from_secs(30),
        "the demo gateway answering",
        || async {
            let r = c.post(&url).bearer_auth(DEMO_KEY).json(&chat).send().await;
            r.ok().map(|r| r.status())
        },
    )
    .await;
    assert_eq!(status, 200);

    // The printed admin token mints a key (the printed curl line's body) that works.
    let group = printed
        .iter()
        .find_map(|l| l.split("\"group\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the mint line names a group")
        .to_string();
    let minted: serde_json::Value = c
        .post(format!("http://127.0.0.1:{admin}/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "my-service", "group": group}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let raw = minted["key"].as_str().expect("a raw key, once").to_string();
    let r = c
        .post(&url)
        .bearer_auth(&raw)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The console the demo points at.
    let page = c.get(&console).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-security-policy")
        .is_some_and(|v| v.to_str().unwrap().contains("default-src")));
    assert!(page.text().await.unwrap().contains("tollgate"));
}
