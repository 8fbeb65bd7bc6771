//! KPI snapshots, rollups and alert evaluation on SQLite.
//!
//! A snapshot batch is one writer job: raw rows, rollups (pre-aggregated per bucket in memory,
//! then one upsert per touched bucket), the KPI listing, and the evaluation of every rule of the
//! touched KPIs, whose transitions append events and inbox items in the same transaction.
use super::SqliteStore;
use crate::domain::kpi::{Agg, Granularity};
use crate::domain::time::now_rfc3339;
use crate::store::StoreResult;
use crate::store::alert_eval::{self, Effects, SeriesState};
use crate::store::kpis::{
    AlertEffects, AlertRow, Alerts, BucketRow, Folded, KpiRow, Kpis, Recorded, RuleRow, SnapshotRow,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeSet;
use std::sync::Arc;

fn enum_of<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

const RULE_COLUMNS: &str = "id, org_id, kpi, facility_id, granularity, aggregate, op, threshold, clear_threshold, for_buckets, severity, deliver_to_inbox, created_at, created_context, updated_at, updated_context";

fn rule_from(r: &Row<'_>) -> rusqlite::Result<RuleRow> {
    let g: String = r.get(4)?;
    Ok(RuleRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        kpi: r.get(2)?,
        facility_id: r.get(3)?,
        granularity: enum_of(&g)?,
        aggregate: enum_of::<_>(&r.get::<_, String>(5)?)?,
        op: enum_of::<_>(&r.get::<_, String>(6)?)?,
        threshold: r.get(7)?,
        clear_threshold: r.get(8)?,
        for_buckets: r.get(9)?,
        severity: enum_of::<_>(&r.get::<_, String>(10)?)?,
        deliver_to_inbox: r.get(11)?,
        created_at: r.get(12)?,
        created_context: r.get(13)?,
        updated_at: r.get(14)?,
        updated_context: r.get(15)?,
    })
}

const ALERT_COLUMNS: &str = "id, org_id, rule_id, kpi, facility_id, state, value, threshold, bucket_start, started_at, fired_at, resolved_at, history";

fn alert_from(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        rule_id: r.get(2)?,
        kpi: r.get(3)?,
        facility_id: r.get(4)?,
        state: r.get(5)?,
        value: r.get(6)?,
        threshold: r.get(7)?,
        bucket_start: r.get(8)?,
        started_at: r.get(9)?,
        fired_at: r.get(10)?,
        resolved_at: r.get(11)?,
        history: r.get(12)?,
    })
}

fn save_alert(c: &Connection, a: &AlertRow) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, value = excluded.value,
           bucket_start = excluded.bucket_start, fired_at = excluded.fired_at,
           resolved_at = excluded.resolved_at, history = excluded.history"
    ))?
    .execute(params![
        a.id,
        a.org_id,
        a.rule_id,
        a.kpi,
        a.facility_id,
        a.state,
        a.value,
        a.threshold,
        a.bucket_start,
        a.started_at,
        a.fired_at,
        a.resolved_at,
        a.history
    ])?;
    Ok(())
}

fn read_agg(
    c: &Connection,
    org: &str,
    kpi: &str,
    fac: &str,
    gran: i64,
    bucket: i64,
) -> rusqlite::Result<Option<Agg>> {
    c.prepare_cached(
        "SELECT count, min, max, sum, last_value, last_at FROM kpi_rollups
         WHERE org_id = ?1 AND kpi = ?2 AND facility_id = ?3 AND gran = ?4 AND bucket = ?5",
    )?
    .query_row(params![org, kpi, fac, gran, bucket], agg_from(0))
    .optional()
}

fn agg_from(i: usize) -> impl Fn(&Row<'_>) -> rusqlite::Result<Agg> {
    move |r| {
        Ok(Agg {
            count: r.get(i)?,
            min: r.get(i + 1)?,
            max: r.get(i + 2)?,
            sum: r.get(i + 3)?,
            last_value: r.get(i + 4)?,
            last_at: r.get(i + 5)?,
        })
    }
}

/// Evaluates one (rule, facility) series over the buckets a write changed (see docs/kpis.md
/// and [`alert_eval`]).
fn evaluate_series(
    c: &Connection,
    rule: &RuleRow,
    fac: &str,
    changed: &BTreeSet<i64>,
    now: &str,
    effects: &dyn AlertEffects,
    out: &mut Effects,
) -> StoreResult<()> {
    let g = rule.granularity.millis();
    let org = rule.org_id.as_str();
    let (last_bucket, open_id): (i64, Option<String>) = c
        .prepare_cached(
            "SELECT last_bucket, open_alert FROM alert_series WHERE rule_id = ?1 AND facility_id = ?2",
        )?
        .query_row(params![rule.id, fac], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((i64::MIN, None));
    let open: Option<AlertRow> = match open_id {
        Some(id) => c
            .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
            .query_row([id], alert_from)
            .optional()?,
        None => None,
    };
    let head: Option<i64> = c
        .prepare_cached(
            "SELECT MAX(bucket) FROM kpi_rollups WHERE org_id = ?1 AND kpi = ?2 AND facility_id = ?3 AND gran = ?4",
        )?
        .query_row(params![org, rule.kpi, fac, g], |r| r.get(0))?;
    let Some(head) = head else { return Ok(()) };
    let candidates = alert_eval::candidates(rule, changed, head);
    let mut state = SeriesState { last_bucket, open };
    let mut lookup = |b: i64| read_agg(c, org, &rule.kpi, fac, g, b);
    let saves = alert_eval::evaluate(
        rule,
        fac,
        &candidates,
        &mut state,
        &mut lookup,
        now,
        effects,
        out,
    )?;
    for a in &saves {
        save_alert(c, a)?;
    }
    c.prepare_cached(
        "INSERT INTO alert_series (rule_id, facility_id, last_bucket, open_alert) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (rule_id, facility_id) DO UPDATE SET last_bucket = excluded.last_bucket, open_alert = excluded.open_alert",
    )?
    .execute(params![rule.id, fac, state.last_bucket, state.open.map(|a| a.id)])?;
    Ok(())
}

fn record(
    c: &Connection,
    org: &str,
    rows: &[SnapshotRow],
    effects: &dyn AlertEffects,
) -> StoreResult<(Recorded, i64)> {
    let mut raw = c.prepare_cached(
        "INSERT INTO kpi_snapshots (org_id, kpi, facility_id, observed_at, value, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for s in rows {
        let fac = s.facility_id.as_deref().unwrap_or("");
        raw.execute(params![org, s.kpi, fac, s.observed_at, s.value, s.unit])?;
    }
    let folded = Folded::fold(rows);
    let (buckets, latest) = (&folded.buckets, &folded.latest);
    let mut up = c.prepare_cached(
        "INSERT INTO kpi_rollups (org_id, kpi, facility_id, gran, bucket, count, min, max, sum, last_value, last_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (org_id, kpi, facility_id, gran, bucket) DO UPDATE SET
           count = count + excluded.count, min = MIN(min, excluded.min), max = MAX(max, excluded.max),
           sum = sum + excluded.sum,
           last_value = CASE WHEN excluded.last_at >= last_at THEN excluded.last_value ELSE last_value END,
           last_at = MAX(last_at, excluded.last_at)",
    )?;
    for ((kpi, fac, g, b), a) in buckets {
        up.execute(params![
            org,
            kpi,
            fac,
            g,
            b,
            a.count,
            a.min,
            a.max,
            a.sum,
            a.last_value,
            a.last_at
        ])?;
    }
    let mut kp = c.prepare_cached(
        "INSERT INTO kpis (org_id, kpi, unit, last_value, last_at, last_facility_id, snapshots)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (org_id, kpi) DO UPDATE SET
           unit = COALESCE(excluded.unit, unit),
           last_value = CASE WHEN excluded.last_at >= last_at THEN excluded.last_value ELSE last_value END,
           last_facility_id = CASE WHEN excluded.last_at >= last_at THEN excluded.last_facility_id ELSE last_facility_id END,
           last_at = MAX(last_at, excluded.last_at),
           snapshots = snapshots + excluded.snapshots",
    )?;
    for (kpi, (unit, a, fac)) in latest {
        kp.execute(params![
            org,
            kpi,
            unit,
            a.last_value,
            a.last_at,
            fac,
            a.count
        ])?;
    }
    // Evaluate every rule of the touched KPIs, in a fixed order (rule id, facility, bucket).
    let now = now_rfc3339();
    let mut out = Effects::new();
    let mut rules_of = c.prepare_cached(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ?1 AND kpi = ?2 ORDER BY id"
    ))?;
    for kpi in latest.keys() {
        let rules = rules_of
            .query_map(params![org, kpi], rule_from)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for rule in &rules {
            let series = folded.series_of(rule);
            for (fac, changed) in &series {
                evaluate_series(c, rule, fac, changed, &now, effects, &mut out)?;
            }
        }
    }
    let mut last = 0;
    if !out.events.is_empty() {
        let (_, seq) = super::events::append_rows(c, out.events)?;
        last = seq;
    }
    for i in &out.inbox {
        super::inbox::insert(c, i)?;
    }
    Ok((
        Recorded {
            accepted: rows.len(),
            transitions: out.transitions,
        },
        last,
    ))
}

#[async_trait]
impl Kpis for SqliteStore {
    async fn record_snapshots(
        &self,
        org: &str,
        rows: Vec<SnapshotRow>,
        effects: Arc<dyn AlertEffects>,
    ) -> StoreResult<Recorded> {
        if rows.is_empty() {
            return Ok(Recorded::default());
        }
        let org = org.to_string();
        let (rec, last) = self
            .writer()
            .run(move |c| record(c, &org, &rows, effects.as_ref()))
            .await?;
        if last > 0 {
            self.notify_commit(last);
        }
        Ok(rec)
    }

    async fn buckets(
        &self,
        org: &str,
        kpi: &str,
        facility: Option<&str>,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<BucketRow>> {
        let (org, kpi, fac) = (
            org.to_string(),
            kpi.to_string(),
            facility.unwrap_or("").to_string(),
        );
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT bucket, count, min, max, sum, last_value, last_at FROM kpi_rollups
                 WHERE org_id = ?1 AND kpi = ?2 AND facility_id = ?3 AND gran = ?4
                   AND bucket >= ?5 AND bucket < ?6 ORDER BY bucket",
            )?;
            let rows = st.query_map(
                params![org, kpi, fac, granularity.millis(), from_ms, to_ms],
                |r| {
                    Ok(BucketRow {
                        bucket_start: r.get(0)?,
                        agg: agg_from(1)(r)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn list_kpis(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<KpiRow>> {
        let (org, after) = (org.to_string(), after.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT kpi, unit, last_value, last_at, last_facility_id, snapshots FROM kpis
                 WHERE org_id = ?1 AND (?2 IS NULL OR kpi > ?2) ORDER BY kpi LIMIT ?3",
            )?;
            let rows = st.query_map(params![org, after, limit as i64], |r| {
                Ok(KpiRow {
                    kpi: r.get(0)?,
                    unit: r.get(1)?,
                    last_value: r.get(2)?,
                    last_at: r.get(3)?,
                    last_facility_id: r.get(4)?,
                    snapshots: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[async_trait]
impl Alerts for SqliteStore {
    async fn insert_rule(&self, r: RuleRow) -> StoreResult<()> {
        self.writer()
            .run(move |c| {
                c.execute(
                    &format!("INSERT INTO alert_rules ({RULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
                    params![
                        r.id, r.org_id, r.kpi, r.facility_id, r.granularity.as_str(),
                        name_of(&r.aggregate), name_of(&r.op), r.threshold, r.clear_threshold,
                        r.for_buckets, name_of(&r.severity), r.deliver_to_inbox, r.created_at,
                        r.created_context, r.updated_at, r.updated_context
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_rule(&self, org: &str, id: &str) -> StoreResult<Option<RuleRow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ?1 AND id = ?2"
            ))?
            .query_row(params![org, id], rule_from)
            .optional()?)
        })
        .await
    }

    async fn list_rules(
        &self,
        org: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<RuleRow>> {
        let (org, after) = (org.to_string(), after.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(params![org, after, limit as i64], rule_from)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn update_rule(&self, r: RuleRow) -> StoreResult<bool> {
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "UPDATE alert_rules SET facility_id = ?3, granularity = ?4, aggregate = ?5, op = ?6,
                       threshold = ?7, clear_threshold = ?8, for_buckets = ?9, severity = ?10,
                       deliver_to_inbox = ?11, updated_at = ?12, updated_context = ?13
                     WHERE org_id = ?1 AND id = ?2",
                    params![
                        r.org_id, r.id, r.facility_id, r.granularity.as_str(), name_of(&r.aggregate),
                        name_of(&r.op), r.threshold, r.clear_threshold, r.for_buckets,
                        name_of(&r.severity), r.deliver_to_inbox, r.updated_at, r.updated_context
                    ],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn delete_rule(&self, org: &str, id: &str) -> StoreResult<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        self.writer()
            .run(move |c| {
                let n = c.execute(
                    "DELETE FROM alert_rules WHERE org_id = ?1 AND id = ?2",
                    params![org, id],
                )?;
                if n == 1 {
                    c.execute("DELETE FROM alert_series WHERE rule_id = ?1", [&id])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn list_alerts(
        &self,
        org: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AlertRow>> {
        let (org, state, after) = (
            org.to_string(),
            state.map(str::to_string),
            after.map(str::to_string),
        );
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = ?1 AND (?2 IS NULL OR state = ?2)
                   AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4"
            ))?;
            let rows = st.query_map(params![org, state, after, limit as i64], alert_from)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
