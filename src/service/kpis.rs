//! KPI snapshots, buckets and the KPI listing (SPEC §9). Snapshot writes evaluate alert rules
//! inside the same store transaction (see [`super::alerts::AlertEventBuilder`]).
use super::alerts::AlertEventBuilder;
use super::webhooks::Listed;
use super::{ServiceError, Services};
use crate::domain::FieldError;
use crate::domain::auth::{Principal, Role};
use crate::domain::context::RequestContext;
use crate::domain::kpi::Granularity;
use crate::domain::names::check_scope_id;
use crate::domain::time::{format_utc, parse_rfc3339};
use crate::store::kpis::SnapshotRow;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most snapshots in one request.
pub const MAX_SNAPSHOTS: usize = 1000;
/// Largest snapshot magnitude (sums of a bucket stay finite).
pub const MAX_VALUE: f64 = 1e15;
/// Most buckets one query may span.
pub const MAX_BUCKETS: i64 = 20_000;

/// One KPI snapshot.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotIn {
    /// Lower-case dot-separated name, e.g. `orders.fill_rate`.
    #[schema(pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length = 128)]
    pub kpi: String,
    /// At most 1e15 in magnitude, so sums stay finite.
    #[schema(minimum = -1e15, maximum = 1e15)]
    pub value: f64,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub observed_at: String,
    /// The facility measured; absent = org-level only. `each` is reserved.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub facility_id: Option<String>,
    #[schema(max_length = 64)]
    pub unit: Option<String>,
}

/// One snapshot or a batch.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SnapshotsIn {
    One(SnapshotIn),
    Many(Vec<SnapshotIn>),
}

/// What a snapshot write did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotsOut {
    pub accepted: usize,
    /// Alert transitions (pending, firing, resolved) the write caused.
    pub alert_transitions: usize,
}

/// One bucket.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BucketOut {
    pub bucket_start: String,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub sum: f64,
    /// The value with the latest `observed_at`.
    pub last: f64,
}

/// `{data: [...]}` of buckets, in time order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BucketsOut {
    pub data: Vec<BucketOut>,
}

/// A known KPI.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KpiOut {
    pub kpi: String,
    pub unit: Option<String>,
    pub last_value: f64,
    pub last_observed_at: String,
    pub last_facility_id: Option<String>,
    pub snapshots: i64,
}

/// A bucket query: `from <= bucket_start < to`; `facility` None = org-wide.
#[derive(Debug, Clone, Copy)]
pub struct BucketQuery<'a> {
    pub kpi: &'a str,
    pub granularity: Granularity,
    pub from: &'a str,
    pub to: &'a str,
    pub facility: Option<&'a str>,
}

/// Checks a KPI name: dot-separated `[a-z0-9_]` segments, at most 128 characters.
pub fn check_kpi(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err("must be dot-separated lower-case [a-z0-9_] segments, at most 128 characters".into())
    }
}

pub(crate) fn ns_to_rfc3339(ns: i64) -> String {
    format_utc(chrono::DateTime::from_timestamp_nanos(ns))
}

pub(crate) fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(format_utc)
        .unwrap_or_default()
}

fn parse_snapshot(
    prefix: &str,
    s: SnapshotIn,
    errors: &mut Vec<FieldError>,
) -> Option<SnapshotRow> {
    let before = errors.len();
    let f = |name: &str| format!("{prefix}{name}");
    if let Err(m) = check_kpi(&s.kpi) {
        errors.push(FieldError::new(f("kpi"), m));
    }
    if !(s.value.is_finite() && s.value.abs() <= MAX_VALUE) {
        errors.push(FieldError::new(
            f("value"),
            "must be a finite number of magnitude at most 1e15",
        ));
    }
    let at = match parse_rfc3339(&s.observed_at) {
        Ok(i) => i.unix_nanos,
        Err(m) => {
            errors.push(FieldError::new(f("observed_at"), m));
            0
        }
    };
    if let Some(fac) = &s.facility_id {
        if let Err(m) = check_scope_id(fac) {
            errors.push(FieldError::new(f("facility_id"), m));
        } else if fac == "each" {
            errors.push(FieldError::new(
                f("facility_id"),
                "`each` is reserved for alert rules",
            ));
        }
    }
    if s.unit
        .as_ref()
        .is_some_and(|u| u.is_empty() || u.len() > 64)
    {
        errors.push(FieldError::new(f("unit"), "must be 1..64 characters"));
    }
    (errors.len() == before).then_some(SnapshotRow {
        kpi: s.kpi,
        facility_id: s.facility_id,
        observed_at: at,
        value: s.value,
        unit: s.unit,
    })
}

/// Publishers may post snapshots for the orgs in their scope; org admins for their org.
fn can_post(who: &Principal, org: &str) -> Result<(), ServiceError> {
    let ok = match who.role {
        Role::Admin => true,
        Role::OrgAdmin => who.org_id.as_deref() == Some(org),
        Role::Publisher => who.orgs.is_empty() || who.orgs.iter().any(|o| o == org),
        Role::Reader => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

impl Services {
    /// Records snapshots (all or none) and evaluates the rules they touch.
    pub async fn post_snapshots(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        input: SnapshotsIn,
    ) -> Result<SnapshotsOut, ServiceError> {
        can_post(who, org)?;
        check_scope_id(org)
            .map_err(|m| ServiceError::Validation(vec![FieldError::new("org_id", m)]))?;
        let mut errors = Vec::new();
        let rows: Vec<SnapshotRow> = match input {
            SnapshotsIn::One(s) => parse_snapshot("", s, &mut errors).into_iter().collect(),
            SnapshotsIn::Many(v) => {
                if v.len() > MAX_SNAPSHOTS {
                    return Err(ServiceError::PayloadTooLarge(format!(
                        "a batch holds at most {MAX_SNAPSHOTS} snapshots, got {}",
                        v.len()
                    )));
                }
                if v.is_empty() {
                    errors.push(FieldError::new("body", "the batch is empty"));
                }
                v.into_iter()
                    .enumerate()
                    .filter_map(|(i, s)| parse_snapshot(&format!("[{i}]."), s, &mut errors))
                    .collect()
            }
        };
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let effects = Arc::new(AlertEventBuilder::new(
            self.validator.clone(),
            ctx.to_json(),
        ));
        let r = self.store.record_snapshots(org, rows, effects).await?;
        Ok(SnapshotsOut {
            accepted: r.accepted,
            alert_transitions: r.transitions,
        })
    }

    /// Buckets of a KPI with `from <= bucket_start < to`, per facility or org-wide.
    pub async fn kpi_buckets(
        &self,
        who: &Principal,
        org: &str,
        q: &BucketQuery<'_>,
    ) -> Result<BucketsOut, ServiceError> {
        who.can_read_org(org)?;
        let BucketQuery {
            kpi,
            granularity,
            from,
            to,
            facility,
        } = *q;
        let mut errors = Vec::new();
        if let Err(m) = check_kpi(kpi) {
            errors.push(FieldError::new("kpi", m));
        }
        if let Some(Err(m)) = facility.map(check_scope_id) {
            errors.push(FieldError::new("facility_id", m));
        }
        let mut ms = |name: &str, v: &str| match parse_rfc3339(v) {
            Ok(i) => i.unix_nanos.div_euclid(1_000_000),
            Err(m) => {
                errors.push(FieldError::new(name, m));
                0
            }
        };
        let (from_ms, to_ms) = (ms("from", from), ms("to", to));
        if errors.is_empty() {
            if from_ms >= to_ms {
                errors.push(FieldError::new("to", "must be after `from`"));
            } else if (to_ms - from_ms) / granularity.millis() > MAX_BUCKETS {
                errors.push(FieldError::new(
                    "to",
                    format!("the range spans more than {MAX_BUCKETS} buckets of this granularity"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let rows = self
            .store
            .buckets(org, kpi, facility, granularity, from_ms, to_ms)
            .await?;
        Ok(BucketsOut {
            data: rows
                .into_iter()
                .map(|b| BucketOut {
                    bucket_start: ms_to_rfc3339(b.bucket_start),
                    count: b.agg.count,
                    min: b.agg.min,
                    max: b.agg.max,
                    avg: b.agg.avg(),
                    sum: b.agg.sum,
                    last: b.agg.last_value,
                })
                .collect(),
        })
    }

    /// Known KPIs of the org, by name, with their latest values.
    pub async fn list_kpis(
        &self,
        who: &Principal,
        org: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<KpiOut>, ServiceError> {
        who.can_read_org(org)?;
        let after = match cursor {
            Some(c) => Some(
                self.cursors
                    .decode("kpis", org.as_bytes(), c)
                    .map_err(|_| ServiceError::InvalidCursor)?,
            ),
            None => None,
        };
        let mut rows = self
            .store
            .list_kpis(org, after.as_deref(), limit + 1)
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last()
                .map(|r| self.cursors.encode("kpis", org.as_bytes(), &r.kpi))
        } else {
            None
        };
        Ok(Listed {
            items: rows
                .into_iter()
                .map(|r| KpiOut {
                    kpi: r.kpi,
                    unit: r.unit,
                    last_value: r.last_value,
                    last_observed_at: ns_to_rfc3339(r.last_at),
                    last_facility_id: r.last_facility_id,
                    snapshots: r.snapshots,
                })
                .collect(),
            next_cursor,
        })
    }
}
