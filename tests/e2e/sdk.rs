//! The official `openai` and `anthropic` Python SDKs, pointed at the gateway with a
//! `base_url` swap and nothing else (tests/sdk/*.py). `make test` creates the virtualenv
//! (scripts/setup-sdk.sh) and sets TOLLGATE_REQUIRE_SDK=1, so CI cannot skip it.

use crate::harness::*;
use std::path::Path;

/// Runs `tests/sdk/{script}` against a gateway in front of `mock`; `None` when skipped.
async fn run_script(script: &str, mock: &MockProvider) -> Option<String> {
    run_script_on(script, mock, "", &key(1)).await
}

/// The same on the basic policy with `extra` sections, as `key`.
async fn run_script_on(
    script: &str,
    mock: &MockProvider,
    extra: &str,
    key: &str,
) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(),
            "no .venv: run scripts/setup-sdk.sh (make test does)"
        );
        eprintln!("SKIPPED: no .venv with the SDKs (run `make test`)");
        return None;
    }
    let g = start_gateway(&basic_policy(mock.addr(), extra));
    let key = key.to_string();
    let gateway = format!("http://{}", g.addr);
    let path = root.join("tests/sdk").join(script);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(path)
            .env("GATEWAY", gateway)
            .env("KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", g.log_text());
    Some(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_through_the_gateway() {
    let mock = mock().await;
    let Some(stdout) = run_script("sdk_check.py", &mock).await else {
        return;
    };
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");
    // The SDKs' requests really went through to the provider.
    assert!(mock.received().len() >= 5, "{}", mock.received().len());
    // count_tokens for the Claude model went to the provider's own route.
    assert!(
        mock.received()
            .iter()
            .any(|r| r.path == "/v1/messages/count_tokens"),
        "count_tokens forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_call_models_of_the_other_api() {
    let mock = mock().await;
    let Some(stdout) = run_script("translate_check.py", &mock).await else {
        return;
    };
    assert!(
        stdout.contains("all translation SDK checks passed"),
        "{stdout}"
    );
    eprintln!("{stdout}");
    // Each SDK's requests reached the provider in the other API.
    let got = mock.received();
    let paths = |p: &str| got.iter().filter(|r| r.path == p).count();
    assert!(
        paths("/v1/messages") >= 10 && paths("/v1/chat/completions") >= 10,
        "{got:?}"
    );
}

/// Guardrail endings read as ordinary answers: `content_filter` / `refusal`, JSON and
/// streamed, translated or not; a blocked request is the SDKs' `BadRequestError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_read_guardrail_endings_as_answers() {
    let mock = mock().await;
    let extra = format!(
        r#"
[[guardrails]]
id = "codenames-out"
kind = "regex"
patterns = ["(?i)bluebird"]
action = "block"
on = ["response"]

[[guardrails]]
id = "no-secrets"
kind = "secrets"
action = "block"

[[groups]]
id = "grp_guarded"
org = "acme"
guardrails = ["codenames-out", "no-secrets"]

[[keys]]
id = "key_guarded"
group = "grp_guarded"
sha256 = "{}"
"#,
        sha(&key(5))
    );
    let Some(stdout) = run_script_on("guardrail_check.py", &mock, &extra, &key(5)).await else {
        return;
    };
    assert!(
        stdout.contains("all guardrail SDK checks passed"),
        "{stdout}"
    );
}
