//! `[[log_sinks]]` as validated (docs/policy.md "Log sinks"): where request-log lines are
//! exported. Secrets are never here: only the names of the environment variables that
//! hold them, read when a sink is started.

use std::sync::Arc;
use std::time::Duration;

/// Default `spool_max`: 1 GiB per sink.
pub(crate) const DEFAULT_SPOOL_MAX: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogSink {
    pub(crate) id: Arc<str>,
    pub(crate) kind: SinkKind,
    pub(crate) batch: Batch,
    pub(crate) spool_max: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SinkKind {
    S3 {
        bucket: String,
        /// Ends with `/` unless empty.
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        /// The environment variables holding the access key id and the secret key
        /// (`None`: the AWS defaults of the environment: `AWS_*` variables, instance role).
        keys_env: Option<(String, String)>,
    },
    Http {
        url: String,
        format: HttpFormat,
        headers_env: Vec<(String, String)>,
    },
    Syslog {
        host: String,
        port: u16,
        tls: bool,
        ca_file: Option<String>,
    },
    Otlp {
        url: String,
        json: bool,
        headers_env: Vec<(String, String)>,
    },
}

impl SinkKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            SinkKind::S3 { .. } => "s3",
            SinkKind::Http { .. } => "http",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::Otlp { .. } => "otlp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpFormat {
    Jsonl,
    SplunkHec,
    ElasticBulk,
}

/// When a batch is sent: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) max_lines: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_wait: Duration,
}

impl Batch {
    /// The defaults: 10 000 lines, 8 MiB, 60 s for `s3`; 1 s of wait for the others,
    /// which deliver as lines come.
    pub(crate) fn default_for(kind: &SinkKind) -> Batch {
        let s3 = matches!(kind, SinkKind::S3 { .. });
        Batch {
            max_lines: if s3 { 10_000 } else { 1_000 },
            max_bytes: if s3 { 8 << 20 } else { 1 << 20 },
            max_wait: Duration::from_secs(if s3 { 60 } else { 1 }),
        }
    }
}
