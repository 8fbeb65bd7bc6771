//! Connecting to PostgreSQL, with failures that name their cause.
//!
//! tokio-postgres reports a refused login as "db error" and deadpool wraps that as "Error
//! occurred while creating a new object": neither says that the database is missing or the
//! password wrong. [`check`] connects once, before anything is created, and turns each failure
//! into one line: what happened, where (the URL with its password redacted) and what to do.
use super::{StoreError, StoreResult};
use crate::config::redact_url;
use std::error::Error as _;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `url` and gives it the default connect timeout when it has none.
pub(super) fn parse(url: &str) -> StoreResult<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        StoreError::Backend(format!(
            "database_url = \"{}\" is not a PostgreSQL URL: {e} (expected \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
            redact_url(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connects once to `url` and runs a trivial query: Ok when a store could be opened there
/// (the database exists, the login is accepted), else an error saying why and what to do.
pub async fn check(url: &str) -> StoreResult<()> {
    let config = parse(url)?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Backend(describe(&e, &config, url)))?;
    let driver = tokio::spawn(connection);
    let r = client.simple_query("SELECT 1").await;
    drop(client);
    let _ = driver.await;
    r.map(|_| ())
        .map_err(|e| StoreError::Backend(describe(&e, &config, url)))
}

/// One line for a failed connection to `url`: the cause, the redacted URL and what to do.
pub(super) fn describe(
    e: &tokio_postgres::Error,
    config: &tokio_postgres::Config,
    url: &str,
) -> String {
    let at = endpoint(config);
    let url = redact_url(url);
    let db = config.get_dbname().unwrap_or("");
    let user = config.get_user().unwrap_or("");
    if let Some(d) = e.as_db_error() {
        let code = d.code();
        return if *code == SqlState::INVALID_CATALOG_NAME {
            format!(
                "PostgreSQL at {at} has no database \"{db}\" (database_url = {url}): create it \
                 (`createdb {db}` or CREATE DATABASE {db}) or fix the database name in \
                 database_url"
            )
        } else if *code == SqlState::INVALID_PASSWORD {
            format!(
                "PostgreSQL at {at} refused the password of user \"{user}\" (database_url = \
                 {url}): check the user and password in database_url"
            )
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            format!(
                "PostgreSQL at {at} refused user \"{user}\": {} (database_url = {url}): check \
                 the user in database_url and the server's pg_hba.conf",
                d.message()
            )
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            format!(
                "PostgreSQL at {at} has no free connection: {} (database_url = {url}): raise the \
                 server's max_connections or stop clients that hold connections",
                d.message()
            )
        } else {
            format!(
                "PostgreSQL at {at} refused the connection: {} ({}) (database_url = {url})",
                d.message(),
                code.code()
            )
        };
    }
    match io_cause(e) {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {at} (connection refused; database_url = {url}): \
             start PostgreSQL there, or fix the host and port in database_url"
        ),
        Some(io) if io.kind() == std::io::ErrorKind::TimedOut => format!(
            "no answer from PostgreSQL at {at} within {} s (database_url = {url}): check the \
             host and port in database_url and that the network lets this machine reach it",
            config
                .get_connect_timeout()
                .unwrap_or(&DEFAULT_CONNECT_TIMEOUT)
                .as_secs()
        ),
        Some(io) => format!(
            "cannot reach PostgreSQL at {at}: {io} (database_url = {url}): check the host and \
             port in database_url"
        ),
        None => format!(
            "cannot use PostgreSQL at {at}: {} (database_url = {url})",
            cause(e)
        ),
    }
}

/// The cause of `e` in words (the server's message, or the I/O error), without a URL: for
/// errors after startup, where "db error" alone says nothing.
pub(super) fn cause(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return format!("{}: {}", d.code().code(), d.message());
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// `host:port` (the first of each) of `config`.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

fn io_cause(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}
