//! `GET /v1/orgs/{org_id}/cdc`.
use super::AppState;
use super::extract::{Auth, Path, Query};
use super::pagination;
use super::problem::{ApiError, ApiResult};
use crate::domain::filter::{EventFilter, FilterInput};
use crate::service::ServiceError;
use crate::service::cdc::{CdcQuery, MAX_WAIT_SECS};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cdc))
}

/// CDC query parameters. Unknown parameters are refused with 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CdcParams {
    /// Service filter (repeatable).
    #[serde(default)]
    #[param(inline, value_type = Option<Vec<String>>, pattern = r"^[a-z0-9_]{1,64}$")]
    service: Vec<String>,
    /// Event type filter (repeatable); `orders.*` prefix form allowed.
    #[serde(default)]
    #[param(inline, value_type = Option<Vec<String>>)]
    event_type: Vec<String>,
    #[param(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    channel_id: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    facility_id: Option<String>,
    /// `occurred_at >= since` (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// `occurred_at < until` (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// From the previous page's `next_cursor`; bound to the same filters.
    cursor: Option<String>,
    /// Long-poll seconds (0..=30) when the page would be empty.
    #[param(minimum = 0, maximum = 30)]
    wait: Option<u64>,
}

/// One page of the CDC feed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CdcPageOut {
    /// Stored envelopes (SPEC §1 plus `id`, `sequence`, `ingested_at`, `service`), ascending `sequence`.
    #[schema(value_type = Vec<Object>)]
    data: Vec<serde_json::Value>,
    /// Where to continue; present even on an empty page.
    next_cursor: String,
    has_more: bool,
}

/// Page an org's event stream in commit order, with filters, cursors and long-poll.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/cdc", tag = "cdc",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), CdcParams),
    responses((status = 200, body = CdcPageOut),
        (status = 410, description = "cursor before the retained range", body = super::problem::Problem, content_type = "application/problem+json")))]
async fn cdc(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<CdcParams>,
) -> ApiResult<Response> {
    who.can_read_org(&org).map_err(ServiceError::from)?;
    let limit = pagination::limit(p.limit)?;
    let wait = p.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::invalid(
            "wait",
            format!("must be between 0 and {MAX_WAIT_SECS} seconds"),
        ));
    }
    let filter = EventFilter::parse(FilterInput {
        services: &p.service,
        event_types: &p.event_type,
        channel_id: p.channel_id.as_deref(),
        facility_id: p.facility_id.as_deref(),
        since: p.since.as_deref(),
        until: p.until.as_deref(),
    })
    .map_err(ServiceError::Validation)?;
    let page = s
        .services
        .cdc_page(
            &who,
            &org,
            CdcQuery {
                filter,
                cursor: p.cursor,
                limit,
                wait: Duration::from_secs(wait),
            },
        )
        .await?;
    // The stored envelopes are already JSON: splice them in rather than re-serializing.
    let mut body =
        String::with_capacity(page.events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 200);
    body.push_str("{\"data\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.body);
    }
    body.push_str("],\"next_cursor\":");
    body.push_str(&serde_json::to_string(&page.next_cursor).unwrap_or_else(|_| "null".into()));
    body.push_str(",\"has_more\":");
    body.push_str(if page.has_more { "true" } else { "false" });
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
