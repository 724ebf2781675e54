//! Builds the Pingora server from the policy file's `[server]` section: one file
//! configures everything, there is no second YAML file.

use crate::config;
use crate::gateway::Gateway;
use crate::reload::{Policy, SighupService};
use anyhow::Context;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn build(path: &Path, daemon: bool, upgrade: bool, early_hup: Arc<AtomicBool>) -> anyhow::Result<Server> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = Arc::new(Policy::new(path.to_path_buf(), &cfg)?);
    let s = &cfg.server;
    let grace = s.grace_period.as_secs().max(1);
    let conf = ServerConf {
        threads: s.threads,
        daemon,
        pid_file: s.pid_file.display().to_string(),
        upgrade_sock: s.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let gateway = Gateway {
        policy: policy.current.clone(),
    };
    let mut proxy = pingora_proxy::http_proxy_service_with_name(&server.configuration, gateway, "tollgate");
    for addr in &s.listen {
        let addr = addr.to_string();
        match &s.tls {
            Some(tls) => proxy
                .add_tls(&addr, &tls.cert.display().to_string(), &tls.key.display().to_string())
                .with_context(|| format!("TLS listener {addr}"))?,
            None => proxy.add_tcp(&addr),
        }
    }
    server.add_service(proxy);
    server.add_service(background_service("sighup", SighupService { policy, early: early_hup }));
    Ok(server)
}
