//! Minimal HTTP/1.1 for the mock: read a request (Content-Length or chunked body, with
//! `Expect: 100-continue`), write fixed or chunked responses.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAX_HEADER: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub enum ReadError {
    Closed,
    Bad(String),
}

/// Reads one request; `buf` carries bytes read past it (pipelining, keep-alive).
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Request, ReadError> {
    let (method, path, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("/").to_string(),
                    headers,
                    n,
                );
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEADER {
                    return Err(ReadError::Bad("header too large".into()));
                }
                if s.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
                    return Err(ReadError::Closed);
                }
            }
            Err(e) => return Err(ReadError::Bad(e.to_string())),
        }
    };
    let _ = buf.split_to(head_len);
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(s, buf).await?
    } else {
        let len: usize = match get("content-length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad("bad content-length".into()))?,
        };
        if len > MAX_BODY {
            return Err(ReadError::Bad("body too large".into()));
        }
        while buf.len() < len {
            if s.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
                return Err(ReadError::Closed);
            }
        }
        buf.split_to(len).freeze()
    };
    let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok(Request {
        method,
        path,
        headers,
        body,
        close,
    })
}

async fn fill_line<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, ReadError> {
    loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n") {
            return Ok(i);
        }
        if buf.len() > MAX_HEADER || s.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

async fn read_chunked<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Bytes, ReadError> {
    let mut body = BytesMut::new();
    loop {
        let i = fill_line(s, buf).await?;
        let line = buf.split_to(i + 2);
        let size_str =
            std::str::from_utf8(&line[..i]).map_err(|_| ReadError::Bad("chunk size".into()))?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| ReadError::Bad("chunk size".into()))?;
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad("body too large".into()));
        }
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let i = fill_line(s, buf).await?;
                let _ = buf.split_to(i + 2);
                if i == 0 {
                    return Ok(body.freeze());
                }
            }
        }
        while buf.len() < size + 2 {
            if s.read_buf(buf).await.map_err(|_| ReadError::Closed)? == 0 {
                return Err(ReadError::Closed);
            }
        }
        body.extend_from_slice(&buf[..size]);
        let _ = buf.split_to(size + 2);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// A status line and an empty header block; 101 comes with the headers of an upgrade.
pub fn bare_status(status: u16) -> String {
    match status {
        101 => {
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                .into()
        }
        s => format!("HTTP/1.1 {s} {}\r\n\r\n", reason(s)),
    }
}

pub async fn write_full<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    s.write_all(&out).await?;
    s.flush().await
}

pub async fn write_stream_head<S: AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<()> {
    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n").await?;
    s.flush().await
}

/// One chunk of a chunked body, flushed at once.
pub async fn write_chunk<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    s.write_all(&out).await?;
    s.flush().await
}

pub async fn write_last_chunk<S: AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<()> {
    s.write_all(b"0\r\n\r\n").await?;
    s.flush().await
}
