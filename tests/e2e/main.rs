//! The end-to-end suite, one test binary: the real `tollgate` binary in front of mock
//! providers, driven over HTTP, signals and its files. A module per area; the shared
//! harness in [`harness`]. Tests that measure time or memory run alone
//! ([`harness::turn`]).
//!
//! (Allocation counts live in a binary of their own, `tests/allocations.rs`: its counting
//! allocator would count every test's allocations here.)

#![allow(clippy::unwrap_used)]

mod harness;

mod admin;
mod admission;
mod alert_channels;
mod audit;
mod authz;
mod budget_clamp;
mod bulk_keys;
mod cache_pricing;
mod console;
mod control_plane;
mod cors;
mod demo;
mod durability;
mod export;
mod faults;
mod fuzz_props;
mod guardrails;
mod hostile_clients;
mod invoices;
mod key_policy;
mod log_levels;
mod metering;
mod model_limits;
mod mtls;
mod openapi;
mod presets;
mod reconciliation;
mod reload_and_cli;
mod reload_settle;
mod request_path;
mod routing;
mod sdk;
mod shadow;
mod spend;
mod tls_upstream;
mod token_budget;
mod tracing;
mod translate;
mod upgrade;
mod webhook_latency;
mod webhooks;
