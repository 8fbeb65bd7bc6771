//! The delivery queue on SQLite: durable fan-out inside the append transaction, leased claims
//! with a fencing token, batched attempt records.
use super::SqliteStore;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::time::{format_utc, now_rfc3339};
use crate::store::fanout::Subscription;
use crate::store::{
    AttemptRecord, AttemptRow, ClaimSlot, Claimed, Deliveries, DeliveryRow, EventRow, NewDelivery,
    Recorded, StoreResult,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashMap;

/// Fan-out of one append job: loads each org's active and paused webhooks once, then inserts one
/// delivery per (accepted event, matching webhook) in the same transaction as the events —
/// `pending` for active webhooks, `held` for paused ones (delivered or skipped on enable).
#[derive(Default)]
pub(crate) struct FanOut {
    subs: HashMap<String, Vec<Subscription>>,
    created_at: Option<String>,
}

impl FanOut {
    pub(crate) fn add(
        &mut self,
        c: &Connection,
        r: &EventRow,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        if !self.subs.contains_key(&r.org_id) {
            let mut st = c.prepare_cached(
                "SELECT id, filters, status = 'paused' FROM webhooks
                 WHERE org_id = ?1 AND status IN ('active', 'paused')",
            )?;
            let rows = st.query_map([&r.org_id], |x| {
                Ok((
                    x.get::<_, String>(0)?,
                    x.get::<_, String>(1)?,
                    x.get::<_, bool>(2)?,
                ))
            })?;
            let mut subs = Vec::new();
            for row in rows {
                let (id, filters, paused) = row?;
                subs.extend(Subscription::parse(id, &filters, paused));
            }
            self.subs.insert(r.org_id.clone(), subs);
        }
        let Some(subs) = self.subs.get(&r.org_id) else {
            return Ok(());
        };
        if subs.is_empty() {
            return Ok(());
        }
        let created_at = self
            .created_at
            .get_or_insert_with(|| {
                chrono::DateTime::from_timestamp_millis(now_ms)
                    .map(format_utc)
                    .unwrap_or_default()
            })
            .clone();
        let mut ins = c.prepare_cached(INSERT)?;
        for s in subs {
            if s.matches(r) {
                ins.execute(params![
                    new_id(IdKind::Delivery),
                    r.org_id,
                    s.id,
                    r.id,
                    r.event_type,
                    seq,
                    Option::<String>::None,
                    now_ms,
                    now_ms,
                    created_at,
                    s.initial_status()
                ])?;
            }
        }
        Ok(())
    }
}

const INSERT: &str =
    "INSERT INTO deliveries (id, org_id, webhook_id, event_id, event_type, seq, body, status,
    next_attempt_at, ingested_at, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?11, ?8, ?9, ?10, ?10)";

const DCOLS: &str =
    "id, org_id, webhook_id, event_id, event_type, seq, status, attempt_count, next_attempt_at,
    last_status_code, created_at, updated_at";

fn delivery(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        webhook_id: r.get(2)?,
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        sequence: r.get(5)?,
        status: r.get(6)?,
        attempt_count: r.get(7)?,
        next_attempt_at_ms: r.get(8)?,
        last_status_code: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

fn claim_tx(
    c: &Connection,
    now: i64,
    lease_ms: i64,
    claimer: &str,
    slots: Vec<ClaimSlot>,
) -> StoreResult<Vec<Claimed>> {
    let mut out = Vec::new();
    let mut due = c.prepare_cached(
        "SELECT id FROM deliveries WHERE webhook_id = ?1 AND status IN ('pending', 'failed')
           AND next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until < ?2)
         ORDER BY next_attempt_at, seq LIMIT ?3",
    )?;
    let mut head = c.prepare_cached(
        "SELECT id, next_attempt_at, lease_until FROM deliveries
         WHERE webhook_id = ?1 AND status IN ('pending', 'failed') ORDER BY seq, id LIMIT 1",
    )?;
    let mut lease = c.prepare_cached(
        "UPDATE deliveries SET lease_until = ?2, claimed_by = ?3, lease_token = lease_token + 1
         WHERE id = ?1
         RETURNING org_id, webhook_id, event_id, event_type, attempt_count, lease_token, body, seq, ingested_at",
    )?;
    let mut event_body =
        c.prepare_cached("SELECT body FROM events WHERE seq = ?1 AND org_id = ?2")?;
    let mut active =
        c.prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1 AND status = 'active'")?;
    for slot in slots {
        if slot.free == 0 {
            continue;
        }
        // The worker's webhook list may be a little stale (it is cached): only the store's
        // current status decides, so a paused or revoked webhook's delivery is never leased.
        if !active.exists([&slot.webhook_id])? {
            continue;
        }
        let ids: Vec<String> = if slot.ordered {
            let h: Option<(String, i64, Option<i64>)> = head
                .query_row([&slot.webhook_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            match h {
                Some((id, next, lease_until))
                    if next <= now && lease_until.is_none_or(|l| l < now) =>
                {
                    vec![id]
                }
                _ => vec![],
            }
        } else {
            due.query_map(params![slot.webhook_id, now, slot.free as i64], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for id in ids {
            let (org_id, webhook_id, event_id, event_type, attempts, token, body, seq, ingested): (
                String,
                String,
                String,
                String,
                u32,
                i64,
                Option<String>,
                i64,
                i64,
            ) = lease.query_row(params![id, now + lease_ms, claimer], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?;
            let body = match body {
                Some(b) => Some(b),
                None => event_body
                    .query_row(params![seq, org_id], |r| r.get(0))
                    .optional()?,
            };
            out.push(Claimed {
                id,
                org_id,
                webhook_id,
                event_id,
                event_type,
                attempt: attempts + 1,
                lease_token: token,
                body,
                ingested_at_ms: ingested,
            });
        }
    }
    Ok(out)
}

fn record_tx(
    c: &Connection,
    now_ms: i64,
    records: Vec<AttemptRecord>,
) -> StoreResult<Vec<Recorded>> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(format_utc)
        .unwrap_or_else(now_rfc3339);
    let mut upd = c.prepare_cached(
        "UPDATE deliveries SET
           status = CASE WHEN ?2 NOT IN ('failed', 'pending') THEN ?2
                         ELSE CASE COALESCE((SELECT status FROM webhooks WHERE id = ?3), 'revoked')
                           WHEN 'active' THEN ?2 WHEN 'paused' THEN 'held' ELSE 'skipped' END
                         END,
           attempt_count = ?4, next_attempt_at = COALESCE(?5, next_attempt_at), lease_until = NULL,
           claimed_by = NULL, last_status_code = ?6, updated_at = ?7
         WHERE id = ?1 AND lease_token = ?8",
    )?;
    let mut ins = c.prepare_cached(
        "INSERT OR REPLACE INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code,
           error, response_body_excerpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut ok = c.prepare_cached(
        "UPDATE webhooks SET consecutive_failures = 0, first_failure_at = NULL, last_success_at = ?2 WHERE id = ?1",
    )?;
    let mut bad = c.prepare_cached(
        "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
           first_failure_at = COALESCE(first_failure_at, ?2), total_failures = total_failures + 1,
           last_failure_at = ?3 WHERE id = ?1",
    )?;
    let mut health = c.prepare_cached(
        "SELECT consecutive_failures, first_failure_at FROM webhooks WHERE id = ?1",
    )?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let a = &r.attempt;
        let n = upd.execute(params![
            r.delivery_id,
            r.new_status,
            r.webhook_id,
            a.attempt,
            r.next_attempt_at_ms,
            a.status_code,
            now,
            r.lease_token
        ])?;
        if n == 1 {
            ins.execute(params![
                r.delivery_id,
                a.attempt,
                a.started_at,
                a.duration_ms as i64,
                a.status_code,
                a.error,
                a.response_body_excerpt
            ])?;
            if r.success {
                ok.execute(params![r.webhook_id, now])?;
            } else {
                bad.execute(params![r.webhook_id, r.started_ms, now])?;
            }
        }
        let (cf, first): (u32, Option<i64>) = health
            .query_row([&r.webhook_id], |x| Ok((x.get(0)?, x.get(1)?)))
            .optional()?
            .unwrap_or((0, None));
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
impl Deliveries for SqliteStore {
    async fn enqueue(&self, rows: Vec<NewDelivery>) -> StoreResult<u64> {
        self.writer()
            .run(move |c| {
                let now = chrono::Utc::now();
                let (ms, at) = (now.timestamp_millis(), format_utc(now));
                let mut ins = c.prepare_cached(INSERT)?;
                let mut n = 0;
                for r in rows {
                    n += ins.execute(params![
                        r.id,
                        r.org_id,
                        r.webhook_id,
                        r.event_id,
                        r.event_type,
                        r.sequence,
                        r.body,
                        ms,
                        r.ingested_at_ms,
                        at,
                        "pending"
                    ])? as u64;
                }
                Ok(n)
            })
            .await
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        claimer: &str,
        slots: Vec<ClaimSlot>,
    ) -> StoreResult<Vec<Claimed>> {
        let claimer = claimer.to_string();
        // Relaxed: a claim lost in an OS crash only means the delivery is sent again.
        self.writer()
            .run_relaxed(move |c| claim_tx(c, now_ms, lease_ms, &claimer, slots))
            .await
    }

    async fn record(&self, now_ms: i64, records: Vec<AttemptRecord>) -> StoreResult<Vec<Recorded>> {
        // Relaxed: an attempt record lost in an OS crash (not a process crash) only means the
        // delivery is attempted again with the same webhook-id, which at-least-once allows.
        self.writer()
            .run_relaxed(move |c| record_tx(c, now_ms, records))
            .await
    }

    async fn unlease(&self, claims: Vec<(String, i64)>) -> StoreResult<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        // Relaxed like the claim it undoes: a lost give-back only means the lease lapses.
        self.writer()
            .run_relaxed(move |c| {
                let mut st = c.prepare_cached(
                    "UPDATE deliveries SET lease_until = NULL, claimed_by = NULL
                     WHERE id = ?1 AND lease_token = ?2 AND lease_until IS NOT NULL",
                )?;
                let mut n = 0u64;
                for (id, token) in &claims {
                    n += st.execute(rusqlite::params![id, token])? as u64;
                }
                Ok(n)
            })
            .await
    }

    async fn release_leases(&self, _node: &str) -> StoreResult<u64> {
        self.writer()
            .run(|c| {
                Ok(c.execute(
                    "UPDATE deliveries SET lease_until = NULL, claimed_by = NULL WHERE lease_until IS NOT NULL",
                    [],
                )? as u64)
            })
            .await
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN((SELECT MIN(next_attempt_at) FROM deliveries d
                             WHERE d.webhook_id = w.id AND d.status IN ('pending', 'failed')
                               AND d.lease_until IS NULL))
                 FROM webhooks w WHERE w.status = 'active'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'failed'))
                      + (SELECT COUNT(*) FROM deliveries WHERE status = 'held')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        org: &str,
        webhook_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let (org, wid) = (org.to_string(), webhook_id.to_string());
        let (status, after) = (status.map(str::to_string), after.unwrap_or("").to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE webhook_id = ?1 AND org_id = ?2 AND id > ?3
                   AND (?4 IS NULL OR status = ?4) ORDER BY id LIMIT ?5"
            ))?;
            let rows = st.query_map(params![wid, org, after, status, limit as i64], delivery)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<DeliveryRow>> {
        let (org, wid, id) = (org.to_string(), webhook_id.to_string(), id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DCOLS} FROM deliveries WHERE id = ?1 AND org_id = ?2 AND webhook_id = ?3"
            ))?
            .query_row(params![id, org, wid], delivery)
            .optional()?)
        })
        .await
    }

    async fn delivery_attempts(&self, org: &str, id: &str) -> StoreResult<Vec<AttemptRow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT a.attempt, a.started_at, a.duration_ms, a.status_code, a.error, a.response_body_excerpt
                 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE a.delivery_id = ?1 AND d.org_id = ?2 ORDER BY a.attempt",
            )?;
            let rows = st.query_map(params![id, org], |r| {
                Ok(AttemptRow {
                    attempt: r.get(0)?,
                    started_at: r.get(1)?,
                    duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    status_code: r.get(3)?,
                    error: r.get(4)?,
                    response_body_excerpt: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn retry_delivery(
        &self,
        org: &str,
        webhook_id: &str,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<DeliveryRow>> {
        let (org, wid, id) = (org.to_string(), webhook_id.to_string(), id.to_string());
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE deliveries SET
                       status = CASE WHEN (SELECT status FROM webhooks WHERE id = ?3) = 'active' THEN 'pending' ELSE 'held' END,
                       next_attempt_at = ?4, updated_at = ?5
                     WHERE id = ?1 AND org_id = ?2 AND webhook_id = ?3 AND (lease_until IS NULL OR lease_until < ?4)",
                    params![id, org, wid, now_ms, now_rfc3339()],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                Ok(c.prepare_cached(&format!("SELECT {DCOLS} FROM deliveries WHERE id = ?1"))?
                    .query_row([&id], delivery)
                    .optional()?)
            })
            .await
    }
}
