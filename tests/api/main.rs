//! API tests: one binary, each test with its own server on port 0 and its own store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerts;
mod auth_matrix;
mod bad_input;
mod catalog;
mod cdc;
mod cli;
mod cli_jobs;
mod concurrency;
mod conformance;
mod connections;
mod crash;
mod events;
mod exports;
#[allow(dead_code)]
mod helpers;
mod imports;
#[allow(dead_code)]
mod job_helpers;
mod jobs_crash;
mod keys;
mod kpis;
mod multinode;
mod ops;
#[allow(dead_code)]
mod receiver;
mod schemathesis;
mod smoke;
mod startup;
mod webhooks;
mod webhooks_claim;
mod webhooks_heavy;
mod workers;
