//! A client of the admin API.

use super::http::client;
use serde_json::Value;
use std::net::SocketAddr;

/// The root admin token of the suite's gateways (a full `tga-` token: the search for
/// credentials in log files would find it).
pub const ROOT: &str = "tga-RootTokenOfTheTestSuite0123456789abcdefghijk";

/// The environment that gives a policy [`with_admin`](super::PolicyExt::with_admin) its
/// root token.
pub const ADMIN_ENV: &[(&str, &str)] = &[("TEST_ADMIN_TOKEN", ROOT)];

/// The admin listener at `addr`, called with one token.
pub struct Admin {
    pub addr: SocketAddr,
    token: String,
}

impl Admin {
    pub fn new(addr: SocketAddr, token: &str) -> Admin {
        Admin {
            addr,
            token: token.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `method path` (with a JSON body) as `token`: the status and the JSON answer (`Null`
    /// when the answer is not JSON).
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = client().request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("admin request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `method path` with this client's token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// A call that must succeed (2xx): its answer.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    /// A key made with `body` (`POST /v1/keys`, which must answer 201): the answer, with
    /// the raw key.
    pub async fn new_key(&self, body: Value) -> Value {
        let (status, v) = self.post("/v1/keys", body).await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// `GET path` as text, e.g. `/metrics`.
    pub async fn text(&self, path: &str) -> String {
        client()
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin request")
            .text()
            .await
            .expect("admin answer")
    }

    pub async fn metrics(&self) -> String {
        self.text("/metrics").await
    }

    /// The sum of the series in `/metrics` that [`metric_sum`] finds.
    pub async fn metric(&self, prefix: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics().await, prefix, labels)
    }
}

/// The sum of the series of the Prometheus `text` whose line starts with `prefix` (a name,
/// or a whole series `name{labels}`) and contains every one of `labels` (0 when none).
pub fn metric_sum(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
