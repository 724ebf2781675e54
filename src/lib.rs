//! tollgate — an LLM API gateway on Pingora. Keys are identity, groups are policy.
//!
//! The planes are the top-level modules:
//!
//! | module       | plane                                                                  |
//! |--------------|------------------------------------------------------------------------|
//! | [`proxy`]    | the data plane in request order: Pingora phases, identify, checks,     |
//! |              | account (reserve/settle), route, upstream, connections, key directory  |
//! | [`policy`]   | the policy file → validated config → immutable snapshot; reload        |
//! | [`llm`]      | wire formats without Pingora: body spans, translation, usage           |
//! | [`admission`]| sliding windows, `max_parallel`, budgets: reserve → settle             |
//! | [`control`]  | keys, groups, tokens, spend, lifecycle; admin API, webhooks, audit     |
//! | [`storage`]  | the embedded store (one owner per tree) and the spend ledger           |
//! | [`observe`]  | request log and sinks, metrics, faults, error rates                    |
//! | [`app`]      | server assembly and `tollgate demo`                                    |
//! | [`testing`]  | the mock provider and the fuzz targets' properties                     |
//!
//! One request, top to bottom (Pingora phase → module):
//!
//! ```text
//!  client ──► proxy::conn::Guarded                     connection cap; header deadline and
//!                                                      size, keep-alive idle (conn::watch)
//!         ──► request_filter ─┬─ llm::body::Endpoint   which API (OpenAI / Anthropic)
//!                             ├─ proxy::auth           (1) identify: key digest → KeyEntry (the
//!                             │                            snapshot, then proxy::directory)
//!                             ├─ proxy::checks         (2) key/group state, CIDRs, model gating
//!                             ├─ proxy::respond        read the body: ≤ max_body, body_timeout,
//!                             │                        memory from conn::body_memory
//!                             └─ proxy::account        (3) reserve: windows, slots, budgets
//!            upstream_peer ─┬─── proxy::route::Plan    (4) target by strategy, then fallbacks
//!                           └─── llm::translate        chat ⇄ messages when the APIs differ
//!  upstream_request_filter ───── proxy::upstream       (5) credential swap, Host, framing
//!     response_body_filter ─┬─── llm::usage::Scanner   (6) usage from JSON / SSE, chunk by chunk
//!                           └─── llm::translate        the answer in the client's API
//!                  logging ─┬─── proxy::account        (7) settle; storage::ledger
//!                           └─── observe               (8) metrics, request log
//! ```
//!
//! The control plane, beside the request path:
//!
//! ```text
//!  control::admin (axum) ──► control (validate → storage → events → commit → directory)
//!                                │             │              │
//!                             storage     control::events   proxy::directory ◄── proxy::auth
//!                           (sled trees)  (audit trail,     (API keys by digest, group
//!                                          log, webhooks ──► queue in storage ──► delivery
//!                                          off the request path)
//! ```

pub mod admission;
pub mod app;
pub mod clock;
pub mod control;
pub mod digest;
pub mod error;
pub mod llm;
pub mod observe;
pub mod policy;
pub mod proxy;
pub mod secret;
pub mod storage;
pub mod testing;
