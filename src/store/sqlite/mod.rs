//! The embedded SQLite store: one writer thread with group commit ([`writer`]) and a small pool
//! of read connections. WAL mode lets readers run beside the writer; each reader sees a
//! committed prefix of the log, so CDC pages never skip an event.
mod deliveries;
mod events;
mod inbox;
mod jobs;
mod keys;
mod kpis;
mod migrations;
mod webhooks;
mod writer;

use super::{Meta, StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use writer::Writer;

/// The SQLite store.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    commits: watch::Sender<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_path_buf();
        let p = path.clone();
        let (conn, last_seq) = tokio::task::spawn_blocking(move || -> StoreResult<(Connection, i64)> {
            let mut conn = Connection::open(&p)?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
            )?;
            migrations::apply(&mut conn)?;
            let last: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            Ok((conn, last))
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        // The WAL file exists once the database has been written (migrations do); fsyncing it
        // from the sync thread is what makes a commit durable (see writer.rs).
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal = std::fs::OpenOptions::new().write(true).open(&wal_path).ok();
        let writer = Writer::spawn(conn, wal).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (commits, _) = watch::channel(last_seq);
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                commits,
            }),
        })
    }

    /// Runs a read on a pooled connection, off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().map_err(|_| poisoned())?.pop() {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let r = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < 32
            {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Tells long-polls (and the delivery worker) that events up to `last` are visible.
    pub(crate) fn notify_commit(&self, last: i64) {
        self.inner.commits.send_if_modified(|v| {
            let changed = last > *v;
            *v = (*v).max(last);
            changed
        });
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("reader pool lock poisoned".into())
}

fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768;")?;
    Ok(conn)
}

#[async_trait]
impl Meta for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            let v: i64 = c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            if v < migrations::latest() {
                return Err(StoreError::Backend(format!(
                    "schema at version {v}, expected {}",
                    migrations::latest()
                )));
            }
            Ok(())
        })
        .await
    }

    async fn secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let key = format!("secret:{name}");
        self.writer()
            .run(move |c| {
                let mut fresh = [0u8; 32];
                rand::fill(&mut fresh[..]);
                c.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                    rusqlite::params![key, &fresh[..]],
                )?;
                let v: Vec<u8> =
                    c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                        r.get(0)
                    })?;
                v.try_into()
                    .map_err(|_| StoreError::Backend(format!("meta {key} is not 32 bytes")))
            })
            .await
    }

    async fn close(&self) -> StoreResult<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.writer.close();
            if let Ok(mut pool) = inner.readers.lock() {
                pool.clear();
            }
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// One process per SQLite file (the data-dir lock of [`crate::node`]): nobody else can hold
    /// the id.
    async fn hold_node(&self, _node: &str) -> StoreResult<bool> {
        Ok(true)
    }
}
