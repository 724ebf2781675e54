//! End to end: presets (docs/policy.md "Presets"). `[[presets]]` blocks, in the file or
//! read through `include`, name bundles of group fields; a group with `preset = "id"`
//! takes every field it does not set itself. The result is validated (inheritance
//! included) at load, shown by `tollgate -t` and the admin API, and enforced.

use crate::harness::*;
use serde_json::json;

fn check_text(policy: &str, files: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("p.toml");
    write_policy(&path, policy, free_addr(), dir.path());
    let out = check_policy(&path);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn shipped_presets() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/presets.toml")).unwrap()
}

/// `include` at the top of a policy (before `[server]`).
fn with_include(policy: &str, files: &str) -> String {
    format!("include = [{files}]\n{policy}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_take_what_they_do_not_set_from_their_preset() {
    let mock = mock().await;
    let extra = r#"
[[groups]]
id = "grp_strict"
org = "acme"
preset = "strict"
max_parallel = 3

[[keys]]
id = "key_strict"
group = "grp_strict"
sha256 = "SHA2"

[[groups]]
id = "grp_local"
org = "acme"
preset = "tiny"

[[keys]]
id = "key_local"
group = "grp_local"
sha256 = "SHA3"

[[presets]]
id = "tiny"
rpm = 1
models = ["gpt-4o-mini"]
"#
    .replace("SHA2", &sha(&key(2)))
    .replace("SHA3", &sha(&key(3)));
    let policy = with_include(
        &basic_policy(mock.addr(), &extra).with_admin(),
        "\"presets.toml\"",
    );
    // `-t` lists what each group took from its preset.
    let (ok, text) = check_text(&policy, &[("presets.toml", &shipped_presets())]);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "preset strict: guardrails, idle_disable, key_ttl, log_level, max_tokens, rpm, tpm"
        ),
        "{text}"
    );
    assert!(text.contains("preset tiny: models, rpm"), "{text}");

    // Started on the same files: the preset's fields are in force.
    let presets = shipped_presets();
    let g = start_gateway_files(&policy, ADMIN_ENV, &[("presets.toml", &presets)]);
    let admin = g.admin(ROOT);
    let (_, grp) = admin.get("/v1/groups/grp_strict").await;
    assert_eq!(grp["preset"], "strict", "{grp}");
    assert_eq!(grp["log_level"], "prompt", "{grp}");
    assert_eq!(grp["limits"]["rpm"], 120, "{grp}");
    assert_eq!(grp["limits"]["max_parallel"], 3, "{grp}"); // its own value wins
    assert!(grp["preset_fields"]
        .as_array()
        .unwrap()
        .contains(&json!("guardrails")));
    let guards = grp["guardrails"].to_string();
    assert!(
        guards.contains("preset-pii") && guards.contains("preset-secrets"),
        "{guards}"
    );

    // strict blocks secrets in prompts (its guardrails are the included file's).
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user",
        "content": "my key is sk-proj-Zx81KqPw93LmNb27VcRt64YuHs05JdFg keep it"}]});
    let r = g.call(CHAT, &key(2), &[], &body).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "guardrail_blocked".to_string()),
        "{:?}",
        r.json()
    );
    // tiny: one request a minute, gpt-4o-mini only.
    let r = g.call(CHAT, &key(3), &[], &chat_body("gpt-4o")).await;
    assert_eq!(r.code(), "model_not_allowed");
    assert_eq!(
        g.call(CHAT, &key(3), &[], &chat_body("gpt-4o-mini"))
            .await
            .status,
        200
    );
    let r = g.call(CHAT, &key(3), &[], &chat_body("gpt-4o-mini")).await;
    assert_eq!(
        (r.status, r.code()),
        (429, "rate_limit_exceeded".to_string())
    );
}

#[test]
fn preset_problems_are_refused_at_load_naming_both_values() {
    let mock_addr = free_addr();
    // A preset looser than the org: the inheritance check names both values.
    let extra = r#"
[[groups]]
id = "grp_p"
org = "acme"
preset = "big"

[[presets]]
id = "big"
max_tokens = 9000
"#;
    let (ok, text) = check_text(&basic_policy(mock_addr, extra), &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("max_tokens") && text.contains("9000") && text.contains("org acme"),
        "{text}"
    );
    // An unknown preset, a preset with a field groups do not have, a missing include.
    let (ok, text) = check_text(
        &basic_policy(
            mock_addr,
            "[[groups]]\nid = \"grp_q\"\norg = \"acme\"\npreset = \"nope\"\n",
        ),
        &[],
    );
    assert!(!ok && text.contains("unknown preset \"nope\""), "{text}");
    let (ok, text) = check_text(
        &basic_policy(mock_addr, "[[presets]]\nid = \"bad\"\nrmp = 5\n"),
        &[],
    );
    assert!(
        !ok && text.contains("presets[0] (bad)") && text.contains("rmp"),
        "{text}"
    );
    let (ok, text) = check_text(
        &with_include(&basic_policy(mock_addr, ""), "\"missing.toml\""),
        &[],
    );
    assert!(
        !ok && text.contains("include[0]") && text.contains("missing.toml"),
        "{text}"
    );
    // The shipped file: each preset under a plain org passes.
    for p in ["standard", "strict", "audit"] {
        let extra = format!("[[groups]]\nid = \"grp_{p}\"\norg = \"acme\"\npreset = \"{p}\"\n");
        let policy = with_include(&basic_policy(mock_addr, &extra), "\"presets.toml\"")
            .replace("max_tokens = 8000\n", "");
        let (ok, text) = check_text(&policy, &[("presets.toml", &shipped_presets())]);
        assert!(ok, "{p}: {text}");
        assert!(text.contains(&format!("preset {p}: ")), "{text}");
    }
}
