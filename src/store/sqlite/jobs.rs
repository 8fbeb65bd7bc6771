//! The job queue on SQLite. Claims go through the single writer, so two workers of one process
//! never claim the same job; leases make a crashed process's jobs claimable again.
use super::SqliteStore;
use super::events::append_rows;
use crate::store::jobs::{JobErrorRow, JobRow, JobUpdate, Jobs, RUNNABLE};
use crate::store::{AppendOutcome, EventRow, StoreError, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLUMNS: &str = "id, org_id, kind, status, spec, progress, checkpoint, result, context, \
     idempotency_key, created_at, started_at, finished_at, claimed_by, lease_until";

fn from_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        spec: r.get(4)?,
        progress: r.get(5)?,
        checkpoint: r.get(6)?,
        result: r.get(7)?,
        context: r.get(8)?,
        idempotency_key: r.get(9)?,
        created_at: r.get(10)?,
        started_at: r.get(11)?,
        finished_at: r.get(12)?,
        claimed_by: r.get(13)?,
        lease_until: r.get(14)?,
    })
}

fn get(c: &Connection, org: &str, kind: &str, id: &str) -> StoreResult<Option<JobRow>> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE org_id = ?1 AND kind = ?2 AND id = ?3");
    Ok(c.prepare_cached(&sql)?
        .query_row(params![org, kind, id], from_row)
        .optional()?)
}

/// The conditional write shared by `update_job` and `append_with_job`.
fn write(c: &Connection, j: &JobRow, expect: &str, fence: Option<&str>) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE jobs SET status = ?1, spec = ?2, progress = ?3, checkpoint = ?4, result = ?5,
                started_at = ?6, finished_at = ?7, claimed_by = ?8, lease_until = ?9
         WHERE org_id = ?10 AND kind = ?11 AND id = ?12 AND status = ?13
           AND (?14 IS NULL OR claimed_by = ?14)",
        )?
        .execute(params![
            j.status,
            j.spec,
            j.progress,
            j.checkpoint,
            j.result,
            j.started_at,
            j.finished_at,
            j.claimed_by,
            j.lease_until,
            j.org_id,
            j.kind,
            j.id,
            expect,
            fence
        ])?;
    Ok(n == 1)
}

/// Rolls the savepoint back when a fenced write lost its claim.
const LOST: &str = "job claim lost";

#[async_trait]
impl Jobs for SqliteStore {
    async fn insert_job(&self, job: JobRow) -> StoreResult<(JobRow, bool)> {
        self.writer()
            .run(move |c| {
                if let Some(key) = &job.idempotency_key {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM jobs WHERE org_id = ?1 AND kind = ?2 AND idempotency_key = ?3"
                    );
                    let found = c
                        .query_row(&sql, params![job.org_id, job.kind, key], from_row)
                        .optional()?;
                    if let Some(found) = found {
                        return Ok((found, false));
                    }
                }
                c.execute(
                    &format!(
                        "INSERT INTO jobs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                    ),
                    params![
                        job.id,
                        job.org_id,
                        job.kind,
                        job.status,
                        job.spec,
                        job.progress,
                        job.checkpoint,
                        job.result,
                        job.context,
                        job.idempotency_key,
                        job.created_at,
                        job.started_at,
                        job.finished_at,
                        job.claimed_by,
                        job.lease_until
                    ],
                )?;
                Ok((job, true))
            })
            .await
    }

    async fn get_job(&self, org: &str, kind: &str, id: &str) -> StoreResult<Option<JobRow>> {
        let (org, kind, id) = (org.to_string(), kind.to_string(), id.to_string());
        self.read(move |c| get(c, &org, &kind, &id)).await
    }

    async fn list_jobs(
        &self,
        org: &str,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<JobRow>> {
        let (org, kind) = (org.to_string(), kind.to_string());
        let after = after.unwrap_or("").to_string();
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM jobs WHERE org_id = ?1 AND kind = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![org, kind, after, limit as i64], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<JobRow>> {
        let worker = worker.to_string();
        self.writer()
            .run(move |c| {
                let states = RUNNABLE
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(",");
                let sql = format!(
                    "SELECT {COLUMNS} FROM jobs WHERE status IN ({states})
                       AND (claimed_by IS NULL OR claimed_by = ?1 OR lease_until < ?2)
                     ORDER BY id LIMIT 1"
                );
                let Some(mut job) = c
                    .query_row(&sql, params![worker, now_ms], from_row)
                    .optional()?
                else {
                    return Ok(None);
                };
                job.claimed_by = Some(worker.clone());
                job.lease_until = Some(now_ms + lease_ms);
                c.execute(
                    "UPDATE jobs SET claimed_by = ?1, lease_until = ?2 WHERE id = ?3",
                    params![job.claimed_by, job.lease_until, job.id],
                )?;
                Ok(Some(job))
            })
            .await
    }

    async fn update_job(
        &self,
        job: JobRow,
        expect_status: &str,
        fence: Option<&str>,
    ) -> StoreResult<bool> {
        let expect = expect_status.to_string();
        let fence = fence.map(str::to_string);
        self.writer()
            .run(move |c| write(c, &job, &expect, fence.as_deref()))
            .await
    }

    async fn append_with_job(
        &self,
        rows: Vec<EventRow>,
        errors: Vec<JobErrorRow>,
        job: (String, String),
        expect_status: &str,
        fence: &str,
        update: JobUpdate,
    ) -> StoreResult<Option<Vec<AppendOutcome>>> {
        let expect = expect_status.to_string();
        let fence = fence.to_string();
        let r = self
            .writer()
            .run(move |c| {
                let (outcomes, last) = append_rows(c, rows)?;
                let (org, id) = job;
                let mut ins = c.prepare_cached(
                    "INSERT OR REPLACE INTO job_errors (job_id, org_id, line, event_id, code, message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in errors {
                    ins.execute(params![id, org, e.line, e.event_id, e.code, e.message])?;
                }
                let next = update(&outcomes);
                if next.org_id != org || next.id != id || !write(c, &next, &expect, Some(&fence))? {
                    // Err rolls the savepoint back: nothing of this chunk is kept.
                    return Err(StoreError::Conflict(LOST.into()));
                }
                Ok((outcomes, last))
            })
            .await;
        match r {
            Ok((outcomes, last)) => {
                self.inner.commits.send_if_modified(|v| {
                    let changed = last > *v;
                    *v = (*v).max(last);
                    changed
                });
                Ok(Some(outcomes))
            }
            Err(StoreError::Conflict(m)) if m == LOST => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn job_errors(
        &self,
        org: &str,
        id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JobErrorRow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT line, event_id, code, message FROM job_errors
                 WHERE org_id = ?1 AND job_id = ?2 AND line > ?3 ORDER BY line LIMIT ?4",
            )?;
            let rows = st.query_map(params![org, id, after, limit as i64], |r| {
                Ok(JobErrorRow {
                    line: r.get(0)?,
                    event_id: r.get(1)?,
                    code: r.get(2)?,
                    message: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn job_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
