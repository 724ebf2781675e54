//! The policy file → validated [`config::Config`] → immutable [`snapshot::Snapshot`] behind
//! one `ArcSwap`; `reload` swaps a new snapshot in on SIGHUP or `POST /v1/reload`.

pub mod config;
pub mod reload;
pub mod snapshot;
