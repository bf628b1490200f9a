//! rta: real-time analytics in one binary.
//!
//! See `ARCHITECTURE.md` for the map of modules and the invariants between them.

pub mod alert;
pub mod bus;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod engine;
pub mod event;
pub mod feed;
pub mod query;
pub mod server;
pub mod store;
