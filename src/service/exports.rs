//! Bulk export jobs (SPEC §7): create, read, list, cancel. The work itself is done by
//! `workers::export`.
use super::jobs::{JobEnv, from_col, io_err, is_job_id, new_job_id, to_col};
use super::{ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::filter::{EventFilter, FilterInput};
use crate::domain::time::now_rfc3339;
use crate::store::jobs::{JobRow, KIND_EXPORT};
use serde::{Deserialize, Serialize};

/// Default events per file.
pub const DEFAULT_MAX_EVENTS_PER_FILE: u64 = 100_000;
/// Largest allowed `max_events_per_file`.
pub const MAX_EVENTS_PER_FILE: u64 = 10_000_000;

/// Export filters: the same as the CDC feed's query parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportFilters {
    /// Services (OR).
    #[serde(default, alias = "services", skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<String>,
    /// Event types (OR); `orders.*` prefix form allowed.
    #[serde(default, alias = "event_types", skip_serializing_if = "Vec::is_empty")]
    pub event_type: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility_id: Option<String>,
    /// `occurred_at >= since` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `occurred_at < until` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl ExportFilters {
    /// The validated filter.
    pub fn parse(&self) -> Result<EventFilter, Vec<FieldError>> {
        EventFilter::parse(FilterInput {
            services: &self.service,
            event_types: &self.event_type,
            channel_id: self.channel_id.as_deref(),
            facility_id: self.facility_id.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        })
        .map_err(|es| {
            es.into_iter()
                .map(|e| FieldError::new(format!("filters.{}", e.field), e.message))
                .collect()
        })
    }
}

/// Output compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// `POST /v1/orgs/{org_id}/exports` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportIn {
    #[serde(default)]
    pub filters: ExportFilters,
    /// A CDC cursor (or a previous export's `next_cursor`) for the same filters: export only
    /// what comes after it.
    #[serde(default)]
    pub from_cursor: Option<String>,
    /// Events per file (default 100000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000000)]
    pub max_events_per_file: Option<u64>,
    #[serde(default)]
    pub compression: Option<Compression>,
}

/// What an export job was asked to do (stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportSpec {
    pub filters: ExportFilters,
    pub from_cursor: Option<String>,
    pub max_events_per_file: u64,
    pub compression: Compression,
}

/// Counters shown while an export runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportProgress {
    pub events_written: u64,
    pub bytes_written: u64,
    /// Finished files.
    pub files: u64,
    /// An upper bound of the events to export (the log's range it covers), for progress bars.
    #[serde(default)]
    pub events_estimate: u64,
}

/// Where a resumed export continues (stored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    /// Last sequence written (the CDC position).
    pub after_seq: i64,
    /// The log's high-water mark when the job started: the export's end.
    pub until_seq: i64,
    /// Number of the file being written (1-based).
    pub file_no: u32,
    /// Events and bytes of that file that are durable.
    pub part_events: u64,
    pub part_bytes: u64,
}

/// One finished export file.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileOut {
    pub name: String,
    /// Download path (GET, same key).
    pub url: String,
    pub events: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the file's bytes (as downloaded).
    pub sha256: String,
}

/// Files, cursor and errors (stored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportResult {
    pub files: Vec<FileOut>,
    pub next_cursor: Option<String>,
    pub errors: Vec<String>,
    #[serde(default)]
    pub files_deleted: bool,
}

/// An export job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportOut {
    /// `exp_…`.
    pub id: String,
    pub org_id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub filters: ExportFilters,
    pub from_cursor: Option<String>,
    pub max_events_per_file: u64,
    pub compression: Compression,
    pub progress: ExportProgress,
    pub files: Vec<FileOut>,
    /// The CDC position after the last exported event; use it as the next export's `from_cursor`.
    pub next_cursor: Option<String>,
    pub errors: Vec<String>,
    /// True once the files of a finished export were deleted.
    pub files_deleted: bool,
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The file name of export file `n`.
pub fn file_name(n: u32, c: Compression) -> String {
    match c {
        Compression::None => format!("export-{n:05}.ndjson"),
        Compression::Gzip => format!("export-{n:05}.ndjson.gz"),
    }
}

/// The temp name a file has until it is complete.
pub fn temp_name(n: u32, c: Compression) -> String {
    format!("{}.part", file_name(n, c))
}

/// True for states after which nothing changes any more.
pub fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

impl ExportOut {
    /// Renders a stored job.
    pub fn from_row(j: &JobRow) -> Result<Self, ServiceError> {
        let spec: ExportSpec = from_col(&j.spec)?;
        let result: ExportResult = from_col(&j.result)?;
        Ok(ExportOut {
            id: j.id.clone(),
            org_id: j.org_id.clone(),
            status: j.status.clone(),
            filters: spec.filters,
            from_cursor: spec.from_cursor,
            max_events_per_file: spec.max_events_per_file,
            compression: spec.compression,
            progress: from_col(&j.progress)?,
            files: result.files,
            next_cursor: result.next_cursor,
            errors: result.errors,
            files_deleted: result.files_deleted,
            context: serde_json::from_str(&j.context).unwrap_or(serde_json::Value::Null),
            created_at: j.created_at.clone(),
            started_at: j.started_at.clone(),
            finished_at: j.finished_at.clone(),
        })
    }
}

impl Services {
    /// Creates an export job (or returns the one created earlier with the same idempotency key).
    /// Returns the job and whether it was created now.
    pub async fn create_export(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        input: ExportIn,
        idempotency_key: Option<String>,
    ) -> Result<(JobRow, bool), ServiceError> {
        who.can_manage_org(org)?;
        let filter = input.filters.parse().map_err(ServiceError::Validation)?;
        if let Some(c) = &input.from_cursor {
            let pos = self.cdc_position(org, &filter, Some(c))?;
            if pos < self.store.purged_through().await? {
                return Err(ServiceError::CursorExpired);
            }
        }
        let max = input
            .max_events_per_file
            .unwrap_or(DEFAULT_MAX_EVENTS_PER_FILE);
        if !(1..=MAX_EVENTS_PER_FILE).contains(&max) {
            return Err(ServiceError::Validation(vec![FieldError::new(
                "max_events_per_file",
                format!("must be between 1 and {MAX_EVENTS_PER_FILE}"),
            )]));
        }
        let spec = ExportSpec {
            filters: input.filters,
            from_cursor: input.from_cursor,
            max_events_per_file: max,
            compression: input.compression.unwrap_or_default(),
        };
        let row = JobRow {
            id: new_job_id("exp_"),
            org_id: org.to_string(),
            kind: KIND_EXPORT.into(),
            status: "queued".into(),
            spec: to_col(&spec),
            progress: to_col(&ExportProgress::default()),
            checkpoint: "{}".into(),
            result: to_col(&ExportResult::default()),
            context: ctx.to_json(),
            idempotency_key,
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            claimed_by: None,
            lease_until: None,
        };
        Ok(self.store.insert_job(row).await?)
    }

    /// One export of `org` (readers may look).
    pub async fn get_export(
        &self,
        who: &Principal,
        org: &str,
        id: &str,
    ) -> Result<JobRow, ServiceError> {
        who.can_read_org(org)?;
        if !is_job_id("exp_", id) {
            return Err(ServiceError::NotFound("export"));
        }
        self.store
            .get_job(org, KIND_EXPORT, id)
            .await?
            .ok_or(ServiceError::NotFound("export"))
    }

    /// Cancels a queued/running export, or deletes a finished one's files.
    pub async fn cancel_export(
        &self,
        env: &JobEnv,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
    ) -> Result<JobRow, ServiceError> {
        who.can_manage_org(org)?;
        // A worker may move the job between our read and our write: retry on a lost race.
        for _ in 0..20 {
            let mut job = self.get_export(who, org, id).await?;
            let expect = job.status.clone();
            let mut result: ExportResult = from_col(&job.result)?;
            if is_finished(&expect) {
                result.files_deleted = true;
            } else {
                job.status = "canceled".into();
                job.finished_at = Some(now_rfc3339());
                job.claimed_by = None;
                job.lease_until = None;
                result
                    .errors
                    .push(format!("canceled by request {}", ctx.request_id));
            }
            job.result = to_col(&result);
            if self.store.update_job(job.clone(), &expect, None).await? {
                let files = env.files.clone();
                let (o, i) = (org.to_string(), id.to_string());
                tokio::task::spawn_blocking(move || files.delete_job(&o, &i))
                    .await
                    .map_err(|e| io_err(std::io::Error::other(e)))?
                    .map_err(io_err)?;
                return Ok(job);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(ServiceError::Conflict(
            "the export kept changing; retry".into(),
        ))
    }
}
