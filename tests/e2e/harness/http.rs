//! Requests to the data plane: through reqwest, or as raw HTTP/1.1 bytes over TCP.

use super::gateway::GatewayProc;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const CHAT: &str = "/v1/chat/completions";
pub const MESSAGES: &str = "/v1/messages";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A chat completion of `model` for "hi".
pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// A whole answer: status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The `error.code` of an OpenAI-shaped error ("" when there is none).
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("header"))
    }
}

/// Sends `r` and reads the whole answer.
pub async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        text,
    }
}

impl GatewayProc {
    /// `POST path` with `key` as the bearer token, `headers`, and `body` as JSON: to send.
    pub fn post(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut r = client().post(self.url(path)).bearer_auth(key).json(body);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        r
    }

    /// The same, sent: the whole answer.
    pub async fn call(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        answer(self.post(path, key, headers, body)).await
    }
}

/// Sends raw bytes, then reads the answer until the gateway closes or `wait` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    String::from_utf8_lossy(&read_to_close(&mut s, wait).await.0).into_owned()
}

/// Reads until the peer closes (EOF or reset) or `limit` passes. Returns what was read and
/// when the connection was seen closed.
pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let mut out = vec![];
    let mut buf = [0u8; 8192];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (out, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(Instant::now())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response (head and a `content-length` body) from a keep-alive connection.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed before the response ended");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().expect("content-length"))
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// The status of the last status line of a raw answer (a 100 Continue may come first).
pub fn status_of(answer: &str) -> u16 {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answer.get(i + 9..i + 12)?.parse().ok())
        .last()
        .unwrap_or(0)
}

/// The JSON body of a raw answer.
pub fn json_body(answer: &str) -> Value {
    let body = answer.rsplit("\r\n\r\n").next().unwrap_or("");
    serde_json::from_str(body).unwrap_or_default()
}
