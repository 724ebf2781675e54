//! The request log's sink: lines are appended to one shared buffer and a background thread
//! writes it out in large chunks, so serving a request costs no syscall and no wake-up.
//!
//! - A request appends its line (serialized into a per-thread reused buffer, see
//!   [`super::line`]) to `pending` under a mutex held for a `memcpy`.
//! - The writer thread swaps `pending` for its spare buffer and writes it with one
//!   `write` every [`FLUSH_EVERY`], or at once when [`FLUSH_BYTES`] are waiting (the only
//!   case where a request wakes it), and on [`RequestLog::flush`] (shutdown, reload).
//! - `pending` is bounded ([`QUEUE_BYTES`]): past it, lines are dropped and counted in
//!   `tollgate_request_log_dropped_total` — only when the sink cannot keep up (a disk or
//!   pipe slower than the traffic), never under normal load.
//!
//! The writer thread starts with the first line, not at construction: with `-d` the
//! process forks after start-up, and threads do not survive a fork.

use crate::policy::config::RequestLog as Sink;
use prometheus::IntCounter;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Bytes of lines waiting for the writer; past this, lines are dropped (and counted).
pub(crate) const QUEUE_BYTES: usize = 64 << 20;
/// Waiting bytes that wake the writer before its timer.
pub(crate) const FLUSH_BYTES: usize = 64 << 10;
/// The writer's timer: a line reaches the sink at most this long after its request ended.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);

pub(crate) struct RequestLog {
    /// `None` when the log is off.
    shared: Option<Arc<Shared>>,
    writer: OnceLock<()>,
    dropped: IntCounter,
}

struct Shared {
    /// Log export: each drained chunk is also spooled for the sinks of its lines' groups.
    export: Option<Arc<crate::observe::export::Exporter>>,
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    out: Mutex<Out>,
    /// Drains the writer has completed; [`RequestLog::flush`] waits on it.
    drained: Mutex<u64>,
    drained_cv: Condvar,
}

struct Out {
    sink: Box<dyn Write + Send>,
    /// The buffer being written; swapped with `pending`.
    spare: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Writes whatever is pending (one `write_all`, one flush).
    fn drain(&self) {
        self.drain_into(lock(&self.out));
    }

    fn drain_into(&self, mut out: MutexGuard<'_, Out>) {
        let out = &mut *out;
        std::mem::swap(&mut *lock(&self.pending), &mut out.spare);
        if out.spare.is_empty() {
            if let Some(x) = &self.export {
                x.tick();
            }
            return;
        }
        if let Some(x) = &self.export {
            x.route(&out.spare);
        }
        if let Err(e) = out
            .sink
            .write_all(&out.spare)
            .and_then(|()| out.sink.flush())
        {
            log::warn!("request log: {e}");
        }
        out.spare.clear();
        // A burst of `full` lines may have grown it to megabytes: do not keep them.
        if out.spare.capacity() > 4 * FLUSH_BYTES {
            out.spare = Vec::with_capacity(2 * FLUSH_BYTES);
        }
    }
}

impl RequestLog {
    /// Opens the sink now, so a bad path fails start-up rather than the first request.
    /// `dropped` counts lines lost to overload.
    /// A file rotates at `max_size` and daily, and is reopened when `reopen` is set
    /// (SIGUSR1). With `export`, lines are also spooled for the log sinks (and kept in
    /// memory for them even when the local log is off).
    pub(crate) fn open(
        sink: &Sink,
        dropped: IntCounter,
        (max_size, reopen): (Option<u64>, Arc<std::sync::atomic::AtomicBool>),
        export: Option<Arc<crate::observe::export::Exporter>>,
    ) -> std::io::Result<RequestLog> {
        let out: Option<Box<dyn Write + Send>> = match sink {
            Sink::Off if export.is_some() => Some(Box::new(std::io::sink())),
            Sink::Off => None,
            Sink::Stdout => Some(Box::new(std::io::stdout())),
            Sink::File(path) => Some(Box::new(crate::observe::export::local::LocalLog::open(
                path, max_size, reopen,
            )?)),
        };
        let mut log = Self::with_writer(out, dropped);
        if let Some(shared) = log.shared.as_mut().and_then(Arc::get_mut) {
            shared.export = export;
        }
        Ok(log)
    }

    /// A log writing to `out` (`None`: off). For tests and benchmarks.
    pub(crate) fn with_writer(
        out: Option<Box<dyn Write + Send>>,
        dropped: IntCounter,
    ) -> RequestLog {
        RequestLog {
            shared: out.map(|sink| {
                Arc::new(Shared {
                    export: None,
                    pending: Mutex::new(Vec::with_capacity(2 * FLUSH_BYTES)),
                    wake: Condvar::new(),
                    out: Mutex::new(Out {
                        sink,
                        spare: Vec::with_capacity(2 * FLUSH_BYTES),
                    }),
                    drained: Mutex::new(0),
                    drained_cv: Condvar::new(),
                })
            }),
            writer: OnceLock::new(),
            dropped,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Lines dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    fn start_writer(&self, shared: &Arc<Shared>) {
        self.writer.get_or_init(|| {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("request-log".into())
                .spawn(move || loop {
                    {
                        let pending = lock(&shared.pending);
                        if pending.len() < FLUSH_BYTES {
                            let _ = shared.wake.wait_timeout(pending, FLUSH_EVERY);
                        }
                    }
                    shared.drain();
                    *lock(&shared.drained) += 1;
                    shared.drained_cv.notify_all();
                });
            if let Err(e) = spawned {
                log::error!("request log: cannot start the writer thread: {e}");
            }
        });
    }

    /// Queues one line (JSON without its newline, which is added here).
    pub(crate) fn push(&self, line: &[u8]) {
        let Some(shared) = &self.shared else { return };
        self.start_writer(shared);
        let mut pending = lock(&shared.pending);
        let before = pending.len();
        if before + line.len() + 1 > QUEUE_BYTES {
            drop(pending);
            self.dropped.inc();
            return;
        }
        pending.extend_from_slice(line);
        pending.push(b'\n');
        let wake = before < FLUSH_BYTES && pending.len() >= FLUSH_BYTES;
        drop(pending);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Has the writer write every line queued so far (shutdown, reload) and waits for it,
    /// for at most two seconds: a stuck sink must not hold up a shutdown. Only the writer
    /// thread ever writes to the sink, so a sink that blocks blocks only that thread.
    pub(crate) fn flush(&self) {
        let Some(shared) = &self.shared else { return };
        if self.writer.get().is_none() {
            return; // no line yet: the writer starts with the first one
        }
        let _synced = SyncOnDrop(shared.export.as_deref());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut drained = lock(&shared.drained);
        // The drain under way may have taken its buffer before the last lines came: the
        // one after it has them all.
        let target = *drained + 2;
        while *drained < target {
            shared.wake.notify_one();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                log::warn!("request log: the sink is stuck; unwritten lines are lost");
                return;
            }
            // Re-notified every 10 ms: a wake-up sent while the writer was between its
            // check and its wait is not lost for long.
            drained = shared
                .drained_cv
                .wait_timeout(drained, left.min(Duration::from_millis(10)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// fsyncs the spools when a flush ends (shutdown, reload), however it ends.
struct SyncOnDrop<'a>(Option<&'a crate::observe::export::Exporter>);

impl Drop for SyncOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(x) = self.0 {
            x.sync();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>);
    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "dropped").expect("counter")
    }

    #[test]
    fn lines_reach_the_sink_on_flush_in_order() {
        let mem = Mem::default();
        let log = RequestLog::with_writer(Some(Box::new(mem.clone())), counter());
        for i in 0..1000 {
            log.push(format!("{{\"n\":{i}}}").as_bytes());
        }
        log.flush();
        let text = String::from_utf8(lock(&mem.0).clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_writer_thread_writes_without_a_flush() {
        let mem = Mem::default();
        let log = RequestLog::with_writer(Some(Box::new(mem.clone())), counter());
        log.push(b"{}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&mem.0).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*lock(&mem.0), b"{}\n");
    }

    /// A sink that never returns: the queue fills up and lines are dropped and counted.
    #[test]
    fn a_stuck_sink_drops_and_counts() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = RequestLog::with_writer(Some(Box::new(Stuck)), counter());
        let line = vec![b'x'; 1 << 20];
        for _ in 0..200 {
            log.push(&line);
        }
        // The writer holds at most one swapped-out buffer, the queue at most 64 MiB.
        assert!(log.dropped() >= 200 - 128, "dropped {}", log.dropped());
        log.flush(); // returns: a stuck sink does not hold up a shutdown
    }

    #[test]
    fn off_writes_nothing() {
        let log = RequestLog::with_writer(None, counter());
        assert!(!log.enabled());
        log.push(b"{}");
        log.flush();
    }
}
