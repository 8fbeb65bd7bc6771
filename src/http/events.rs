//! `POST /v1/events`.
use super::AppState;
use super::extract::{TextBody, Write};
use super::problem::{ApiError, ApiResult};
use crate::service::ingest::{BodyFormat, IngestReport};
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(publish))
}

/// An event envelope as producers send it (SPEC §1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EnvelopeIn {
    /// Producer-unique id.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    event_id: String,
    /// `service.entity.action`.
    #[schema(pattern = r"^[a-z0-9_]{1,64}\.[a-z0-9_]{1,64}\.[a-z0-9_]{1,64}$")]
    event_type: String,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    org_id: String,
    /// RFC 3339 with `Z` or an offset.
    #[schema(format = DateTime)]
    occurred_at: String,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    channel_id: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    facility_id: Option<String>,
    #[schema(minimum = 1)]
    schema_version: Option<u32>,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    request_context: Option<serde_json::Value>,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    reason_code: Option<String>,
    source_refs: Option<Vec<SourceRef>>,
}

/// A reference to a record in a source system.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SourceRef {
    system: String,
    kind: String,
    id: String,
}

/// Publish events: one envelope, a JSON array (≤ 1000), or NDJSON.
///
/// One transaction per batch; a bad event does not reject its neighbours. Once `accepted` is
/// answered, the event is durable. Idempotent on `(org_id, event_id, occurred_at)`.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content(
        (EnvelopeIn = "application/json"),
        (Vec<EnvelopeIn> = "application/json"),
        (String = "application/x-ndjson")
    )),
    params(("X-Request-Id" = String, Header, description = "required on writes")),
    responses((status = 200, description = "per-event results", body = IngestReport)))]
async fn publish(
    State(s): State<AppState>,
    Write(who, ctx): Write,
    body: TextBody,
) -> ApiResult<Json<IngestReport>> {
    let format = match body.content_type.as_deref() {
        Some("application/json") => BodyFormat::Json,
        Some("application/x-ndjson") | Some("application/ndjson") => BodyFormat::Ndjson,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send Content-Type: application/json or application/x-ndjson".into(),
            ));
        }
    };
    Ok(Json(
        s.services.ingest(&who, &ctx, &body.text, format).await?,
    ))
}
