//! Builds the Pingora server from the policy file's `[server]` section: one file
//! configures everything, there is no second YAML file.

use crate::admission::{Admission, SpendStore};
use crate::clock::{Clock, SystemClock};
use crate::control::admin::{AdminService, AdminState};
use crate::control::audit::AuditLog;
use crate::control::events::{EventLog, Events};
use crate::control::lifecycle::{self, LifecycleService};
use crate::control::reconcile::service::ReconcileService;
use crate::control::reconcile::Reconciler;
use crate::control::webhooks::deliver::{Delivery, DeliveryService, Tuning};
use crate::control::webhooks::Webhooks;
use crate::control::ControlPlane;
use crate::observe::error_rate::ErrorRates;
use crate::observe::metrics::Metrics;
use crate::observe::RequestLog;
use crate::policy::config;
use crate::policy::config::ServerConfig;
use crate::policy::reload::{DnsService, Policy, SighupService};
use crate::proxy::account::{Accounting, LedgerService};
use crate::proxy::directory::Directory;
use crate::proxy::gateway::Gateway;
use crate::proxy::last_seen::LastSeen;
use crate::storage::ledger::Ledger;
use crate::storage::Store;
use anyhow::Context;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// The server, and what must be flushed when it stops.
pub struct Built {
    pub(crate) server: Server,
    pub(crate) request_log: Arc<RequestLog>,
}

impl Built {
    /// Serves until shutdown, writes the request log's last lines, exits.
    pub fn run_forever(self) -> ! {
        self.server.run(RunArgs::default());
        self.request_log.flush();
        std::process::exit(0)
    }
}

pub fn build(
    path: &Path,
    daemon: bool,
    upgrade: bool,
    early_hup: Arc<AtomicBool>,
) -> anyhow::Result<Built> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let last_seen = Arc::new(LastSeen::default());
    let s = cfg.server.clone();
    let policy = Arc::new(Policy::new(path.to_path_buf(), cfg, last_seen.clone())?);
    let mut server = pingora_server(&s, daemon, upgrade);
    // The one clock: admission, budgets, the ledger's flush, lifecycle, webhooks, audit.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let planes = Planes::open(&s, &policy, &clock)?;
    let metrics = Arc::new(Metrics::new()?);
    let export =
        crate::observe::export::Exporter::open(policy.current.clone(), &s.data_dir, &metrics)?;
    if let Some(x) = &export {
        x.set_events(planes.events.clone());
        server.add_service(background_service(
            "log-export",
            crate::observe::export::ExportService {
                exporter: x.clone(),
            },
        ));
    }
    let reopen = crate::observe::export::local::on_sigusr1()?;
    let request_log = Arc::new(
        RequestLog::open(
            &s.request_log,
            metrics.request_log_dropped.clone(),
            (s.request_log_max_size, reopen),
            export.clone(),
        )
        .with_context(|| format!("request_log {:?}", s.request_log))?,
    );
    server.add_service(background_service(
        "log-retention",
        crate::observe::export::SweepService {
            policy: policy.current.clone(),
            request_log: match &s.request_log {
                config::RequestLog::File(p) => Some(p.clone()),
                _ => None,
            },
            exporter: export.clone(),
        },
    ));
    let error_rates = Arc::new(ErrorRates::default());
    server.add_service(background_service(
        "webhooks",
        Delivery(Arc::new(DeliveryService {
            next_due: 0.into(),
            finished: 0.into(),
            hooks: planes.webhooks.clone(),
            events: planes.events.clone(),
            metrics: metrics.clone(),
            error_rates: error_rates.clone(),
            policy: policy.current.clone(),
            tuning: Tuning::from_env(),
            clock: clock.clone(),
        })),
    ));
    {
        let control = planes.control.clone();
        let request_log = request_log.clone();
        let running = export.clone();
        policy.on_reload(move |_, new| {
            control.groups().after_reload(new);
            crate::observe::export::warn_restart_needed(running.as_deref(), new);
            // Lines of the old policy are on disk before the new one's.
            request_log.flush();
        });
    }
    let gateway = Gateway {
        policy: policy.current.clone(),
        directory: planes.directory.clone(),
        accounting: planes.accounting.clone(),
        request_log: request_log.clone(),
        metrics: metrics.clone(),
        error_rates,
        tracer: match &s.tracing {
            Some(t) => Some(Arc::new(crate::observe::trace::Tracer::start(t)?)),
            None => None,
        },
    };
    server.add_service(proxy_service(&server, &s, gateway, &policy, &planes)?);
    if let Some(addr) = s.admin_listen {
        let state = AdminState {
            policy: policy.clone(),
            metrics,
            accounting: planes.accounting.clone(),
            health: policy.health.clone(),
            token: admin_token(&s.admin_token_env),
            control: planes.control.clone(),
            audit: planes.audit.clone(),
            reconciler: planes.reconciler.clone(),
            exporter: export.clone(),
        };
        server.add_service(background_service("admin", AdminService { addr, state }));
    }
    add_background_services(&mut server, &s, &policy, planes, clock, early_hup);
    Ok(Built {
        server,
        request_log,
    })
}

/// The Pingora server from `[server]`, with the documented body for Pingora's own errors.
fn pingora_server(s: &ServerConfig, daemon: bool, upgrade: bool) -> Server {
    let grace = s.grace_period.as_secs().max(1);
    let conf = ServerConf {
        threads: s.threads,
        daemon,
        pid_file: s.pid_file.display().to_string(),
        upgrade_sock: s.upgrade_sock.display().to_string(),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        work_stealing: s.work_stealing,
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    // Pingora's own 400s (a request header it cannot parse) get the documented error shape.
    pingora_core::protocols::http::server::set_error_body(
        crate::proxy::respond::pingora_error_body,
    );
    server
}

/// The state the planes share: the store and what is built on it, the key directory, the
/// event fan-out (audit, webhooks, log) and the accounting of the data plane.
struct Planes {
    directory: Arc<Directory>,
    events: Arc<Events>,
    audit: Arc<AuditLog>,
    webhooks: Arc<Webhooks>,
    control: Arc<ControlPlane>,
    accounting: Arc<Accounting>,
    reconciler: Arc<Reconciler>,
}

impl Planes {
    fn open(
        s: &ServerConfig,
        policy: &Arc<Policy>,
        clock: &Arc<dyn Clock>,
    ) -> anyhow::Result<Planes> {
        let store = Arc::new(Store::open(
            &s.data_dir,
            s.grace_period + Duration::from_secs(10),
        )?);
        let ledger = Arc::new(Ledger::new(&store));
        let directory = Arc::new(Directory::default());
        let events = Arc::new(Events::default());
        events.subscribe(Arc::new(EventLog));
        let audit = Arc::new(AuditLog::open(store.audit_store())?);
        events.subscribe(audit.clone());
        policy.set_events(events.clone(), clock.clone());
        let webhooks = Arc::new(Webhooks::new(
            store.webhook_queue(),
            policy.current.clone(),
            directory.clone(),
        )?);
        events.subscribe(webhooks.clone());
        let control = Arc::new(
            ControlPlane::open(
                store.control(),
                directory.clone(),
                policy.current.clone(),
                Some(ledger.clone()),
                events.clone(),
            )?
            .with_clock(clock.clone()),
        );
        let admission = Arc::new(Admission::new(
            clock.clone(),
            Some(ledger.clone() as Arc<dyn SpendStore>),
            window_scale(),
        ));
        let reconciler = Arc::new(Reconciler {
            policy: policy.current.clone(),
            ledger: ledger.clone(),
            store: store.reconcile(),
            events: events.clone(),
            clock: clock.clone(),
            running: tokio::sync::Mutex::new(()),
        });
        let accounting = Arc::new(Accounting {
            admission,
            ledger: Some(ledger),
            inflight: Arc::new(AtomicUsize::new(0)),
            connections: Arc::default(),
            body_budget: Arc::default(),
            refusals: crate::control::audit::Refusals::new(
                env_number("TOLLGATE_REFUSAL_MINUTE_MS").unwrap_or(60_000),
                clock.clone(),
            ),
        });
        Ok(Planes {
            directory,
            events,
            audit,
            webhooks,
            control,
            accounting,
            reconciler,
        })
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `TOLLGATE_WINDOW_SCALE` (tests only): rate windows that many times shorter.
fn window_scale() -> u64 {
    let scale = env_number("TOLLGATE_WINDOW_SCALE").unwrap_or(1);
    if scale != 1 {
        log::warn!(
            "TOLLGATE_WINDOW_SCALE={scale}: rate windows are {scale}x shorter (testing only)"
        );
    }
    scale
}

/// The root admin token's digest: only the digest is kept in memory.
fn admin_token(env: &str) -> Option<crate::digest::Digest> {
    let token = std::env::var(env)
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| crate::proxy::auth::digest(t.as_bytes()));
    if token.is_none() {
        log::warn!("{env} is not set: the admin API answers 401 (health checks stay open)");
    }
    token
}

/// Pingora's HTTP proxy behind the connection cap and client deadlines (proxy/conn), on
/// every `listen` address.
fn proxy_service(
    server: &Server,
    s: &ServerConfig,
    gateway: Gateway,
    policy: &Policy,
    planes: &Planes,
) -> anyhow::Result<impl pingora_core::services::Service + 'static> {
    let mut proxy = pingora_core::services::listening::Service::new(
        "tollgate".to_string(),
        crate::proxy::conn::Guarded::new(
            pingora_proxy::http_proxy(&server.configuration, gateway),
            policy.current.clone(),
            planes.accounting.connections.clone(),
        ),
    );
    for addr in &s.listen {
        let addr = addr.to_string();
        match &s.tls {
            Some(tls) if tls.client_ca.is_some() => {
                let settings = super::mtls::tls_settings(tls)
                    .with_context(|| format!("TLS listener {addr}"))?;
                proxy.add_tls_with_settings(&addr, None, settings)
            }
            Some(tls) => proxy
                .add_tls(
                    &addr,
                    &tls.cert.display().to_string(),
                    &tls.key.display().to_string(),
                )
                .with_context(|| format!("TLS listener {addr}"))?,
            None => proxy.add_tcp(&addr),
        }
    }
    Ok(proxy)
}

fn add_background_services(
    server: &mut Server,
    s: &ServerConfig,
    policy: &Arc<Policy>,
    planes: Planes,
    clock: Arc<dyn Clock>,
    early_hup: Arc<AtomicBool>,
) {
    let every =
        env_number("TOLLGATE_LIFECYCLE_EVERY_MS").map_or(lifecycle::EVERY, Duration::from_millis);
    server.add_service(background_service(
        "lifecycle",
        LifecycleService {
            control: planes.control,
            every,
            clock,
        },
    ));
    server.add_service(background_service(
        "reconciliation",
        ReconcileService {
            reconciler: planes.reconciler,
            every: env_number("TOLLGATE_RECONCILE_EVERY_MS")
                .map_or(Duration::from_secs(60), Duration::from_millis),
        },
    ));
    server.add_service(background_service(
        "dns",
        DnsService {
            policy: policy.clone(),
        },
    ));
    server.add_service(background_service(
        "sighup",
        SighupService {
            policy: policy.clone(),
            early: early_hup,
        },
    ));
    server.add_service(background_service(
        "ledger",
        LedgerService {
            accounting: planes.accounting,
            grace: s.grace_period,
            events: planes.events,
            policy: policy.current.clone(),
            audit: Some((planes.audit, s.audit_retention)),
        },
    ));
}
