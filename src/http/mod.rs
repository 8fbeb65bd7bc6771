//! The HTTP API: one module per resource, each with its `router()`, assembled here with the
//! cross-cutting layers (request id, metrics, panic guard, fallbacks).
pub mod admin;
pub mod alerts;
pub mod catalog;
pub mod cdc;
pub mod deliveries;
pub mod events;
pub mod exports;
pub mod extract;
pub mod imports;
pub mod inbox;
pub mod kpis;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod problem;
pub mod webhooks;

use crate::service::Services;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use problem::{ApiError, REQUEST_ID};
use std::sync::Arc;
use std::time::Instant;
use utoipa_axum::router::OpenApiRouter;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    /// Request body limit in bytes.
    pub max_body: usize,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Job files and limits (exports, imports).
    pub jobs: Arc<crate::service::jobs::JobEnv>,
}

/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(events::router())
        .merge(cdc::router())
        .merge(exports::router())
        .merge(imports::router())
        .merge(admin::router())
        .merge(catalog::router())
        .merge(ops::router())
        .merge(webhooks::router())
        .merge(deliveries::router())
        .merge(inbox::router())
        .merge(kpis::router())
        .merge(alerts::router())
        .split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    api.route(
        openapi::DOC_PATH,
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route_layer(middleware::from_fn(record_metrics))
    .fallback(|| async { ApiError::NoRoute })
    .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
    .layer(middleware::from_fn(request_id))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
        tracing::error!("a handler panicked");
        let body = serde_json::json!({
            "type": "https://ipm.dev/problems/internal", "title": "Internal Server Error", "status": 500,
            "detail": "an internal error occurred", "code": "internal", "request_id": ""
        });
        let mut r = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/problem+json"));
        r
    }))
    .with_state(state)
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    v.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// Echoes or generates `X-Request-Id` on every response and makes it visible to error bodies.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_request_id)
        .unwrap_or_else(|| format!("req_{}", ulid::Ulid::generate()));
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Request count and latency by route.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("ipm_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("ipm_http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    res
}
