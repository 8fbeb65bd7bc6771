//! Webhook subscriptions on PostgreSQL. Every change that decides where an org's events fan out
//! (insert, update, pause, enable, revoke) holds the org lock ([`lock_orgs`]), so it serializes
//! with that org's appends: an append sees either the old or the new webhook set, never a mix.
//! Lock order everywhere: org lock, then webhook rows, then delivery rows.
use super::events::append_rows;
use super::{PgStore, lock_orgs};
use crate::domain::time::{now_millis, now_rfc3339};
use crate::store::{EventRow, PauseChange, StoreResult, WebhookRow, Webhooks};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

pub(super) const COLUMNS: &str =
    "id, org_id, url, description, filters, mode, max_in_flight, pause_after,
    pause_min_secs, status, secret_sealed, secret_last4, consecutive_failures, first_failure_at,
    total_failures, paused_at, pause_reason, last_success_at, last_failure_at, created_at,
    created_context, updated_context";

/// A BIGINT column as u32 (clamped; the API validates the ranges on write).
pub(super) fn as_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

pub(super) fn from_row(r: &Row) -> WebhookRow {
    WebhookRow {
        id: r.get(0),
        org_id: r.get(1),
        url: r.get(2),
        description: r.get(3),
        filters: r.get(4),
        mode: r.get(5),
        max_in_flight: as_u32(r.get(6)),
        pause_after: r.get::<_, Option<i64>>(7).map(as_u32),
        pause_min_secs: r.get::<_, Option<i64>>(8).map(|v| v.max(0) as u64),
        status: r.get(9),
        secret_sealed: r.get(10),
        secret_last4: r.get(11),
        consecutive_failures: as_u32(r.get(12)),
        first_failure_at_ms: r.get(13),
        total_failures: r.get::<_, i64>(14).max(0) as u64,
        paused_at: r.get(15),
        pause_reason: r.get(16),
        last_success_at: r.get(17),
        last_failure_at: r.get(18),
        created_at: r.get(19),
        created_context: r.get(20),
        updated_context: r.get(21),
    }
}

/// Appends a system event (paused / enabled) inside `tx`, with fan-out; returns its sequence
/// (0 when there is none).
async fn append_event(tx: &Transaction<'_>, event: Option<EventRow>) -> StoreResult<i64> {
    match event {
        Some(e) => Ok(append_rows(tx, vec![e]).await?.1),
        None => Ok(0),
    }
}

#[async_trait]
impl Webhooks for PgStore {
    async fn insert_webhook(&self, w: WebhookRow) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        lock_orgs(&tx, [w.org_id.as_str()]).await?;
        tx.execute(
            &format!(
                "INSERT INTO webhooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
            ),
            &[
                &w.id,
                &w.org_id,
                &w.url,
                &w.description,
                &w.filters,
                &w.mode,
                &i64::from(w.max_in_flight),
                &w.pause_after.map(i64::from),
                &w.pause_min_secs.map(|v| v as i64),
                &w.status,
                &w.secret_sealed,
                &w.secret_last4,
                &i64::from(w.consecutive_failures),
                &w.first_failure_at_ms,
                &(w.total_failures as i64),
                &w.paused_at,
                &w.pause_reason,
                &w.last_success_at,
                &w.last_failure_at,
                &w.created_at,
                &w.created_context,
                &w.updated_context,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_webhook(&self, org: &str, id: &str) -> StoreResult<Option<WebhookRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 AND id = $2"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&org, &id]).await?.as_ref().map(from_row))
    }

    async fn list_webhooks(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<WebhookRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .await?;
        let rows = c
            .query(&st, &[&org, &after.unwrap_or(""), &(limit as i64)])
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn update_webhook(&self, w: WebhookRow) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        lock_orgs(&tx, [w.org_id.as_str()]).await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET url = $3, description = $4, filters = $5, mode = $6,
                   max_in_flight = $7, pause_after = $8, pause_min_secs = $9, updated_context = $10
                 WHERE org_id = $1 AND id = $2 AND status <> 'revoked'",
                &[
                    &w.org_id,
                    &w.id,
                    &w.url,
                    &w.description,
                    &w.filters,
                    &w.mode,
                    &i64::from(w.max_in_flight),
                    &w.pause_after.map(i64::from),
                    &w.pause_min_secs.map(|v| v as i64),
                    &w.updated_context,
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn active_webhooks(&self) -> StoreResult<Vec<WebhookRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE status = 'active' ORDER BY id"
            ))
            .await?;
        Ok(c.query(&st, &[]).await?.iter().map(from_row).collect())
    }

    async fn pause_webhook(&self, org: &str, id: &str, change: PauseChange) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        lock_orgs(&tx, [org]).await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET status = 'paused', paused_at = $3, pause_reason = $4,
                   updated_context = COALESCE($5, updated_context)
                 WHERE org_id = $1 AND id = $2 AND status = 'active'",
                &[
                    &org,
                    &id,
                    &change.paused_at,
                    &change.reason,
                    &change.context,
                ],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE deliveries SET status = 'held', updated_at = $3
             WHERE webhook_id = $1 AND org_id = $2 AND status IN ('pending', 'failed')",
            &[&id, &org, &now_rfc3339()],
        )
        .await?;
        let last = append_event(&tx, change.event).await?;
        if let Some(item) = &change.inbox {
            super::inbox::insert(&tx, item).await?;
        }
        tx.commit().await?;
        if last > 0 {
            self.notify_commit(last);
        }
        Ok(true)
    }

    async fn enable_webhook(
        &self,
        org: &str,
        id: &str,
        skip_backlog: bool,
        context: String,
        event: Option<EventRow>,
    ) -> StoreResult<Option<u64>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        lock_orgs(&tx, [org]).await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET status = 'active', paused_at = NULL, pause_reason = NULL,
                   consecutive_failures = 0, first_failure_at = NULL, updated_context = $3
                 WHERE org_id = $1 AND id = $2 AND status = 'paused'",
                &[&org, &id, &context],
            )
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let held = tx
            .execute(
                "UPDATE deliveries SET status = CASE WHEN $3 THEN 'skipped' ELSE 'pending' END,
                   next_attempt_at = $4, updated_at = $5
                 WHERE webhook_id = $1 AND org_id = $2 AND status = 'held'",
                &[&id, &org, &skip_backlog, &now_millis(), &now_rfc3339()],
            )
            .await?;
        let last = append_event(&tx, event).await?;
        tx.commit().await?;
        if last > 0 {
            self.notify_commit(last);
        }
        Ok(Some(held))
    }

    async fn revoke_webhook(&self, org: &str, id: &str, context: String) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        lock_orgs(&tx, [org]).await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET status = 'revoked', updated_context = $3
                 WHERE org_id = $1 AND id = $2 AND status <> 'revoked'",
                &[&org, &id, &context],
            )
            .await?;
        if n == 1 {
            tx.execute(
                "UPDATE deliveries SET status = 'skipped', updated_at = $3
                 WHERE webhook_id = $1 AND org_id = $2 AND status IN ('pending', 'failed', 'held')",
                &[&id, &org, &now_rfc3339()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }
}
