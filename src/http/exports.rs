//! `/v1/orgs/{org_id}/exports` (SPEC §7): asynchronous bulk export with the FHIR-style polling
//! protocol (202 + `Content-Location`; `Retry-After` + `X-Progress` while running).
use super::AppState;
use super::extract::{Auth, Json, Manage, Path, Query};
use super::pagination::ListParams;
use super::pagination::{self, Page};
use super::problem::{ApiError, ApiResult};
use crate::service::ServiceError;
use crate::service::exports::{ExportIn, ExportOut, ExportProgress, is_finished};
use crate::service::jobs::{from_col, io_err};
use crate::store::jobs::KIND_EXPORT;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_export, list_exports))
        .routes(routes!(get_export, delete_export))
        .routes(routes!(download))
}

/// Reads an optional `Idempotency-Key` header.
fn idempotency_key(h: &HeaderMap) -> Result<Option<String>, ApiError> {
    match h.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic()))
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| {
                ApiError::invalid("Idempotency-Key", "must be 1..200 visible ASCII characters")
            }),
    }
}

fn location(org: &str, id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/orgs/{org}/exports/{id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// Start an export job.
///
/// Answers `202` with `Content-Location` (poll it). The same `Idempotency-Key` on the same org
/// returns the job created first instead of a new one.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/exports", tag = "exports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key, same job")),
    request_body(content = ExportIn, content_type = "application/json"),
    responses((status = 202, description = "the job (queued, or the earlier one with this idempotency key)", body = ExportOut,
        headers(("Content-Location" = String, description = "where to poll the job")))))]
async fn create_export(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path(org): Path<String>,
    headers: HeaderMap,
    Json(input): Json<ExportIn>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let (job, _) = s
        .services
        .create_export(&who, &ctx, &org, input, key)
        .await?;
    let mut res = (StatusCode::ACCEPTED, axum::Json(ExportOut::from_row(&job)?)).into_response();
    res.headers_mut()
        .insert(header::CONTENT_LOCATION, location(&org, &job.id));
    Ok(res)
}

/// List an org's export jobs, oldest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/exports", tag = "exports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ListParams),
    responses((status = 200, body = Page<ExportOut>)))]
async fn list_exports(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(org): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<ExportOut>>> {
    who.can_read_org(&org).map_err(ServiceError::from)?;
    let (rows, next_cursor, has_more) = list_jobs(&s, &org, KIND_EXPORT, p.limit, p.cursor).await?;
    let data = rows
        .iter()
        .map(ExportOut::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(Page {
        data,
        next_cursor,
        has_more,
    }))
}

/// Poll an export job.
///
/// `202` with `Retry-After` and `X-Progress` while it is queued or running; `200` once it has
/// finished (succeeded, failed or canceled).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/exports/{export_id}", tag = "exports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("export_id" = String, Path)),
    responses((status = 200, description = "finished", body = ExportOut),
        (status = 202, description = "still queued or running", body = ExportOut,
         headers(("Retry-After" = u32, description = "seconds until the next poll"),
                 ("X-Progress" = String, description = "human-readable progress")))))]
async fn get_export(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let job = s.services.get_export(&who, &org, &id).await?;
    let out = ExportOut::from_row(&job)?;
    if is_finished(&job.status) {
        return Ok(axum::Json(out).into_response());
    }
    let p: ExportProgress = from_col(&job.progress)?;
    let progress = format!(
        "{}: {} events, {} bytes, {} files",
        job.status, p.events_written, p.bytes_written, p.files
    );
    let mut res = (StatusCode::ACCEPTED, axum::Json(out)).into_response();
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(&progress) {
        h.insert("x-progress", v);
    }
    Ok(res)
}

/// Cancel a queued/running export (→ `canceled`), or delete a finished export's files.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/exports/{export_id}", tag = "exports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("export_id" = String, Path),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)")),
    responses((status = 200, description = "the job after cancel or file deletion", body = ExportOut),
        (status = 409, description = "the job kept changing; retry", body = super::problem::Problem, content_type = "application/problem+json")))]
async fn delete_export(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<ExportOut>> {
    let job = s
        .services
        .cancel_export(&s.jobs, &who, &ctx, &org, &id)
        .await?;
    Ok(axum::Json(ExportOut::from_row(&job)?))
}

/// Download one file of a finished export (streamed NDJSON, gzip when asked for).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/exports/{export_id}/files/{name}", tag = "exports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("export_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "the file: one stored envelope per line",
        content((String = "application/x-ndjson"), (String = "application/gzip")))))]
async fn download(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((org, id, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let job = s.services.get_export(&who, &org, &id).await?;
    let out = ExportOut::from_row(&job)?;
    if out.files_deleted || !out.files.iter().any(|f| f.name == name) {
        return Err(ServiceError::NotFound("file").into());
    }
    let (reader, len) = s
        .jobs
        .files
        .open(&org, &id, &name)
        .await
        .map_err(io_err)?
        .ok_or(ServiceError::NotFound("file"))?;
    let ct = if name.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/x-ndjson"
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        256 * 1024,
    ));
    Ok((
        [
            (header::CONTENT_TYPE, ct.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// A keyset page of an org's jobs of one kind; cursors are signed and bound to the list.
pub(crate) async fn list_jobs(
    s: &AppState,
    org: &str,
    kind: &str,
    limit: Option<i64>,
    cursor: Option<String>,
) -> ApiResult<(Vec<crate::store::JobRow>, Option<String>, bool)> {
    let limit = pagination::limit(limit)?;
    let scope = format!("jobs:{kind}:{org}");
    let after = match cursor {
        None => None,
        Some(c) => Some(
            s.services
                .cursors
                .decode(&scope, b"", &c)
                .map_err(|_| ServiceError::InvalidCursor)?,
        ),
    };
    let mut rows = s
        .services
        .store
        .list_jobs(org, kind, after.as_deref(), limit + 1)
        .await
        .map_err(ServiceError::from)?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next = if has_more {
        rows.last()
            .map(|r| s.services.cursors.encode(&scope, b"", &r.id))
    } else {
        None
    };
    Ok((rows, next, has_more))
}
