//! The durable job queue (exports and imports), as a storage capability.
//!
//! A job row carries its spec, progress, checkpoint and result as JSON text the service layer
//! owns; the store only knows states, claims and leases. Workers claim a runnable job with a
//! lease (`claimed_by`, `lease_until`); every write a worker makes is fenced by its claim, so a
//! node whose lease expired cannot overwrite the work of the node that took the job over.
//! A PostgreSQL backend implements [`Jobs::claim_job`] with `FOR UPDATE SKIP LOCKED`.
use super::{AppendOutcome, EventRow, StoreResult};
use async_trait::async_trait;

/// Job kinds.
pub const KIND_EXPORT: &str = "export";
/// Job kinds.
pub const KIND_IMPORT: &str = "import";

/// States a worker may pick up (exports `queued`/`running`, imports `upload_complete`/`in_progress`).
pub const RUNNABLE: &[&str] = &["queued", "running", "upload_complete", "in_progress"];

/// One job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// `exp_…` or `imp_…`.
    pub id: String,
    pub org_id: String,
    /// [`KIND_EXPORT`] or [`KIND_IMPORT`].
    pub kind: String,
    pub status: String,
    /// What was asked (JSON).
    pub spec: String,
    /// Counters shown to clients (JSON).
    pub progress: String,
    /// Where a resumed worker continues (JSON).
    pub checkpoint: String,
    /// Files, next cursor, errors (JSON).
    pub result: String,
    /// The request context of the create (JSON).
    pub context: String,
    /// The create's `Idempotency-Key`, if any (unique per org and kind).
    pub idempotency_key: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The worker holding the job, if any.
    pub claimed_by: Option<String>,
    /// Unix ms until which the claim holds.
    pub lease_until: Option<i64>,
}

/// One rejected import line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobErrorRow {
    /// 1-based line number in the uploaded data.
    pub line: i64,
    pub event_id: Option<String>,
    pub code: String,
    pub message: String,
}

/// Computes a job's next row from the outcomes of the events appended with it.
pub type JobUpdate = Box<dyn FnOnce(&[AppendOutcome]) -> JobRow + Send>;

/// The job queue.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Inserts a job. When `idempotency_key` is set and a job of the same org and kind already
    /// carries it, nothing is inserted and that job is returned with `false`.
    async fn insert_job(&self, job: JobRow) -> StoreResult<(JobRow, bool)>;
    /// One job of `org` and `kind`; a job of another org is `None`, exactly like a missing one.
    async fn get_job(&self, org: &str, kind: &str, id: &str) -> StoreResult<Option<JobRow>>;
    /// Jobs of `org` and `kind` with `id > after`, ascending, at most `limit`.
    async fn list_jobs(
        &self,
        org: &str,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<JobRow>>;
    /// Claims the oldest runnable job that nobody holds (or whose lease ended before `now_ms`,
    /// or that `worker` already holds) until `now_ms + lease_ms`.
    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<JobRow>>;
    /// Writes `job`'s mutable fields if its status is still `expect_status` and, when `fence`
    /// is set, the job is still claimed by that worker. False when the condition failed.
    async fn update_job(
        &self,
        job: JobRow,
        expect_status: &str,
        fence: Option<&str>,
    ) -> StoreResult<bool>;
    /// Appends `rows`, records `errors` and writes the job row computed from the outcomes, in
    /// one transaction, under the same condition as [`Jobs::update_job`]. `None` (and nothing
    /// written) when the condition failed.
    async fn append_with_job(
        &self,
        rows: Vec<EventRow>,
        errors: Vec<JobErrorRow>,
        job: (String, String),
        expect_status: &str,
        fence: &str,
        update: JobUpdate,
    ) -> StoreResult<Option<Vec<AppendOutcome>>>;
    /// Rejected lines of a job with `line > after`, ascending, at most `limit`.
    async fn job_errors(
        &self,
        org: &str,
        id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JobErrorRow>>;
    /// Job counts by (kind, status), for metrics.
    async fn job_counts(&self) -> StoreResult<Vec<(String, String, i64)>>;
}
