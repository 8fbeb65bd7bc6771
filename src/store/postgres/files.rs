//! Job files in the database (`job_files`), so a file written on one node is readable on every
//! node. A file is a run of chunks keyed by their byte offset (`start_at`); a file that exists
//! but is empty is one empty chunk at offset 0.
//!
//! The [`FileStore`] write methods are synchronous (callers run them on blocking threads); they
//! drive the async client on the runtime captured at construction.
use super::PgStore;
use crate::store::StoreError;
use crate::store::files::{FileAppend, FileReader, FileStore};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use std::future::Future;
use std::io::{self, Write};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Largest chunk row a writer produces.
const CHUNK: usize = 1 << 20;

/// A [`FileStore`] backed by the `job_files` table.
pub struct PgFiles {
    store: PgStore,
    handle: Handle,
}

fn io_err(e: impl Into<StoreError>) -> io::Error {
    io::Error::other(e.into().to_string())
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad file name"));
    }
    Ok(())
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name} does not exist"))
}

/// Runs `f` to completion from synchronous code: directly on a blocking thread, through
/// `block_in_place` on a multi-threaded runtime's worker, or on a helper thread otherwise.
fn block_on<F>(handle: &Handle, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match Handle::try_current() {
        Err(_) => handle.block_on(f),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(f))
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| handle.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

/// Whether any chunk of `name` exists.
async fn exists(
    c: &impl GenericClient,
    org: &str,
    job: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM job_files WHERE org_id = $1 AND job_id = $2 AND name = $3)",
        )
        .await?;
    Ok(c.query_one(&st, &[&org, &job, &name]).await?.get(0))
}

/// The chunk of `name` with the smallest `start_at > after`.
async fn next_chunk(
    store: &PgStore,
    org: &str,
    job: &str,
    name: &str,
    after: i64,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    let c = store.conn().await?;
    let st = c
        .prepare_cached(
            "SELECT start_at, data FROM job_files
             WHERE org_id = $1 AND job_id = $2 AND name = $3 AND start_at > $4
             ORDER BY start_at LIMIT 1",
        )
        .await?;
    Ok(c.query_opt(&st, &[&org, &job, &name, &after])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

impl PgStore {
    /// The job file store of this database (shared by every node).
    pub fn files(&self) -> std::sync::Arc<dyn FileStore> {
        std::sync::Arc::new(PgFiles {
            store: self.clone(),
            handle: self.inner.handle.clone(),
        })
    }
}

/// An open file being appended to: buffers, writes a chunk row when the buffer fills and on
/// `sync`/`flush` (each chunk write commits). Bytes not synced before a drop are lost.
struct PgAppend {
    store: PgStore,
    handle: Handle,
    key: (String, String, String),
    /// File offset of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
}

impl PgAppend {
    /// Writes `data` (the file's bytes from `self.pos`) as chunk rows of at most [`CHUNK`]
    /// bytes, each committed, and advances `pos`.
    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let (org, job, name) = &self.key;
        let (store, pos) = (&self.store, self.pos);
        block_on(&self.handle, async move {
            let c = store.conn().await?;
            let st = c
                .prepare_cached(
                    "INSERT INTO job_files (org_id, job_id, name, start_at, data)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (org_id, job_id, name, start_at) DO UPDATE SET data = excluded.data",
                )
                .await?;
            let mut at = pos;
            for part in data.chunks(CHUNK) {
                let start = at as i64;
                c.execute(&st, &[org, job, name, &start, &part]).await?;
                at += part.len() as u64;
            }
            Ok::<_, StoreError>(())
        })
        .map_err(io_err)?;
        self.pos += data.len() as u64;
        Ok(())
    }
}

impl Write for PgAppend {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            // Write whole chunks; keep the remainder buffered.
            let whole = self.buf.len() / CHUNK * CHUNK;
            let rest = self.buf.split_off(whole);
            let full = std::mem::replace(&mut self.buf, rest);
            if let Err(e) = self.write_out(&full) {
                // Keep the bytes so a retried sync can still write them.
                let rest = std::mem::replace(&mut self.buf, full);
                self.buf.extend_from_slice(&rest);
                return Err(e);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let full = std::mem::take(&mut self.buf);
        if let Err(e) = self.write_out(&full) {
            self.buf = full;
            return Err(e);
        }
        Ok(())
    }
}

impl FileAppend for PgAppend {
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
}

#[async_trait]
impl FileStore for PgFiles {
    fn append_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
    ) -> io::Result<Box<dyn FileAppend>> {
        check_name(name)?;
        let off = offset as i64;
        block_on(&self.handle, async {
            let mut c = self.store.conn().await.map_err(io_err)?;
            let tx = c.transaction().await.map_err(io_err)?;
            let len: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(start_at + octet_length(data)), 0) FROM job_files
                     WHERE org_id = $1 AND job_id = $2 AND name = $3",
                    &[&org, &job, &name],
                )
                .await
                .map_err(io_err)?
                .get(0);
            // A missing file counts as empty (like a file the local store just created).
            let len = len.max(0);
            if len < off {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{name} has {len} bytes, the checkpoint says {offset}"),
                ));
            }
            // Cut off everything past the offset.
            tx.execute(
                "DELETE FROM job_files WHERE org_id = $1 AND job_id = $2 AND name = $3 AND start_at >= $4",
                &[&org, &job, &name, &off],
            )
            .await
            .map_err(io_err)?;
            tx.execute(
                "UPDATE job_files SET data = substring(data FROM 1 FOR ($4 - start_at)::int4)
                 WHERE org_id = $1 AND job_id = $2 AND name = $3
                   AND start_at < $4 AND start_at + octet_length(data) > $4",
                &[&org, &job, &name, &off],
            )
            .await
            .map_err(io_err)?;
            if offset == 0 {
                // The file exists (empty) from now on.
                tx.execute(
                    "INSERT INTO job_files (org_id, job_id, name, start_at, data) VALUES ($1, $2, $3, 0, ''::bytea)",
                    &[&org, &job, &name],
                )
                .await
                .map_err(io_err)?;
            }
            tx.commit().await.map_err(io_err)?;
            Ok(())
        })?;
        Ok(Box::new(PgAppend {
            store: self.store.clone(),
            handle: self.handle.clone(),
            key: (org.to_string(), job.to_string(), name.to_string()),
            pos: offset,
            buf: Vec::new(),
        }))
    }

    fn commit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()> {
        check_name(temp)?;
        check_name(name)?;
        self.rename(org, job, temp, name, true)
    }

    fn uncommit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()> {
        check_name(temp)?;
        check_name(name)?;
        self.rename(org, job, name, temp, false)
    }

    fn read_prefix(
        &self,
        org: &str,
        job: &str,
        name: &str,
        len: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        check_name(name)?;
        let (store, len) = (&self.store, len as i64);
        // One chunk in memory at a time.
        let mut after = -1i64;
        let mut first = true;
        loop {
            let next =
                block_on(&self.handle, next_chunk(store, org, job, name, after)).map_err(io_err)?;
            let Some((start, data)) = next else {
                if first {
                    return Err(not_found(name));
                }
                return Ok(());
            };
            first = false;
            if start >= len {
                return Ok(());
            }
            let take = ((len - start) as u64).min(data.len() as u64) as usize;
            if take > 0 {
                sink(&data[..take]);
            }
            after = start;
        }
    }

    fn read_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<u8>> {
        check_name(name)?;
        let (off, end) = (offset as i64, offset.saturating_add(max as u64) as i64);
        block_on(&self.handle, async {
            let c = self.store.conn().await?;
            let st = c
                .prepare_cached(
                    "SELECT start_at, data FROM job_files
                     WHERE org_id = $1 AND job_id = $2 AND name = $3 AND start_at < $5
                       AND start_at >= (SELECT COALESCE(MAX(start_at), 0) FROM job_files
                                        WHERE org_id = $1 AND job_id = $2 AND name = $3
                                          AND start_at <= $4)
                     ORDER BY start_at",
                )
                .await?;
            let rows = c.query(&st, &[&org, &job, &name, &off, &end]).await?;
            if rows.is_empty() && !exists(&c, org, job, name).await? {
                return Ok(None);
            }
            let mut out = Vec::with_capacity(max.min(16 << 20));
            for r in rows {
                let start: i64 = r.get(0);
                let data: &[u8] = r.get(1);
                let chunk_end = start + data.len() as i64;
                if chunk_end <= off {
                    continue;
                }
                let from = (off.max(start) - start) as usize;
                let to = (end.min(chunk_end) - start) as usize;
                out.extend_from_slice(&data[from..to]);
            }
            Ok::<_, StoreError>(Some(out))
        })
        .map_err(io_err)?
        .ok_or_else(|| not_found(name))
    }

    async fn open(
        &self,
        org: &str,
        job: &str,
        name: &str,
    ) -> io::Result<Option<(FileReader, u64)>> {
        check_name(name)?;
        let c = self.store.conn().await.map_err(io_err)?;
        let row = c
            .query_one(
                "SELECT COUNT(*), COALESCE(MAX(start_at + octet_length(data)), 0) FROM job_files
                 WHERE org_id = $1 AND job_id = $2 AND name = $3",
                &[&org, &job, &name],
            )
            .await
            .map_err(io_err)?;
        drop(c);
        let (chunks, len): (i64, i64) = (row.get(0), row.get(1));
        if chunks == 0 {
            return Ok(None);
        }
        // Streams chunk by chunk up to the length seen now.
        let state = (
            self.store.clone(),
            (org.to_string(), job.to_string(), name.to_string()),
            -1i64,
        );
        let stream = futures_util::stream::unfold(state, move |(store, key, after)| async move {
            let (org, job, name) = &key;
            match next_chunk(&store, org, job, name, after).await {
                Err(e) => Some((Err(io_err(e)), (store, key, i64::MAX))),
                Ok(None) => None,
                Ok(Some((start, _))) if start >= len => None,
                Ok(Some((start, mut data))) => {
                    let keep = ((len - start) as u64).min(data.len() as u64) as usize;
                    data.truncate(keep);
                    Some((Ok(bytes::Bytes::from(data)), (store, key, start)))
                }
            }
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        Ok(Some((Box::pin(reader), len as u64)))
    }

    fn delete_job(&self, org: &str, job: &str) -> io::Result<()> {
        block_on(&self.handle, async {
            let c = self.store.conn().await?;
            c.execute(
                "DELETE FROM job_files WHERE org_id = $1 AND job_id = $2",
                &[&org, &job],
            )
            .await?;
            Ok::<_, StoreError>(())
        })
        .map_err(io_err)
    }
}

impl PgFiles {
    /// Renames `from` to `to` in one transaction, replacing an existing `to` like a file
    /// rename. `strict` (commit): a missing `from` is fine only when `to` exists (the commit
    /// already happened). Otherwise (uncommit): moves only when `from` exists and `to` is
    /// missing, a no-op in every other case.
    fn rename(&self, org: &str, job: &str, from: &str, to: &str, strict: bool) -> io::Result<()> {
        block_on(&self.handle, async {
            let mut c = self.store.conn().await.map_err(io_err)?;
            let tx = c.transaction().await.map_err(io_err)?;
            // Serializes renames of one job's files.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('ipm:files:' || $1 || '/' || $2, 0))",
                &[&org, &job],
            )
            .await
            .map_err(io_err)?;
            let has_from = exists(&tx, org, job, from).await.map_err(io_err)?;
            let has_to = exists(&tx, org, job, to).await.map_err(io_err)?;
            if strict {
                if !has_from && has_to {
                    return Ok(());
                }
                if !has_from {
                    return Err(not_found(from));
                }
            } else if !has_from || has_to {
                return Ok(());
            }
            tx.execute(
                "DELETE FROM job_files WHERE org_id = $1 AND job_id = $2 AND name = $3",
                &[&org, &job, &to],
            )
            .await
            .map_err(io_err)?;
            tx.execute(
                "UPDATE job_files SET name = $4 WHERE org_id = $1 AND job_id = $2 AND name = $3",
                &[&org, &job, &from, &to],
            )
            .await
            .map_err(io_err)?;
            tx.commit().await.map_err(io_err)
        })
    }
}
