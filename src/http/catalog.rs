//! The catalog endpoints (SPEC §5). Any authenticated key may read them.
use super::AppState;
use super::extract::{Auth, Path, Query};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::{ApiError, ApiResult};
use crate::catalog::{EventTypeEntry, ExportContract, Lifecycle, Scorecard, Status};
use crate::service::ServiceError;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_types))
        .routes(routes!(event_type))
        .routes(routes!(lifecycles))
        .routes(routes!(lifecycle))
        .routes(routes!(specimens))
        .routes(routes!(conventions))
        .routes(routes!(contracts))
        .routes(routes!(maturity))
        .routes(routes!(contract))
        .routes(routes!(asyncapi))
}

/// Filters of the event-type list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TypeParams {
    /// Only this service's types.
    service: Option<String>,
    /// Only types with this status.
    status: Option<Status>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Keyset pagination over a list sorted by `key`.
fn paginate<T: Clone + utoipa::ToSchema>(
    s: &AppState,
    scope: &str,
    binding: &str,
    items: impl Iterator<Item = T>,
    key: impl Fn(&T) -> String,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> ApiResult<Page<T>> {
    let limit = pagination::limit(limit)?;
    let after = match cursor {
        Some(c) => Some(
            s.services
                .cursors
                .decode(scope, binding.as_bytes(), c)
                .map_err(|_| ServiceError::InvalidCursor)?,
        ),
        None => None,
    };
    let mut data: Vec<T> = items
        .filter(|i| after.as_ref().is_none_or(|a| key(i) > *a))
        .take(limit + 1)
        .collect();
    let has_more = data.len() > limit;
    data.truncate(limit);
    let next_cursor = if has_more {
        data.last().map(|l| {
            s.services
                .cursors
                .encode(scope, binding.as_bytes(), &key(l))
        })
    } else {
        None
    };
    Ok(Page {
        data,
        next_cursor,
        has_more,
    })
}

/// List event types (filters `service`, `status`), sorted by name.
#[utoipa::path(get, path = "/v1/catalog/event-types", tag = "catalog", params(TypeParams),
    responses((status = 200, body = Page<EventTypeEntry>)))]
async fn event_types(
    State(s): State<AppState>,
    _auth: Auth,
    Query(p): Query<TypeParams>,
) -> ApiResult<Json<Page<EventTypeEntry>>> {
    let binding = format!("{:?}|{:?}", p.service, p.status);
    let items = s
        .services
        .catalog
        .event_types()
        .iter()
        .filter(|t| p.service.as_ref().is_none_or(|sv| &t.service == sv))
        .filter(|t| p.status.is_none_or(|st| t.status == st))
        .cloned();
    paginate(
        &s,
        "catalog:types",
        &binding,
        items,
        |t| t.event_type.clone(),
        p.limit,
        p.cursor.as_deref(),
    )
    .map(Json)
}

/// One event type with its versions, schemas and redaction metadata.
#[utoipa::path(get, path = "/v1/catalog/event-types/{event_type}", tag = "catalog",
    params(("event_type" = String, Path)), responses((status = 200, body = EventTypeEntry)))]
async fn event_type(
    State(s): State<AppState>,
    _auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<EventTypeEntry>> {
    s.services
        .catalog
        .event_type(&name)
        .cloned()
        .map(Json)
        .ok_or(ApiError::Service(ServiceError::NotFound("event type")))
}

/// List entity lifecycles (state machines).
#[utoipa::path(get, path = "/v1/catalog/lifecycles", tag = "catalog", params(ListParams),
    responses((status = 200, body = Page<Lifecycle>)))]
async fn lifecycles(
    State(s): State<AppState>,
    _auth: Auth,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Lifecycle>>> {
    let items = s.services.catalog.lifecycles().iter().cloned();
    paginate(
        &s,
        "catalog:lifecycles",
        "",
        items,
        |l| l.entity.clone(),
        p.limit,
        p.cursor.as_deref(),
    )
    .map(Json)
}

/// One entity's lifecycle.
#[utoipa::path(get, path = "/v1/catalog/lifecycles/{entity}", tag = "catalog",
    params(("entity" = String, Path)), responses((status = 200, body = Lifecycle)))]
async fn lifecycle(
    State(s): State<AppState>,
    _auth: Auth,
    Path(entity): Path<String>,
) -> ApiResult<Json<Lifecycle>> {
    s.services
        .catalog
        .lifecycle(&entity)
        .cloned()
        .map(Json)
        .ok_or(ApiError::Service(ServiceError::NotFound("lifecycle")))
}

/// Example envelopes of a type.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Specimens {
    /// Full stored envelopes (the stored fields hold example values).
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
}

/// Full example envelopes of an event type, for every version.
#[utoipa::path(get, path = "/v1/catalog/specimens/{event_type}", tag = "catalog",
    params(("event_type" = String, Path)), responses((status = 200, body = Specimens)))]
async fn specimens(
    State(s): State<AppState>,
    _auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Specimens>> {
    if s.services.catalog.event_type(&name).is_none() {
        return Err(ServiceError::NotFound("event type").into());
    }
    Ok(Json(Specimens {
        data: s.services.catalog.specimens(&name),
    }))
}

/// The API's conventions as data: pagination, cursors, errors, idempotency, signatures, time.
#[utoipa::path(get, path = "/v1/catalog/conventions", tag = "catalog",
    responses((status = 200, body = Object)))]
async fn conventions(State(s): State<AppState>, _auth: Auth) -> Json<serde_json::Value> {
    Json(s.services.catalog.conventions())
}

/// Export contracts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Contracts {
    pub data: Vec<ExportContract>,
}

/// Export contracts of every service.
#[utoipa::path(get, path = "/v1/contracts", tag = "catalog", responses((status = 200, body = Contracts)))]
async fn contracts(State(s): State<AppState>, _auth: Auth) -> Json<Contracts> {
    Json(Contracts {
        data: s.services.catalog.contracts(),
    })
}

/// One service's export contract.
#[utoipa::path(get, path = "/v1/contracts/{service}", tag = "catalog",
    params(("service" = String, Path)), responses((status = 200, body = ExportContract)))]
async fn contract(
    State(s): State<AppState>,
    _auth: Auth,
    Path(service): Path<String>,
) -> ApiResult<Json<ExportContract>> {
    s.services
        .catalog
        .contract(&service)
        .map(Json)
        .ok_or(ApiError::Service(ServiceError::NotFound("contract")))
}

/// The maturity scorecard: per service and per event type, which checks pass and a level.
#[utoipa::path(get, path = "/v1/contracts/maturity", tag = "catalog", responses((status = 200, body = Scorecard)))]
async fn maturity(State(s): State<AppState>, _auth: Auth) -> Json<Scorecard> {
    Json(s.services.catalog.maturity())
}

/// The catalog as an AsyncAPI 3 document.
#[utoipa::path(get, path = "/v1/catalog/asyncapi.json", tag = "catalog", responses((status = 200, body = Object)))]
async fn asyncapi(State(s): State<AppState>, _auth: Auth) -> Json<serde_json::Value> {
    Json(s.services.catalog.asyncapi())
}
