//! `/v1/admin/keys`.
use super::AppState;
use super::extract::{Auth, Json, Manage, Path, Query};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::ApiResult;
use crate::service::keys::{KeyIn, KeyOut};
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

/// Create an API key (admin). The `key` is returned in this response only.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "keys", request_body = KeyIn,
    params(("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 201, body = KeyOut)))]
async fn create_key(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Json(input): Json<KeyIn>,
) -> ApiResult<(StatusCode, axum::Json<KeyOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.services.create_key(&who, &ctx, input).await?),
    ))
}

/// List API keys (admin); never shows secrets.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "keys", params(ListParams),
    responses((status = 200, body = Page<KeyOut>)))]
async fn list_keys(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<KeyOut>>> {
    let limit = pagination::limit(p.limit)?;
    let page = s
        .services
        .list_keys(&who, p.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(Page {
        has_more: page.next_cursor.is_some(),
        data: page.keys,
        next_cursor: page.next_cursor,
    }))
}

/// Revoke an API key at once (admin).
#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", tag = "keys",
    params(("key_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 204, description = "revoked")))]
async fn revoke_key(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.revoke_key(&who, &ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
