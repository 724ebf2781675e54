//! The OTLP exporter, wrapped so a failing collector shows in the process log: the SDK
//! itself drops a failed batch silently. At most one line a minute; the count of batches
//! lost meanwhile is in the next line.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct Logged<E> {
    inner: E,
    url: String,
    /// Batches lost since the last warning.
    failed: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl<E> Logged<E> {
    pub(super) fn new(inner: E, url: String) -> Logged<E> {
        Logged {
            inner,
            url,
            failed: AtomicU64::new(0),
            last_warning: std::sync::Mutex::new(None),
        }
    }

    fn failed(&self, spans: usize, e: &dyn std::fmt::Display) {
        let lost = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last_warning.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.failed.store(0, Ordering::Relaxed);
        log::warn!(
            "tracing: export of {spans} spans to {} failed ({lost} batches lost since the last warning): {e}",
            self.url
        );
    }
}

impl<E: SpanExporter> SpanExporter for Logged<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let r = self.inner.export(batch).await;
        if let Err(e) = &r {
            self.failed(spans, e);
        }
        r
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
