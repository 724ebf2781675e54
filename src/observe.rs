//! Step 8 (in part): the JSON request log — one line per request, written by a background
//! thread through a bounded queue so a slow disk or pipe never slows a request (lines are
//! dropped and counted when the queue is full).

use crate::config::RequestLog as Sink;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

const QUEUE: usize = 65_536;

pub struct RequestLog {
    tx: Option<SyncSender<Vec<u8>>>,
    pub dropped: AtomicU64,
}

impl RequestLog {
    pub fn open(sink: &Sink) -> std::io::Result<RequestLog> {
        let out: Box<dyn Write + Send> = match sink {
            Sink::Off => {
                return Ok(RequestLog {
                    tx: None,
                    dropped: AtomicU64::new(0),
                })
            }
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
                while let Ok(line) = rx.recv() {
                    let _ = w.write_all(&line);
                    // Flush whenever the queue runs dry: lines appear promptly, in batches under load.
                    while let Ok(more) = rx.try_recv() {
                        let _ = w.write_all(&more);
                    }
                    let _ = w.flush();
                }
            })?;
        Ok(RequestLog {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one JSON value as a line.
    pub fn write(&self, v: &serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
