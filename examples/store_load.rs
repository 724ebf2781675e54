//! Start-up load of API keys from the store: how long `ControlPlane::open` takes and what
//! the process holds afterwards.
//!
//! `cargo run --release --example store_load -- fill DIR 1000000` writes that many key
//! records (as the admin API would), then
//! `cargo run --release --example store_load -- load DIR` loads them into a key directory
//! and prints the time and the process's RSS.

use std::sync::Arc;
use tollgate::control::events::Events;
use tollgate::control::ControlPlane;
use tollgate::proxy::directory::Directory;
use tollgate::storage::{KeyRecord, KeySpec, KeyStatus, Store};

const POLICY: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"p\" }]\n[[orgs]]\nid = \"o\"\n[[groups]]\nid = \"g\"\norg = \"o\"\n";

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(2)
            .map_or("/tmp/tollgate-store-load", String::as_str),
    );
    match args.get(1).map(String::as_str) {
        Some("fill") => {
            let n: usize = args
                .get(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000);
            let store = Store::open(&dir, std::time::Duration::ZERO)?.control();
            let started = std::time::Instant::now();
            for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
                let records: Vec<KeyRecord> = chunk
                    .iter()
                    .map(|i| {
                        let secret = format!("tg-load{i:040}");
                        KeyRecord {
                            id: format!("key_{i:020}"),
                            group: "g".into(),
                            sha256: hex::encode(tollgate::proxy::auth::digest(secret.as_bytes())),
                            prefix: tollgate::proxy::auth::display_prefix(&secret),
                            status: KeyStatus::Active,
                            created_at: 1_700_000_000,
                            created_by: "root".into(),
                            updated_at: 1_700_000_000,
                            secret_at: 1_700_000_000,
                            previous: None,
                            spec: KeySpec {
                                name: Some(format!("student-{i}")),
                                owner: Some("teacher".into()),
                                rpm: Some(tollgate::policy::config::raw::LimitField::Plain(60)),
                                tags: Some([("class".to_string(), "cs101".to_string())].into()),
                                ..Default::default()
                            },
                        }
                    })
                    .collect();
                let refs: Vec<&KeyRecord> = records.iter().collect();
                store.put_keys(&refs)?;
            }
            store.commit()?;
            println!("wrote {n} keys in {:?}", started.elapsed());
        }
        Some("load") => {
            let before = rss_mib();
            let store = Store::open(&dir, std::time::Duration::ZERO)?.control();
            let cfg =
                tollgate::policy::config::parse_config(POLICY, std::path::Path::new("p.toml"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let snapshot = tollgate::policy::snapshot::Snapshot::build(
                cfg,
                &Default::default(),
                None,
                1,
                &tollgate::policy::snapshot::Loopback,
                &Default::default(),
            )?;
            let policy = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot));
            let directory = Arc::new(Directory::default());
            let started = std::time::Instant::now();
            let _cp = ControlPlane::open(
                store,
                directory.clone(),
                policy,
                None,
                Arc::new(Events::default()),
            )?;
            println!(
                "loaded {} keys in {:.2} s; RSS {:.0} MiB (before: {:.0} MiB)",
                directory.keys().len(),
                started.elapsed().as_secs_f64(),
                rss_mib(),
                before
            );
        }
        Some("scan") => {
            let store = Store::open(&dir, std::time::Duration::ZERO)?.control();
            println!("opened: RSS {:.0} MiB", rss_mib());
            let started = std::time::Instant::now();
            let mut n = 0usize;
            let mut bytes = 0usize;
            store.scan_raw_keys(&mut |v| {
                n += 1;
                bytes += v.len();
                true
            })?;
            println!(
                "scanned {n} records ({bytes} bytes) in {:.2} s; RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                rss_mib()
            );
            let started = std::time::Instant::now();
            let mut parsed = 0usize;
            store.scan_keys(None, &mut |_r| {
                parsed += 1;
                true
            })?;
            println!(
                "parsed {parsed} records in {:.2} s; RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                rss_mib()
            );
        }
        _ => eprintln!("usage: store_load fill DIR N | load DIR | scan DIR"),
    }
    Ok(())
}

// The same allocator as the gateway binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
