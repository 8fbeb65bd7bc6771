//! One step of an export job: read the next chunk of the org's log, append it to the current
//! file, seal the file when it is full, checkpoint.
//!
//! A step's bytes are made durable (fsync) before the checkpoint that counts them is written;
//! a resumed step cuts the file back to the checkpointed length first. With gzip, every step
//! writes one complete gzip member, so a file cut at a checkpoint is still a valid gzip stream.
use super::jobs::{JobWorker, OpenFile, StepError};
use crate::domain::time::now_rfc3339;
use crate::service::exports::{
    Compression, ExportCheckpoint, ExportProgress, ExportResult, ExportSpec, FileOut, file_name,
    temp_name,
};
use crate::service::jobs::{from_col, to_col};
use crate::store::StoredEvent;
use crate::store::files::{FileAppend, FileStore};
use crate::store::jobs::JobRow;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

/// Counts and hashes what goes through to the file.
struct Tee<'a> {
    inner: &'a mut dyn FileAppend,
    hasher: &'a mut Sha256,
    written: u64,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_lines(w: &mut impl Write, events: &[StoredEvent]) -> std::io::Result<()> {
    for e in events {
        w.write_all(e.body.as_bytes())?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Appends `events` to `temp` at `offset` as one member; returns the new open file state.
fn append_chunk(
    files: &dyn FileStore,
    (org, job): (&str, &str),
    mut open: OpenFile,
    events: &[StoredEvent],
    gzip: bool,
) -> std::io::Result<OpenFile> {
    let mut f = files.append_at(org, job, &open.name, open.offset)?;
    let mut tee = Tee {
        inner: f.as_mut(),
        hasher: &mut open.hasher,
        written: 0,
    };
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(&mut tee, flate2::Compression::fast());
        write_lines(&mut gz, events)?;
        gz.finish()?;
    } else {
        write_lines(&mut tee, events)?;
    }
    let written = tee.written;
    f.sync()?;
    open.offset += written;
    Ok(open)
}

impl JobWorker {
    /// The hash state of `temp` at `offset`: from memory when this worker wrote it, else rebuilt
    /// from the file's durable prefix (after a restart or a takeover).
    fn open_file(
        &self,
        job: &JobRow,
        temp: &str,
        done: &str,
        offset: u64,
    ) -> std::io::Result<OpenFile> {
        if let Ok(mut m) = self.open_files.lock()
            && let Some(f) = m.remove(&job.id)
            && f.name == temp
            && f.offset == offset
        {
            return Ok(f);
        }
        let mut hasher = Sha256::new();
        if offset > 0 {
            // A crash may have sealed the file after the checkpoint: undo that first.
            self.env.files.uncommit(&job.org_id, &job.id, temp, done)?;
            self.env
                .files
                .read_prefix(&job.org_id, &job.id, temp, offset, &mut |b| {
                    hasher.update(b)
                })?;
        }
        Ok(OpenFile {
            name: temp.to_string(),
            offset,
            hasher,
        })
    }

    pub(crate) async fn export_step(&self, mut job: JobRow) -> Result<(), StepError> {
        let spec: ExportSpec = from_col(&job.spec)?;
        let filter = spec
            .filters
            .parse()
            .map_err(|_| StepError::Fatal("stored filters no longer parse".into()))?;
        let store = &self.services.store;
        if job.status == "queued" {
            let after =
                self.services
                    .cdc_position(&job.org_id, &filter, spec.from_cursor.as_deref())?;
            let high = store.head(&job.org_id).await?;
            let cp = ExportCheckpoint {
                after_seq: after,
                until_seq: high.max(after),
                file_no: 1,
                part_events: 0,
                part_bytes: 0,
            };
            job.checkpoint = to_col(&cp);
            job.progress = to_col(&ExportProgress {
                events_estimate: (cp.until_seq - cp.after_seq) as u64,
                ..ExportProgress::default()
            });
            job.status = "running".into();
            job.started_at = Some(now_rfc3339());
            self.save(job, "queued").await?;
            return Ok(());
        }
        let mut cp: ExportCheckpoint = from_col(&job.checkpoint)?;
        let mut progress: ExportProgress = from_col(&job.progress)?;
        let mut result: ExportResult = from_col(&job.result)?;
        let gzip = spec.compression == Compression::Gzip;
        let room = spec.max_events_per_file - cp.part_events;
        let limit = (self.tuning.export_chunk as u64).min(room) as usize;
        // The step reads in a few pages and writes page i while page i + 1 is being read.
        let sub = (limit / 4).max(1);
        let until = cp.until_seq;
        let fetch = |after: i64, n: usize| {
            let (store, org, filter) = (store.clone(), job.org_id.clone(), filter.clone());
            async move {
                if after >= until || n == 0 {
                    return Ok::<_, StepError>(Vec::new());
                }
                let mut events = store.page(&org, &filter, after, n).await?;
                if let Some(cut) = events.iter().position(|e| e.sequence > until) {
                    events.truncate(cut);
                }
                Ok(events)
            }
        };
        let events = fetch(cp.after_seq, sub).await?;
        let temp = temp_name(cp.file_no, spec.compression);
        let done = file_name(cp.file_no, spec.compression);
        let files = self.env.files.clone();
        let (org, id) = (job.org_id.clone(), job.id.clone());
        if events.is_empty() {
            if cp.part_events > 0 {
                let open = self.open_file(&job, &temp, &done, cp.part_bytes)?;
                result
                    .files
                    .push(self.seal(files, &job, &temp, &done, open, &cp).await?);
                progress.files += 1;
            }
            result.next_cursor = Some(self.services.cdc_cursor(&org, &filter, cp.until_seq));
            progress.events_estimate = progress.events_written;
            job.status = "succeeded".into();
            job.finished_at = Some(now_rfc3339());
            job.claimed_by = None;
            job.lease_until = None;
            job.progress = to_col(&progress);
            job.result = to_col(&result);
            metrics::counter!("ipm_jobs_finished_total", "kind" => "export", "status" => "succeeded").increment(1);
            self.save(job, "running").await?;
            return Ok(());
        }
        let mut open = self.open_file(&job, &temp, &done, cp.part_bytes)?;
        let (mut n, mut last, mut current) = (0u64, cp.after_seq, events);
        loop {
            let asked = sub.min(limit - n as usize);
            let full = current.len() == asked;
            n += current.len() as u64;
            last = current.last().map(|e| e.sequence).unwrap_or(last);
            let (files, org, id) = (files.clone(), org.clone(), id.clone());
            let write = async move {
                tokio::task::spawn_blocking(move || {
                    append_chunk(files.as_ref(), (&org, &id), open, &current, gzip)
                })
                .await
                .map_err(|e| StepError::Fatal(e.to_string()))?
                .map_err(StepError::from)
            };
            let more = limit - n as usize;
            if !full || more == 0 {
                open = write.await?;
                break;
            }
            let (written, next) = tokio::join!(write, fetch(last, sub.min(more)));
            open = written?;
            current = next?;
            if current.is_empty() {
                break;
            }
        }
        progress.events_written += n;
        progress.bytes_written += open.offset - cp.part_bytes;
        cp.after_seq = last;
        cp.part_events += n;
        cp.part_bytes = open.offset;
        if cp.part_events >= spec.max_events_per_file {
            let files = self.env.files.clone();
            result
                .files
                .push(self.seal(files, &job, &temp, &done, open, &cp).await?);
            progress.files += 1;
            cp.file_no += 1;
            cp.part_events = 0;
            cp.part_bytes = 0;
        } else if let Ok(mut m) = self.open_files.lock() {
            m.insert(job.id.clone(), open);
        }
        job.checkpoint = to_col(&cp);
        job.progress = to_col(&progress);
        job.result = to_col(&result);
        self.save(job, "running").await
    }

    /// Publishes a finished file under its final name.
    async fn seal(
        &self,
        files: Arc<dyn FileStore>,
        job: &JobRow,
        temp: &str,
        done: &str,
        open: OpenFile,
        cp: &ExportCheckpoint,
    ) -> Result<FileOut, StepError> {
        let (org, id, t, d) = (
            job.org_id.clone(),
            job.id.clone(),
            temp.to_string(),
            done.to_string(),
        );
        tokio::task::spawn_blocking(move || files.commit(&org, &id, &t, &d))
            .await
            .map_err(|e| StepError::Fatal(e.to_string()))??;
        Ok(FileOut {
            name: done.to_string(),
            url: format!("/v1/orgs/{}/exports/{}/files/{done}", job.org_id, job.id),
            events: cp.part_events,
            bytes: cp.part_bytes,
            sha256: hex::encode(open.hasher.finalize()),
        })
    }

    /// Writes the step's checkpoint, fenced by this worker's claim. When the job was canceled
    /// meanwhile, its files are removed (the cancel may have raced with this step's writes).
    async fn save(&self, job: JobRow, expect: &str) -> Result<(), StepError> {
        let store = &self.services.store;
        let (org, kind, id) = (job.org_id.clone(), job.kind.clone(), job.id.clone());
        if store.update_job(job, expect, Some(&self.id)).await? {
            return Ok(());
        }
        if let Ok(mut m) = self.open_files.lock() {
            m.remove(&id);
        }
        if let Some(now) = store.get_job(&org, &kind, &id).await?
            && now.status == "canceled"
        {
            let files = self.env.files.clone();
            let _ = tokio::task::spawn_blocking(move || files.delete_job(&org, &id)).await;
        }
        Ok(())
    }
}
