//! The suite's harness: the real `tollgate` binary on free ports in front of in-process
//! mock providers, and what the tests share to drive it.
//!
//! - [`gateway`]: the binary started on a policy, its files, signals and restarts;
//! - [`policy`]: the policy most tests start from, and edits to policies;
//! - [`admin`]: a client of the admin API;
//! - [`http`]: data-plane requests, and raw HTTP/1.1 over TCP;
//! - [`logs`]: request-log lines, and the search for credentials in log files;
//! - [`load`]: chat traffic from several clients until stopped;
//! - [`receiver`]: a webhook receiver;
//! - [`turn`]: the tests that run alone on the machine;
//! - [`wait`]: waiting for what is observable, under a deadline.

pub mod admin;
pub mod gateway;
pub mod http;
pub mod load;
pub mod logs;
pub mod policy;
pub mod receiver;
pub mod turn;
pub mod wait;

pub use admin::{metric_sum, Admin, ADMIN_ENV, ROOT};
pub use gateway::{
    check_policy, start_gateway, start_gateway_env, start_gateway_files, tollgate, write_policy,
};
pub use gateway::{GatewayProc, KillOnDrop, KillPidOnDrop};
pub use http::{answer, chat_body, client, Answer, CHAT, MESSAGES};
pub use load::ChatLoad;
pub use logs::{assert_no_secret_in_logs, leaked_credentials};
pub use policy::{basic_policy, webhook_group, PolicyExt, SERVER};
pub use turn::alone;
pub use wait::{poll_every, poll_until, wait_for, wait_until};

// Every path of the `tollgate` crate the suite uses, here and nowhere else.
pub use tollgate::control::admin::authz::matrix as permission_matrix;
pub use tollgate::control::admin::route_list;
use tollgate::proxy::auth::digest;
pub use tollgate::storage::ledger::{Dim, Ledger, Level, UsageTotals};
pub use tollgate::storage::Store;
pub use tollgate::testing::fuzz;
pub use tollgate::testing::mock::{Behaviour, Fault, MockProvider};

use std::net::{SocketAddr, TcpListener};

/// A data-plane key for tests.
pub fn key(n: u32) -> String {
    format!("tg-TestKey{n:08}abcdefghijklmnopqrstuvwxyzABCDE")
}

/// The digest of `key` a policy file holds.
pub fn sha(key: &str) -> String {
    hex::encode(digest(key.as_bytes()))
}

/// A port for a server a test starts later. Taken below the kernel's ephemeral range
/// (32768 up) from a counter of this test process: a port picked by `bind(0)` and let go
/// could be taken meanwhile as the source port of any test's outgoing connection.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (FIRST + n % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// A loopback address on a [`free_port`].
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A mock provider on a port of its own.
pub async fn mock() -> MockProvider {
    turn::shared();
    MockProvider::start("127.0.0.1:0")
        .await
        .expect("mock provider")
}

/// A mock provider's behaviour: every answer with `status`.
pub fn answering(status: u16) -> Behaviour {
    Behaviour {
        status: Some(status),
        ..Default::default()
    }
}

/// `n` mock providers.
pub async fn mocks(n: usize) -> Vec<MockProvider> {
    let mut v = vec![];
    for _ in 0..n {
        v.push(mock().await);
    }
    v
}
