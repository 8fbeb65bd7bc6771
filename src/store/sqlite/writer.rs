//! The single writer thread with group commit.
//!
//! SQLite allows one writer at a time, so every write goes through one thread that owns the
//! write connection. It takes all jobs that are waiting, runs each inside its own savepoint
//! (so a failing job does not undo its neighbours), commits once with `synchronous = FULL`, and
//! only then answers the callers: an answer means the write is durable, and one fsync is shared
//! by every job of the group.
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A unit of work for the writer; `relaxed` jobs are answered at commit, before the flush.
struct Job {
    relaxed: bool,
    work: Box<dyn FnOnce(&Connection) -> Reply + Send>,
}

/// Most jobs folded into one commit.
const MAX_GROUP: usize = 512;

/// Handle to the writer thread.
pub(crate) struct Writer {
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection, wal: Option<std::fs::File>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(4096);
        let thread = std::thread::Builder::new()
            .name("ipm-sqlite-writer".into())
            .spawn(move || run(conn, rx, wal))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` in the next group transaction; resolves once the commit is durable (flushed).
    pub(crate) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(false, f).await
    }

    /// Like [`Writer::run`] but resolves at commit, before the WAL flush: for bookkeeping whose
    /// loss in an OS crash is harmless (delivery claims and attempt records: at worst a delivery
    /// is sent again, which at-least-once allows). A process crash loses nothing committed.
    pub(crate) async fn run_relaxed<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<T, F>(&self, relaxed: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<T>>();
        let job = Job {
            relaxed,
            work: Box::new(move |conn: &Connection| {
                let result = in_savepoint(conn, f);
                Box::new(move |commit: Result<(), String>| {
                    let _ = done_tx.send(commit.map_err(StoreError::Backend).and(result));
                })
            }),
        };
        let sender = self
            .tx
            .lock()
            .map_err(|_| StoreError::Backend("writer lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
        // The channel is bounded; block in a blocking-safe way when it is full.
        let job = match sender.try_send(job) {
            Ok(()) => None,
            Err(std::sync::mpsc::TrySendError::Full(job)) => Some(job),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(StoreError::Backend("the writer has stopped".into()));
            }
        };
        if let Some(job) = job {
            tokio::task::spawn_blocking(move || sender.send(job))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?
                .map_err(|_| StoreError::Backend("the writer has stopped".into()))?;
        }
        done_rx
            .await
            .map_err(|_| StoreError::Backend("the writer dropped a job".into()))?
    }

    /// Stops accepting jobs, lets the queued ones finish, and joins the thread.
    pub(crate) fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let r = f(conn);
    match &r {
        Ok(_) => conn.execute_batch("RELEASE job")?,
        Err(_) => conn.execute_batch("ROLLBACK TO job; RELEASE job")?,
    }
    r
}

/// Makes committed groups durable off the writer thread: one `fdatasync` of the WAL covers
/// every group committed before it started, and only then are those groups answered.
fn sync_loop(wal: std::fs::File, rx: Receiver<(Vec<Reply>, Result<(), String>)>) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let synced = wal
            .sync_data()
            .map_err(|e| format!("fsync of the WAL failed: {e}"));
        for (replies, commit) in groups {
            let result = commit.and(synced.clone());
            for r in replies {
                r(result.clone());
            }
        }
    }
}

/// Copies WAL frames into the database from its own connection, so the writer never stalls on a
/// checkpoint inside a commit (SQLite's automatic checkpoint runs in the committing thread and
/// fsyncs the database file). PASSIVE checkpoints do not block the writer or readers.
fn checkpoint_loop(path: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let Ok(conn) = Connection::open(&path) else {
        return;
    };
    let _ = conn.execute_batch("PRAGMA busy_timeout = 5000;");
    let mut ticks = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        ticks += 1;
        if ticks.is_multiple_of(5) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
}

fn run(conn: Connection, rx: Receiver<Job>, wal: Option<std::fs::File>) {
    // With a WAL handle, commits run with `synchronous = NORMAL` (no fsync inside COMMIT) and a
    // sync thread makes them durable before anyone is answered, so the next group executes while
    // the previous one is being flushed. Without one, `synchronous = FULL` fsyncs inside COMMIT.
    let (sync_tx, syncer) = match wal {
        Some(wal) if conn.execute_batch("PRAGMA synchronous = NORMAL").is_ok() => {
            let (tx, rx) = std::sync::mpsc::channel();
            let handle = std::thread::Builder::new()
                .name("ipm-sqlite-sync".into())
                .spawn(move || sync_loop(wal, rx))
                .ok();
            match handle {
                Some(h) => (Some(tx), Some(h)),
                None => {
                    let _ = conn.execute_batch("PRAGMA synchronous = FULL");
                    (None, None)
                }
            }
        }
        _ => (None, None),
    };
    // With the sync thread in place, checkpoints move to their own thread too.
    let stop_checkpoints = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = match (&sync_tx, conn.path().map(str::to_string)) {
        (Some(_), Some(path)) if !path.is_empty() => {
            let stop = stop_checkpoints.clone();
            std::thread::Builder::new()
                .name("ipm-sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(path, stop))
                .ok()
                .inspect(|_| {
                    let _ = conn.execute_batch("PRAGMA wal_autocheckpoint = 0");
                })
        }
        _ => None,
    };
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        if begun.is_err() {
            // Never run a job outside a transaction: dropping a job answers its caller with an error.
            drop(jobs);
            continue;
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
        let mut relaxed: Vec<Reply> = Vec::new();
        for j in jobs {
            let reply = (j.work)(&conn);
            if j.relaxed && sync_tx.is_some() {
                relaxed.push(reply);
            } else {
                replies.push(reply);
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for r in relaxed {
            r(commit.clone());
        }
        match &sync_tx {
            Some(_) if commit.is_ok() && replies.is_empty() => {}
            Some(tx) if commit.is_ok() => {
                if let Err(std::sync::mpsc::SendError((replies, _))) = tx.send((replies, commit)) {
                    for r in replies {
                        r(Err("the sync thread has stopped".into()));
                    }
                }
            }
            _ => {
                for r in replies {
                    r(commit.clone());
                }
            }
        }
    }
    drop(sync_tx);
    if let Some(h) = syncer {
        let _ = h.join();
    }
    stop_checkpoints.store(true, std::sync::atomic::Ordering::Release);
    if let Some(h) = checkpointer {
        let _ = h.join();
    }
    let _ = conn.execute_batch("PRAGMA optimize");
}
