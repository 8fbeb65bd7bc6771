//! API keys on SQLite.
use super::SqliteStore;
use crate::store::{ApiKeys, KeyRow, StoreResult};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

const COLS: &str = "id, secret_hash, role, org_id, services, orgs, label, created_at, created_context, revoked_at, revoked_context";

fn row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(KeyRow {
        id: r.get(0)?,
        secret_hash: r.get(1)?,
        role: r.get(2)?,
        org_id: r.get(3)?,
        services: list(r.get(4)?),
        orgs: list(r.get(5)?),
        label: r.get(6)?,
        created_at: r.get(7)?,
        created_context: r.get(8)?,
        revoked_at: r.get(9)?,
        revoked_context: r.get(10)?,
    })
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl ApiKeys for SqliteStore {
    async fn insert_key(&self, k: KeyRow) -> StoreResult<()> {
        self.writer()
            .run(move |c| {
                c.execute(
                    &format!("INSERT INTO api_keys ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                    params![
                        k.id,
                        k.secret_hash,
                        k.role,
                        k.org_id,
                        json_list(&k.services),
                        json_list(&k.orgs),
                        k.label,
                        k.created_at,
                        k.created_context,
                        k.revoked_at,
                        k.revoked_context
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("SELECT {COLS} FROM api_keys WHERE id = ?1"))?
                    .query_row([id], row)
                    .optional()?,
            )
        })
        .await
    }

    async fn list_keys(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRow>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM api_keys WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, at: &str, context: &str) -> StoreResult<bool> {
        let (id, at, context) = (id.to_string(), at.to_string(), context.to_string());
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE api_keys SET revoked_at = ?2, revoked_context = ?3 WHERE id = ?1 AND revoked_at IS NULL",
                    params![id, at, context],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        self.read(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }
}
