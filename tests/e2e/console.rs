//! The web console (docs/console.md) end to end: the real binary with an admin listener, seeded
//! through the real API and data plane, driven in headless Debian Chromium by Playwright
//! (tests/console/console_check.py; `scripts/setup-sdk.sh` installs both). Without them
//! the browser test is skipped, unless TOLLGATE_REQUIRE_SDK=1 (`make test`), where it
//! fails. The routes the console added (`/v1/whoami`, `/v1/policy`, group refusals) and
//! the console's headers are checked here over plain HTTP too.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

struct Env {
    g: GatewayProc,
    admin: Admin,
    _mock: MockProvider,
}

async fn start() -> Env {
    let mock = mock().await;
    let policy = basic_policy(
        mock.addr(),
        "[[groups]]\nid = \"grp_b\"\norg = \"acme\"\nbudget_usd = 20\n\
         markup_pct = 15\ninvoice_to = \"customer-b\"\n\
         self_service = { enabled = true, max_keys_per_owner = 5 }\n",
    )
    .with_admin()
    .replace(
        "max_tokens = 4000\n",
        "max_tokens = 4000\nbudget_usd = 50\n",
    )
    .replace(
        "id = \"oa\"\napi = \"openai\"\n",
        "id = \"oa\"\napi = \"openai\"\nusage_api = { admin_key_env = \"TEST_OA_ADMIN_KEY\" }\n",
    );
    let mut env = ADMIN_ENV.to_vec();
    env.extend([
        ("TEST_OA_ADMIN_KEY", "sk-admin-console"),
        ("TOLLGATE_RECONCILE_EVERY_MS", "3600000"),
    ]);
    let g = start_gateway_env(&policy, &env);
    Env {
        admin: g.admin(ROOT),
        g,
        _mock: mock,
    }
}

impl Env {
    async fn chat(&self, key: &str, model: &str) -> u16 {
        self.g.call(CHAT, key, &[], &chat_body(model)).await.status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_policy_and_refusals_over_http() {
    let env = start().await;
    // whoami: the root token, then an API-made viewer with the routes it may call.
    let (s, me) = env.admin.get("/v1/whoami").await;
    assert_eq!(
        (s, me["id"].as_str(), me["role"].as_str()),
        (200, Some("root"), Some("admin")),
        "{me}"
    );
    let (_, t) = env
        .admin
        .post(
            "/v1/tokens",
            json!({"name": "finance", "role": "viewer", "groups": ["grp_b"]}),
        )
        .await;
    let viewer = t["token"].as_str().unwrap();
    let (s, me) = env.admin.call_as(viewer, "GET", "/v1/whoami", None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["name"], "finance");
    assert_eq!(me["groups"], json!(["grp_b"]));
    let may: Vec<&str> = me["may"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        may.contains(&"GET /v1/spend/groups/{id}") && may.contains(&"GET /v1/whoami"),
        "{may:?}"
    );
    assert!(
        !may.contains(&"POST /v1/keys") && !may.contains(&"GET /v1/policy"),
        "{may:?}"
    );
    assert!(
        !me.to_string().contains(viewer),
        "whoami never echoes the secret"
    );
    assert_eq!(
        env.admin
            .call_as("tga-nope", "GET", "/v1/whoami", None)
            .await
            .0,
        401
    );
    assert_eq!(
        env.admin.call_as(viewer, "GET", "/v1/policy", None).await.0,
        403
    );

    // policy: the snapshot, and the file on disk as `-t` sees it.
    let (s, p) = env.admin.get("/v1/policy").await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["file_ok"], true, "{p}");
    assert_eq!(p["counts"]["groups"], 2, "{p}");
    assert_eq!(p["generation"], 1);
    assert!(p["summary"].as_str().unwrap().contains(": OK"), "{p}");
    let good = std::fs::read_to_string(&env.g.conf).unwrap();
    std::fs::write(
        &env.g.conf,
        good.replace("budget_usd = 20", "budget_usd = -3\nrpm = 0"),
    )
    .unwrap();
    let (_, p) = env.admin.get("/v1/policy").await;
    assert_eq!(p["file_ok"], false, "{p}");
    let problems = p["problems"].as_array().unwrap();
    assert!(
        problems.len() >= 2,
        "every problem, as -t reports them: {p}"
    );
    assert!(
        problems
            .iter()
            .all(|x| x["line"].is_u64() && x["message"].is_string()),
        "{p}"
    );
    // The check changed nothing: the snapshot in force is the same generation.
    assert_eq!(p["generation"], 1);
    std::fs::write(&env.g.conf, good).unwrap();
    assert_eq!(env.admin.get("/v1/policy").await.1["file_ok"], true);

    // Refusals per group, since the process started.
    assert_eq!(env.chat(&key(1), "o1-preview").await, 403);
    assert_eq!(env.chat(&key(1), "gpt-4o-mini").await, 200);
    let (_, g) = env.admin.get("/v1/groups/grp_prod").await;
    assert_eq!(g["refusals"]["total"], 1, "{g}");
    assert_eq!(
        g["refusals"]["by_code"].as_object().unwrap().len(),
        1,
        "{g}"
    );
    let (_, list) = env.admin.get("/v1/groups").await;
    assert_eq!(list["data"][0]["refusals"]["total"], 0, "{list}");
    // Every group answer carries them, the state changes' too.
    for verb in ["pause", "resume"] {
        let (s, g) = env
            .admin
            .post(&format!("/v1/groups/grp_prod/{verb}"), json!({}))
            .await;
        assert_eq!((s, &g["refusals"]["total"]), (200, &json!(1)), "{g}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_carry_the_security_headers() {
    let env = start().await;
    let base = format!("http://{}", env.admin.addr);
    let r = client()
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/console/", "redirected to the slash");
    for path in [
        "/console/",
        "/console/js/app.js",
        "/console/vendor/uPlot.iife.min.js",
        "/console/nope.js",
    ] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let page = client()
        .get(format!("{base}/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("js/app.js") && !page.contains("http://") && !page.contains("https://"),
        "no asset from elsewhere"
    );
}

/// Python with Playwright, and the system Chromium; `None`: skipped.
pub(crate) fn browser_tools() -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let has_playwright = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import playwright"])
            .status()
            .is_ok_and(|s| s.success());
    let has_chromium = Path::new("/usr/bin/chromium").exists();
    if has_playwright && has_chromium {
        return Some(python);
    }
    assert!(
        std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(),
        "no Playwright in .venv or no /usr/bin/chromium: run scripts/setup-sdk.sh (make test does)"
    );
    eprintln!("SKIPPED: no Playwright or Chromium (run `make test`)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(python) = browser_tools() else {
        return;
    };
    let started = Instant::now();
    let env = start().await;
    // Seed through the real API and data plane: a viewer, a key in grp_b, traffic on
    // grp_prod's file key (and one refusal), so every page has something to show.
    let (_, t) = env
        .admin
        .post("/v1/tokens", json!({"name": "finance", "role": "viewer"}))
        .await;
    let viewer = t["token"].as_str().unwrap().to_string();
    let dev = json!({"name": "alice", "role": "developer", "groups": ["grp_b"], "owner": "alice"});
    let (_, t) = env.admin.call("POST", "/v1/tokens", Some(dev)).await;
    let developer = t["token"].as_str().unwrap().to_string();
    let k = env.admin.new_key(json!({"name": "team b service", "group": "grp_b", "owner": "bob", "tags": {"team": "b"}, "rpm": 60, "max_parallel": 2, "models": ["gpt-4o-mini", "gpt-4o"]}))
        .await;
    let key_b = k["key"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(env.chat(&key(1), "gpt-4o-mini").await, 200);
    }
    assert_eq!(env.chat(&key(1), "gpt-4o").await, 200);
    assert_eq!(env.chat(&key_b, "gpt-4o-mini").await, 200);
    assert_eq!(env.chat(&key(1), "o1-preview").await, 403);
    // Today's drift, from the mock's usage API: the Drift page shows its rows.
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (s, run) = env
        .admin
        .post(
            &format!("/v1/reconciliation/run?from={0}&to={0}", &today[..10]),
            json!({}),
        )
        .await;
    assert_eq!((s, &run["ok"]), (200, &json!(true)), "{run}");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_check.py");
    let vars = [
        ("ADMIN", format!("http://{}", env.admin.addr)),
        ("GATEWAY", format!("http://{}", env.g.addr)),
        ("ROOT", ROOT.to_string()),
        ("VIEWER", viewer.clone()),
        ("DEVELOPER", developer.clone()),
        ("KEY_B", key_b.clone()),
        ("SHOTS", shots.display().to_string()),
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
        out.status.success() && stdout.contains("all console checks passed"),
        "{stdout}\n{stderr}\n{}",
        env.g.log_text()
    );

    // What the browser did is what the API now says.
    let (_, keys) = env
        .admin
        .get("/v1/keys?group=grp_prod&status=revoked")
        .await;
    let revoked = keys["data"].as_array().unwrap();
    assert!(
        revoked
            .iter()
            .any(|k| k["name"] == "<img src=x onerror=alert(1)>"),
        "{keys}"
    );
    let (_, g) = env.admin.get("/v1/groups/grp_b").await;
    assert_eq!(g["state"], "active", "{g}");
    let (_, audit) = env.admin.get("/v1/audit?type=group.paused").await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    for name in [
        "signin",
        "overview",
        "overview-phone",
        "groups",
        "keys",
        "key-created",
        "key-edit",
        "keys-phone",
        "spend",
        "invoices",
        "audit",
        "policy",
        "viewer-spend",
        "developer-keys",
        "overview-dark",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}.png"
        );
    }
    // No token and no key secret reached the gateway's logs.
    assert_no_secret_in_logs(env.g.dir.path(), &[ROOT, &viewer, &developer, &key_b]);
    // Each browser step has its own 15 s deadline; the whole run is only reported.
    eprintln!("console browser test: {:?}", started.elapsed());
}
