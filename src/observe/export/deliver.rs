//! Delivery: one task per sink reads batches from its spool, in order, and sends them;
//! the spool position moves only after the sink accepted the batch (at least once).
//! A failure is retried with exponential backoff, the same batch again.

use super::spool::{self, Pos};
use super::{line_info, line_time, lock, SinkRuntime};
use crate::policy::config::log_sinks::{HttpFormat, LogSink, SinkKind};
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The longest wait between two attempts (`TOLLGATE_LOG_SINK_BACKOFF_MS` lowers it, for tests).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn max_backoff() -> Duration {
    std::env::var("TOLLGATE_LOG_SINK_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(MAX_BACKOFF, Duration::from_millis)
}

pub(super) async fn run(sink: Arc<SinkRuntime>, instance: String) {
    let id = sink.def.id.clone();
    let mut client = match Client::new(&sink.def, &instance) {
        Ok(c) => c,
        Err(e) => {
            log::error!("log sink {id}: {e}; its lines stay in the spool");
            return;
        }
    };
    let max = max_backoff();
    let first = Duration::from_millis(500).min(max);
    let mut backoff = first;
    let b = sink.def.batch;
    loop {
        let (from, segs) = lock(&sink.spool).unread();
        let dir = sink.dir.clone();
        let read = tokio::task::spawn_blocking(move || {
            spool::read_lines(&dir, from, &segs, b.max_lines, b.max_bytes)
        })
        .await;
        let (text, n, to) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                log::error!("log sink {id}: reading the spool: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        if n == 0 {
            sink.lag.set(0.0);
            sink.lag_ms.store(0, Ordering::Relaxed);
            if to > from {
                acknowledge(&sink, from, to).await;
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.wake.notified()).await;
            continue;
        }
        let age = line_time(&text)
            .and_then(|t| crate::clock::wall().duration_since(t).ok())
            .unwrap_or_default();
        sink.lag.set(age.as_secs_f64());
        sink.lag_ms.store(age.as_millis() as u64, Ordering::Relaxed);
        let full = n >= b.max_lines || text.len() >= b.max_bytes;
        if !full && age < b.max_wait {
            let left = (b.max_wait - age).min(Duration::from_secs(1));
            tokio::time::sleep(left).await;
            continue;
        }
        match client.send(&text).await {
            Ok(()) => {
                sink.delivered.inc_by(n as u64);
                sink.delivered_total.fetch_add(n as u64, Ordering::Relaxed);
                backoff = first;
                acknowledge(&sink, from, to).await;
            }
            Err(e) => {
                sink.failed.inc_by(n as u64);
                log::warn!(
                    "log sink {id}: {e}; {n} lines kept, retrying in {}",
                    humantime::format_duration(backoff)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

async fn acknowledge(sink: &Arc<SinkRuntime>, from: Pos, to: Pos) {
    let s = sink.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut spool = lock(&s.spool);
        let r = spool.acknowledge(from, to);
        s.spool_bytes.set(spool.pending_bytes() as i64);
        r
    })
    .await;
    if let Ok(Err(e)) = r {
        log::error!("log sink {}: writing the spool position: {e}", sink.def.id);
    }
}

enum Client {
    S3 {
        store: object_store::aws::AmazonS3,
        prefix: String,
        instance: String,
        /// Object numbers start at the start time in milliseconds: never reused.
        seq: u64,
    },
    Http {
        client: reqwest::Client,
        url: String,
        format: HttpFormat,
        headers_env: Vec<(String, String)>,
    },
    Otlp {
        client: reqwest::Client,
        url: String,
        json: bool,
        headers_env: Vec<(String, String)>,
        host: String,
    },
    Syslog {
        host: String,
        port: u16,
        tls: Option<tokio_rustls::TlsConnector>,
        conn: Option<Box<dyn AsyncWrite + Unpin + Send>>,
        hostname: String,
    },
}

fn env_value(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))
}

impl Client {
    fn new(def: &LogSink, instance: &str) -> anyhow::Result<Client> {
        let http = || crate::control::webhooks::deliver::http_client(Duration::from_secs(30));
        Ok(match &def.kind {
            SinkKind::S3 { prefix, .. } => {
                let store = s3_store(def)?;
                let seq = crate::clock::wall()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64
                    * 1_000_000;
                Client::S3 {
                    store,
                    prefix: prefix.clone(),
                    instance: instance.to_string(),
                    seq,
                }
            }
            SinkKind::Http {
                url,
                format,
                headers_env,
            } => Client::Http {
                client: http()?,
                url: url.clone(),
                format: *format,
                headers_env: headers_env.clone(),
            },
            SinkKind::Otlp {
                url,
                json,
                headers_env,
            } => {
                let mut url = url.clone();
                if url.parse::<http::Uri>().is_ok_and(|u| u.path() == "/") {
                    url = format!("{}/v1/logs", url.trim_end_matches('/'));
                }
                Client::Otlp {
                    client: http()?,
                    url,
                    json: *json,
                    headers_env: headers_env.clone(),
                    host: instance.to_string(),
                }
            }
            SinkKind::Syslog {
                host,
                port,
                tls,
                ca_file,
            } => Client::Syslog {
                host: host.clone(),
                port: *port,
                tls: if *tls {
                    Some(tls_connector(ca_file.as_deref())?)
                } else {
                    None
                },
                conn: None,
                hostname: instance.to_string(),
            },
        })
    }

    /// Sends whole lines (each ending in `\n`); `Ok` once the sink accepted them all.
    async fn send(&mut self, text: &[u8]) -> anyhow::Result<()> {
        match self {
            Client::S3 {
                store,
                prefix,
                instance,
                seq,
            } => {
                for (key, body) in s3_objects(text) {
                    *seq += 1;
                    let path = format!("{prefix}{key}/{instance}-{seq}.jsonl.gz");
                    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(&body)?;
                    let gz = gz.finish()?;
                    object_store::ObjectStore::put(
                        store,
                        &object_store::path::Path::from(path.as_str()),
                        gz.into(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("put {path}: {e}"))?;
                }
                Ok(())
            }
            Client::Http {
                client,
                url,
                format,
                headers_env,
            } => {
                let (body, ctype) = http_body(*format, text);
                let mut req = client.post(url.as_str()).header("content-type", ctype);
                for (name, var) in headers_env.iter() {
                    req = req.header(name.as_str(), env_value(var)?);
                }
                let resp = req.body(body).send().await?;
                let status = resp.status();
                if !status.is_success() {
                    anyhow::bail!("{url} answered {status}");
                }
                if *format == HttpFormat::ElasticBulk {
                    let v: serde_json::Value = resp.json().await.unwrap_or_default();
                    if v["errors"] == true {
                        anyhow::bail!("{url}: the bulk request had errors");
                    }
                }
                Ok(())
            }
            Client::Otlp {
                client,
                url,
                json,
                headers_env,
                host,
            } => {
                let (body, ctype) = if *json {
                    (otlp_json(text, host), "application/json")
                } else {
                    (otlp_protobuf(text, host), "application/x-protobuf")
                };
                let mut req = client.post(url.as_str()).header("content-type", ctype);
                for (name, var) in headers_env.iter() {
                    req = req.header(name.as_str(), env_value(var)?);
                }
                let resp = req.body(body).send().await?;
                if !resp.status().is_success() {
                    anyhow::bail!("{url} answered {}", resp.status());
                }
                Ok(())
            }
            Client::Syslog {
                host,
                port,
                tls,
                conn,
                hostname,
            } => {
                let frames = syslog_frames(text, hostname);
                if conn.is_none() {
                    let tcp = tokio::time::timeout(
                        Duration::from_secs(10),
                        tokio::net::TcpStream::connect((host.as_str(), *port)),
                    )
                    .await
                    .map_err(|_| anyhow::anyhow!("connect {host}:{port}: timed out"))??;
                    let _ = tcp.set_nodelay(true);
                    *conn = Some(match tls {
                        Some(tls) => {
                            let name = rustls::pki_types::ServerName::try_from(host.clone())?;
                            Box::new(tls.connect(name, tcp).await?)
                        }
                        None => Box::new(tcp),
                    });
                }
                let Some(c) = conn.as_mut() else {
                    anyhow::bail!("not connected");
                };
                let r = async {
                    c.write_all(&frames).await?;
                    c.flush().await
                };
                match tokio::time::timeout(Duration::from_secs(30), r).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *conn = None;
                        Err(e.into())
                    }
                    Err(_) => {
                        *conn = None;
                        anyhow::bail!("write to {host}:{port} timed out")
                    }
                }
            }
        }
    }
}

/// The object store of an `s3` sink (credentials read from the environment now).
pub(super) fn s3_store(def: &LogSink) -> anyhow::Result<object_store::aws::AmazonS3> {
    let SinkKind::S3 {
        bucket,
        endpoint,
        region,
        keys_env,
        ..
    } = &def.kind
    else {
        anyhow::bail!("not an s3 sink");
    };
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(region.as_deref().unwrap_or("us-east-1"));
    if let Some(e) = endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
    }
    if let Some((a, k)) = keys_env {
        b = b
            .with_access_key_id(env_value(a)?)
            .with_secret_access_key(env_value(k)?);
    }
    Ok(b.with_retry(object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    })
    .build()?)
}

fn tls_connector(ca_file: Option<&str>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(c?)?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs()? {
                let _ = roots.add(c);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The lines of a batch by object key prefix: `group=<g>/date=YYYY-MM-DD/hour=HH` (the
/// group and hour of each line), in order within each.
pub(super) fn s3_objects(text: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Lines come in runs of one group and hour: the key is made once per run.
    let mut last: Option<(Option<String>, String, String)> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let info = line_info(line.strip_suffix(b"\n").unwrap_or(line));
        let (group, hour) = match &info {
            Some(i) if i.ts.len() >= 13 => (i.group.as_deref(), &i.ts[..13]),
            Some(i) => (i.group.as_deref(), ""),
            None => (None, ""),
        };
        let same = last
            .as_ref()
            .is_some_and(|(g, h, _)| g.as_deref() == group && h == hour);
        if !same {
            let name = group.unwrap_or("-").replace('/', "%2F");
            let key = if hour.len() == 13 {
                format!("group={name}/date={}/hour={}", &hour[..10], &hour[11..13])
            } else {
                format!("group={name}/date=unknown/hour=00")
            };
            last = Some((group.map(str::to_string), hour.to_string(), key));
        }
        let key = &last.as_ref().expect("set above").2;
        match out.get_mut(key) {
            Some(buf) => buf.extend_from_slice(line),
            None => {
                out.insert(key.clone(), line.to_vec());
            }
        }
    }
    out
}

/// A batch as an `http` sink's body, and its content type.
pub(super) fn http_body(format: HttpFormat, text: &[u8]) -> (Vec<u8>, &'static str) {
    match format {
        HttpFormat::Jsonl => (text.to_vec(), "application/x-ndjson"),
        HttpFormat::ElasticBulk => {
            let mut out = Vec::with_capacity(text.len() * 2);
            for line in text.split_inclusive(|&b| b == b'\n') {
                out.extend_from_slice(b"{\"create\":{}}\n");
                out.extend_from_slice(line);
            }
            (out, "application/x-ndjson")
        }
        HttpFormat::SplunkHec => {
            let mut out = Vec::with_capacity(text.len() + text.len() / 4);
            for line in text.split_inclusive(|&b| b == b'\n') {
                let json = line.strip_suffix(b"\n").unwrap_or(line);
                let t = line_time(json)
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "{{\"time\":{}.{:03},\"sourcetype\":\"tollgate:request\",\"event\":",
                    t.as_secs(),
                    t.subsec_millis()
                );
                out.extend_from_slice(json);
                out.extend_from_slice(b"}\n");
            }
            (out, "application/json")
        }
    }
}

/// RFC 5424 messages with RFC 6587 octet counting: `LEN <134>1 TS HOST tollgate PID
/// request - LINE` (facility local0, severity informational).
pub(super) fn syslog_frames(text: &[u8], hostname: &str) -> Vec<u8> {
    let pid = std::process::id();
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    for line in text.split_inclusive(|&b| b == b'\n') {
        let json = line.strip_suffix(b"\n").unwrap_or(line);
        let ts = json
            .get(7..31)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("-");
        let head = format!("<134>1 {ts} {hostname} tollgate {pid} request - ");
        let _ = write!(out, "{} ", head.len() + json.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(json);
    }
    out
}

fn unix_nanos(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A batch as an OTLP `ExportLogsServiceRequest`: one log record per line, its body the
/// line, `request_id`, `tollgate.org` and `tollgate.group` as attributes.
fn otlp_request(
    text: &[u8],
    host: &str,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    };
    let now = unix_nanos(Some(crate::clock::wall()));
    let mut records = vec![];
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let info = line_info(line);
        let mut attributes = vec![];
        if let Some(i) = &info {
            for (k, v) in [
                ("request_id", &i.request_id),
                ("tollgate.org", &i.org),
                ("tollgate.group", &i.group),
            ] {
                if let Some(v) = v {
                    attributes.push(kv(k, v));
                }
            }
        }
        records.push(LogRecord {
            time_unix_nano: unix_nanos(line_time(line)),
            observed_time_unix_nano: now,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    String::from_utf8_lossy(line).into_owned(),
                )),
            }),
            attributes,
            ..Default::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "tollgate"), kv("host.name", host)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "tollgate.request_log".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn otlp_protobuf(text: &[u8], host: &str) -> Vec<u8> {
    prost::Message::encode_to_vec(&otlp_request(text, host))
}

/// OTLP/JSON (the protobuf JSON mapping: lowerCamelCase, 64-bit integers as strings).
fn otlp_json(text: &[u8], host: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let req = otlp_request(text, host);
    let kvs = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                };
                serde_json::json!({"key": kv.key, "value": {"stringValue": v}})
            })
            .collect::<Vec<_>>()
    };
    let rl = &req.resource_logs[0];
    let sl = &rl.scope_logs[0];
    let records: Vec<_> = sl
        .log_records
        .iter()
        .map(|r| {
            let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            serde_json::json!({
                "timeUnixNano": r.time_unix_nano.to_string(),
                "observedTimeUnixNano": r.observed_time_unix_nano.to_string(),
                "severityNumber": r.severity_number,
                "severityText": r.severity_text,
                "body": {"stringValue": body},
                "attributes": kvs(&r.attributes),
            })
        })
        .collect();
    let scope = sl.scope.clone().unwrap_or_default();
    let v = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": kvs(&rl.resource.clone().unwrap_or_default().attributes)},
        "scopeLogs": [{
            "scope": {"name": scope.name, "version": scope.version},
            "logRecords": records,
        }],
    }]});
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-11-25T06:25:00.123Z","request_id":"r1","org":"o","group":"g/1","key_id":"k"}"#;

    #[test]
    fn syslog_frames_are_octet_counted_rfc5424() {
        let text = format!("{LINE}\n{LINE}\n");
        let out = String::from_utf8(syslog_frames(text.as_bytes(), "gw1")).expect("utf8");
        let (len, rest) = out.split_once(' ').expect("len");
        let len: usize = len.parse().expect("number");
        let msg = &rest[..len];
        let pid = std::process::id();
        assert_eq!(
            msg,
            format!("<134>1 2026-11-25T06:25:00.123Z gw1 tollgate {pid} request - {LINE}")
        );
        assert!(rest[len..].starts_with(&format!("{len} <134>1 ")));
    }

    #[test]
    fn s3_keys_follow_the_layout() {
        let text = format!("{LINE}\n");
        let objs = s3_objects(text.as_bytes());
        let keys: Vec<_> = objs.keys().cloned().collect();
        assert_eq!(keys, ["group=g%2F1/date=2026-11-25/hour=06"]);
    }

    #[test]
    fn http_formats() {
        let text = format!("{LINE}\n");
        let (b, _) = http_body(HttpFormat::SplunkHec, text.as_bytes());
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["event"]["request_id"], "r1");
        assert_eq!(v["time"].as_f64(), Some(1_795_587_900.123));
        let (b, _) = http_body(HttpFormat::ElasticBulk, text.as_bytes());
        assert_eq!(
            String::from_utf8(b).expect("utf8"),
            format!("{{\"create\":{{}}}}\n{LINE}\n")
        );
    }

    #[test]
    fn otlp_records_carry_the_line() {
        let text = format!("{LINE}\n");
        let req: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest =
            prost::Message::decode(&*otlp_protobuf(text.as_bytes(), "gw")).expect("decode");
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.time_unix_nano, 1_795_587_900_123_000_000);
        let v: serde_json::Value =
            serde_json::from_slice(&otlp_json(text.as_bytes(), "gw")).expect("json");
        assert_eq!(
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
            LINE
        );
    }
}
