//! `ipm serve`.
use crate::app::App;
use crate::config::{Config, ConfigSource, FlagCatalog, Flags};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (default: $IPM_CONFIG, else ./ipm.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store URL (sqlite:PATH or postgres://…).
    #[arg(long)]
    database_url: Option<String>,
    /// Catalog directory (default: the embedded example catalog).
    #[arg(long)]
    catalog: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Flags {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        catalog: args.catalog.map(|dir| FlagCatalog { dir }),
    };
    // `--config` wins over `IPM_CONFIG`; without either, ./ipm.toml when present.
    let file = match (args.config, std::env::var_os("IPM_CONFIG")) {
        (Some(f), _) => Some((f, ConfigSource::Flag)),
        (None, Some(f)) if !f.is_empty() => Some((PathBuf::from(f), ConfigSource::Env)),
        _ => None,
    };
    let loaded = Config::load_reporting(file.as_ref().map(|(f, s)| (f.as_path(), *s)), flags)
        .map_err(anyhow::Error::msg)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IPM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never in a log file or a collector's pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = loaded.config;
    crate::server::raise_open_files_limit();
    // Bind first: a taken port must fail the start before anything is created (App::build
    // then checks everything else before it creates the data dir, the store or a key).
    let listener = bind(&config.listen).await?;
    let app = App::build(config.clone()).await?;
    if let Some(key) = &app.minted_admin_key {
        println!("Created the first admin API key (shown only this once; store it safely):\n{key}");
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "ipm listening");
    println!("listening on http://{addr}");
    crate::app::run(app, listener, shutdown_signal()).await
}

/// Binds `listen`, or says which address failed and how to choose another.
async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use std::io::ErrorKind;
    let e = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    let why = match e.kind() {
        ErrorKind::AddrInUse => "the address is already in use (another process listens there)",
        ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges; use a port above 1024)"
        }
        ErrorKind::AddrNotAvailable => "this machine has no such address",
        _ => "",
    };
    let why = if why.is_empty() {
        e.to_string()
    } else {
        why.to_string()
    };
    anyhow::bail!(
        "cannot listen on {listen} (listen): {why}; choose another address with --listen \
         (or IPM_LISTEN, or listen in ipm.toml)"
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
