//! The job queue on PostgreSQL. Claims take the row with `FOR UPDATE SKIP LOCKED`, so workers
//! on several nodes never claim the same job; every worker write is fenced by its claim.
use super::PgStore;
use super::events::append_rows;
use crate::store::jobs::{JobErrorRow, JobRow, JobUpdate, Jobs, RUNNABLE};
use crate::store::{AppendOutcome, EventRow, StoreResult};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const COLUMNS: &str = "id, org_id, kind, status, spec, progress, checkpoint, result, context, \
     idempotency_key, created_at, started_at, finished_at, claimed_by, lease_until";

fn from_row(r: &Row) -> JobRow {
    JobRow {
        id: r.get(0),
        org_id: r.get(1),
        kind: r.get(2),
        status: r.get(3),
        spec: r.get(4),
        progress: r.get(5),
        checkpoint: r.get(6),
        result: r.get(7),
        context: r.get(8),
        idempotency_key: r.get(9),
        created_at: r.get(10),
        started_at: r.get(11),
        finished_at: r.get(12),
        claimed_by: r.get(13),
        lease_until: r.get(14),
    }
}

/// The conditional write shared by `update_job` and `append_with_job`.
async fn write(
    c: &impl GenericClient,
    j: &JobRow,
    expect: &str,
    fence: Option<&str>,
) -> StoreResult<bool> {
    let st = c
        .prepare_cached(
            "UPDATE jobs SET status = $1, spec = $2, progress = $3, checkpoint = $4, result = $5,
                started_at = $6, finished_at = $7, claimed_by = $8, lease_until = $9
             WHERE org_id = $10 AND kind = $11 AND id = $12 AND status = $13
               AND ($14::text IS NULL OR claimed_by = $14::text)",
        )
        .await?;
    let n = c
        .execute(
            &st,
            &[
                &j.status,
                &j.spec,
                &j.progress,
                &j.checkpoint,
                &j.result,
                &j.started_at,
                &j.finished_at,
                &j.claimed_by,
                &j.lease_until,
                &j.org_id,
                &j.kind,
                &j.id,
                &expect,
                &fence,
            ],
        )
        .await?;
    Ok(n == 1)
}

#[async_trait]
impl Jobs for PgStore {
    async fn insert_job(&self, job: JobRow) -> StoreResult<(JobRow, bool)> {
        let c = self.conn().await?;
        let find = format!(
            "SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND kind = $2 AND idempotency_key = $3"
        );
        if let Some(key) = &job.idempotency_key
            && let Some(found) = c.query_opt(&find, &[&job.org_id, &job.kind, key]).await?
        {
            return Ok((from_row(&found), false));
        }
        // A concurrent insert with the same key makes this one a no-op (the partial unique
        // index is the conflict target); the id's primary key still rejects a real clash.
        let n = c
            .execute(
                &format!(
                    "INSERT INTO jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT (org_id, kind, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
                ),
                &[
                    &job.id,
                    &job.org_id,
                    &job.kind,
                    &job.status,
                    &job.spec,
                    &job.progress,
                    &job.checkpoint,
                    &job.result,
                    &job.context,
                    &job.idempotency_key,
                    &job.created_at,
                    &job.started_at,
                    &job.finished_at,
                    &job.claimed_by,
                    &job.lease_until,
                ],
            )
            .await?;
        if n == 0
            && let Some(key) = &job.idempotency_key
            && let Some(found) = c.query_opt(&find, &[&job.org_id, &job.kind, key]).await?
        {
            return Ok((from_row(&found), false));
        }
        Ok((job, true))
    }

    async fn get_job(&self, org: &str, kind: &str, id: &str) -> StoreResult<Option<JobRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND kind = $2 AND id = $3"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&org, &kind, &id])
            .await?
            .as_ref()
            .map(from_row))
    }

    async fn list_jobs(
        &self,
        org: &str,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<JobRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE org_id = $1 AND kind = $2 AND id > $3 ORDER BY id LIMIT $4"
            ))
            .await?;
        let after = after.unwrap_or("");
        let rows = c
            .query(&st, &[&org, &kind, &after, &(limit as i64)])
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<JobRow>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE status = ANY($1)
                   AND (claimed_by IS NULL OR lease_until < $2 OR claimed_by = $3)
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ))
            .await?;
        let runnable: Vec<&str> = RUNNABLE.to_vec();
        let Some(row) = tx.query_opt(&st, &[&runnable, &now_ms, &worker]).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut job = from_row(&row);
        job.claimed_by = Some(worker.to_string());
        job.lease_until = Some(now_ms + lease_ms);
        tx.execute(
            "UPDATE jobs SET claimed_by = $1, lease_until = $2 WHERE id = $3",
            &[&job.claimed_by, &job.lease_until, &job.id],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn update_job(
        &self,
        job: JobRow,
        expect_status: &str,
        fence: Option<&str>,
    ) -> StoreResult<bool> {
        let c = self.conn().await?;
        write(&c, &job, expect_status, fence).await
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
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let (outcomes, last) = append_rows(&tx, rows).await?;
        let (org, id) = job;
        if !errors.is_empty() {
            let ins = tx
                .prepare_cached(
                    "INSERT INTO job_errors (job_id, org_id, line, event_id, code, message)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (job_id, line) DO UPDATE SET org_id = excluded.org_id,
                       event_id = excluded.event_id, code = excluded.code, message = excluded.message",
                )
                .await?;
            for e in &errors {
                tx.execute(
                    &ins,
                    &[&id, &org, &e.line, &e.event_id, &e.code, &e.message],
                )
                .await?;
            }
        }
        let next = update(&outcomes);
        if next.org_id != org
            || next.id != id
            || !write(&tx, &next, expect_status, Some(fence)).await?
        {
            // Nothing of this chunk is kept.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        if last > 0 {
            self.notify_commit(last);
        }
        Ok(Some(outcomes))
    }

    async fn job_errors(
        &self,
        org: &str,
        id: &str,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JobErrorRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT line, event_id, code, message FROM job_errors
                 WHERE org_id = $1 AND job_id = $2 AND line > $3 ORDER BY line LIMIT $4",
            )
            .await?;
        let rows = c.query(&st, &[&org, &id, &after, &(limit as i64)]).await?;
        Ok(rows
            .iter()
            .map(|r| JobErrorRow {
                line: r.get(0),
                event_id: r.get(1),
                code: r.get(2),
                message: r.get(3),
            })
            .collect())
    }

    async fn job_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
