//! Integration tests: each starts the real `rta` binary on port 0 with a
//! fresh data directory and talks HTTP and WebSocket to it.
//! Set TEST_LOG=1 to see the servers' logs.

mod helpers;
mod services;

mod access;
mod alerts;
mod cli;
mod client_edges;
mod cluster;
mod direct;
mod edges;
mod faults;
mod hostile;
mod ingest;
mod metrics;
mod query;
mod restart;
mod spec;
mod telemetry;
mod views;
mod websocket;
