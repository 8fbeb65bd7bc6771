//! The delivery queue on PostgreSQL, shared by every node: claims lock the webhook row (so the
//! nodes' claims of one webhook serialize and `max_in_flight` holds across them), pick due
//! deliveries with `FOR UPDATE SKIP LOCKED`, and lease them with a fencing token; attempt
//! records are applied only with the token of the current claim.
//!
//! Lock order (as everywhere in this backend): webhook rows (sorted by id), then delivery rows.
use super::PgStore;
use super::webhooks::as_u32;
use crate::domain::time::{format_utc, now_rfc3339};
use crate::store::{
    AttemptRecord, AttemptRow, ClaimSlot, Claimed, Deliveries, DeliveryRow, NewDelivery, Recorded,
    StoreResult,
};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio_postgres::Row;

const DCOLS: &str =
    "id, org_id, webhook_id, event_id, event_type, seq, status, attempt_count, next_attempt_at,
    last_status_code, created_at, updated_at";

fn as_u16(v: i64) -> u16 {
    u16::try_from(v.max(0)).unwrap_or(u16::MAX)
}

fn delivery(r: &Row) -> DeliveryRow {
    DeliveryRow {
        id: r.get(0),
        org_id: r.get(1),
        webhook_id: r.get(2),
        event_id: r.get(3),
        event_type: r.get(4),
        sequence: r.get(5),
        status: r.get(6),
        attempt_count: as_u32(r.get(7)),
        next_attempt_at_ms: r.get(8),
        last_status_code: r.get::<_, Option<i64>>(9).map(as_u16),
        created_at: r.get(10),
        updated_at: r.get(11),
    }
}

async fn claim_tx(
    tx: &Transaction<'_>,
    now: i64,
    lease_ms: i64,
    claimer: &str,
    slots: Vec<ClaimSlot>,
) -> StoreResult<Vec<Claimed>> {
    let slots: Vec<ClaimSlot> = slots.into_iter().filter(|s| s.free > 0).collect();
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    // Lock the slots' active webhooks in id order: another node claiming (or recording) for the
    // same webhook waits until this transaction ends, so the leased count below stays true.
    let ids: Vec<&str> = slots.iter().map(|s| s.webhook_id.as_str()).collect();
    let active: HashMap<String, i64> = tx
        .query(
            "SELECT id, max_in_flight FROM webhooks WHERE id = ANY($1) AND status = 'active'
             ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Deliveries in flight anywhere: leased and the lease not over (`lease_until >= now` is
    // exactly "not claimable because of its lease").
    let leased = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries WHERE webhook_id = $1 AND lease_until IS NOT NULL
               AND lease_until >= $2 AND status IN ('pending', 'failed')",
        )
        .await?;
    let due = tx
        .prepare_cached(
            "SELECT id FROM deliveries WHERE webhook_id = $1 AND status IN ('pending', 'failed')
               AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
             ORDER BY next_attempt_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let head = tx
        .prepare_cached(
            "SELECT id FROM deliveries WHERE webhook_id = $1 AND status IN ('pending', 'failed')
             ORDER BY seq, id LIMIT 1",
        )
        .await?;
    // Re-checked on the locked row version.
    let lock_head = tx
        .prepare_cached(
            "SELECT id FROM deliveries WHERE id = $1 AND status IN ('pending', 'failed')
               AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
             FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let lease = tx
        .prepare_cached(
            "UPDATE deliveries SET lease_until = $2, claimed_by = $3, lease_token = lease_token + 1
             WHERE id = $1
             RETURNING org_id, webhook_id, event_id, event_type, attempt_count, lease_token, body,
               seq, ingested_at",
        )
        .await?;
    let event_body = tx
        .prepare_cached("SELECT body FROM events WHERE seq = $1 AND org_id = $2")
        .await?;
    let mut out = Vec::new();
    for slot in slots {
        let Some(&max) = active.get(&slot.webhook_id) else {
            continue;
        };
        let in_flight: i64 = tx
            .query_one(&leased, &[&slot.webhook_id, &now])
            .await?
            .get(0);
        let room = (max - in_flight).min(i64::from(slot.free));
        if room <= 0 {
            continue;
        }
        let ids: Vec<String> = if slot.ordered {
            // Only the head, and only while nothing of this webhook is in flight on any node.
            if in_flight > 0 {
                continue;
            }
            let Some(h) = tx.query_opt(&head, &[&slot.webhook_id]).await? else {
                continue;
            };
            let id: String = h.get(0);
            tx.query_opt(&lock_head, &[&id, &now])
                .await?
                .map(|r| r.get(0))
                .into_iter()
                .collect()
        } else {
            tx.query(&due, &[&slot.webhook_id, &now, &room])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        for id in ids {
            let r = tx
                .query_one(&lease, &[&id, &(now + lease_ms), &claimer])
                .await?;
            let org_id: String = r.get(0);
            let body: Option<String> = match r.get::<_, Option<String>>(6) {
                Some(b) => Some(b),
                None => tx
                    .query_opt(&event_body, &[&r.get::<_, i64>(7), &org_id])
                    .await?
                    .map(|e| e.get(0)),
            };
            out.push(Claimed {
                id,
                org_id,
                webhook_id: r.get(1),
                event_id: r.get(2),
                event_type: r.get(3),
                attempt: as_u32(r.get(4)).saturating_add(1),
                lease_token: r.get(5),
                body,
                ingested_at_ms: r.get(8),
            });
        }
    }
    Ok(out)
}

async fn record_tx(
    tx: &Transaction<'_>,
    now_ms: i64,
    records: Vec<AttemptRecord>,
) -> StoreResult<Vec<Recorded>> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(format_utc)
        .unwrap_or_else(now_rfc3339);
    // Webhook rows first (sorted), as claims do, so the two never deadlock.
    let mut wids: Vec<&str> = records.iter().map(|r| r.webhook_id.as_str()).collect();
    wids.sort_unstable();
    wids.dedup();
    tx.execute(
        "SELECT 1 FROM webhooks WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&wids],
    )
    .await?;
    let upd = tx
        .prepare_cached(
            "UPDATE deliveries SET
               status = CASE WHEN $2::text IN ('failed', 'pending')
                              AND COALESCE((SELECT status FROM webhooks WHERE id = $3), 'revoked') <> 'active'
                             THEN 'held' ELSE $2::text END,
               attempt_count = $4, next_attempt_at = COALESCE($5, next_attempt_at),
               lease_until = NULL, claimed_by = NULL, last_status_code = $6, updated_at = $7
             WHERE id = $1 AND lease_token = $8",
        )
        .await?;
    let ins = tx
        .prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms,
               status_code, error, response_body_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = excluded.started_at,
               duration_ms = excluded.duration_ms, status_code = excluded.status_code,
               error = excluded.error, response_body_excerpt = excluded.response_body_excerpt",
        )
        .await?;
    let ok = tx
        .prepare_cached(
            "UPDATE webhooks SET consecutive_failures = 0, first_failure_at = NULL,
               last_success_at = $2 WHERE id = $1",
        )
        .await?;
    let bad = tx
        .prepare_cached(
            "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
               first_failure_at = COALESCE(first_failure_at, $2), total_failures = total_failures + 1,
               last_failure_at = $3 WHERE id = $1",
        )
        .await?;
    let health = tx
        .prepare_cached("SELECT consecutive_failures, first_failure_at FROM webhooks WHERE id = $1")
        .await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let a = &r.attempt;
        let attempt = i64::from(a.attempt);
        let code = a.status_code.map(i64::from);
        let n = tx
            .execute(
                &upd,
                &[
                    &r.delivery_id,
                    &r.new_status,
                    &r.webhook_id,
                    &attempt,
                    &r.next_attempt_at_ms,
                    &code,
                    &now,
                    &r.lease_token,
                ],
            )
            .await?;
        if n == 1 {
            tx.execute(
                &ins,
                &[
                    &r.delivery_id,
                    &attempt,
                    &a.started_at,
                    &(a.duration_ms as i64),
                    &code,
                    &a.error,
                    &a.response_body_excerpt,
                ],
            )
            .await?;
            if r.success {
                tx.execute(&ok, &[&r.webhook_id, &now]).await?;
            } else {
                tx.execute(&bad, &[&r.webhook_id, &r.started_ms, &now])
                    .await?;
            }
        }
        let (cf, first) = match tx.query_opt(&health, &[&r.webhook_id]).await? {
            Some(h) => (as_u32(h.get(0)), h.get(1)),
            None => (0, None),
        };
        out.push(Recorded {
            webhook_id: r.webhook_id,
            applied: n == 1,
            consecutive_failures: cf,
            first_failure_at_ms: first,
        });
    }
    Ok(out)
}

#[async_trait]
impl Deliveries for PgStore {
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let now = chrono::Utc::now();
        let (ms, at) = (now.timestamp_millis(), format_utc(now));
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let ins = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, org_id, webhook_id, event_id, event_type, seq, body,
                   status, next_attempt_at, ingested_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10)",
            )
            .await?;
        let mut n = 0;
        for r in rows {
            n += tx
                .execute(
                    &ins,
                    &[
                        &r.id,
                        &r.org_id,
                        &r.webhook_id,
                        &r.event_id,
                        &r.event_type,
                        &r.sequence,
                        &r.body,
                        &ms,
                        &r.ingested_at_ms,
                        &at,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        claimer: &str,
        slots: Vec<ClaimSlot>,
    ) -> StoreResult<Vec<Claimed>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let out = claim_tx(&tx, now_ms, lease_ms, claimer, slots).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn record(&self, now_ms: i64, records: Vec<AttemptRecord>) -> StoreResult<Vec<Recorded>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let out = record_tx(&tx, now_ms, records).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Drops nothing. On SQLite one process owns the queue, so at start every lease belongs to
    /// a dead process; here other live nodes hold leases on the same table, and dropping them
    /// would let a second node send a delivery that is still in flight. A lease of a crashed node
    /// simply expires: claims treat `lease_until < now` as free and `next_due_ms` reports it.
    async fn release_leases(&self) -> StoreResult<u64> {
        Ok(0)
    }

    /// Like SQLite, but a leased delivery counts as due when its lease ends (leases are not
    /// dropped at start here, so a crashed node's leases must still wake a worker).
    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT MIN(GREATEST(d.next_attempt_at, COALESCE(d.lease_until + 1, d.next_attempt_at)))
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE w.status = 'active' AND d.status IN ('pending', 'failed')",
            &[],
        )
        .await?
        .get(0))
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        let c = self.conn().await?;
        Ok(c.query_one(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed', 'held')",
            &[],
        )
        .await?
        .get(0))
    }

    async fn list_deliveries(
        &self,
        org: &str,
        webhook_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE webhook_id = $1 AND org_id = $2 AND id > $3
                   AND ($4::text IS NULL OR status = $4) ORDER BY id LIMIT $5"
            ))
            .await?;
        let rows = c
            .query(
                &st,
                &[
                    &webhook_id,
                    &org,
                    &after.unwrap_or(""),
                    &status,
                    &(limit as i64),
                ],
            )
            .await?;
        Ok(rows.iter().map(delivery).collect())
    }

    async fn get_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<DeliveryRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE id = $1 AND org_id = $2 AND webhook_id = $3"
            ))
            .await?;
        Ok(c.query_opt(&st, &[&id, &org, &webhook_id])
            .await?
            .as_ref()
            .map(delivery))
    }

    async fn delivery_attempts(&self, org: &str, id: &str) -> StoreResult<Vec<AttemptRow>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT a.attempt, a.started_at, a.duration_ms, a.status_code, a.error,
                   a.response_body_excerpt
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE a.delivery_id = $1 AND d.org_id = $2 ORDER BY a.attempt",
            )
            .await?;
        let rows = c.query(&st, &[&id, &org]).await?;
        Ok(rows
            .iter()
            .map(|r| AttemptRow {
                attempt: as_u32(r.get(0)),
                started_at: r.get(1),
                duration_ms: r.get::<_, i64>(2).max(0) as u64,
                status_code: r.get::<_, Option<i64>>(3).map(as_u16),
                error: r.get(4),
                response_body_excerpt: r.get(5),
            })
            .collect())
    }

    async fn retry_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<DeliveryRow>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // The webhook row first (lock order), so a concurrent pause cannot slip between reading
        // its status and writing the delivery.
        let active = tx
            .query_opt(
                "SELECT status = 'active' FROM webhooks WHERE id = $1 AND org_id = $2 FOR SHARE",
                &[&webhook_id, &org],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        let st = tx
            .prepare_cached(&format!(
                "UPDATE deliveries SET status = CASE WHEN $4 THEN 'pending' ELSE 'held' END,
                   next_attempt_at = $5, updated_at = $6
                 WHERE id = $1 AND org_id = $2 AND webhook_id = $3
                   AND (lease_until IS NULL OR lease_until < $5)
                 RETURNING {DCOLS}"
            ))
            .await?;
        let row = tx
            .query_opt(
                &st,
                &[&id, &org, &webhook_id, &active, &now_ms, &now_rfc3339()],
            )
            .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(delivery))
    }
}
