//! `/v1/orgs/{org_id}/kpis`: snapshots, buckets and the KPI listing (SPEC §9).
use super::AppState;
use super::extract::{Auth, Path, Query, TextBody, Write, parse_json};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::{ApiError, ApiResult};
use crate::domain::kpi::Granularity;
use crate::service::kpis::{
    BucketQuery, BucketsOut, KpiOut, SnapshotIn, SnapshotsIn, SnapshotsOut,
};
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_snapshots))
        .routes(routes!(buckets))
        .routes(routes!(list_kpis))
}

/// Record one snapshot or a batch of at most 1000 (all or none), evaluating the alert rules of
/// the KPIs they touch before answering.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/kpis/snapshots", tag = "kpis", request_body = SnapshotsIn,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("X-Request-Id" = String, Header)),
    responses((status = 200, body = SnapshotsOut)))]
async fn post_snapshots(
    State(s): State<AppState>,
    Write(who, ctx): Write,
    Path(org): Path<String>,
    body: TextBody,
) -> ApiResult<axum::Json<SnapshotsOut>> {
    if body.content_type.as_deref() != Some("application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "send Content-Type: application/json".into(),
        ));
    }
    let input = if body.text.trim_start().starts_with('[') {
        SnapshotsIn::Many(parse_json::<Vec<SnapshotIn>>(&body.text)?)
    } else {
        SnapshotsIn::One(parse_json::<SnapshotIn>(&body.text)?)
    };
    Ok(axum::Json(
        s.services.post_snapshots(&who, &ctx, &org, input).await?,
    ))
}

/// Bucket query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BucketParams {
    granularity: Granularity,
    /// Inclusive lower bound on `bucket_start` (RFC 3339).
    #[param(format = DateTime)]
    from: String,
    /// Exclusive upper bound on `bucket_start` (RFC 3339); at most 20,000 buckets after `from`.
    #[param(format = DateTime)]
    to: String,
    /// One facility; absent = org-wide (every snapshot of the KPI).
    #[param(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    facility_id: Option<String>,
}

/// Aggregates of a KPI per bucket, in time order; empty buckets are omitted.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/kpis/{kpi}/buckets", tag = "kpis",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("kpi" = String, Path, pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"), BucketParams),
    responses((status = 200, body = BucketsOut)))]
async fn buckets(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, kpi)): Path<(String, String)>,
    Query(p): Query<BucketParams>,
) -> ApiResult<axum::Json<BucketsOut>> {
    Ok(axum::Json(
        s.services
            .kpi_buckets(
                &who,
                &org,
                &BucketQuery {
                    kpi: &kpi,
                    granularity: p.granularity,
                    from: &p.from,
                    to: &p.to,
                    facility: p.facility_id.as_deref(),
                },
            )
            .await?,
    ))
}

/// Known KPIs with their latest values, by name.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/kpis", tag = "kpis",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ListParams),
    responses((status = 200, body = Page<KpiOut>)))]
async fn list_kpis(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<KpiOut>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_kpis(&who, &org, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}
