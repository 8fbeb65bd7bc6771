//! The one place where errors become RFC 9457 problem+json responses.
//!
//! How to add an error: add a variant to `service::ServiceError` (or, for HTTP-only failures,
//! to [`ApiError`]), then give it a status, a stable `code` and a title in [`ApiError::parts`].
use crate::domain::FieldError;
use crate::service::ServiceError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// An error response.
#[derive(Debug)]
pub enum ApiError {
    /// From the service layer.
    Service(ServiceError),
    /// 400 with a specific code.
    BadRequest {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 413.
    TooLarge(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 404 for an unknown route.
    NoRoute,
    /// 405.
    MethodNotAllowed,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl ApiError {
    /// 400 `validation_failed` naming one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            code: "validation_failed",
            detail: format!("{field}: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        &'static str,
        String,
        Vec<FieldError>,
    ) {
        use ServiceError as S;
        match self {
            ApiError::Service(s) => match s {
                S::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Unauthorized",
                    "a valid API key is required: Authorization: Bearer ipm_…".into(),
                    vec![],
                ),
                S::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Forbidden",
                    s.to_string(),
                    vec![],
                ),
                S::NotFound(what) => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "Not Found",
                    format!("{what} not found"),
                    vec![],
                ),
                S::Validation(errors) => {
                    let detail = errors
                        .iter()
                        .map(|e| {
                            if e.field.is_empty() {
                                e.message.clone()
                            } else {
                                format!("{}: {}", e.field, e.message)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    (
                        StatusCode::BAD_REQUEST,
                        "validation_failed",
                        "Validation Failed",
                        detail,
                        errors.clone(),
                    )
                }
                S::PayloadTooLarge(m) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Payload Too Large",
                    m.clone(),
                    vec![],
                ),
                S::InvalidCursor => (
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "Invalid Cursor",
                    s.to_string(),
                    vec![],
                ),
                S::CursorExpired => (
                    StatusCode::GONE,
                    "cursor_expired",
                    "Cursor Expired",
                    s.to_string(),
                    vec![],
                ),
                S::Conflict(m) => (
                    StatusCode::CONFLICT,
                    "conflict",
                    "Conflict",
                    m.clone(),
                    vec![],
                ),
                S::Store(e) => {
                    tracing::error!(error = %e, "storage failure");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        "Service Unavailable",
                        "the store failed to answer; retry later".into(),
                        vec![],
                    )
                }
            },
            ApiError::BadRequest {
                code,
                detail,
                errors,
            } => (
                StatusCode::BAD_REQUEST,
                code,
                "Bad Request",
                detail.clone(),
                errors.clone(),
            ),
            ApiError::TooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload Too Large",
                m.clone(),
                vec![],
            ),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported Media Type",
                m.clone(),
                vec![],
            ),
            ApiError::NoRoute => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not Found",
                "no such route".into(),
                vec![],
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
                "this route does not accept that method".into(),
                vec![],
            ),
        }
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine code, snake_case.
    pub code: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail, errors) = self.parts();
        let request_id = REQUEST_ID.try_with(|r| r.clone()).unwrap_or_default();
        let body = Problem {
            type_: format!("https://ipm.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            code: code.into(),
            request_id,
            errors,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (status, json).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
