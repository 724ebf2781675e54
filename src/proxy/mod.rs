//! The data plane, in request order: the Pingora phases (`gateway`) call one step each.
//!
//! identify (`auth`, `checks`) → read the body (`respond::read_body`, `conn::body_memory`)
//! → reserve (`account` over `admission`) → route (`route`) → credential swap (`upstream`)
//! → usage and translation of the answer → settle (`account`) and log (`observe`).

pub mod account;
pub mod admit;
pub mod auth;
pub mod checks;
pub mod conn;
pub mod ctx;
pub mod directory;
pub mod gateway;
pub mod headers;
pub mod last_seen;
pub mod respond;
pub mod route;
pub mod upstream;
