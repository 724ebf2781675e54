//! `tollgate demo`: the mock provider and the gateway on the demo config in one process,
//! so a newcomer can curl a working gateway without a provider account.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The demo key; its digest is in `conf/demo.toml`. Public: demo use only.
pub(crate) const DEMO_KEY: &str = "tg-DemoKeyForTheLocalMockProviderOnly0000000";
const MOCK_ADDR: &str = "127.0.0.1:18081";

pub fn run(conf: &Path, early_hup: Arc<AtomicBool>) -> ExitCode {
    // An admin token for the demo's admin API, unless one is set: made before any thread
    // starts, shown once below.
    let cfg = crate::policy::config::load(conf).ok();
    let admin = cfg.as_ref().and_then(|c| c.server.admin_listen);
    let mut demo_token = None;
    if let Some(c) = &cfg {
        let var = &c.server.admin_token_env;
        if admin.is_some() && std::env::var_os(var).is_none() {
            let token = crate::secret::base62("tga-demo-", 20);
            std::env::set_var(var, &token);
            demo_token = Some(token);
        }
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async {
            match crate::testing::mock::MockProvider::start(MOCK_ADDR).await {
                Ok(_mock) => {
                    let _ = ready_tx.send(Ok(()));
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("mock provider on {MOCK_ADDR}: {e}")));
                }
            }
        });
    });
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("tollgate demo: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => return ExitCode::FAILURE,
    }
    let server = match crate::app::server::build(conf, false, false, early_hup) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let listen = cfg
        .as_ref()
        .and_then(|c| c.server.listen.first().copied())
        .map_or_else(|| "127.0.0.1:8080".to_string(), |a| a.to_string());
    println!("mock provider on http://{MOCK_ADDR}, gateway on http://{listen}");
    println!("demo key: {DEMO_KEY}");
    println!(
        "try:\n  curl -s http://{listen}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\\n    -H 'content-type: application/json' -d '{{\"model\":\"fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
    );
    if let (Some(token), Some(admin)) = (&demo_token, admin) {
        println!("admin token (for this demo run): {token}");
        println!(
            "mint a key:\n  curl -s http://{admin}/v1/keys -H 'Authorization: Bearer {token}' \\\n    -H 'content-type: application/json' -d '{{\"name\":\"my-service\",\"group\":\"{group}\"}}'",
            group = cfg
                .as_ref()
                .and_then(|c| c.groups.first())
                .map_or("grp_demo", |g| &*g.id)
        );
        println!("web console: http://{admin}/console/ (sign in with the admin token above)");
    }
    server.run_forever()
}
