//! Assembly: the Pingora server and its services (`server`), and `tollgate demo`.

pub mod demo;
mod mtls;
pub mod server;
