//! Background workers. Each exposes a single step (`run_once`) so tests can drive it, and a
//! `spawn` loop for `ipm serve`.
pub mod delivery;
mod export;
mod import;
pub mod jobs;
pub mod retention;
