//! IPM — Integration Plane Management.
//!
//! # Layout
//! - [`catalog`]: the event catalog (types, schemas, lifecycles, specimens, contracts, maturity, AsyncAPI).
//! - [`domain`]: pure types and rules (envelope, names, ids, cursors, filters, roles). No HTTP, no SQL.
//! - [`store`]: storage traits split by capability, with the embedded SQLite implementation.
//! - [`service`]: the use cases the HTTP layer and the CLI call (ingest, CDC, keys).
//! - [`http`]: one module per API resource, each with its `router()`; one place maps errors to problem+json.
//! - [`workers`]: background work with a single-step `run_once` (retention).
//! - [`cli`]: the `ipm` command line (serve and client subcommands).
//! - [`node`]: this process's data-dir lock and stable node id (what workers lease under).
//! - [`server`]: the connection layer (accept loop, timeouts, connection cap).
//! - [`app`]: wires config, store and services together and runs the server.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod node;
pub mod server;
pub mod service;
pub mod store;
pub mod workers;

pub use app::{App, run};
