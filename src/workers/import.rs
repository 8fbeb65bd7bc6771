//! One step of an import job: read the next chunk of uploaded lines, run each through the same
//! item-level validation as `POST /v1/events`, and commit the chunk's events, its rejected
//! lines and the new `resume_line` in one transaction.
use super::jobs::{JobWorker, StepError};
use crate::domain::FieldError;
use crate::domain::auth::{Principal, Role};
use crate::domain::envelope::{Rejection, strip_position};
use crate::domain::time::now_rfc3339;
use crate::service::imports::{ImportCheckpoint, ImportProgress, UPLOAD_FILE};
use crate::service::jobs::{from_col, to_col};
use crate::store::jobs::{JobErrorRow, JobRow};
use crate::store::{AppendOutcome, EventRow};
use serde_json::value::RawValue;

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
        let mut chunk = split_chunk(&buf, cp.resume_line, self.tuning.import_chunk, at_eof);
        if chunk.consumed_lines == 0 && !buf.is_empty() {
            // One line longer than a whole read: reject it and skip to its end.
            let skip = self.skip_long_line(&job, offset, left).await?;
            chunk = Chunk {
                lines: vec![(cp.resume_line + 1, Err("too_large".into()))],
                consumed_lines: 1,
                consumed_bytes: skip,
            };
        }
        self.commit_import_chunk(job, progress, cp, chunk).await
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

    async fn commit_import_chunk(
        &self,
        mut job: JobRow,
        mut progress: ImportProgress,
        mut cp: ImportCheckpoint,
        chunk: Chunk,
    ) -> Result<(), StepError> {
        // The job's own scope: any service; the org is checked per line below, so that a line
        // of another org gets its own code (`wrong_org`).
        let who = Principal {
            key_id: String::new(),
            role: Role::Publisher,
            org_id: None,
            services: Vec::new(),
            orgs: Vec::new(),
        };
        let mut rows: Vec<EventRow> = Vec::with_capacity(chunk.lines.len());
        let mut errors = Vec::new();
        let processed = chunk.lines.len() as u64;
        for (line, text) in chunk.lines {
            let item: Result<&str, String> = match &text {
                Err(m) if m == "too_large" => {
                    errors.push(error_row(
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
                    .map_err(|e| {
                        format!("line is not valid JSON: {}", strip_position(&e.to_string()))
                    }),
            };
            match self.services.prepare(&who, item, &job.context) {
                Ok(row) if row.org_id != job.org_id => errors.push(error_row(
                    line,
                    Rejection {
                        event_id: Some(row.event_id),
                        code: "wrong_org",
                        errors: vec![FieldError::new(
                            "org_id",
                            format!(
                                "the line is for org `{}`; this import belongs to org `{}`",
                                row.org_id, job.org_id
                            ),
                        )],
                    },
                )),
                Ok(row) => rows.push(row),
                Err(r) => errors.push(error_row(line, r)),
            }
        }
        cp.resume_line += chunk.consumed_lines;
        cp.resume_offset += chunk.consumed_bytes;
        progress.lines_processed += processed;
        progress.rejected += errors.len() as u64;
        let finished = cp.resume_offset >= progress.bytes_received;
        if finished {
            job.finished_at = Some(now_rfc3339());
            job.claimed_by = None;
            job.lease_until = None;
        }
        job.checkpoint = to_col(&cp);
        let key = (job.org_id.clone(), job.id.clone());
        let update = Box::new(move |outcomes: &[AppendOutcome]| {
            for o in outcomes {
                match o {
                    AppendOutcome::Accepted { .. } => progress.accepted += 1,
                    AppendOutcome::Duplicate { .. } => progress.duplicates += 1,
                }
            }
            if finished {
                job.status = if progress.rejected > 0 {
                    "completed_with_errors".into()
                } else {
                    "completed".into()
                };
            }
            job.progress = to_col(&progress);
            job
        });
        let done = self
            .services
            .store
            .append_with_job(rows, errors, key, "in_progress", &self.id, update)
            .await?;
        if finished && done.is_some() {
            metrics::counter!("ipm_jobs_finished_total", "kind" => "import").increment(1);
        }
        Ok(())
    }
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
