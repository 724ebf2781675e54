//! Step 8 (in part): the JSON request log — one line per request, written by a background
//! thread through a bounded queue so a slow disk or pipe never slows a request (lines are
//! dropped and counted when the queue is full).
//!
//! The queue is bounded in lines and in bytes: with `log_level = "full"` a line may
//! carry megabytes of prompt and completion.
//!
//! The writer thread starts with the first line, not at construction: with `-d` the
//! process forks after start-up, and threads do not survive a fork.

use crate::config::{LogLevel, RequestLog as Sink};
use crate::request::RequestBody;
use crate::usage::Completion;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::error::GatewayError;
use crate::snapshot::KeyEntry;
use crate::usage::Billed;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

const QUEUE: usize = 65_536;
/// Bytes of lines waiting for the writer; past this, lines are dropped (and counted).
const QUEUE_BYTES: usize = 64 << 20;
/// Bytes of the prompt's JSON kept in a line (`log_level = "prompt"` or `"full"`).
pub const PROMPT_CAP: usize = 1 << 20;

pub struct RequestLog {
    /// Where lines go, until the writer thread takes it.
    out: Mutex<Option<Box<dyn Write + Send>>>,
    tx: OnceLock<Option<SyncSender<Vec<u8>>>>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
    pub dropped: AtomicU64,
}

impl RequestLog {
    /// Opens the sink now, so a bad path fails start-up rather than the first request.
    pub fn open(sink: &Sink) -> std::io::Result<RequestLog> {
        let out: Option<Box<dyn Write + Send>> = match sink {
            Sink::Off => None,
            Sink::Stdout => Some(Box::new(std::io::stdout())),
            Sink::File(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        };
        let log = RequestLog {
            out: Mutex::new(None),
            tx: OnceLock::new(),
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
        };
        match out {
            None => {
                let _ = log.tx.set(None);
            }
            Some(o) => *log.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(o),
        }
        Ok(log)
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.tx.get(), Some(None))
    }

    fn sender(&self) -> Option<&SyncSender<Vec<u8>>> {
        self.tx
            .get_or_init(|| {
                let out = self.out.lock().unwrap_or_else(|p| p.into_inner()).take()?;
                let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
                let queued = self.queued.clone();
                let spawned = std::thread::Builder::new()
                    .name("request-log".into())
                    .spawn(move || {
                        let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
                        while let Ok(line) = rx.recv() {
                            let _ = w.write_all(&line);
                            queued.fetch_sub(line.len(), Ordering::Relaxed);
                            // Flush whenever the queue runs dry: prompt lines, batched under load.
                            while let Ok(more) = rx.try_recv() {
                                let _ = w.write_all(&more);
                                queued.fetch_sub(more.len(), Ordering::Relaxed);
                            }
                            let _ = w.flush();
                        }
                    });
                spawned.ok().map(|_| tx)
            })
            .as_ref()
    }

    /// Queues one JSON value as a line.
    pub fn write(&self, v: &serde_json::Value) {
        let Some(tx) = self.sender() else { return };
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        let len = line.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(line) {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Status(u16),
    ConnectFailed,
    TimedOut,
    Failed,
    /// The client went away while the attempt was under way: not the target's failure.
    ClientClosed,
}

impl Outcome {
    pub fn label(self) -> String {
        match self {
            Outcome::Pending => "pending".into(),
            Outcome::Status(s) => s.to_string(),
            Outcome::ConnectFailed => "connect_failed".into(),
            Outcome::TimedOut => "timeout".into(),
            Outcome::Failed => "failed".into(),
            Outcome::ClientClosed => "client_closed".into(),
        }
    }
}

/// A finished request, as the request log and the metrics see it.
pub struct Finished<'a> {
    pub request_id: &'a str,
    pub key: Option<&'a KeyEntry>,
    /// The catalogue model asked for.
    pub model: Option<&'a str>,
    /// The catalogue model that served (a fallback, possibly).
    pub served_model: Option<&'a str>,
    /// `provider/model` of the last target tried.
    pub target: Option<&'a str>,
    pub status: u16,
    pub error: Option<&'a GatewayError>,
    pub billed: Option<Billed>,
    pub started: Instant,
    pub first_attempt_at: Option<Instant>,
    pub attempt_started: Option<Instant>,
    pub client_ip: Option<IpAddr>,
    pub stream: bool,
    pub attempts: &'a [(Arc<str>, Outcome)],
    /// Shadow limits the request went over.
    pub shadow: &'a [crate::admission::ShadowHit],
    /// The client's body: its prompt fields are logged when the group asks.
    pub body: Option<&'a RequestBody>,
    /// The answer's text, collected only when the group logs at `full`.
    pub completion: Option<&'a Completion>,
}

/// One request-log line (SPEC §9). Never the key itself: only its id.
pub fn log_line(f: &Finished<'_>) -> serde_json::Value {
    let b = f.billed.unwrap_or_default();
    let key = f.key;
    let overhead = f
        .first_attempt_at
        .map_or_else(|| f.started.elapsed(), |t| t.duration_since(f.started));
    let attempts: Vec<serde_json::Value> = f
        .attempts
        .iter()
        .map(|(t, o)| serde_json::json!({"target": &**t, "outcome": o.label()}))
        .collect();
    let mut line = serde_json::json!({
        "ts": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "request_id": f.request_id,
        "org": key.map(|k| &*k.group.org.id),
        "group": key.map(|k| &*k.group.id),
        "key_id": key.map(|k| &*k.id),
        "model": f.model,
        "target": f.target,
        "status": f.status,
        "code": f.error.map(GatewayError::code),
        "fault": crate::fault::Fault::of(f.error, f.status).map(crate::fault::Fault::as_str),
        "input_tokens": b.input,
        "output_tokens": b.output,
        "cost_usd": b.cost_micros as f64 / 1e6,
        "duration_ms": f.started.elapsed().as_secs_f64() * 1000.0,
        "overhead_ms": overhead.as_secs_f64() * 1000.0,
        "client_ip": f.client_ip.map(|ip| ip.to_string()),
        "stream": f.stream,
        "attempts": attempts,
    });
    if let (Some(level), Some(o)) = (key.map(|k| k.group.log_level), line.as_object_mut()) {
        add_text(o, level, f);
    }
    line
}

/// The prompt (`log_level = "prompt"`) and the completion (`"full"`), each capped.
fn add_text(o: &mut serde_json::Map<String, serde_json::Value>, level: LogLevel, f: &Finished<'_>) {
    if level == LogLevel::Metadata {
        return;
    }
    let prompt = f.body.and_then(RequestBody::prompt_json).map(|mut p| {
        if p.len() > PROMPT_CAP {
            p.truncate(floor_char_boundary(&p, PROMPT_CAP));
            o.insert("prompt_truncated".into(), true.into());
        }
        p
    });
    o.insert("prompt".into(), prompt.into());
    if level == LogLevel::Full {
        o.insert(
            "completion".into(),
            f.completion.map(|c| c.text.as_str()).into(),
        );
        if f.completion.is_some_and(|c| c.truncated) {
            o.insert("completion_truncated".into(), true.into());
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub mod metrics;

/// Counts one finished request in the Prometheus metrics.
pub fn record_metrics(m: &metrics::Metrics, f: &Finished<'_>) {
    let group = f.key.map_or("-", |k| &*k.group.id);
    let model = f.served_model.or(f.model).unwrap_or("-");
    let status = f.status.to_string();
    m.requests
        .with_label_values(&[group, model, status.as_str()])
        .inc();
    if let Some(e) = f.error {
        m.rejections.with_label_values(&[group, e.code()]).inc();
    }
    if let Some(fault) = crate::fault::Fault::of(f.error, f.status) {
        let code = f.error.map_or("provider_status", GatewayError::code);
        m.errors
            .with_label_values(&[group, fault.as_str(), code])
            .inc();
    }
    for h in f.shadow {
        m.shadow_limited.with_label_values(&[group, h.code]).inc();
    }
    if let Some(b) = f.billed.filter(|b| !b.is_zero()) {
        m.tokens
            .with_label_values(&[group, model, "input"])
            .inc_by(b.input);
        m.tokens
            .with_label_values(&[group, model, "output"])
            .inc_by(b.output);
        m.spend
            .with_label_values(&[group, model])
            .inc_by(b.cost_micros as f64 / 1e6);
    }
    m.request_duration
        .with_label_values(&[group])
        .observe(f.started.elapsed().as_secs_f64());
    if let Some(first) = f.first_attempt_at {
        m.overhead
            .observe(first.duration_since(f.started).as_secs_f64());
    }
    if let (Some(label), Some(started)) = (f.target, f.attempt_started) {
        m.upstream_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
    }
}
