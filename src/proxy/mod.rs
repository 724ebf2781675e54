//! The data plane, in request order: the Pingora phases (`gateway`) call one step each.
//!
//! identify (`auth`, `checks`) → read the body (`respond::read_body`, `conn::body_memory`)
//! → reserve (`account` over `admission`) → route (`route`) → credential swap (`upstream`)
//! → usage and translation of the answer → settle (`account`) and log (`observe`).

pub(crate) mod account;
pub(crate) mod admit;
pub mod auth;
pub mod checks;
pub(crate) mod conn;
pub(crate) mod cors;
pub(crate) mod ctx;
pub mod directory;
pub(crate) mod gateway;
pub(crate) mod guard;
pub(crate) mod headers;
pub(crate) mod last_seen;
pub(crate) mod model_pools;
pub(crate) mod mtls;
pub(crate) mod policy_checks;
pub(crate) mod respond;
pub mod route;
pub(crate) mod upstream;
