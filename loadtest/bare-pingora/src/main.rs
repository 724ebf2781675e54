//! A bare Pingora 0.9.1 proxy: one `upstream_peer`, nothing else. The baseline of
//! `loadtest/perf.sh`.
//!
//! Server settings (threads, work stealing, pid file, upgrade socket) come from the YAML
//! file given with `-c`, as for any Pingora server; the addresses from the environment:
//! `BARE_LISTEN` (default 127.0.0.1:18080) and `BARE_UPSTREAM` (default 127.0.0.1:18081).

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session, http_proxy_service};
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;

pub struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn env_addr(var: &str, default: &str) -> SocketAddr {
    let v = std::env::var(var).unwrap_or_else(|_| default.to_string());
    v.parse()
        .unwrap_or_else(|_| panic!("{var}={v:?}: want IP:PORT"))
}

fn main() {
    let listen = env_addr("BARE_LISTEN", "127.0.0.1:18080");
    let upstream = env_addr("BARE_UPSTREAM", "127.0.0.1:18081");
    let mut server = Server::new(Some(Opt::parse_args())).expect("server");
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Bare(upstream));
    svc.add_tcp(&listen.to_string());
    server.add_service(svc);
    server.run_forever();
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
