//! tollgate — an LLM API gateway on Pingora. Keys are identity, groups are policy.
//!
//! One request, top to bottom (Pingora phase → module):
//!
//! ```text
//!  client ──► conn::Guarded                            connection cap; header deadline and
//!                                                      size, keep-alive idle (conn::watch)
//!         ──► request_filter ─┬─ request::Route        which API (OpenAI / Anthropic)
//!                             ├─ auth                  (1) key digest → KeyEntry: the file
//!                             │                            snapshot, then `directory` (API keys)
//!                             ├─ policy                (2) key/group state, CIDRs, model gating
//!                             ├─ account::hold_slots   max_parallel slot, before the body
//!                             ├─ respond::read_body    body ≤ max_body, body_timeout, memory
//!                             │                        from conn::budget (replayed on retries)
//!                             └─ admission via account (3) windows, slots, budgets: reserve
//!            upstream_peer ─┬─── route::Plan           (4) target by strategy, then fallbacks
//!                           └─── translate::render     chat ⇄ messages when the APIs differ
//!  upstream_request_filter ───── upstream              (5) credential swap, Host, framing
//!     response_body_filter ─┬─── usage::Scanner        (6) usage from JSON / SSE, chunk by chunk
//!                           └─── translate::Responder  the answer in the client's API
//!                  logging ─┬─── account::settle       (7) settle (value types in, Billed out); ledger
//!                           └─── observe               (8) metrics, request log
//! ```
//!
//! Around it: `config` (raw → validated), `snapshot` (the immutable policy behind one
//! `ArcSwap`), `reload` (SIGHUP; the file is read once at rest), `server` (Pingora
//! services), `fault` (every refusal or abort attributed to client, gateway or upstream),
//! `mock` (the mock provider for tests, demo and load tests), `fuzz` (the fuzz targets'
//! properties).
//!
//! The control plane, beside the request path:
//!
//! ```text
//!  admin (axum route table) ──► control (validate → store → events → commit → directory)
//!                                  │            │            │
//!                                store       events      directory ◄── auth (data plane)
//!                           (sled trees,   (audit trail,  (API keys by digest, group
//!                            ControlStore)   log,          state overrides, last_seen)
//!                                            webhooks ──► queue in the store ──► delivery
//!                                            service: signed POSTs, retries, off the
//!                                            request path)
//! ```

pub mod account;
pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod demo;
pub mod digest;
pub mod directory;
pub mod error;
pub mod events;
pub mod fault;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod headers;
pub mod last_seen;
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
pub mod store;
pub mod translate;
pub mod upstream;
pub mod usage;
pub mod webhooks;
