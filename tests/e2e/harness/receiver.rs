//! A webhook receiver for end-to-end tests: records every POST (headers and body), and
//! answers with a status set at run time — or never answers (`hang`) — with an empty body
//! or one set at run time (a guardrail checker's verdict), after an optional delay.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait::poll_until;

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Got {
    pub signature: String,
    /// The request's query string ("" when none): DingTalk's signature travels there.
    pub query: String,
    pub body: String,
    pub json: serde_json::Value,
    /// What the receiver answered (0: nothing, it hung).
    pub status: u16,
}

#[derive(Clone, Default)]
struct Shared {
    got: Arc<Mutex<Vec<Got>>>,
    /// 0 = hang.
    status: Arc<AtomicU16>,
    /// The JSON answered (none: an empty body).
    reply: Arc<Mutex<Option<String>>>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

async fn hook(
    State(s): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let status = s.status.load(Ordering::SeqCst);
    let body = String::from_utf8_lossy(&body).into_owned();
    s.got.lock().unwrap_or_else(|p| p.into_inner()).push(Got {
        signature: headers
            .get("x-tollgate-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        json: serde_json::from_str(&body).unwrap_or_default(),
        query: query.unwrap_or_default(),
        body,
        status,
    });
    if status == 0 {
        std::future::pending::<()>().await;
    }
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let reply = s
        .reply
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        reply,
    )
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr"), status).await
    }

    pub async fn start_on(addr: SocketAddr, status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared::default();
        shared.status.store(status, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(hook))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// The body of every answer from now on.
    pub fn set_reply(&self, json: serde_json::Value) {
        *self.shared.reply.lock().unwrap_or_else(|p| p.into_inner()) = Some(json.to_string());
    }

    /// Answers after `ms` from now on.
    pub fn set_delay_ms(&self, ms: u64) {
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every POST received, in order.
    pub fn got(&self) -> Vec<Got> {
        self.shared
            .got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bodies answered with a 2xx.
    pub fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .collect()
    }

    /// Delivered bodies of one event type.
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.delivered()
            .into_iter()
            .filter(|g| g.json["event"] == kind)
            .map(|g| g.json)
            .collect()
    }

    /// Waits until `done` holds for what was received; panics after `within`.
    pub async fn wait(&self, within: Duration, what: &str, done: impl Fn(&[Got]) -> bool) {
        let seen = poll_until(within, || async { done(&self.got()).then_some(()) }).await;
        assert!(
            seen.is_some(),
            "webhook receiver: {what} not seen in {within:?}; got {:#?}",
            self.got().iter().map(|g| &g.json).collect::<Vec<_>>()
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks `x-tollgate-signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn verify(secret: &str, got: &Got) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in got.signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.{}", got.body).as_bytes());
    now.abs_diff(t) < 300 && mac.verify_slice(&v1).is_ok()
}
