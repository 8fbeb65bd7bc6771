//! `/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries`.
use super::AppState;
use super::extract::{Auth, Manage, Path, Query};
use super::pagination::{self, Page};
use super::problem::{ApiResult, Problem};
use crate::domain::webhook::DeliveryStatus;
use crate::service::webhooks::DeliveryInfo;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

/// List parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries in this status.
    status: Option<DeliveryStatus>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A webhook's deliveries, oldest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), DeliveryParams),
    responses((status = 200, body = Page<DeliveryInfo>)))]
async fn list_deliveries(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
    Query(p): Query<DeliveryParams>,
) -> ApiResult<axum::Json<Page<DeliveryInfo>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_deliveries(&who, &org, &id, p.status, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryInfo)))]
async fn get_delivery(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id, did)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<DeliveryInfo>> {
    Ok(axum::Json(
        s.services.get_delivery(&who, &org, &id, &did).await?,
    ))
}

/// Schedule one more attempt now (held if the webhook is paused).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("delivery_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 202, body = DeliveryInfo),
        (status = 409, description = "revoked webhook, or an attempt is in flight", body = Problem, content_type = "application/problem+json")))]
async fn retry_delivery(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id, did)): Path<(String, String, String)>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<DeliveryInfo>)> {
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(s.services.retry_delivery(&who, &org, &id, &did).await?),
    ))
}
