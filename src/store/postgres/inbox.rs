//! The operator inbox on PostgreSQL.
use super::PgStore;
use crate::store::{Inbox, InboxRow, StoreResult};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

const COLUMNS: &str = "id, org_id, kind, severity, title, body, ref_type, ref_id, created_at, acked_at, acked_context";

fn from_row(r: &Row) -> InboxRow {
    InboxRow {
        id: r.get(0),
        org_id: r.get(1),
        kind: r.get(2),
        severity: r.get(3),
        title: r.get(4),
        body: r.get(5),
        ref_type: r.get(6),
        ref_id: r.get(7),
        created_at: r.get(8),
        acked_at: r.get(9),
        acked_context: r.get(10),
    }
}

/// Inserts an item inside the caller's transaction.
pub(super) async fn insert(tx: &Transaction<'_>, i: &InboxRow) -> StoreResult<()> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO inbox ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .await?;
    tx.execute(
        &st,
        &[
            &i.id,
            &i.org_id,
            &i.kind,
            &i.severity,
            &i.title,
            &i.body,
            &i.ref_type,
            &i.ref_id,
            &i.created_at,
            &i.acked_at,
            &i.acked_context,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Inbox for PgStore {
    async fn insert_inbox(&self, item: InboxRow) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        insert(&tx, &item).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_inbox(
        &self,
        org: &str,
        unread: bool,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<InboxRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM inbox WHERE org_id = $1 AND ($2::text IS NULL OR id < $2)
                   AND (NOT $3 OR acked_at IS NULL) ORDER BY id DESC LIMIT $4"
            ))
            .await?;
        let rows = c
            .query(&st, &[&org, &before, &unread, &(limit as i64)])
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn ack_inbox(
        &self,
        org: &str,
        id: &str,
        at: &str,
        context: &str,
    ) -> StoreResult<Option<InboxRow>> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE inbox SET acked_at = $3, acked_context = $4
             WHERE org_id = $1 AND id = $2 AND acked_at IS NULL",
            &[&org, &id, &at, &context],
        )
        .await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM inbox WHERE org_id = $1 AND id = $2"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&org, &id]).await?.as_ref().map(from_row))
    }
}
