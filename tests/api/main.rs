//! API tests: one binary, each test with its own server on port 0 and its own store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_matrix;
mod bad_input;
mod catalog;
mod cdc;
mod cli;
mod concurrency;
mod conformance;
mod crash;
mod events;
#[allow(dead_code)]
mod helpers;
mod keys;
mod ops;
#[allow(dead_code)]
mod receiver;
mod schemathesis;
mod smoke;
mod webhooks;
mod webhooks_heavy;
