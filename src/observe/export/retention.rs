//! The retention sweeper (docs/operations.md "Log export"): `log_retention` of groups and
//! orgs (the shorter wins) bounds how long the gateway keeps their lines.
//!
//! - Rotated request-log files (`<request_log>.<time>`): every line past its group's
//!   retention is removed by rewriting the file (a new file renamed over it); a file left
//!   with no line is deleted. Lines of groups without retention are kept.
//! - Objects this gateway wrote to its `s3` sinks (named `<instance>-<seq>.jsonl.gz`
//!   under `group=<g>/`): deleted once their upload time is older than the group's
//!   retention.
//!
//! Runs every hour, or every `TOLLGATE_LOG_SWEEP_EVERY_MS`.

use super::{line_info, line_time, Exporter};
use crate::policy::config::log_sinks::SinkKind;
use crate::policy::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) struct SweepService {
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    /// The request log's file, when it is one.
    pub(crate) request_log: Option<PathBuf>,
    pub(crate) exporter: Option<Arc<Exporter>>,
}

fn every() -> Duration {
    std::env::var("TOLLGATE_LOG_SWEEP_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_millis)
}

fn any_retention(snap: &Snapshot) -> bool {
    snap.groups.values().any(|g| g.log_retention.is_some())
        || snap.orgs.values().any(|o| o.log_retention.is_some())
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for SweepService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let every = every();
        let stores: Vec<_> = self
            .exporter
            .iter()
            .flat_map(|e| e.sinks.iter())
            .filter_map(|s| match &s.def.kind {
                SinkKind::S3 { prefix, .. } => match super::deliver::s3_store(&s.def) {
                    Ok(store) => Some((store, prefix.clone())),
                    Err(e) => {
                        log::error!("log sink {}: {e}; its objects are not swept", s.def.id);
                        None
                    }
                },
                _ => None,
            })
            .collect();
        let instance = super::instance_id();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let snap = self.policy.load_full();
            if !any_retention(&snap) {
                continue;
            }
            if let Some(path) = self.request_log.clone() {
                let snap = snap.clone();
                let r = tokio::task::spawn_blocking(move || sweep_files(&path, &snap)).await;
                if let Ok(Err(e)) = r {
                    log::warn!("request log retention: {e}");
                }
            }
            for (store, prefix) in &stores {
                if let Err(e) = sweep_objects(store, prefix, &instance, &snap).await {
                    log::warn!("log sink retention: {e}");
                }
            }
        }
    }
}

/// Prunes the rotated files of the request log at `path`.
pub(crate) fn sweep_files(path: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let now = crate::clock::wall();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !super::local::is_rotated(base, &name) || name.ends_with(".tmp") {
            continue;
        }
        if let Err(err) = prune_file(&e.path(), snap, now) {
            log::warn!("request log retention: {}: {err}", e.path().display());
        }
    }
    Ok(())
}

/// Whether a line is past its group's retention at `now`.
fn expired(line: &[u8], snap: &Snapshot, now: SystemTime) -> bool {
    let Some(info) = line_info(line) else {
        return false;
    };
    let Some(keep) = Exporter::retention(snap, info.org.as_deref(), info.group.as_deref()) else {
        return false;
    };
    line_time(line).is_some_and(|t| t + keep <= now)
}

fn prune_file(file: &Path, snap: &Snapshot, now: SystemTime) -> std::io::Result<()> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let tmp = PathBuf::from(format!("{}.tmp", file.display()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let (mut kept, mut removed) = (0u64, 0u64);
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if expired(&line, snap, now) {
            removed += 1;
        } else {
            kept += 1;
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    drop(out);
    if removed == 0 {
        std::fs::remove_file(&tmp)?;
    } else if kept == 0 {
        std::fs::remove_file(&tmp)?;
        std::fs::remove_file(file)?;
        log::info!("request log retention: deleted {}", file.display());
    } else {
        std::fs::rename(&tmp, file)?;
        log::info!(
            "request log retention: {removed} lines past retention removed from {}",
            file.display()
        );
    }
    Ok(())
}

/// Deletes the objects this instance wrote under `prefix` once older than their group's
/// retention.
async fn sweep_objects(
    store: &object_store::aws::AmazonS3,
    prefix: &str,
    instance: &str,
    snap: &Snapshot,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let root = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let root = (!prefix.is_empty()).then_some(root);
    let mut list = store.list(root.as_ref());
    let now = chrono_now();
    let mine = format!("{instance}-");
    while let Some(meta) = list.next().await {
        let meta = meta?;
        let key = meta.location.as_ref();
        let Some(file) = key.rsplit('/').next() else {
            continue;
        };
        if !file.starts_with(&mine) || !file.ends_with(".jsonl.gz") {
            continue;
        }
        let Some(group) = key
            .split('/')
            .find_map(|p| p.strip_prefix("group="))
            .map(|g| g.replace("%2F", "/"))
        else {
            continue;
        };
        let Some(keep) = Exporter::retention(snap, None, Some(&group)) else {
            continue;
        };
        let modified = meta.last_modified.timestamp_millis().max(0) as u64;
        if modified + keep.as_millis() as u64 <= now {
            store.delete(&meta.location).await?;
            log::info!("log sink retention: deleted {key}");
        }
    }
    Ok(())
}

fn chrono_now() -> u64 {
    crate::clock::wall()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
