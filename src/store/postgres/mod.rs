//! The PostgreSQL store: the same capability traits as [`super::sqlite`], for several nodes on
//! one database.
//!
//! - A connection pool (deadpool) serves every call; writes are ordinary transactions.
//! - **CDC never skips an event.** A transaction that appends events of an org first takes that
//!   org's advisory transaction lock ([`lock_orgs`]) and only then draws sequences. PostgreSQL
//!   releases the lock after the commit is visible, so the next appender of the org draws larger
//!   sequences and commits later: every snapshot sees a prefix of each org's log, and a
//!   `seq > cursor` read cannot pass over a transaction that commits late. ARCHITECTURE.md has
//!   the argument in full.
//! - Commits are announced with `NOTIFY ipm_commits` (payload: the highest sequence), which every
//!   node's listener turns into its [`EventLog::commits`](super::EventLog::commits) signal.
//! - Work is leased with `FOR UPDATE SKIP LOCKED` and fenced by tokens (deliveries, jobs).
mod connect;
mod deliveries;
mod events;
mod files;
mod group;
mod inbox;
mod jobs;
mod keys;
mod kpis;
mod migrations;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_jobs;
#[cfg(test)]
mod tests_kpis;
#[cfg(test)]
mod tests_util;
#[cfg(test)]
mod tests_webhooks;
mod webhooks;

pub use connect::check;
pub use files::PgFiles;

use super::{Meta, StoreError, StoreResult};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// Connections per node.
const POOL_SIZE: usize = 16;
/// The channel commits are announced on.
pub(crate) const COMMIT_CHANNEL: &str = "ipm_commits";

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Group commit of event appends, sharded by org.
    appender: group::Sharded<super::EventRow, super::AppendOutcome>,
    /// Group commit of delivery attempt records, sharded by webhook.
    recorder: group::Sharded<(i64, super::AttemptRecord), super::Recorded>,
    commits: watch::Sender<i64>,
    stop: CancellationToken,
    /// The runtime the store was opened on (blocking file calls drive the client on it).
    handle: tokio::runtime::Handle,
    /// Where to open the node-id session (see [`Meta::hold_node`]).
    config: tokio_postgres::Config,
    /// The node id this process holds and the session holding its advisory lock.
    node: tokio::sync::Mutex<Option<(String, tokio_postgres::Client)>>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(connect::cause(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => {
                StoreError::Backend(format!("connection pool: {}", connect::cause(&e)))
            }
            e => StoreError::Backend(format!("connection pool: {e}")),
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), applies migrations (serialized between nodes that
    /// start at once) and starts listening for other nodes' commits.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let config = connect::parse(url)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => {
                StoreError::Backend(connect::describe(&e, &config, url))
            }
            e => StoreError::from(e),
        })?;
        migrations::apply(&mut client).await?;
        let last: i64 = client
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])
            .await?
            .get(0);
        drop(client);
        let (commits, _) = watch::channel(last);
        let stop = CancellationToken::new();
        tokio::spawn(listen(config.clone(), commits.clone(), stop.clone()));
        let appender =
            group::Sharded::spawn(4, 4_000, append_commit(&pool, &commits), stop.clone());
        let recorder =
            group::Sharded::spawn(4, 512, deliveries::record_commit(&pool), stop.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                appender,
                recorder,
                pool,
                commits,
                stop,
                handle: tokio::runtime::Handle::current(),
                config,
                node: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> StoreResult<Object> {
        if self.inner.stop.is_cancelled() {
            return Err(StoreError::Backend("the store is closed".into()));
        }
        Ok(self.inner.pool.get().await?)
    }

    /// The node id this process holds (see [`Meta::hold_node`]), if any.
    pub(crate) async fn held_node(&self) -> Option<String> {
        self.inner
            .node
            .lock()
            .await
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    /// Tells this node's long-polls (and delivery worker) that events up to `last` are visible.
    pub(crate) fn notify_commit(&self, last: i64) {
        bump(&self.inner.commits, last);
    }
}

/// One group of event appends: one transaction, then the commit is announced locally.
fn append_commit(
    pool: &Pool,
    commits: &watch::Sender<i64>,
) -> group::Commit<super::EventRow, super::AppendOutcome> {
    let (pool, commits) = (pool.clone(), commits.clone());
    Arc::new(move |rows| {
        let (pool, commits) = (pool.clone(), commits.clone());
        Box::pin(async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let (out, last) = events::append_rows(&tx, rows).await?;
            tx.commit().await?;
            bump(&commits, last);
            Ok(out)
        })
    })
}

fn bump(commits: &watch::Sender<i64>, last: i64) {
    commits.send_if_modified(|v| {
        let changed = last > *v;
        *v = (*v).max(last);
        changed
    });
}

/// Takes the advisory transaction locks of `orgs` (sorted, so two transactions never wait on
/// each other in opposite orders). Every transaction that appends events of an org, or changes
/// which deliveries its events fan out to, holds the org's lock until it ends.
pub(crate) async fn lock_orgs<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    orgs: impl IntoIterator<Item = &'a str>,
) -> StoreResult<()> {
    let mut orgs: Vec<&str> = orgs.into_iter().collect();
    orgs.sort_unstable();
    orgs.dedup();
    let st = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('ipm:org:' || $1, 0))")
        .await?;
    for org in orgs {
        tx.execute(&st, &[&org]).await?;
    }
    Ok(())
}

/// Follows `NOTIFY ipm_commits` from every node; reconnects after a failure.
async fn listen(
    config: tokio_postgres::Config,
    commits: watch::Sender<i64>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {COMMIT_CHANNEL}"))
                    .await
                    .is_ok()
                {
                    backoff = Duration::from_millis(100);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            m = rx.recv() => match m {
                                Some(p) => bump(&commits, p.parse().unwrap_or(0)),
                                None => break,
                            },
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "listening for commits failed; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        // A missed notification is covered by the long-poll's periodic re-read.
        commits.send_modify(|_| {});
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Meta for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        let c = self.conn().await?;
        let v: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        if v < migrations::latest() {
            return Err(StoreError::Backend(format!(
                "schema at version {v}, expected {}",
                migrations::latest()
            )));
        }
        Ok(())
    }

    async fn secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let key = format!("secret:{name}");
        let mut fresh = [0u8; 32];
        rand::fill(&mut fresh[..]);
        let c = self.conn().await?;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &&fresh[..]],
        )
        .await?;
        let v: Vec<u8> = c
            .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?
            .get(0);
        v.try_into()
            .map_err(|_| StoreError::Backend(format!("meta {key} is not 32 bytes")))
    }

    async fn close(&self) -> StoreResult<()> {
        self.inner.stop.cancel();
        self.inner.pool.close();
        // Ends the node-id session, which frees the id at once.
        self.inner.node.lock().await.take();
        Ok(())
    }

    /// A session-level advisory lock on the id, held by a connection of its own for the life of
    /// the store: PostgreSQL frees it when the process dies (its socket closes), so the next
    /// start with the same id gets it, while a live copy elsewhere keeps it.
    async fn hold_node(&self, node: &str) -> StoreResult<bool> {
        let mut held = self.inner.node.lock().await;
        if let Some((id, _)) = held.as_ref() {
            return Ok(id == node);
        }
        let (client, connection) = self.inner.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the node-id session of the store ended");
            }
        });
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended('ipm:node:' || $1, 0))",
                &[&node],
            )
            .await?
            .get(0);
        if got {
            *held = Some((node.to_string(), client));
        }
        Ok(got)
    }
}
