//! API keys on PostgreSQL.
use super::PgStore;
use crate::store::{ApiKeys, KeyRow, StoreResult};
use async_trait::async_trait;
use tokio_postgres::Row;

const COLS: &str = "id, secret_hash, role, org_id, services, orgs, label, created_at, created_context, revoked_at, revoked_context";

fn row(r: &Row) -> KeyRow {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    KeyRow {
        id: r.get(0),
        secret_hash: r.get(1),
        role: r.get(2),
        org_id: r.get(3),
        services: list(r.get(4)),
        orgs: list(r.get(5)),
        label: r.get(6),
        created_at: r.get(7),
        created_context: r.get(8),
        revoked_at: r.get(9),
        revoked_context: r.get(10),
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl ApiKeys for PgStore {
    async fn insert_key(&self, k: KeyRow) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(
            &format!(
                "INSERT INTO api_keys ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &k.id,
                &k.secret_hash,
                &k.role,
                &k.org_id,
                &json_list(&k.services),
                &json_list(&k.orgs),
                &k.label,
                &k.created_at,
                &k.created_context,
                &k.revoked_at,
                &k.revoked_context,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!("SELECT {COLS} FROM api_keys WHERE id = $1"))
            .await?;
        Ok(c.query_opt(&st, &[&id]).await?.as_ref().map(row))
    }

    async fn list_keys(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRow>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!("SELECT {COLS} FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&after.unwrap_or(""), &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    async fn revoke_key(&self, id: &str, at: &str, context: &str) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE api_keys SET revoked_at = $2, revoked_context = $3 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &at, &context],
            )
            .await?;
        Ok(n == 1)
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        let c = self.conn().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM api_keys", &[])
            .await?
            .get(0);
        Ok(n as u64)
    }
}
