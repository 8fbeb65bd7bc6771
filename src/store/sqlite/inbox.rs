//! The operator inbox on SQLite.
use super::SqliteStore;
use crate::store::{Inbox, InboxRow, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLUMNS: &str = "id, org_id, kind, severity, title, body, ref_type, ref_id, created_at, acked_at, acked_context";

fn from_row(r: &Row<'_>) -> rusqlite::Result<InboxRow> {
    Ok(InboxRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        kind: r.get(2)?,
        severity: r.get(3)?,
        title: r.get(4)?,
        body: r.get(5)?,
        ref_type: r.get(6)?,
        ref_id: r.get(7)?,
        created_at: r.get(8)?,
        acked_at: r.get(9)?,
        acked_context: r.get(10)?,
    })
}

/// Inserts an item inside the caller's transaction.
pub(super) fn insert(c: &Connection, i: &InboxRow) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO inbox ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        i.id,
        i.org_id,
        i.kind,
        i.severity,
        i.title,
        i.body,
        i.ref_type,
        i.ref_id,
        i.created_at,
        i.acked_at,
        i.acked_context
    ])?;
    Ok(())
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn insert_inbox(&self, item: InboxRow) -> StoreResult<()> {
        self.writer().run(move |c| Ok(insert(c, &item)?)).await
    }

    async fn list_inbox(
        &self,
        org: &str,
        unread: bool,
        before: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<InboxRow>> {
        let (org, before) = (org.to_string(), before.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM inbox WHERE org_id = ?1 AND (?2 IS NULL OR id < ?2)
                   AND (NOT ?3 OR acked_at IS NULL) ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(params![org, before, unread, limit as i64], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn ack_inbox(
        &self,
        org: &str,
        id: &str,
        at: &str,
        context: &str,
    ) -> StoreResult<Option<InboxRow>> {
        let (org, id, at, context) = (
            org.to_string(),
            id.to_string(),
            at.to_string(),
            context.to_string(),
        );
        self.writer()
            .run(move |c| {
                c.execute(
                    "UPDATE inbox SET acked_at = ?3, acked_context = ?4
                     WHERE org_id = ?1 AND id = ?2 AND acked_at IS NULL",
                    params![org, id, at, context],
                )?;
                Ok(c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM inbox WHERE org_id = ?1 AND id = ?2"
                ))?
                .query_row(params![org, id], from_row)
                .optional()?)
            })
            .await
    }
}
