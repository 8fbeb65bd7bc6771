//! Group commit for event appends on PostgreSQL. Appends of one org are serialized by the org
//! lock (see `lock_orgs`), and each transaction holds it through its commit flush, so one
//! transaction per request would cap single-event ingest at one flush per event. Instead the
//! node's concurrent `append` calls are gathered into one transaction (one lock round, one
//! flush), as the SQLite writer does; a group that fails is retried call by call, so one bad
//! call never fails its neighbours.
use super::{bump, events::append_rows};
use crate::store::{AppendOutcome, EventRow, StoreError, StoreResult};
use deadpool_postgres::Pool;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Most events folded into one transaction.
const MAX_ROWS: usize = 4_000;
/// Transactions in flight at once per node (appends of different orgs run in parallel).
const TASKS: usize = 4;

struct Job {
    rows: Vec<EventRow>,
    reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

/// Handle to the node's append tasks.
pub(crate) struct Appender {
    tx: mpsc::Sender<Job>,
}

impl Appender {
    pub(crate) fn spawn(pool: Pool, commits: watch::Sender<i64>, stop: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..TASKS {
            tokio::spawn(run(pool.clone(), commits.clone(), rx.clone(), stop.clone()));
        }
        Self { tx }
    }

    /// Appends `rows` in the next group transaction; resolves once it is committed.
    pub(crate) async fn append(&self, rows: Vec<EventRow>) -> StoreResult<Vec<AppendOutcome>> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Job { rows, reply })
            .await
            .map_err(|_| StoreError::Backend("the store is closed".into()))?;
        done.await
            .map_err(|_| StoreError::Backend("the appender dropped a call".into()))?
    }
}

async fn run(
    pool: Pool,
    commits: watch::Sender<i64>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    stop: CancellationToken,
) {
    loop {
        let mut jobs = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                j = rx.recv() => j,
            };
            let Some(first) = first else { return };
            let mut n = first.rows.len();
            let mut jobs = vec![first];
            while n < MAX_ROWS {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.rows.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let lens: Vec<usize> = jobs.iter().map(|j| j.rows.len()).collect();
        let rows: Vec<EventRow> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.rows))
            .collect();
        // A lone call needs no copy for the retry path.
        let retry = (jobs.len() > 1).then(|| rows.clone());
        match commit(&pool, rows).await {
            Ok((out, last)) => {
                bump(&commits, last);
                let mut out = out.into_iter();
                for (j, len) in jobs.into_iter().zip(lens) {
                    let _ = j.reply.send(Ok(out.by_ref().take(len).collect()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                if let Some(j) = jobs.pop() {
                    let _ = j.reply.send(Err(e));
                }
            }
            Err(_) => {
                // Retry each call alone so only a call that fails by itself gets the error.
                let mut rows = retry.unwrap_or_default().into_iter();
                for (j, len) in jobs.into_iter().zip(lens) {
                    let mine: Vec<EventRow> = rows.by_ref().take(len).collect();
                    let r = commit(&pool, mine).await.map(|(out, last)| {
                        bump(&commits, last);
                        out
                    });
                    let _ = j.reply.send(r);
                }
            }
        }
    }
}

async fn commit(pool: &Pool, rows: Vec<EventRow>) -> StoreResult<(Vec<AppendOutcome>, i64)> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    let r = append_rows(&tx, rows).await?;
    tx.commit().await?;
    Ok(r)
}
