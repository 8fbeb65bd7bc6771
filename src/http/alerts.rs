//! `/v1/orgs/{org_id}/alert-rules` and `/v1/orgs/{org_id}/alerts` (SPEC §9).
use super::AppState;
use super::extract::{Auth, Json, Manage, Path, Query};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::ApiResult;
use crate::service::alerts::{AlertOut, AlertState, RuleIn, RuleOut, RulePatch};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(get_rule, patch_rule, delete_rule))
        .routes(routes!(list_alerts))
}

/// Create an alert rule.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/alert-rules", tag = "alerts", request_body = RuleIn,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 201, body = RuleOut)))]
async fn create_rule(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path(org): Path<String>,
    Json(input): Json<RuleIn>,
) -> ApiResult<(StatusCode, axum::Json<RuleOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.services.create_rule(&who, &ctx, &org, input).await?),
    ))
}

/// The org's alert rules.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/alert-rules", tag = "alerts",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ListParams),
    responses((status = 200, body = Page<RuleOut>)))]
async fn list_rules(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<RuleOut>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_rules(&who, &org, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}

/// One alert rule.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/alert-rules/{rule_id}", tag = "alerts",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("rule_id" = String, Path)),
    responses((status = 200, body = RuleOut)))]
async fn get_rule(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<RuleOut>> {
    Ok(axum::Json(s.services.get_rule(&who, &org, &id).await?))
}

/// Change a rule (absent fields keep their value; the KPI cannot change).
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/alert-rules/{rule_id}", tag = "alerts", request_body = RulePatch,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("rule_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 200, body = RuleOut)))]
async fn patch_rule(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
    Json(input): Json<RulePatch>,
) -> ApiResult<axum::Json<RuleOut>> {
    Ok(axum::Json(
        s.services.patch_rule(&who, &ctx, &org, &id, input).await?,
    ))
}

/// Delete a rule; its alerts stay as history.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/alert-rules/{rule_id}", tag = "alerts",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("rule_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 204, description = "deleted")))]
async fn delete_rule(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services.delete_rule(&who, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Alert list parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    state: Option<AlertState>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The org's alert instances with their full transition history.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/alerts", tag = "alerts",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), AlertParams),
    responses((status = 200, body = Page<AlertOut>)))]
async fn list_alerts(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<AlertParams>,
) -> ApiResult<axum::Json<Page<AlertOut>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_alerts(&who, &org, p.state, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}
