//! The `ipm` command line: `serve`, and client subcommands against a running server.
mod catalog;
mod client;
mod jobs;
mod progress;
mod serve;
mod webhooks;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// IPM — Integration Plane Management.
#[derive(Debug, Parser)]
#[command(name = "ipm", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and all workers.
    Serve(serve::ServeArgs),
    /// Manage API keys on a running server.
    Keys(client::KeysArgs),
    /// Publish events to a running server.
    Events(client::EventsArgs),
    /// Read the CDC feed of a running server.
    Cdc(client::CdcArgs),
    /// Work with catalog directories.
    Catalog(catalog::CatalogArgs),
    /// Export an org's events to NDJSON files (a bulk export job).
    Export(jobs::ExportArgs),
    /// Import an NDJSON file of events (a bulk import job).
    Import(jobs::ImportArgs),
    /// Manage webhooks on a running server.
    Webhooks(webhooks::WebhooksArgs),
    /// Verify a received webhook's Standard Webhooks signature (exit 0 when valid).
    Verify(webhooks::VerifyArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Keys(a) => client::keys(a).await,
            Command::Events(a) => client::events(a).await,
            Command::Cdc(a) => client::cdc(a).await,
            Command::Catalog(a) => catalog::run(a),
            Command::Export(a) => return jobs::export(a).await,
            Command::Import(a) => return jobs::import(a).await,
            Command::Webhooks(a) => webhooks::run(a).await,
            Command::Verify(a) => webhooks::verify(a),
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
