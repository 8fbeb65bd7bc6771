//! Request extractors that turn every bad input into a problem+json 4xx.
use super::AppState;
use super::problem::ApiError;
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::envelope::strip_position;
use crate::domain::time::now_rfc3339;
use crate::service::ServiceError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Auth(p.clone()));
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ServiceError::Unauthorized)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(ServiceError::Unauthorized)?;
        let p = state.services.authenticate(token.trim()).await?;
        parts.extensions.insert(p.clone());
        Ok(Auth(p))
    }
}

fn header_value(parts: &Parts, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = parts.headers.get(name) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::BadRequest {
            code: "request_context_required",
            detail: format!("{name} must be 1..200 visible ASCII characters"),
            errors: vec![crate::domain::FieldError::new(
                name,
                "must be 1..200 visible ASCII characters",
            )],
        })?;
    Ok(Some(s.to_string()))
}

/// Builds the stored request context; `need_actor` for management writes, `need_reason` where
/// SPEC demands `X-Reason-Code`.
pub fn build_context(
    parts: &Parts,
    who: &Principal,
    need_actor: bool,
    need_reason: bool,
) -> Result<RequestContext, ApiError> {
    let request_id = header_value(parts, "x-request-id")?;
    let actor_id = header_value(parts, "x-actor-id")?;
    let reason_code = header_value(parts, "x-reason-code")?;
    let mut missing = Vec::new();
    if request_id.is_none() {
        missing.push("X-Request-Id");
    }
    if need_actor && actor_id.is_none() {
        missing.push("X-Actor-Id");
    }
    if need_reason && reason_code.is_none() {
        missing.push("X-Reason-Code");
    }
    if !missing.is_empty() {
        return Err(ApiError::BadRequest {
            code: "request_context_required",
            detail: format!("this write needs the header(s): {}", missing.join(", ")),
            errors: missing
                .iter()
                .map(|h| crate::domain::FieldError::new(*h, "required header is missing"))
                .collect(),
        });
    }
    Ok(RequestContext {
        request_id: request_id.unwrap_or_default(),
        actor_id,
        key_id: who.key_id.clone(),
        role: who.role.as_str().into(),
        reason_code,
        correlation_id: header_value(parts, "x-correlation-id")?,
        source_ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect()),
        at: now_rfc3339(),
    })
}

/// An authenticated write: principal plus request context (needs `X-Request-Id`).
pub struct Write(pub Principal, pub RequestContext);

impl FromRequestParts<AppState> for Write {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        let ctx = build_context(parts, &p, false, false)?;
        Ok(Write(p, ctx))
    }
}

/// An authenticated management write (needs `X-Request-Id` and `X-Actor-Id`).
pub struct Manage(pub Principal, pub RequestContext);

impl FromRequestParts<AppState> for Manage {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        let ctx = build_context(parts, &p, true, false)?;
        Ok(Manage(p, ctx))
    }
}

/// The request body as UTF-8 text, limited to the configured size (413 beyond it).
pub struct TextBody {
    pub text: String,
    pub content_type: Option<String>,
}

impl FromRequest<AppState> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.max_body;
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let too_large = || {
            ApiError::TooLarge(format!(
                "the request body exceeds the limit of {limit} bytes"
            ))
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                let limited = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if limited {
                    too_large()
                } else {
                    ApiError::invalid("body", format!("could not read the body: {e}"))
                }
            })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::invalid("body", "is not valid UTF-8"))?;
        Ok(TextBody { text, content_type })
    }
}

fn is_json(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| {
        c == "application/json" || (c.starts_with("application/") && c.ends_with("+json"))
    })
}

/// A JSON body (`Content-Type: application/json`), deserialized with field-precise errors.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let body = TextBody::from_request(req, state).await?;
        if !is_json(body.content_type.as_deref()) {
            return Err(ApiError::UnsupportedMediaType(
                "send Content-Type: application/json".into(),
            ));
        }
        parse_json(&body.text).map(Json)
    }
}

/// Deserializes JSON text, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = strip_position(&e.into_inner().to_string());
        let field = if let Some(rest) = inner.strip_prefix("missing field `") {
            rest.split('`').next().unwrap_or("").to_string()
        } else if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::invalid(&field, inner)
    })
}

/// Query parameters, with unknown parameters refused and repeated ones allowed.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_html_form::from_str::<T>(q).map(Query).map_err(|e| {
            let m = e.to_string();
            let field = m.split('`').nth(1).unwrap_or("query").to_string();
            ApiError::invalid(&field, m)
        })
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::invalid("path", e.body_text()))
    }
}
