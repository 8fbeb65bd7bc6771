//! Bulk import jobs (SPEC §8): create, upload parts, commit, abort, read. Processing is done by
//! `workers::import` through the same item-level validation as `POST /v1/events`.
use super::jobs::{from_col, is_job_id, new_job_id, to_col};
use super::{ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::time::now_rfc3339;
use crate::store::jobs::{JobRow, KIND_IMPORT};
use serde::{Deserialize, Serialize};

/// The file an import's uploaded parts are appended to.
pub const UPLOAD_FILE: &str = "upload.ndjson";

/// `POST /v1/orgs/{org_id}/imports` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportIn {
    /// A free label for where the data comes from.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub source: Option<String>,
}

/// Stored spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportSpec {
    pub source: Option<String>,
}

/// Counters of an import (stored as the job's progress).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Bytes of uploaded data that are durable.
    pub bytes_received: u64,
    /// Non-blank lines uploaded.
    pub lines_received: u64,
    /// Non-blank lines processed so far.
    pub lines_processed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// Where processing resumes (stored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportCheckpoint {
    /// Physical lines fully processed (the next one is `resume_line + 1`).
    pub resume_line: u64,
    /// Byte offset of the next line in the upload.
    pub resume_offset: u64,
}

/// Stored result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportResult {
    pub errors: Vec<String>,
    pub committed_at: Option<String>,
}

/// An import job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportOut {
    /// `imp_…`.
    pub id: String,
    pub org_id: String,
    /// `open`, `upload_complete`, `in_progress`, `completed`, `completed_with_errors`, `failed` or `aborted`.
    pub status: String,
    pub source: Option<String>,
    pub bytes_received: u64,
    pub lines_received: u64,
    pub lines_processed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Lines before this one (1-based numbering) are done; a restart continues after it.
    pub resume_line: u64,
    /// Where the line-numbered report of rejected lines is.
    pub errors_url: String,
    /// Job-level failures (not line rejections).
    pub errors: Vec<String>,
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    pub created_at: String,
    pub committed_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl ImportOut {
    /// Renders a stored job.
    pub fn from_row(j: &JobRow) -> Result<Self, ServiceError> {
        let spec: ImportSpec = from_col(&j.spec)?;
        let p: ImportProgress = from_col(&j.progress)?;
        let cp: ImportCheckpoint = from_col(&j.checkpoint)?;
        let r: ImportResult = from_col(&j.result)?;
        Ok(ImportOut {
            id: j.id.clone(),
            org_id: j.org_id.clone(),
            status: j.status.clone(),
            source: spec.source,
            bytes_received: p.bytes_received,
            lines_received: p.lines_received,
            lines_processed: p.lines_processed,
            accepted: p.accepted,
            duplicates: p.duplicates,
            rejected: p.rejected,
            resume_line: cp.resume_line,
            errors_url: format!("/v1/orgs/{}/imports/{}/errors", j.org_id, j.id),
            errors: r.errors,
            context: serde_json::from_str(&j.context).unwrap_or(serde_json::Value::Null),
            created_at: j.created_at.clone(),
            committed_at: r.committed_at,
            started_at: j.started_at.clone(),
            finished_at: j.finished_at.clone(),
        })
    }
}

impl Services {
    /// Creates an import job in state `open`.
    pub async fn create_import(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        input: ImportIn,
    ) -> Result<JobRow, ServiceError> {
        who.can_manage_org(org)?;
        if input
            .source
            .as_ref()
            .is_some_and(|s| s.chars().count() > 200)
        {
            return Err(ServiceError::Validation(vec![FieldError::new(
                "source",
                "must be at most 200 characters",
            )]));
        }
        let row = JobRow {
            id: new_job_id("imp_"),
            org_id: org.to_string(),
            kind: KIND_IMPORT.into(),
            status: "open".into(),
            spec: to_col(&ImportSpec {
                source: input.source,
            }),
            progress: to_col(&ImportProgress::default()),
            checkpoint: to_col(&ImportCheckpoint::default()),
            result: to_col(&ImportResult::default()),
            context: ctx.to_json(),
            idempotency_key: None,
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            claimed_by: None,
            lease_until: None,
        };
        Ok(self.store.insert_job(row).await?.0)
    }

    /// One import of `org` (managers only: imports are write-side resources).
    pub async fn get_import(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
    ) -> Result<JobRow, ServiceError> {
        who.can_manage_org(org)?;
        if !is_job_id("imp_", id) {
            return Err(ServiceError::NotFound("import"));
        }
        self.store
            .get_job(org, KIND_IMPORT, id)
            .await?
            .ok_or(ServiceError::NotFound("import"))
    }

    /// Moves an import from `from` to `to` (commit: open → upload_complete; abort: any
    /// unfinished state → aborted). 409 when the job is not in a state that allows it.
    pub async fn transition_import(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
        from: &[&str],
        to: &str,
    ) -> Result<JobRow, ServiceError> {
        for _ in 0..20 {
            let mut job = self.get_import(who, org, id).await?;
            let expect = job.status.clone();
            if !from.contains(&expect.as_str()) {
                return Err(ServiceError::Conflict(format!(
                    "the import is `{expect}`; this needs one of: {}",
                    from.join(", ")
                )));
            }
            job.status = to.to_string();
            let mut r: ImportResult = from_col(&job.result)?;
            if to == "upload_complete" {
                r.committed_at = Some(now_rfc3339());
            } else {
                job.finished_at = Some(now_rfc3339());
                job.claimed_by = None;
                job.lease_until = None;
            }
            job.result = to_col(&r);
            if self.store.update_job(job.clone(), &expect, None).await? {
                return Ok(job);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(ServiceError::Conflict(
            "the import kept changing; retry".into(),
        ))
    }
}

/// Counts non-blank lines in a byte stream fed in pieces.
#[derive(Debug, Default, Clone)]
pub struct LineCounter {
    /// Completed non-blank lines.
    pub lines: u64,
    /// Bytes seen.
    pub bytes: u64,
    has_content: bool,
    last: Option<u8>,
}

impl LineCounter {
    /// Feeds the next piece.
    pub fn feed(&mut self, buf: &[u8]) {
        for &b in buf {
            if b == b'\n' {
                if self.has_content {
                    self.lines += 1;
                }
                self.has_content = false;
            } else if !b.is_ascii_whitespace() {
                self.has_content = true;
            }
        }
        self.bytes += buf.len() as u64;
        if let Some(&b) = buf.last() {
            self.last = Some(b);
        }
    }

    /// True when the stream so far ends in the middle of a line.
    pub fn needs_newline(&self) -> bool {
        self.last.is_some_and(|b| b != b'\n')
    }
}
