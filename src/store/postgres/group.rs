//! Group commit on PostgreSQL: concurrent calls of a node share one transaction.
//!
//! - Event appends: appends of one org are serialized by the org lock (see `lock_orgs`), and
//!   each transaction holds it through its commit flush, so one transaction per request would
//!   cap single-event ingest at one flush per event.
//! - Attempt records: a record locks its webhook's row (health counters), so one transaction
//!   per attempt would serialize a busy webhook's results on that lock.
//!
//! Waiting calls are gathered into one transaction, as the SQLite writer does; a group that fails
//! is retried call by call, so one bad call never fails its neighbours.
//!
//! [`Sharded`] routes calls by a key (the org, for appends) to one task per shard: calls that
//! would wait on the same lock inside the database queue up in one place instead, and the next
//! transaction takes all of them at once.
use crate::store::{StoreError, StoreResult};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Runs one group (the items of every gathered call, in order) in one transaction; returns one
/// output per item.
pub(crate) type Commit<I, O> =
    Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, StoreResult<Vec<O>>> + Send + Sync>;

struct Call<I, O> {
    items: Vec<I>,
    reply: oneshot::Sender<StoreResult<Vec<O>>>,
}

/// Handle to a set of group-commit tasks.
pub(crate) struct Group<I, O> {
    tx: mpsc::Sender<Call<I, O>>,
}

impl<I: Clone + Send + 'static, O: Send + 'static> Group<I, O> {
    /// Starts `tasks` tasks, each folding up to `max_items` items into one `commit`.
    pub(crate) fn spawn(
        tasks: usize,
        max_items: usize,
        commit: Commit<I, O>,
        stop: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Call<I, O>>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..tasks {
            tokio::spawn(run(rx.clone(), max_items, commit.clone(), stop.clone()));
        }
        Self { tx }
    }

    /// Runs `items` in the next group transaction; resolves once it is committed.
    pub(crate) async fn call(&self, items: Vec<I>) -> StoreResult<Vec<O>> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Call { items, reply })
            .await
            .map_err(|_| StoreError::Backend("the store is closed".into()))?;
        done.await
            .map_err(|_| StoreError::Backend("a group commit dropped a call".into()))?
    }
}

/// Group commit with one task per shard; a call goes to the shard of its key.
pub(crate) struct Sharded<I, O> {
    shards: Vec<Group<I, O>>,
}

impl<I: Clone + Send + 'static, O: Send + 'static> Sharded<I, O> {
    /// Starts `shards` single-task groups, each folding up to `max_items` items into one commit.
    pub(crate) fn spawn(
        shards: usize,
        max_items: usize,
        commit: Commit<I, O>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Group::spawn(1, max_items, commit.clone(), stop.clone()))
                .collect(),
        }
    }

    /// Runs `items` in the next transaction of `key`'s shard.
    pub(crate) async fn call(&self, key: &str, items: Vec<I>) -> StoreResult<Vec<O>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let shard = (h % self.shards.len() as u64) as usize;
        self.shards[shard].call(items).await
    }
}

async fn run<I: Clone, O>(
    rx: Arc<Mutex<mpsc::Receiver<Call<I, O>>>>,
    max_items: usize,
    commit: Commit<I, O>,
    stop: CancellationToken,
) {
    loop {
        let mut calls = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                c = rx.recv() => c,
            };
            let Some(first) = first else { return };
            let mut n = first.items.len();
            let mut calls = vec![first];
            while n < max_items {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.items.len();
                        calls.push(c);
                    }
                    Err(_) => break,
                }
            }
            calls
        };
        let lens: Vec<usize> = calls.iter().map(|c| c.items.len()).collect();
        let items: Vec<I> = calls
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.items))
            .collect();
        // A lone call needs no copy for the retry path.
        let retry = (calls.len() > 1).then(|| items.clone());
        match commit(items).await {
            Ok(out) => {
                let mut out = out.into_iter();
                for (c, len) in calls.into_iter().zip(lens) {
                    let _ = c.reply.send(Ok(out.by_ref().take(len).collect()));
                }
            }
            Err(e) if calls.len() == 1 => {
                if let Some(c) = calls.pop() {
                    let _ = c.reply.send(Err(e));
                }
            }
            Err(_) => {
                // Retry each call alone so only a call that fails by itself gets the error.
                let mut items = retry.unwrap_or_default().into_iter();
                for (c, len) in calls.into_iter().zip(lens) {
                    let mine: Vec<I> = items.by_ref().take(len).collect();
                    let _ = c.reply.send(commit(mine).await);
                }
            }
        }
    }
}
