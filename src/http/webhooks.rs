//! `/v1/orgs/{org_id}/webhooks`: subscriptions (SPEC §6). Deliveries live in [`super::deliveries`].
use super::AppState;
use super::extract::{Auth, Json, Manage, Path, Query, TextBody, build_context, parse_json};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::{ApiError, ApiResult, Problem};
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::service::webhooks::{
    ReplayIn, ReplayOut, TestOut, WebhookCreated, WebhookIn, WebhookOut, WebhookPatch,
};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, patch_webhook, revoke_webhook))
        .routes(routes!(pause_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(replay))
}

/// A management write that also needs `X-Reason-Code` (re-enabling a paused webhook).
pub struct ManageWithReason(pub Principal, pub RequestContext);

impl FromRequestParts<AppState> for ManageWithReason {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        let ctx = build_context(parts, &p, true, true)?;
        Ok(ManageWithReason(p, ctx))
    }
}

/// `POST …/enable` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableIn {
    /// Mark the backlog held while paused as `skipped` (still replayable) instead of delivering it.
    #[serde(default)]
    pub skip_backlog: bool,
}

/// Create a webhook. The response carries `signing_secret`, which is never shown again.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks", tag = "webhooks", request_body = WebhookIn,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 201, body = WebhookCreated)))]
async fn create_webhook(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path(org): Path<String>,
    Json(input): Json<WebhookIn>,
) -> ApiResult<(StatusCode, axum::Json<WebhookCreated>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.services.create_webhook(&who, &ctx, &org, input).await?),
    ))
}

/// List the org's webhooks (never their secrets).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/webhooks", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ListParams),
    responses((status = 200, body = Page<WebhookOut>)))]
async fn list_webhooks(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<WebhookOut>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_webhooks(&who, &org, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}

/// One webhook (never its secret: `secret_last4` only).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookOut)))]
async fn get_webhook(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<WebhookOut>> {
    Ok(axum::Json(s.services.get_webhook(&who, &org, &id).await?))
}

/// Update url, description, filters, delivery settings or pause thresholds.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}", tag = "webhooks", request_body = WebhookPatch,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 200, body = WebhookOut),
        (status = 409, description = "the webhook is revoked", body = Problem, content_type = "application/problem+json")))]
async fn patch_webhook(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
    Json(p): Json<WebhookPatch>,
) -> ApiResult<axum::Json<WebhookOut>> {
    Ok(axum::Json(
        s.services.update_webhook(&who, &ctx, &org, &id, p).await?,
    ))
}

/// Revoke: no further deliveries; history kept.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 204, description = "revoked")))]
async fn revoke_webhook(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services.revoke_webhook(&who, &ctx, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause (operator): deliveries are held until `enable`.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/pause", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 200, body = WebhookOut),
        (status = 409, description = "the webhook is revoked", body = Problem, content_type = "application/problem+json")))]
async fn pause_webhook(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<WebhookOut>> {
    Ok(axum::Json(
        s.services.pause_webhook(&who, &ctx, &org, &id).await?,
    ))
}

/// Re-enable a paused webhook (needs `X-Reason-Code`): counters reset; the held backlog is
/// delivered, or skipped with `{"skip_backlog": true}`. The body is optional.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/enable", tag = "webhooks",
    request_body(content = Option<EnableIn>, content_type = "application/json"),
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header), ("X-Reason-Code" = String, Header)),
    responses((status = 200, body = WebhookOut),
        (status = 409, description = "the webhook is revoked", body = Problem, content_type = "application/problem+json")))]
async fn enable_webhook(
    State(s): State<AppState>,
    ManageWithReason(who, ctx): ManageWithReason,
    Path((org, id)): Path<(String, String)>,
    body: TextBody,
) -> ApiResult<axum::Json<WebhookOut>> {
    let input: EnableIn = if body.text.trim().is_empty() {
        EnableIn::default()
    } else {
        if body.content_type.as_deref() != Some("application/json") {
            return Err(ApiError::UnsupportedMediaType(
                "send Content-Type: application/json".into(),
            ));
        }
        parse_json(&body.text)?
    };
    Ok(axum::Json(
        s.services
            .enable_webhook(&who, &ctx, &org, &id, input.skip_backlog)
            .await?,
    ))
}

/// Send a synthetic `ipm.webhook.test` event to this webhook.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 202, body = TestOut),
        (status = 409, description = "the webhook is revoked", body = Problem, content_type = "application/problem+json")))]
async fn test_webhook(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<TestOut>)> {
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(s.services.test_webhook(&who, &ctx, &org, &id).await?),
    ))
}

/// Re-deliver stored events matching the webhook's filters, oldest first; resumable.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhooks/{webhook_id}/replay", tag = "webhooks", request_body = ReplayIn,
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("webhook_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 202, body = ReplayOut),
        (status = 409, description = "the webhook is revoked", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "the cursor points before the retained range", body = Problem, content_type = "application/problem+json")))]
async fn replay(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id)): Path<(String, String)>,
    Json(input): Json<ReplayIn>,
) -> ApiResult<(StatusCode, axum::Json<ReplayOut>)> {
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(s.services.replay(&who, &org, &id, input).await?),
    ))
}
