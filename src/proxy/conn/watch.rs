//! A client connection's stream that enforces the header deadline, the header size cap
//! and the keep-alive idle timeout as it is read.
//!
//! The stream cannot parse HTTP, and need not: a request header ends at the first empty
//! line (`\n\n` or `\n\r\n`) after some text, and until then every byte read is header.
//! After that the connection is [`Phase::Busy`] until the request path calls
//! [`super::request_finished`]; nothing here limits a request being served.

use super::{canned, ConnState, Phase};
use crate::error::GatewayError;
use crate::policy::config::ClientLimits;
use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, ALPN};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub(crate) struct Watched {
    inner: Stream,
    state: Arc<ConnState>,
    limits: ClientLimits,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Option<Instant>,
    /// Header bytes of the current request so far.
    header_bytes: usize,
    /// Some non-blank byte seen: an empty line now ends the header (leading blank lines
    /// do not, or `\r\n\r\n` would buy a slow client an unlimited header).
    text: bool,
    /// 0: in a line; 1: after `\n`; 2: after `\n\r`.
    eol: u8,
    /// The refusal written, the stream failed: every later read fails at once.
    failed: bool,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Watched {
    pub(crate) fn new(inner: Stream, state: Arc<ConnState>, limits: ClientLimits) -> Watched {
        Watched {
            inner,
            state,
            limits,
            sleep: Box::pin(tokio::time::sleep(limits.header_timeout)),
            armed: None,
            header_bytes: 0,
            text: false,
            eol: 0,
            failed: false,
        }
    }

    /// Notes bytes the client sent; `Err` refuses the request (header too large).
    fn saw(&mut self, bytes: &[u8]) -> Result<(), GatewayError> {
        match self.state.get().0 {
            Phase::Busy => return Ok(()),
            Phase::Idle => {
                // The next request starts: its header has `header_timeout` from now.
                self.state.set(Phase::Header);
                self.header_bytes = 0;
                self.text = false;
                self.eol = 0;
            }
            Phase::Header => {}
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.eol == 0 && self.text {
                // Inside a line of text nothing changes until the next `\n`: skip to it
                // (a byte at a time, this loop was ~3k instructions of a small request).
                match memchr::memchr(b'\n', &bytes[i..]) {
                    Some(j) => i += j,
                    None => break,
                }
            }
            let end = match (self.eol, bytes[i]) {
                (1 | 2, b'\n') => self.text,
                (_, b'\n') => {
                    self.eol = 1;
                    false
                }
                (1, b'\r') => {
                    self.eol = 2;
                    false
                }
                (_, b'\r') => false,
                _ => {
                    self.eol = 0;
                    self.text = true;
                    false
                }
            };
            if self.header_bytes + i + 1 > self.limits.max_header_bytes {
                return Err(GatewayError::HeaderTooLarge {
                    limit: self.limits.max_header_bytes,
                });
            }
            if end {
                self.state.set(Phase::Busy);
                return Ok(());
            }
            i += 1;
        }
        if self.header_bytes + bytes.len() > self.limits.max_header_bytes {
            return Err(GatewayError::HeaderTooLarge {
                limit: self.limits.max_header_bytes,
            });
        }
        self.header_bytes += bytes.len();
        Ok(())
    }

    /// Writes the refusal if the socket takes it now (it is small and nothing else is being
    /// written while a header is read), and fails the stream.
    fn refuse(&mut self, cx: &mut Context<'_>, e: &GatewayError) -> io::Error {
        let out = canned(e);
        let mut inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(_)) = inner.as_mut().poll_write(cx, &out) {
            let _ = inner.poll_flush(cx);
        }
        self.failed = true;
        log::debug!("client refused: {e}");
        io::Error::new(io::ErrorKind::TimedOut, format!("tollgate: {e}"))
    }

    fn deadline(&self) -> Option<(Phase, Instant)> {
        match self.state.get() {
            (Phase::Header, since) => Some((Phase::Header, since + self.limits.header_timeout)),
            (Phase::Idle, since) => Some((Phase::Idle, since + self.limits.idle_timeout)),
            (Phase::Busy, _) => None,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Err(io::Error::other("tollgate: connection refused")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                match this.saw(new) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => {
                        buf.set_filled(before);
                        Poll::Ready(Err(this.refuse(cx, &e)))
                    }
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((phase, at)) = this.deadline() else {
                    return Poll::Pending;
                };
                // Re-armed only for an earlier deadline: a later one (the next request's,
                // the idle wait's) is picked up when the armed timer fires early — one
                // timer per connection rather than a re-registration per request.
                if this.armed.is_none_or(|armed| at < armed) {
                    this.sleep.as_mut().reset(at.into());
                    this.armed = Some(at);
                }
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() < at {
                    this.sleep.as_mut().reset(at.into());
                    this.armed = Some(at);
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                if phase == Phase::Idle {
                    // An idle keep-alive connection: end of stream, closed quietly.
                    return Poll::Ready(Ok(()));
                }
                let e = GatewayError::RequestTimeout {
                    what: "request header",
                    setting: "header_timeout",
                    limit: this.limits.header_timeout,
                };
                Poll::Ready(Err(this.refuse(cx, &e)))
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Watched {
    /// Pingora closes a connection it will not reuse through here: close it lingering, so
    /// a refusal written while the client was still sending reaches it.
    async fn shutdown(&mut self) {
        super::linger(&mut self.inner).await;
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Watched {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(max_header_bytes: usize) -> Watched {
        let (a, _b) = tokio::io::duplex(64);
        let limits = ClientLimits {
            max_header_bytes,
            ..ClientLimits::default()
        };
        Watched::new(Box::new(a), Arc::new(ConnState::new()), limits)
    }

    #[tokio::test]
    async fn a_header_ends_at_the_first_empty_line_after_text() {
        let mut w = watched(1024);
        w.saw(b"\r\n\r\n").unwrap();
        assert_eq!(
            w.state.get().0,
            Phase::Header,
            "leading blank lines are no header"
        );
        w.saw(b"POST / HTTP/1.1\r\nhost: x\r").unwrap();
        assert_eq!(w.state.get().0, Phase::Header);
        w.saw(b"\n\r\n{\"body\"\n\n").unwrap();
        assert_eq!(w.state.get().0, Phase::Busy);
        // Body bytes are not header bytes.
        w.saw(&[b'x'; 4096]).unwrap();
        super::super::CONN
            .scope(w.state.clone(), async { super::super::request_finished() })
            .await;
        assert_eq!(w.state.get().0, Phase::Idle);
        w.saw(b"GET / HTTP/1.1\n\n").unwrap();
        assert_eq!(
            w.state.get().0,
            Phase::Busy,
            "bare LF lines end a header too"
        );
    }

    #[tokio::test]
    async fn a_header_over_the_cap_is_refused() {
        let mut w = watched(1024);
        w.saw(&[b'a'; 1000]).unwrap();
        assert!(matches!(
            w.saw(&[b'a'; 100]),
            Err(GatewayError::HeaderTooLarge { limit: 1024 })
        ));
        // A header that ends within the cap is fine whatever follows it.
        let mut w = watched(1024);
        let mut req = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'b'; 5000]);
        w.saw(&req).unwrap();
    }

    /// The byte-at-a-time scan `saw` replaced: (ended at, too large at) for one request.
    fn reference(bytes: &[u8], cap: usize) -> (Option<usize>, Option<usize>) {
        let (mut eol, mut text) = (0u8, false);
        for (i, &b) in bytes.iter().enumerate() {
            let end = match (eol, b) {
                (1 | 2, b'\n') => text,
                (_, b'\n') => {
                    eol = 1;
                    false
                }
                (1, b'\r') => {
                    eol = 2;
                    false
                }
                (_, b'\r') => false,
                _ => {
                    eol = 0;
                    text = true;
                    false
                }
            };
            if i + 1 > cap {
                return (None, Some(i));
            }
            if end {
                return (Some(i), None);
            }
        }
        (None, None)
    }

    #[tokio::test]
    async fn the_skipping_scan_agrees_with_the_byte_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let len = next(60) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| [b'a', b'\r', b'\n', b' '][next(4) as usize])
                .collect();
            let cap = 1 + next(70) as usize;
            let (ended, too_large) = reference(&bytes, cap);
            let mut w = watched(cap);
            let mut at = 0;
            let mut got = Ok(());
            while at < bytes.len() && got.is_ok() && w.state.get().0 != Phase::Busy {
                let n = (1 + next(20) as usize).min(bytes.len() - at);
                got = w.saw(&bytes[at..at + n]);
                at += n;
            }
            let busy = w.state.get().0 == Phase::Busy;
            assert_eq!(got.is_err(), too_large.is_some(), "{bytes:?} cap {cap}");
            assert_eq!(busy, ended.is_some(), "{bytes:?} cap {cap}");
        }
    }
}
