//! Browser keys in a real browser (docs/data-plane.md "Browsers (CORS)"): pages served on
//! two other loopback origins call the gateway with `fetch` in headless Chromium driven by
//! Playwright (tests/console/cors_check.py; skipped without them, as the console test). The
//! key's origin reads the answer; the other origin (listed by the group, not the key)
//! passes the preflight, gets 403 `origin_not_allowed` without CORS headers, and the
//! browser blocks the answer; the gateway logs the refusal.

use crate::harness::*;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reads_answers_only_from_the_keys_origins() {
    let Some(python) = crate::console::browser_tools() else {
        return;
    };
    let mock = mock().await;
    let (allowed, refused) = (free_port(), free_port());
    let extra = format!(
        r#"
[[groups]]
id = "grp_web"
org = "acme"
allowed_origins = ["http://127.0.0.1:{allowed}", "http://127.0.0.1:{refused}"]

[[keys]]
id = "key_web"
group = "grp_web"
sha256 = "{sha}"
allowed_origins = ["http://127.0.0.1:{allowed}"]
"#,
        sha = sha(&key(41))
    );
    let g = start_gateway(&basic_policy(mock.addr(), &extra).with_request_log());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/cors_check.py");
    let vars = [
        ("GATEWAY", format!("http://{}", g.addr)),
        ("KEY", key(41)),
        ("ALLOWED_PORT", allowed.to_string()),
        ("REFUSED_PORT", refused.to_string()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .envs(vars)
            .env("NO_PROXY", "*")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all cors checks passed"),
        "{stdout}\n{stderr}\n{}",
        g.log_text()
    );
    // The refused page's request reached the gateway (after its preflight) and was refused.
    let log = g.request_log();
    let refusal = wait_for(
        std::time::Duration::from_secs(5),
        "the refusal's log line",
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|l| l["code"] == "origin_not_allowed" && l["key_id"] == "key_web")
            }
        },
    )
    .await;
    assert_eq!(refusal["status"], 403, "{refusal}");
    // The allowed page's request was served.
    let served = mock.received();
    assert!(
        served
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("hi from a page")),
        "the allowed page's call reached the provider"
    );
}
