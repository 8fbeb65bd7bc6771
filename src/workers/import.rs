//! One step of an import job: read the next chunk of uploaded lines, run each through the same
//! item-level validation as `POST /v1/events`, and commit the chunk's events, its rejected
//! lines and the new `resume_line` in one transaction.
use super::jobs::{JobWorker, StepError};
use crate::domain::FieldError;
use crate::domain::auth::{Principal, Role};
use crate::domain::envelope::{Rejection, strip_position};
use crate::domain::time::now_rfc3339;
use crate::service::Services;
use crate::service::imports::{ImportCheckpoint, ImportProgress, UPLOAD_FILE};
use crate::service::jobs::{from_col, to_col};
use crate::store::jobs::{JobErrorRow, JobRow};
use crate::store::{AppendOutcome, EventRow};
use serde_json::value::RawValue;

/// Sub-chunks per step (validation of one overlaps the commit of the previous).
const SUB_CHUNKS: usize = 4;

/// Bytes read per step at most (lines longer than this are rejected as too large).
const READ_BYTES: usize = 8 << 20;

/// The lines of one step: complete lines only, with their physical line numbers.
struct Chunk {
    /// (line number, text) of non-blank lines.
    lines: Vec<(u64, Result<String, String>)>,
    /// Physical lines consumed (blank ones included).
    consumed_lines: u64,
    consumed_bytes: u64,
}

fn split_chunk(buf: &[u8], first_line: u64, max_lines: usize, at_eof: bool) -> Chunk {
    let mut c = Chunk {
        lines: Vec::new(),
        consumed_lines: 0,
        consumed_bytes: 0,
    };
    let mut start = 0usize;
    while c.lines.len() < max_lines && start < buf.len() {
        let end = match buf[start..].iter().position(|b| *b == b'\n') {
            Some(i) => start + i,
            None if at_eof => buf.len(),
            None => break,
        };
        let raw = &buf[start..end];
        let line_no = first_line + c.consumed_lines + 1;
        c.consumed_lines += 1;
        start = (end + 1).min(buf.len());
        c.consumed_bytes = start as u64;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|_| "line is not valid UTF-8".to_string());
        c.lines.push((line_no, text));
    }
    c
}

fn error_row(line: u64, r: Rejection) -> JobErrorRow {
    let message = r
        .errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    JobErrorRow {
        line: line as i64,
        event_id: r.event_id,
        code: r.code.to_string(),
        message,
    }
}

impl JobWorker {
    pub(crate) async fn import_step(&self, mut job: JobRow) -> Result<(), StepError> {
        let store = &self.services.store;
        if job.status == "upload_complete" {
            job.status = "in_progress".into();
            job.started_at = Some(now_rfc3339());
            store
                .update_job(job, "upload_complete", Some(&self.id))
                .await?;
            return Ok(());
        }
        let progress: ImportProgress = from_col(&job.progress)?;
        let cp: ImportCheckpoint = from_col(&job.checkpoint)?;
        let files = self.env.files.clone();
        let (org, id) = (job.org_id.clone(), job.id.clone());
        let offset = cp.resume_offset;
        let left = progress.bytes_received.saturating_sub(offset);
        let max = (left as usize).min(READ_BYTES);
        let buf = if max == 0 {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || files.read_at(&org, &id, UPLOAD_FILE, offset, max))
                .await
                .map_err(|e| StepError::Fatal(e.to_string()))??
        };
        let at_eof = buf.len() as u64 >= left;
        // The step's lines in a few sub-chunks, each committed with its own checkpoint, so the
        // next one is validated while the previous one is being written.
        let sub = (self.tuning.import_chunk / SUB_CHUNKS).max(1);
        let mut chunks = Vec::new();
        let (mut pos, mut line, mut taken) = (0usize, cp.resume_line, 0usize);
        while taken < self.tuning.import_chunk && pos < buf.len() {
            let c = split_chunk(&buf[pos..], line, sub, at_eof);
            if c.consumed_lines == 0 {
                break;
            }
            pos += c.consumed_bytes as usize;
            line += c.consumed_lines;
            taken += c.lines.len().max(1);
            chunks.push(c);
        }
        if chunks.is_empty() && !buf.is_empty() {
            // One line longer than a whole read: reject it and skip to its end.
            let skip = self.skip_long_line(&job, offset, left).await?;
            chunks.push(Chunk {
                lines: vec![(cp.resume_line + 1, Err("too_large".into()))],
                consumed_lines: 1,
                consumed_bytes: skip,
            });
        }
        let mut state = (job, progress, cp);
        let mut chunks = chunks.into_iter();
        let first = chunks.next().map(|c| self.prepare_blocking(&state.0, c));
        let Some(first) = first else {
            // Nothing left to read: the commit of an empty chunk finishes the job.
            let empty = Prepared::default();
            self.commit_prepared(&mut state, empty).await?;
            return Ok(());
        };
        let mut current = first.await?;
        loop {
            let next = chunks.next().map(|c| self.prepare_blocking(&state.0, c));
            let committed = match next {
                None => return self.commit_prepared(&mut state, current).await.map(|_| ()),
                Some(next) => {
                    let (committed, prepared) =
                        tokio::join!(self.commit_prepared(&mut state, current), next);
                    current = prepared?;
                    committed?
                }
            };
            if !committed {
                return Ok(());
            }
        }
    }

    /// Validates a chunk's lines on a blocking thread.
    fn prepare_blocking(
        &self,
        job: &JobRow,
        chunk: Chunk,
    ) -> impl std::future::Future<Output = Result<Prepared, StepError>> + use<> {
        let services = self.services.clone();
        let (org, context) = (job.org_id.clone(), job.context.clone());
        async move {
            tokio::task::spawn_blocking(move || prepare_chunk(&services, &org, &context, chunk))
                .await
                .map_err(|e| StepError::Fatal(e.to_string()))
        }
    }

    async fn skip_long_line(&self, job: &JobRow, offset: u64, left: u64) -> Result<u64, StepError> {
        let mut pos = 0u64;
        while pos < left {
            let files = self.env.files.clone();
            let (org, id) = (job.org_id.clone(), job.id.clone());
            let at = offset + pos;
            let buf = tokio::task::spawn_blocking(move || {
                files.read_at(&org, &id, UPLOAD_FILE, at, READ_BYTES)
            })
            .await
            .map_err(|e| StepError::Fatal(e.to_string()))??;
            if buf.is_empty() {
                break;
            }
            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                return Ok(pos + i as u64 + 1);
            }
            pos += buf.len() as u64;
        }
        Ok(left)
    }

    /// Commits one prepared chunk with its checkpoint. False when the job was taken away
    /// (aborted, or another worker holds it now): nothing was written.
    async fn commit_prepared(
        &self,
        state: &mut (JobRow, ImportProgress, ImportCheckpoint),
        p: Prepared,
    ) -> Result<bool, StepError> {
        let (job, progress, cp) = state;
        let mut next_cp = cp.clone();
        next_cp.resume_line += p.consumed_lines;
        next_cp.resume_offset += p.consumed_bytes;
        let mut next_progress = progress.clone();
        next_progress.lines_processed += p.processed;
        next_progress.rejected += p.errors.len() as u64;
        let finished = next_cp.resume_offset >= next_progress.bytes_received;
        let mut next = job.clone();
        if finished {
            next.finished_at = Some(now_rfc3339());
            next.claimed_by = None;
            next.lease_until = None;
        }
        next.checkpoint = to_col(&next_cp);
        let key = (job.org_id.clone(), job.id.clone());
        let counted = next_progress.clone();
        let update = Box::new(move |outcomes: &[AppendOutcome]| {
            let mut pr = counted;
            count(&mut pr, outcomes);
            if finished {
                next.status = if pr.rejected > 0 {
                    "completed_with_errors".into()
                } else {
                    "completed".into()
                };
            }
            next.progress = to_col(&pr);
            next
        });
        let Some(outcomes) = self
            .services
            .store
            .append_with_job(p.rows, p.errors, key, "in_progress", &self.id, update)
            .await?
        else {
            return Ok(false);
        };
        count(&mut next_progress, &outcomes);
        job.progress = to_col(&next_progress);
        job.checkpoint = to_col(&next_cp);
        *progress = next_progress;
        *cp = next_cp;
        if finished {
            metrics::counter!("ipm_jobs_finished_total", "kind" => "import").increment(1);
            return Ok(false);
        }
        Ok(true)
    }
}

fn count(p: &mut ImportProgress, outcomes: &[AppendOutcome]) {
    for o in outcomes {
        match o {
            AppendOutcome::Accepted { .. } => p.accepted += 1,
            AppendOutcome::Duplicate { .. } => p.duplicates += 1,
        }
    }
}

/// A chunk validated and rendered, ready to commit.
#[derive(Default)]
struct Prepared {
    rows: Vec<EventRow>,
    errors: Vec<JobErrorRow>,
    processed: u64,
    consumed_lines: u64,
    consumed_bytes: u64,
}

/// Runs a chunk's lines through the item-level ingest entry point.
fn prepare_chunk(services: &Services, org: &str, context: &str, chunk: Chunk) -> Prepared {
    // The job's own scope: any service; the org is checked per line below, so that a line
    // of another org gets its own code (`wrong_org`).
    let who = Principal {
        key_id: String::new(),
        role: Role::Publisher,
        org_id: None,
        services: Vec::new(),
        orgs: Vec::new(),
    };
    let mut p = Prepared {
        rows: Vec::with_capacity(chunk.lines.len()),
        processed: chunk.lines.len() as u64,
        consumed_lines: chunk.consumed_lines,
        consumed_bytes: chunk.consumed_bytes,
        ..Prepared::default()
    };
    for (line, text) in chunk.lines {
        let item: Result<&str, String> = match &text {
            Err(m) if m == "too_large" => {
                p.errors.push(error_row(
                    line,
                    Rejection {
                        event_id: None,
                        code: "payload_too_large",
                        errors: vec![FieldError::new("", "the line is larger than 8 MiB")],
                    },
                ));
                continue;
            }
            Err(m) => Err(m.clone()),
            Ok(t) => serde_json::from_str::<&RawValue>(t)
                .map(|r| r.get())
                .map_err(|e| format!("line is not valid JSON: {}", strip_position(&e.to_string()))),
        };
        match services.prepare(&who, item, context) {
            Ok(row) if row.org_id != org => p.errors.push(error_row(
                line,
                Rejection {
                    event_id: Some(row.event_id),
                    code: "wrong_org",
                    errors: vec![FieldError::new(
                        "org_id",
                        format!(
                            "the line is for org `{}`; this import belongs to org `{org}`",
                            row.org_id
                        ),
                    )],
                },
            )),
            Ok(row) => p.rows.push(row),
            Err(r) => p.errors.push(error_row(line, r)),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_lines_only() {
        let c = split_chunk(b"a\n\nb\r\nc", 10, 100, false);
        assert_eq!(c.consumed_lines, 3);
        assert_eq!(c.consumed_bytes, 6);
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.lines[1].0, 13);
        let c = split_chunk(b"a\nb", 0, 100, true);
        assert_eq!(c.consumed_lines, 2);
        assert_eq!(c.consumed_bytes, 3);
        let c = split_chunk(b"a\nb\nc\n", 0, 2, false);
        assert_eq!(c.consumed_bytes, 4);
    }
}
