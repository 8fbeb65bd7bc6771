//! `/v1/orgs/{org_id}/inbox` (SPEC §9).
use super::AppState;
use super::extract::{Auth, Manage, Path, Query};
use super::pagination::{self, Page};
use super::problem::ApiResult;
use crate::service::inbox::InboxItem;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(ack_inbox))
}

/// Inbox parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// Only items not yet acknowledged.
    unread: Option<bool>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The org's inbox, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/inbox", tag = "inbox",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), InboxParams),
    responses((status = 200, body = Page<InboxItem>)))]
async fn list_inbox(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<InboxParams>,
) -> ApiResult<axum::Json<Page<InboxItem>>> {
    let limit = pagination::limit(p.limit)?;
    let l = s
        .services
        .list_inbox(
            &who,
            &org,
            p.unread.unwrap_or(false),
            p.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(axum::Json(Page {
        has_more: l.next_cursor.is_some(),
        data: l.items,
        next_cursor: l.next_cursor,
    }))
}

/// Acknowledge an item (idempotent).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/inbox/{item_id}/ack", tag = "inbox",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("item_id" = String, Path), ("X-Request-Id" = String, Header), ("X-Actor-Id" = String, Header)),
    responses((status = 200, body = InboxItem)))]
async fn ack_inbox(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<InboxItem>> {
    Ok(axum::Json(
        s.services.ack_inbox(&who, &ctx, &org, &id).await?,
    ))
}
