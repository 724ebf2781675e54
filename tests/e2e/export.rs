//! End to end: log export (docs/operations.md "Log export", §14). Lines reach an
//! S3-compatible store (moto_server, started here) under the documented layout, an HTTP
//! receiver that fails for a while, a syslog TCP receiver (RFC 5424, checked strictly) and
//! an OTLP/HTTP receiver (protobuf decoded with opentelemetry-proto); nothing is lost when
//! the store is down or the gateway is killed; spool_max drops are counted and audited;
//! retention deletes rotated files' lines and objects past it.

use crate::harness::*;
use axum::body::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const S3_ID: &str = "AKIATESTEXPORTKEYID0";
const S3_SECRET: &str = "s3-secret-never-exported-0123456789";
const SIEM_TOKEN: &str = "Splunk siem-token-never-exported";
const BUCKET: &str = "tollgate-logs";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_ADMIN_TOKEN", ROOT),
        ("S3_ACCESS", S3_ID),
        ("S3_SECRET", S3_SECRET),
        ("SIEM_TOKEN", SIEM_TOKEN),
        ("TOLLGATE_LOG_SINK_BACKOFF_MS", "300"),
        ("TOLLGATE_LOG_SWEEP_EVERY_MS", "200"),
        ("TOLLGATE_INSTANCE", "gw-test"),
    ]
}

/// moto_server from the venv of scripts/setup-sdk.sh, on a port of its own.
struct Moto {
    child: Option<std::process::Child>,
    port: u16,
}

fn moto_bin() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    p.exists().then_some(p)
}

impl Moto {
    /// `None` (and the test skips) without the venv.
    async fn start() -> Option<Moto> {
        let Some(_) = moto_bin() else {
            // `make test` installs it and sets TOLLGATE_REQUIRE_SDK=1: CI cannot skip.
            assert!(
                std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(),
                "no .venv/bin/moto_server (run scripts/setup-sdk.sh)"
            );
            eprintln!("SKIPPED: no .venv/bin/moto_server (run scripts/setup-sdk.sh)");
            return None;
        };
        let mut m = Moto {
            child: None,
            port: free_port(),
        };
        m.up().await;
        Some(m)
    }

    async fn up(&mut self) {
        let child = Command::new(moto_bin().expect("moto"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/{BUCKET}", self.port);
        let made = poll_until(Duration::from_secs(30), || async {
            let r = client().put(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        assert!(made.is_some(), "moto_server did not start");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id(S3_ID)
            .with_secret_access_key(S3_SECRET)
            .build()
            .expect("store")
    }

    /// Every object: key and its decompressed text.
    async fn objects(&self) -> Vec<(String, String)> {
        let store = self.store();
        let mut out = vec![];
        let metas: Vec<_> = store.list(None).collect().await;
        for m in metas.into_iter().flatten() {
            let Ok(got) = store.get(&m.location).await else {
                continue;
            };
            let Ok(bytes) = got.bytes().await else {
                continue;
            };
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("gzip JSON lines");
            out.push((m.location.to_string(), text));
        }
        out
    }

    /// The request ids in every object.
    async fn ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (_, text) in self.objects().await {
            for l in text.lines() {
                let v: Value = serde_json::from_str(l).expect("a JSON line");
                ids.insert(v["request_id"].as_str().unwrap_or_default().to_string());
            }
        }
        ids
    }

    async fn wait_ids(&self, want: &BTreeSet<String>, within: Duration) {
        let got = poll_until(within, || async {
            let ids = self.ids().await;
            want.is_subset(&ids).then_some(())
        })
        .await;
        if got.is_none() {
            let ids = self.ids().await;
            let missing: Vec<_> = want.difference(&ids).collect();
            panic!("not in the store: {missing:?}");
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.down();
    }
}

fn s3_sink(id: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[[log_sinks]]
id = "{id}"
kind = "s3"
url = "s3://{BUCKET}/prod/"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_env = "S3_ACCESS"
secret_key_env = "S3_SECRET"
batch = {{ max_lines = 20, max_bytes = "1MiB", max_wait = "200ms" }}
{extra}
"#
    )
}

/// Sends `n` chats with `key`, ids `<prefix>-<i>`, one after the other; returns the ids.
async fn chats(g: &GatewayProc, key: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let id = format!("{prefix}-{i:04}");
        let a = g
            .call(
                CHAT,
                key,
                &[("x-request-id", &id)],
                &chat_body("gpt-4o-mini"),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        ids.push(id);
    }
    ids
}

fn no_secret(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    for s in [
        key(1).as_str(),
        key(2).as_str(),
        "sk-provider-secret",
        S3_SECRET,
        SIEM_TOKEN,
    ] {
        assert!(!text.contains(s), "{what} holds a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_layout_store_down_and_kill_9_lose_nothing() {
    let Some(mut moto) = Moto::start().await else {
        return;
    };
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), &s3_sink("archive", &moto.endpoint(), ""))
        .replace(
            "[[orgs]]\nid = \"acme\"",
            "[[orgs]]\nid = \"acme\"\nlog_sinks = [\"archive\"]",
        )
        .with_admin();
    let env = env();
    let mut g = start_gateway_env(&policy, &env);
    // 50 requests: objects under the layout, gzip JSON lines, every id there.
    let mut want: BTreeSet<String> = chats(&g, &key(1), "first", 50).await.into_iter().collect();
    moto.wait_ids(&want, Duration::from_secs(30)).await;
    let objects = moto.objects().await;
    let layout = regex::Regex::new(
        r"^prod/group=grp_prod/date=\d{4}-\d{2}-\d{2}/hour=\d{2}/gw-test-\d+\.jsonl\.gz$",
    )
    .expect("re");
    for (k, text) in &objects {
        assert!(layout.is_match(k), "{k}");
        no_secret(text.as_bytes(), k);
        let v: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        let date = &v["ts"].as_str().expect("ts")[..10];
        assert!(k.contains(&format!("date={date}/")), "{k} {v}");
    }
    // The store down for 30 requests, then back (empty: moto keeps nothing): all arrive.
    moto.down();
    let down: BTreeSet<String> = chats(&g, &key(1), "down", 30).await.into_iter().collect();
    let admin = g.admin(ROOT);
    wait_until_async(
        Duration::from_secs(20),
        "failed attempts counted",
        || async {
            admin
                .metric(
                    "tollgate_log_sink_lines_total",
                    &["sink=\"archive\"", "result=\"failed\""],
                )
                .await
                > 0.0
        },
    )
    .await;
    moto.up().await;
    moto.wait_ids(&down, Duration::from_secs(30)).await;
    want.extend(down);
    // kill -9 with lines in the spool (the store down), then both back: they arrive.
    moto.down();
    let killed: BTreeSet<String> = chats(&g, &key(1), "killed", 20).await.into_iter().collect();
    let spool = g.data_dir().join("spool/archive");
    let last = killed.iter().next_back().expect("id").clone();
    wait_until(Duration::from_secs(10), "lines in the spool", || {
        std::fs::read_dir(&spool)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&last)))
    })
    .await;
    g.stop(libc::SIGKILL);
    moto.up().await;
    g.restart(&env);
    moto.wait_ids(&killed, Duration::from_secs(30)).await;
    let admin = g.admin(ROOT);
    let spooled = admin
        .metric("tollgate_log_sink_spool_bytes", &["sink=\"archive\""])
        .await;
    assert!(spooled >= 0.0);
    g.stop(libc::SIGTERM);
}

async fn wait_until_async<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ok = poll_until(within, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "{what}: not within {within:?}");
}

/// Request ids of JSON-lines bodies, in order.
fn body_ids(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|l| {
            let v: Value = serde_json::from_str(&l).ok()?;
            Some(v["request_id"].as_str()?.to_string())
        })
        .collect()
}

/// The first time each id is seen, in order (delivery is at least once).
fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ids.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sinks_of_org_and_group_retry_in_order_and_stay_in_their_groups() {
    let mock = mock().await;
    let org_hook = receiver::Receiver::start(500).await;
    let grp_hook = receiver::Receiver::start(200).await;
    let sinks = format!(
        r#"
[[log_sinks]]
id = "org_siem"
kind = "http"
url = "{}"
headers_env = {{ authorization = "SIEM_TOKEN" }}
batch = {{ max_lines = 7, max_wait = "100ms" }}

[[log_sinks]]
id = "prod_only"
kind = "http"
url = "{}"
batch = {{ max_wait = "100ms" }}

[[groups]]
id = "grp_other"
org = "acme"

[[keys]]
id = "key_other"
group = "grp_other"
sha256 = "{}"
"#,
        org_hook.url(),
        grp_hook.url(),
        sha(&key(2))
    );
    let policy = basic_policy(mock.addr(), &sinks)
        .replace(
            "[[orgs]]\nid = \"acme\"",
            "[[orgs]]\nid = \"acme\"\nlog_sinks = [\"org_siem\"]",
        )
        .replace(
            "[[groups]]\nid = \"grp_prod\"",
            "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"prod_only\"]",
        )
        .with_admin();
    let g = start_gateway_env(&policy, &env());
    let mut sent = vec![];
    for round in 0..5 {
        sent.extend(chats(&g, &key(1), &format!("prod{round}"), 4).await);
        sent.extend(chats(&g, &key(2), &format!("other{round}"), 2).await);
    }
    // The org's receiver fails for a while: retried, nothing delivered yet.
    org_hook
        .wait(Duration::from_secs(20), "three failed attempts", |got| {
            got.len() >= 3
        })
        .await;
    org_hook.set_status(200);
    let all = || {
        let bodies: Vec<String> = org_hook.delivered().into_iter().map(|g| g.body).collect();
        dedup(body_ids(&bodies))
    };
    let ok = poll_until(Duration::from_secs(30), || async {
        (all().len() >= sent.len()).then_some(())
    })
    .await;
    assert!(ok.is_some(), "org sink got {:?}", all());
    assert_eq!(all(), sent, "every line, in order");
    for got in org_hook.got() {
        no_secret(got.body.as_bytes(), "an org sink body");
    }
    // The group's sink: its own lines only, in order.
    let prod: Vec<String> = sent
        .iter()
        .filter(|i| i.starts_with("prod"))
        .cloned()
        .collect();
    let grp = || {
        let bodies: Vec<String> = grp_hook.delivered().into_iter().map(|g| g.body).collect();
        dedup(body_ids(&bodies))
    };
    let ok = poll_until(Duration::from_secs(20), || async {
        (grp().len() >= prod.len()).then_some(())
    })
    .await;
    assert!(ok.is_some(), "group sink got {:?}", grp());
    assert_eq!(grp(), prod, "the group's lines and no other group's");
    for got in grp_hook.got() {
        no_secret(got.body.as_bytes(), "a group sink body");
    }
    // Metrics: delivered lines per sink.
    let admin = g.admin(ROOT);
    let delivered = admin
        .metric(
            "tollgate_log_sink_lines_total",
            &["sink=\"prod_only\"", "result=\"delivered\""],
        )
        .await;
    assert!(delivered >= prod.len() as f64, "{delivered}");
}

/// A syslog receiver over TCP (or TLS with `tls`): octet-counted RFC 5424 messages.
async fn syslog_receiver_on(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let got = Arc::new(Mutex::new(vec![]));
    let out = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let got = got.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(s) = tls.accept(s).await {
                            read_frames(s, got).await;
                        }
                    }
                    None => read_frames(s, got).await,
                }
            });
        }
    });
    (addr, out)
}

async fn syslog_receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    syslog_receiver_on(None).await
}

/// Frames `LEN SP MSG` until the peer closes.
async fn read_frames(mut s: impl tokio::io::AsyncRead + Unpin, got: Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(sp) = buf.iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp])
                .expect("utf8 length")
                .parse()
                .expect("an octet count");
            if buf.len() < sp + 1 + len {
                break;
            }
            let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).expect("utf8 message");
            got.lock().unwrap().push(msg);
            buf.drain(..sp + 1 + len);
        }
    }
}

/// An OTLP/HTTP logs receiver: the protobuf requests, decoded.
async fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let got = Arc::new(Mutex::new(vec![]));
    let out = got.clone();
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let got = got.clone();
            async move {
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/x-protobuf")
                );
                let req: ExportLogsServiceRequest =
                    prost::Message::decode(&body[..]).expect("an OTLP logs request");
                for rl in req.resource_logs {
                    for sl in rl.scope_logs {
                        for r in sl.log_records {
                            let Some(Any::StringValue(line)) = r.body.and_then(|b| b.value) else {
                                panic!("a string body");
                            };
                            assert!(r.time_unix_nano > 0);
                            let v: Value = serde_json::from_str(&line).expect("the line");
                            got.lock().unwrap().push(v);
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_and_otlp_sinks_get_every_line() {
    let mock = mock().await;
    let (syslog, messages) = syslog_receiver().await;
    let (otlp, records) = otlp_receiver().await;
    let sinks = format!(
        r#"
[[log_sinks]]
id = "syslog"
kind = "syslog"
url = "tcp://{syslog}"
batch = {{ max_wait = "100ms" }}

[[log_sinks]]
id = "otel"
kind = "otlp"
url = "http://{otlp}"
batch = {{ max_wait = "100ms" }}
"#
    );
    let policy = basic_policy(mock.addr(), &sinks).replace(
        "[[groups]]\nid = \"grp_prod\"",
        "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"syslog\", \"otel\"]",
    );
    let g = start_gateway_env(&policy, &env());
    let sent = chats(&g, &key(1), "sys", 12).await;
    let ok = poll_until(Duration::from_secs(20), || async {
        (messages.lock().unwrap().len() >= sent.len()
            && records.lock().unwrap().len() >= sent.len())
        .then_some(())
    })
    .await;
    assert!(ok.is_some(), "syslog {:?}", messages.lock().unwrap());
    // `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`, strictly.
    let re = regex::Regex::new(
        r"^<(\d{1,3})>1 (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) (-|\[.+\]) (.*)$",
    )
    .expect("re");
    let mut ids = vec![];
    for m in messages.lock().unwrap().iter() {
        let c = re
            .captures(m)
            .unwrap_or_else(|| panic!("not RFC 5424: {m}"));
        let pri: u32 = c[1].parse().expect("pri");
        assert!(pri <= 191);
        assert_eq!(&c[3], "gw-test");
        assert_eq!(&c[4], "tollgate");
        let v: Value = serde_json::from_str(&c[8]).expect("MSG is the JSON line");
        assert_eq!(v["ts"].as_str(), Some(&c[2]));
        ids.push(v["request_id"].as_str().expect("id").to_string());
    }
    assert_eq!(dedup(ids), sent);
    let otlp_ids: Vec<String> = records
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["request_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(dedup(otlp_ids), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_spool_max_the_oldest_lines_are_dropped_counted_and_audited() {
    let mock = mock().await;
    let hook = receiver::Receiver::start(500).await;
    let sinks = format!(
        r#"
[[log_sinks]]
id = "small"
kind = "http"
url = "{}"
spool_max = "8KiB"
batch = {{ max_wait = "50ms" }}
"#,
        hook.url()
    );
    let policy = basic_policy(mock.addr(), &sinks)
        .replace(
            "[[groups]]\nid = \"grp_prod\"",
            "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"small\"]",
        )
        .with_admin();
    let g = start_gateway_env(&policy, &env());
    let sent = chats(&g, &key(1), "spool", 80).await;
    let admin = g.admin(ROOT);
    let dropped_metric = || async {
        admin
            .metric(
                "tollgate_log_sink_lines_total",
                &["sink=\"small\"", "result=\"dropped\""],
            )
            .await
    };
    wait_until_async(Duration::from_secs(20), "dropped lines counted", || async {
        dropped_metric().await > 0.0
    })
    .await;
    // Lines still on their way from the writer thread may be dropped after the first
    // count: read the audit trail and the metric until they agree.
    let audit = || async {
        let (s, v) = admin.get("/v1/audit?type=log_sink.dropped").await;
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().expect("data").clone()
    };
    let agreed = poll_until(Duration::from_secs(20), || async {
        let events = audit().await;
        let audited: u64 = events
            .iter()
            .map(|e| e["detail"]["after"]["lines"].as_u64().expect("lines"))
            .sum();
        let dropped = dropped_metric().await as u64;
        (!events.is_empty() && audited == dropped).then_some((events, dropped as usize))
    })
    .await;
    let (events, dropped) = agreed.expect("audited drops never matched the metric");
    assert_eq!(events[0]["detail"]["after"]["sink"], "small");
    hook.set_status(200);
    let delivered = || {
        let bodies: Vec<String> = hook.delivered().into_iter().map(|g| g.body).collect();
        dedup(body_ids(&bodies))
    };
    // The console's source: the admin route.
    let (s, v) = admin.get("/v1/log_sinks").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["id"], "small");
    assert_eq!(v["data"][0]["kind"], "http");
    assert_eq!(v["data"][0]["dropped"].as_u64(), Some(dropped as u64));
    let ok = poll_until(Duration::from_secs(20), || async {
        (delivered().len() + dropped >= sent.len()).then_some(())
    })
    .await;
    assert!(ok.is_some(), "delivered {:?}", delivered());
    // The newest lines are the ones kept, in order.
    assert_eq!(delivered(), sent[dropped..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_rotated_files_and_objects() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let mock = mock().await;
    let extra = format!(
        "{}\n[[groups]]\nid = \"grp_keep\"\norg = \"acme\"\n\n[[keys]]\nid = \"key_keep\"\ngroup = \"grp_keep\"\nsha256 = \"{}\"\n",
        s3_sink("archive", &moto.endpoint(), ""),
        sha(&key(2))
    );
    let policy = basic_policy(mock.addr(), &extra)
        .replace(
            "[[groups]]\nid = \"grp_prod\"",
            "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"archive\"]\nlog_retention = \"2s\"",
        )
        .replace(
            "[[orgs]]\nid = \"acme\"",
            "[[orgs]]\nid = \"acme\"\nlog_retention = \"1h\"",
        )
        .with_request_log()
        .in_server("request_log_max_size = \"1KiB\"")
        .with_admin();
    let g = start_gateway_env(&policy, &env());
    let mut old = chats(&g, &key(1), "old", 6).await;
    let keep = chats(&g, &key(2), "keep", 6).await;
    old.extend(chats(&g, &key(1), "old2", 2).await);
    let old_set: BTreeSet<String> = old.iter().cloned().collect();
    moto.wait_ids(&old_set, Duration::from_secs(20)).await;
    let dir = g.dir.path().to_path_buf();
    let rotated = || -> HashMap<String, String> {
        std::fs::read_dir(&dir)
            .expect("ls")
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                (n.starts_with("requests.log.") && !n.ends_with(".tmp"))
                    .then(|| (n, std::fs::read_to_string(e.path()).unwrap_or_default()))
            })
            .collect()
    };
    assert!(rotated().len() >= 2, "rotation at request_log_max_size");
    // Past 2s: grp_prod's lines leave the rotated files and its objects go; grp_keep's
    // (retention 1h from its org) stay.
    wait_until_async(
        Duration::from_secs(20),
        "grp_prod's old lines swept",
        || async {
            let files = rotated();
            let text: String = files.values().cloned().collect();
            moto.objects().await.is_empty() && !old.iter().any(|id| text.contains(id.as_str()))
        },
    )
    .await;
    let files = rotated();
    let all: String = files.values().cloned().collect::<String>()
        + &std::fs::read_to_string(g.request_log()).unwrap_or_default();
    for id in &keep {
        assert!(all.contains(id.as_str()), "{id} of grp_keep was deleted");
    }
    assert!(
        files.values().all(|t| !t.is_empty()),
        "empty rotated file kept"
    );
    // A new object is not deleted before its time.
    let fresh: BTreeSet<String> = chats(&g, &key(1), "fresh", 1).await.into_iter().collect();
    moto.wait_ids(&fresh, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_sinks_are_load_errors_naming_the_field() {
    let mock = mock().await;
    let sinks = r#"
[[log_sinks]]
id = "archive"
kind = "s3"
url = "https://not-s3/"
access_key_env = "TOLLGATE_TEST_UNSET_ACCESS"
secret_key_env = "TOLLGATE_TEST_UNSET_SECRET"

[[log_sinks]]
id = "siem"
kind = "http"
url = "ftp://siem.example.com/"
format = "csv"
headers_env = { authorization = "TOLLGATE_TEST_UNSET_TOKEN" }

[[log_sinks]]
id = "sys"
kind = "syslog"
url = "tcp://logs.example.com"

[[log_sinks]]
id = "bad/id"
kind = "kafka"
url = "x"
"#;
    let policy = basic_policy(mock.addr(), sinks)
        .replace(
            "[[groups]]\nid = \"grp_prod\"",
            "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"ghost\"]\nlog_retention = \"soon\"",
        )
        .in_server("request_log_max_size = \"huge\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    gateway::write_policy(&path, &policy, free_addr(), dir.path());
    let out = check_policy(&path);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    for want in [
        "(archive).url: \"https://not-s3/\": want s3://bucket/prefix/",
        "(siem).url: \"ftp://siem.example.com/\": want an http:// or https:// URL",
        "(siem).format: \"csv\": want jsonl, splunk_hec or elastic_bulk",
        "(siem).headers_env.authorization: environment variable TOLLGATE_TEST_UNSET_TOKEN is not set",
        "(sys).url: \"tcp://logs.example.com\": want host:port",
        "(bad/id).kind: \"kafka\": want s3, http, syslog or otlp",
        "(bad/id).id: want letters, digits, - and _",
        "(grp_prod).log_sinks: unknown log sink \"ghost\"",
        "(grp_prod).log_retention: invalid duration \"soon\"",
        "server.request_log_max_size: invalid size \"huge\"",
    ] {
        assert!(all.contains(want), "{want} in:\n{all}");
    }
    // Env vars of s3 keys: named and unset is an error (checked once the url is good).
    let fixed = policy.replace("https://not-s3/", "s3://b/p/");
    gateway::write_policy(&path, &fixed, free_addr(), dir.path());
    let out = check_policy(&path);
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        all.contains(
            "(archive).access_key_env: environment variable TOLLGATE_TEST_UNSET_ACCESS is not set"
        ),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_request_log_after_logrotate_moved_it() {
    let mock = mock().await;
    let policy = basic_policy(mock.addr(), "").with_request_log();
    let g = start_gateway(&policy);
    let before = chats(&g, &key(1), "before", 1).await;
    g.log_line(&before[0]).await;
    let moved = g.dir.path().join("requests.log.1");
    std::fs::rename(g.request_log(), &moved).unwrap();
    g.signal(libc::SIGUSR1);
    // The next lines go to a new file at the configured path, none to the moved one.
    let after = chats(&g, &key(1), "after", 1).await;
    g.log_line(&after[0]).await;
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(
        old.contains(&before[0]) && !old.contains(&after[0]),
        "{old}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_verifies_the_receiver_with_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tollgate syslog test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let (addr, messages) =
        syslog_receiver_on(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let sinks = format!(
        "\n[[log_sinks]]\nid = \"sys\"\nkind = \"syslog\"\nurl = \"tls://localhost:{}\"\nca_file = \"{}\"\nbatch = {{ max_wait = \"100ms\" }}\n",
        addr.port(),
        ca_file.display()
    );
    let policy = basic_policy(mock.addr(), &sinks).replace(
        "[[groups]]\nid = \"grp_prod\"",
        "[[groups]]\nid = \"grp_prod\"\nlog_sinks = [\"sys\"]",
    );
    let g = start_gateway_env(&policy, &env());
    let sent = chats(&g, &key(1), "tls", 3).await;
    let ok = poll_until(Duration::from_secs(20), || async {
        (messages.lock().unwrap().len() >= sent.len()).then_some(())
    })
    .await;
    assert!(ok.is_some(), "{}", g.log_text());
    let first = messages.lock().unwrap()[0].clone();
    assert!(first.starts_with("<134>1 "), "{first}");
    assert!(first.contains(&sent[0]), "{first}");
}
