//! Assembly: the Pingora server and its services (`server`), and `tollgate demo`.

pub mod demo;
pub mod server;
