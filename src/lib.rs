//! tollgate — an LLM API gateway on Pingora. Keys are identity, groups are policy.
//!
//! One request, top to bottom (Pingora phase → module):
//!
//! ```text
//!  client ──► request_filter ─┬─ request::Route        which API (OpenAI / Anthropic)
//!                             ├─ auth                  (1) key digest → KeyEntry
//!                             ├─ policy                (2) key/group state, CIDRs, model gating
//!                             ├─ respond::read_body    body ≤ max_body (replayed on retries)
//!                             └─ admission via account (3) windows, slots, budgets: reserve
//!            upstream_peer ─┬─── route::Plan           (4) target by strategy, then fallbacks
//!                           └─── translate::render     chat ⇄ messages when the APIs differ
//!  upstream_request_filter ───── upstream              (5) credential swap, Host, framing
//!     response_body_filter ─┬─── usage::Scanner        (6) usage from JSON / SSE, chunk by chunk
//!                           └─── translate::Responder  the answer in the client's API
//!                  logging ─┬─── account::settle       (7) settle; ledger (sled) flushed 250 ms
//!                           └─── observe               (8) metrics, request log
//! ```
//!
//! Around it: `config` (raw → validated), `snapshot` (the immutable policy behind one
//! `ArcSwap`), `reload` (SIGHUP), `server` (Pingora services), `admin` (health, metrics,
//! reload), `mock` (the mock provider for tests, demo and load tests).

pub mod account;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod ledger;
#[path = "mock_provider/mod.rs"]
pub mod mock;
pub mod observe;
pub mod policy;
pub mod reload;
pub mod request;
pub mod respond;
pub mod route;
pub mod secret;
pub mod server;
pub mod snapshot;
pub mod translate;
pub mod upstream;
pub mod usage;
