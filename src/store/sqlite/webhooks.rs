//! Webhook subscriptions on SQLite.
use super::SqliteStore;
use super::events::append_rows;
use crate::domain::time::{now_millis, now_rfc3339};
use crate::store::{EventRow, PauseChange, StoreResult, WebhookRow, Webhooks};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(super) const COLUMNS: &str =
    "id, org_id, url, description, filters, mode, max_in_flight, pause_after,
    pause_min_secs, status, secret_sealed, secret_last4, consecutive_failures, first_failure_at,
    total_failures, paused_at, pause_reason, last_success_at, last_failure_at, created_at,
    created_context, updated_context";

pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<WebhookRow> {
    Ok(WebhookRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        filters: r.get(4)?,
        mode: r.get(5)?,
        max_in_flight: r.get(6)?,
        pause_after: r.get(7)?,
        pause_min_secs: r.get::<_, Option<i64>>(8)?.map(|v| v.max(0) as u64),
        status: r.get(9)?,
        secret_sealed: r.get(10)?,
        secret_last4: r.get(11)?,
        consecutive_failures: r.get(12)?,
        first_failure_at_ms: r.get(13)?,
        total_failures: r.get::<_, i64>(14)?.max(0) as u64,
        paused_at: r.get(15)?,
        pause_reason: r.get(16)?,
        last_success_at: r.get(17)?,
        last_failure_at: r.get(18)?,
        created_at: r.get(19)?,
        created_context: r.get(20)?,
        updated_context: r.get(21)?,
    })
}

/// Appends system events (paused / enabled) inside the current transaction, with fan-out.
fn append_event(c: &Connection, event: Option<EventRow>) -> StoreResult<i64> {
    match event {
        Some(e) => Ok(append_rows(c, vec![e])?.1),
        None => Ok(0),
    }
}

#[async_trait]
impl Webhooks for SqliteStore {
    async fn insert_webhook(&self, w: WebhookRow) -> StoreResult<()> {
        self.writer()
            .run(move |c| {
                c.execute(
                    &format!("INSERT INTO webhooks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                     ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"),
                    params![
                        w.id, w.org_id, w.url, w.description, w.filters, w.mode, w.max_in_flight,
                        w.pause_after, w.pause_min_secs.map(|v| v as i64), w.status, w.secret_sealed,
                        w.secret_last4, w.consecutive_failures, w.first_failure_at_ms,
                        w.total_failures as i64, w.paused_at, w.pause_reason, w.last_success_at,
                        w.last_failure_at, w.created_at, w.created_context, w.updated_context
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_webhook(&self, org: &str, id: &str) -> StoreResult<Option<WebhookRow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row(params![org, id], from_row)
            .optional()?)
        })
        .await
    }

    async fn list_webhooks(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<WebhookRow>> {
        let (org, after) = (org.to_string(), after.unwrap_or("").to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(params![org, after, limit as i64], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn update_webhook(&self, w: WebhookRow) -> StoreResult<bool> {
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE webhooks SET url = ?3, description = ?4, filters = ?5, mode = ?6, max_in_flight = ?7,
                       pause_after = ?8, pause_min_secs = ?9, updated_context = ?10
                     WHERE org_id = ?1 AND id = ?2 AND status <> 'revoked'",
                    params![
                        w.org_id, w.id, w.url, w.description, w.filters, w.mode, w.max_in_flight,
                        w.pause_after, w.pause_min_secs.map(|v| v as i64), w.updated_context
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn active_webhooks(&self) -> StoreResult<Vec<WebhookRow>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE status = 'active' ORDER BY id"
            ))?;
            let rows = st.query_map([], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn pause_webhook(&self, org: &str, id: &str, change: PauseChange) -> StoreResult<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        let (changed, last) = self
            .writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE webhooks SET status = 'paused', paused_at = ?3, pause_reason = ?4,
                       updated_context = COALESCE(?5, updated_context)
                     WHERE org_id = ?1 AND id = ?2 AND status = 'active'",
                    params![org, id, change.paused_at, change.reason, change.context],
                )?;
                if n == 0 {
                    return Ok((false, 0));
                }
                c.execute(
                    "UPDATE deliveries SET status = 'held', updated_at = ?2
                     WHERE webhook_id = ?1 AND status IN ('pending', 'failed')",
                    params![id, now_rfc3339()],
                )?;
                let last = append_event(c, change.event)?;
                if let Some(item) = change.inbox {
                    super::inbox::insert(c, &item)?;
                }
                Ok((true, last))
            })
            .await?;
        self.notify_commit(last);
        Ok(changed)
    }

    async fn enable_webhook(
        &self,
        org: &str,
        id: &str,
        skip_backlog: bool,
        context: String,
        event: Option<EventRow>,
    ) -> StoreResult<Option<u64>> {
        let (org, id) = (org.to_string(), id.to_string());
        let (held, last) = self
            .writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE webhooks SET status = 'active', paused_at = NULL, pause_reason = NULL,
                       consecutive_failures = 0, first_failure_at = NULL, updated_context = ?3
                     WHERE org_id = ?1 AND id = ?2 AND status = 'paused'",
                    params![org, id, context],
                )?;
                if n == 0 {
                    return Ok((None, 0));
                }
                let held = c.execute(
                    "UPDATE deliveries SET status = CASE WHEN ?2 THEN 'skipped' ELSE 'pending' END,
                       next_attempt_at = ?3, updated_at = ?4
                     WHERE webhook_id = ?1 AND status = 'held'",
                    params![id, skip_backlog, now_millis(), now_rfc3339()],
                )?;
                let last = append_event(c, event)?;
                Ok((Some(held as u64), last))
            })
            .await?;
        self.notify_commit(last);
        Ok(held)
    }

    async fn revoke_webhook(&self, org: &str, id: &str, context: String) -> StoreResult<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE webhooks SET status = 'revoked', updated_context = ?3
                     WHERE org_id = ?1 AND id = ?2 AND status <> 'revoked'",
                    params![org, id, context],
                )?;
                if n == 1 {
                    c.execute(
                        "UPDATE deliveries SET status = 'skipped', updated_at = ?2
                         WHERE webhook_id = ?1 AND status IN ('pending', 'failed', 'held')",
                        params![id, now_rfc3339()],
                    )?;
                }
                Ok(n == 1)
            })
            .await
    }
}
