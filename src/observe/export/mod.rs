//! Log export (docs/operations.md "Log export"): request-log lines also go to the
//! `[[log_sinks]]` their group and org name, through an on-disk spool per sink, so a sink
//! that is down, a restart or a kill -9 loses nothing.
//!
//! The proxy threads do nothing new: they append to the request log's shared buffer as
//! before. The request log's writer thread hands each drained chunk to [`Exporter::route`],
//! which finds each line's sinks (its group's, or its org's for a group the file does not
//! define) and appends to their spools, and fsyncs them every [`FSYNC_EVERY`]. One task
//! per sink ([`ExportService`]) delivers from its spool, in order, at least once.

mod deliver;
pub(crate) mod local;
mod retention;
pub(crate) mod spool;

use crate::control::events::{Event, EventKind, Events};
use crate::observe::metrics::Metrics;
use crate::policy::config::log_sinks::LogSink;
use crate::policy::snapshot::Snapshot;
use arc_swap::ArcSwap;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use spool::Spool;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use retention::SweepService;

/// Spools are fsynced at least this often (a kill -9 loses no line older than this plus
/// the writer's own [`crate::observe::sink::FLUSH_EVERY`]).
pub(crate) const FSYNC_EVERY: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One configured sink at run time.
pub(crate) struct SinkRuntime {
    pub(crate) def: LogSink,
    spool: Mutex<Spool>,
    dir: PathBuf,
    wake: tokio::sync::Notify,
    delivered: prometheus::IntCounter,
    dropped: prometheus::IntCounter,
    failed: prometheus::IntCounter,
    pub(crate) spool_bytes: prometheus::IntGauge,
    lag: prometheus::Gauge,
    /// For the console: lines dropped and the last lag, in milliseconds.
    pub(crate) dropped_total: AtomicU64,
    pub(crate) lag_ms: AtomicU64,
    pub(crate) delivered_total: AtomicU64,
}

pub(crate) struct Exporter {
    policy: Arc<ArcSwap<Snapshot>>,
    pub(crate) sinks: Vec<Arc<SinkRuntime>>,
    events: Mutex<Option<Arc<Events>>>,
    last_sync: Mutex<Instant>,
    /// This gateway's name in object keys and syslog's HOST.
    pub(crate) instance: String,
}

/// `tollgate_log_sink_*`.
struct ExportMetrics {
    lines: IntCounterVec,
    spool_bytes: IntGaugeVec,
    lag: GaugeVec,
}

impl ExportMetrics {
    fn new(m: &Metrics) -> prometheus::Result<ExportMetrics> {
        let lines = IntCounterVec::new(
            Opts::new(
                "tollgate_log_sink_lines_total",
                "Request-log lines per log sink, by result (delivered|dropped|failed: \
                 failed counts lines of attempts that will be retried).",
            ),
            &["sink", "result"],
        )?;
        let spool_bytes = IntGaugeVec::new(
            Opts::new(
                "tollgate_log_sink_spool_bytes",
                "Bytes of undelivered lines in a log sink's spool.",
            ),
            &["sink"],
        )?;
        let lag = GaugeVec::new(
            Opts::new(
                "tollgate_log_sink_lag_seconds",
                "Age of the oldest line a log sink has not delivered (0: none waiting).",
            ),
            &["sink"],
        )?;
        m.registry().register(Box::new(lines.clone()))?;
        m.registry().register(Box::new(spool_bytes.clone()))?;
        m.registry().register(Box::new(lag.clone()))?;
        Ok(ExportMetrics {
            lines,
            spool_bytes,
            lag,
        })
    }
}

/// This gateway's stable name: `TOLLGATE_INSTANCE`, else the host name.
pub(crate) fn instance_id() -> String {
    let clean = |s: String| {
        let s: String = s
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        (!s.is_empty()).then_some(s)
    };
    std::env::var("TOLLGATE_INSTANCE")
        .ok()
        .and_then(clean)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(clean)
        })
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .and_then(clean)
        })
        .unwrap_or_else(|| "tollgate".into())
}

/// The fields of a line sinks need.
pub(crate) struct LineInfo<'a> {
    pub(crate) ts: &'a str,
    pub(crate) group: Option<std::borrow::Cow<'a, str>>,
    pub(crate) org: Option<std::borrow::Cow<'a, str>>,
    pub(crate) request_id: Option<std::borrow::Cow<'a, str>>,
}

/// Reads `ts`, `org`, `group` and `request_id` of a line (`None`: not a request-log line).
pub(crate) fn line_info(line: &[u8]) -> Option<LineInfo<'_>> {
    fast_line_info(line).or_else(|| slow_line_info(line))
}

/// The request log writes `{"ts":"…","request_id":"…","org":…,"group":…,` first (see
/// `observe::line`): read those four from the front without parsing the rest of the
/// line. `None` on anything else (an escape in a string, another order), for
/// [`slow_line_info`].
fn fast_line_info(line: &[u8]) -> Option<LineInfo<'_>> {
    let mut rest = line.strip_prefix(b"{")?;
    let mut field = |name: &[u8]| -> Option<Option<&str>> {
        let r = rest.strip_prefix(b"\"")?.strip_prefix(name)?;
        let r = r.strip_prefix(b"\":")?;
        if let Some(r) = r.strip_prefix(b"null") {
            rest = r.strip_prefix(b",")?;
            return Some(None);
        }
        let r = r.strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', r)?;
        if r[end] != b'"' {
            return None;
        }
        let value = std::str::from_utf8(&r[..end]).ok()?;
        rest = r[end + 1..].strip_prefix(b",")?;
        Some(Some(value))
    };
    let ts = field(b"ts")??;
    let request_id = field(b"request_id")?;
    let org = field(b"org")?;
    let group = field(b"group")?;
    Some(LineInfo {
        ts,
        group: group.map(Into::into),
        org: org.map(Into::into),
        request_id: request_id.map(Into::into),
    })
}

fn slow_line_info(line: &[u8]) -> Option<LineInfo<'_>> {
    #[derive(serde::Deserialize)]
    struct Info<'a> {
        #[serde(borrow)]
        ts: &'a str,
        #[serde(borrow, default)]
        org: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        group: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        request_id: Option<std::borrow::Cow<'a, str>>,
    }
    let i: Info<'_> = serde_json::from_slice(line).ok()?;
    Some(LineInfo {
        ts: i.ts,
        group: i.group,
        org: i.org,
        request_id: i.request_id,
    })
}

/// The wall time of a line's `ts`.
pub(crate) fn line_time(line: &[u8]) -> Option<std::time::SystemTime> {
    // `{"ts":"2026-11-25T06:25:00.123Z"`: fixed place, fixed width.
    let ts = line.get(7..31)?;
    humantime::parse_rfc3339(std::str::from_utf8(ts).ok()?).ok()
}

impl Exporter {
    /// Opens the spools of the snapshot's sinks under `data_dir/spool/`. `None`: no sink.
    pub(crate) fn open(
        policy: Arc<ArcSwap<Snapshot>>,
        data_dir: &Path,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Arc<Exporter>>> {
        let defs = policy.load().server.log_sinks.clone();
        if defs.is_empty() {
            return Ok(None);
        }
        let m = ExportMetrics::new(metrics)?;
        let mut sinks = vec![];
        for def in defs.iter() {
            let dir = data_dir.join("spool").join(&*def.id);
            let spool = Spool::open(&dir, def.spool_max).map_err(|e| {
                anyhow::anyhow!("log sink {}: spool {}: {e}", def.id, dir.display())
            })?;
            let id = &*def.id;
            let rt = SinkRuntime {
                def: def.clone(),
                dir,
                delivered: m.lines.with_label_values(&[id, "delivered"]),
                dropped: m.lines.with_label_values(&[id, "dropped"]),
                failed: m.lines.with_label_values(&[id, "failed"]),
                spool_bytes: m.spool_bytes.with_label_values(&[id]),
                lag: m.lag.with_label_values(&[id]),
                wake: tokio::sync::Notify::new(),
                dropped_total: 0.into(),
                lag_ms: 0.into(),
                delivered_total: 0.into(),
                spool: Mutex::new(spool),
            };
            rt.spool_bytes.set(lock(&rt.spool).pending_bytes() as i64);
            sinks.push(Arc::new(rt));
        }
        Ok(Some(Arc::new(Exporter {
            policy,
            sinks,
            events: Mutex::new(None),
            last_sync: Mutex::new(Instant::now()),
            instance: instance_id(),
        })))
    }

    /// Where `log_sink.dropped` audit events go.
    pub(crate) fn set_events(&self, events: Arc<Events>) {
        *lock(&self.events) = Some(events);
    }

    /// The sinks (indices into `self.sinks`, as a bit set) of a line of `org`/`group`.
    fn targets(&self, snap: &Snapshot, org: Option<&str>, group: Option<&str>) -> u64 {
        let ids = match group.and_then(|g| snap.groups.get(g)) {
            Some(g) => &g.log_sinks,
            None => match org.and_then(|o| snap.orgs.get(o)) {
                Some(o) => &o.log_sinks,
                None => return 0,
            },
        };
        let mut set = 0u64;
        for id in ids.iter() {
            if let Some(i) = self.sinks.iter().position(|s| s.def.id == *id) {
                set |= 1 << (i & 63);
            }
        }
        set
    }

    /// Writer thread: spools every line of `chunk` (whole lines, each ending in `\n`) for
    /// the sinks of its group and org.
    pub(crate) fn route(&self, chunk: &[u8]) {
        let snap = self.policy.load();
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); self.sinks.len()];
        // Lines of one group come in runs: remember the last group's sinks.
        let mut last: Option<(Option<String>, Option<String>, u64)> = None;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            let line = &chunk[start..=end];
            start = end + 1;
            let Some(head) = line_info(&line[..line.len() - 1]) else {
                continue;
            };
            let (org, group) = (head.org.as_deref(), head.group.as_deref());
            let set = match &last {
                Some((o, g, set)) if o.as_deref() == org && g.as_deref() == group => *set,
                _ => {
                    let set = self.targets(&snap, org, group);
                    last = Some((org.map(str::to_string), group.map(str::to_string), set));
                    set
                }
            };
            for (i, buf) in bufs.iter_mut().enumerate() {
                if set & (1 << (i & 63)) != 0 {
                    buf.extend_from_slice(line);
                }
            }
        }
        for (sink, buf) in self.sinks.iter().zip(bufs) {
            if buf.is_empty() {
                continue;
            }
            let (dropped, pending) = {
                let mut spool = lock(&sink.spool);
                let d = spool.append(&buf);
                (d, spool.pending_bytes())
            };
            sink.spool_bytes.set(pending as i64);
            match dropped {
                Ok(d) if d.lines > 0 => self.dropped(sink, d),
                Ok(_) => {}
                Err(e) => {
                    // Disk full, spool removed: these lines cannot be kept. Counted.
                    log::error!("log sink {}: spool: {e}", sink.def.id);
                    let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
                    let bytes = buf.len() as u64;
                    self.dropped(sink, spool::Dropped { lines, bytes });
                }
            }
            sink.wake.notify_one();
        }
        self.tick();
    }

    fn dropped(&self, sink: &SinkRuntime, d: spool::Dropped) {
        sink.dropped.inc_by(d.lines);
        sink.dropped_total.fetch_add(d.lines, Ordering::Relaxed);
        log::warn!(
            "log sink {}: {} lines ({} bytes) dropped (spool over spool_max, or not writable)",
            sink.def.id,
            d.lines,
            d.bytes
        );
        let events = lock(&self.events).clone();
        if let Some(events) = events {
            let at_ms = crate::clock::wall()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            events.emit_logged(&Event {
                kind: EventKind::LogSinkDropped,
                at_ms,
                actor: "system".into(),
                org: None,
                group: None,
                key_id: None,
                before: None,
                after: Some(serde_json::json!({
                    "sink": &*sink.def.id,
                    "lines": d.lines,
                    "bytes": d.bytes,
                    "spool_max": sink.def.spool_max,
                })),
                secret: None,
            });
        }
    }

    /// Writer thread, after every drain and every timer tick: fsyncs the spools when
    /// [`FSYNC_EVERY`] has passed.
    pub(crate) fn tick(&self) {
        {
            let mut last = lock(&self.last_sync);
            if last.elapsed() < FSYNC_EVERY {
                return;
            }
            *last = Instant::now();
        }
        self.sync();
    }

    /// fsyncs every spool now (shutdown).
    pub(crate) fn sync(&self) {
        for s in &self.sinks {
            if let Err(e) = lock(&s.spool).sync() {
                log::error!("log sink {}: spool fsync: {e}", s.def.id);
            }
        }
    }

    /// The retention of a group's lines (the shorter of group and org), by group id; an
    /// unknown group: its org's.
    pub(crate) fn retention(
        snap: &Snapshot,
        org: Option<&str>,
        group: Option<&str>,
    ) -> Option<Duration> {
        match group.and_then(|g| snap.groups.get(g)) {
            Some(g) => g.log_retention,
            None => org
                .and_then(|o| snap.orgs.get(o))
                .and_then(|o| o.log_retention),
        }
    }
}

/// After a reload: `[[log_sinks]]` are read at start; say which changes wait for a restart
/// (lines for a sink the running process does not have are not exported until then).
pub(crate) fn warn_restart_needed(running: Option<&Exporter>, new: &Snapshot) {
    let have = running.map_or(&[][..], |x| &x.sinks[..]);
    for def in new.server.log_sinks.iter() {
        match have.iter().find(|s| s.def.id == def.id) {
            None => log::warn!(
                "log sink {}: added by the reload; it takes effect at the next restart",
                def.id
            ),
            Some(s) if s.def != *def => log::warn!(
                "log sink {}: changed by the reload; the change takes effect at the next restart",
                def.id
            ),
            Some(_) => {}
        }
    }
}

/// The background service delivering every sink's spool.
pub(crate) struct ExportService {
    pub(crate) exporter: Arc<Exporter>,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for ExportService {
    async fn start(&self, mut shutdown: pingora_core::server::ShutdownWatch) {
        let mut tasks = vec![];
        for sink in &self.exporter.sinks {
            log::info!(
                "log sink {} ({}): delivering from {}",
                sink.def.id,
                sink.def.kind.name(),
                sink.dir.display()
            );
            let sink = sink.clone();
            let instance = self.exporter.instance.clone();
            tasks.push(tokio::spawn(deliver::run(sink, instance)));
        }
        let _ = shutdown.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fast_line_info, line_info, slow_line_info};

    fn fields(i: &super::LineInfo<'_>) -> (String, Option<String>, Option<String>, Option<String>) {
        (
            i.ts.to_string(),
            i.request_id.as_deref().map(str::to_string),
            i.org.as_deref().map(str::to_string),
            i.group.as_deref().map(str::to_string),
        )
    }

    /// The front-of-line reader agrees with the full parse, and leaves what it cannot read
    /// (escapes, another field order) to it.
    #[test]
    fn the_fast_reader_agrees_with_the_full_parse() {
        let lines: [&[u8]; 5] = [
            br#"{"ts":"2026-12-08T01:02:03.456Z","request_id":"r1","org":"acme","group":"grp_a","key_id":"k","status":200}"#,
            br#"{"ts":"2026-12-08T01:02:03.456Z","request_id":"r2","org":null,"group":null,"key_id":null}"#,
            br#"{"ts":"2026-12-08T01:02:03.456Z","request_id":"r3","org":"a\"b","group":"g\\h","x":1}"#,
            br#"{"request_id":"r4","ts":"2026-12-08T01:02:03.456Z","group":"g","org":"o"}"#,
            r#"{"ts":"2026-12-08T01:02:03.456Z","request_id":"r5","org":"é","group":"grp/x","k":{}}"#
                .as_bytes(),
        ];
        for line in lines {
            let slow = slow_line_info(line).expect("valid JSON");
            assert_eq!(fields(&line_info(line).unwrap()), fields(&slow));
        }
        assert!(fast_line_info(lines[0]).is_some() && fast_line_info(lines[4]).is_some());
        assert!(fast_line_info(lines[2]).is_none() && fast_line_info(lines[3]).is_none());
        assert!(line_info(b"not json").is_none());
    }
}
