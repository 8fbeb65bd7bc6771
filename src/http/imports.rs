//! `/v1/orgs/{org_id}/imports` (SPEC §8): open a job, stream NDJSON parts into it, commit,
//! and read the line-numbered error report.
use super::AppState;
use super::exports::list_jobs;
use super::extract::{Json, Manage, Path, Query};
use super::pagination::ListParams;
use super::pagination::Page;
use super::problem::{ApiError, ApiResult};
use crate::service::ServiceError;
use crate::service::imports::{ImportIn, ImportOut, ImportProgress, LineCounter, UPLOAD_FILE};
use crate::service::jobs::{from_col, io_err, to_col};
use crate::store::jobs::KIND_IMPORT;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::io::Write;
use std::sync::{LazyLock, Mutex};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_import, list_imports))
        .routes(routes!(get_import))
        .routes(routes!(upload))
        .routes(routes!(commit))
        .routes(routes!(abort))
        .routes(routes!(errors))
}

/// Imports with an upload in flight (one part at a time per job).
static UPLOADING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct UploadGuard(String);

impl UploadGuard {
    fn take(id: &str) -> Option<Self> {
        let mut set = UPLOADING.lock().ok()?;
        set.insert(id.to_string())
            .then(|| UploadGuard(id.to_string()))
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = UPLOADING.lock() {
            set.remove(&self.0);
        }
    }
}

/// Open an import job (state `open`).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/imports", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)")),
    request_body(content = ImportIn, content_type = "application/json"),
    responses((status = 201, description = "the job, `open` for uploads", body = ImportOut,
        headers(("Location" = String, description = "the job's URL")))))]
async fn create_import(
    State(s): State<AppState>,
    Manage(who, ctx): Manage,
    Path(org): Path<String>,
    Json(input): Json<ImportIn>,
) -> ApiResult<Response> {
    let job = s.services.create_import(&who, &ctx, &org, input).await?;
    let loc = format!("/v1/orgs/{org}/imports/{}", job.id);
    let mut res = (StatusCode::CREATED, axum::Json(ImportOut::from_row(&job)?)).into_response();
    if let Ok(v) = HeaderValue::from_str(&loc) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// List an org's import jobs, oldest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/imports", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ListParams),
    responses((status = 200, body = Page<ImportOut>)))]
async fn list_imports(
    State(s): State<AppState>,
    super::extract::Auth(who): super::extract::Auth,
    Path(org): Path<String>,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Page<ImportOut>>> {
    who.can_manage_org(&org).map_err(ServiceError::from)?;
    let (rows, next_cursor, has_more) = list_jobs(&s, &org, KIND_IMPORT, p.limit, p.cursor).await?;
    let data = rows
        .iter()
        .map(ImportOut::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(Page {
        data,
        next_cursor,
        has_more,
    }))
}

/// One import job with its counters.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/imports/{import_id}", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("import_id" = String, Path)),
    responses((status = 200, body = ImportOut)))]
async fn get_import(
    State(s): State<AppState>,
    super::extract::Auth(who): super::extract::Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<ImportOut>> {
    let job = s.services.get_import(&who, &org, &id).await?;
    Ok(axum::Json(ImportOut::from_row(&job)?))
}

/// Append a part of NDJSON data (streamed to disk; any size up to the import limit).
///
/// May be called repeatedly while the job is `open`; parts are appended in call order, one at
/// a time per job. A part that does not end with a newline is ended with one.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/imports/{import_id}/data", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("import_id" = String, Path),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)")),
    request_body(content = String, content_type = "application/x-ndjson", description = "one envelope per line"),
    responses((status = 200, description = "the job with updated `bytes_received` / `lines_received`", body = ImportOut),
        (status = 409, description = "the job is not open, or another part is being uploaded", body = super::problem::Problem, content_type = "application/problem+json")))]
async fn upload(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<ImportOut>> {
    let job = s.services.get_import(&who, &org, &id).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        ct.as_deref(),
        Some("application/x-ndjson") | Some("application/ndjson")
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send Content-Type: application/x-ndjson".into(),
        ));
    }
    if job.status != "open" {
        return Err(ServiceError::Conflict(format!(
            "the import is `{}`; data can only be added while it is `open`",
            job.status
        ))
        .into());
    }
    let _guard = UploadGuard::take(&id).ok_or_else(|| {
        ServiceError::Conflict("another part is being uploaded to this import".into())
    })?;
    // Re-read under the guard: a part that finished just before holds newer counters.
    let mut job = s.services.get_import(&who, &org, &id).await?;
    let mut progress: ImportProgress = from_col(&job.progress)?;
    let limit = s.jobs.max_import_bytes;
    let room = limit.saturating_sub(progress.bytes_received);
    let too_large = || {
        ApiError::TooLarge(format!(
            "the import's data would exceed the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > room) {
        return Err(too_large());
    }
    // Disk writes happen on a blocking thread fed through a small channel: the body is never
    // held in memory beyond a few chunks.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let files = s.jobs.files.clone();
    let (o, i, offset) = (org.clone(), id.clone(), progress.bytes_received);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<LineCounter> {
        let mut f = files.append_at(&o, &i, UPLOAD_FILE, offset)?;
        let mut count = LineCounter::default();
        while let Some(chunk) = rx.blocking_recv() {
            f.write_all(&chunk)?;
            count.feed(&chunk);
        }
        if count.needs_newline() {
            f.write_all(b"\n")?;
            count.feed(b"\n");
        }
        f.sync()?;
        Ok(count)
    });
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    let mut failure: Option<ApiError> = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                seen += c.len() as u64;
                if seen > room {
                    failure = Some(too_large());
                    break;
                }
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(ApiError::invalid(
                    "body",
                    format!("could not read the body: {e}"),
                ));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| io_err(std::io::Error::other(e)))?
        .map_err(io_err)?;
    if let Some(f) = failure {
        // Nothing is recorded: the next part starts over at the old offset (the bytes written
        // here are cut off then).
        return Err(f);
    }
    if progress.bytes_received + written.bytes > limit {
        return Err(too_large());
    }
    progress.bytes_received += written.bytes;
    progress.lines_received += written.lines;
    job.progress = to_col(&progress);
    if !s
        .services
        .store
        .update_job(job.clone(), "open", None)
        .await
        .map_err(ServiceError::from)?
    {
        return Err(
            ServiceError::Conflict("the import was committed or aborted meanwhile".into()).into(),
        );
    }
    Ok(axum::Json(ImportOut::from_row(&job)?))
}

/// Close the upload (→ `upload_complete`); a worker then processes the lines.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/imports/{import_id}/commit", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("import_id" = String, Path),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)")),
    responses((status = 200, body = ImportOut),
        (status = 409, description = "the job is not open", body = super::problem::Problem, content_type = "application/problem+json")))]
async fn commit(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<ImportOut>> {
    let _guard = UploadGuard::take(&id).ok_or_else(|| {
        ServiceError::Conflict("a part is still being uploaded to this import".into())
    })?;
    let job = s
        .services
        .transition_import(&who, &org, &id, &["open"], "upload_complete")
        .await?;
    Ok(axum::Json(ImportOut::from_row(&job)?))
}

/// Abort an import (→ `aborted`); lines already processed stay ingested.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/imports/{import_id}/abort", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("import_id" = String, Path),
        ("X-Request-Id" = String, Header, description = "required on writes"),
        ("X-Actor-Id" = String, Header, description = "who acts (required on management writes)")),
    responses((status = 200, body = ImportOut),
        (status = 409, description = "the job has already finished", body = super::problem::Problem, content_type = "application/problem+json")))]
async fn abort(
    State(s): State<AppState>,
    Manage(who, _ctx): Manage,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<ImportOut>> {
    let job = s
        .services
        .transition_import(
            &who,
            &org,
            &id,
            &["open", "upload_complete", "in_progress"],
            "aborted",
        )
        .await?;
    Ok(axum::Json(ImportOut::from_row(&job)?))
}

/// The rejected lines of an import, as NDJSON `{line, event_id?, code, message}`, by line.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/imports/{import_id}/errors", tag = "imports",
    params(("org_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$"), ("import_id" = String, Path)),
    responses((status = 200, description = "one rejected line per line", content((String = "application/x-ndjson")))))]
async fn errors(
    State(s): State<AppState>,
    super::extract::Auth(who): super::extract::Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let job = s.services.get_import(&who, &org, &id).await?;
    let store = s.services.store.clone();
    let stream = futures_util::stream::unfold(Some(0i64), move |after| {
        let store = store.clone();
        let (org, id) = (job.org_id.clone(), job.id.clone());
        async move {
            let after = after?;
            match store.job_errors(&org, &id, after, 1000).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map(|r| r.line);
                    let mut out = String::new();
                    for r in rows {
                        let mut v = serde_json::json!({"line": r.line, "code": r.code, "message": r.message});
                        if let Some(e) = r.event_id {
                            v["event_id"] = e.into();
                        }
                        out.push_str(&v.to_string());
                        out.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
