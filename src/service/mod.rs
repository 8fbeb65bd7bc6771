//! Use cases, called by the HTTP layer and the CLI. Knows the domain and the store traits,
//! nothing of HTTP or SQL.
pub mod alerts;
pub mod cdc;
pub mod dispatch;
pub mod exports;
pub mod imports;
pub mod inbox;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod kpis;
pub mod validator;
pub mod webhooks;

use crate::domain::FieldError;
use crate::domain::auth::Denied;
use crate::domain::cursor::CursorCodec;
use crate::store::{DynStore, StoreError};
use std::sync::Arc;

/// Errors of the service layer; `http::problem` maps each to one problem+json response.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("authentication required")]
    Unauthorized,
    #[error("this key may not do that")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the cursor is malformed, was tampered with, or was issued for other filters")]
    InvalidCursor,
    #[error("the cursor points before the retained range; restart from the beginning")]
    CursorExpired,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Denied> for ServiceError {
    fn from(_: Denied) -> Self {
        ServiceError::Forbidden
    }
}

/// Validates payloads against the catalog (the seam the catalog plugs into).
pub trait EventValidator: Send + Sync {
    /// Checks one event's type and payload; errors name JSON pointers under `/payload`.
    fn check(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::value::RawValue,
    ) -> Result<(), Rejected>;
}

/// Why the validator refused an event.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Stable code: `unknown_event_type` or `schema_violation`.
    pub code: &'static str,
    pub errors: Vec<FieldError>,
}

/// Accepts everything (used when no catalog is wired in, and by tests).
pub struct AcceptAll;

impl EventValidator for AcceptAll {
    fn check(&self, _: &str, _: u32, _: &serde_json::value::RawValue) -> Result<(), Rejected> {
        Ok(())
    }
}

/// Everything the use cases need, shared by handlers and workers.
pub struct Services {
    pub store: DynStore,
    pub catalog: Arc<crate::catalog::Catalog>,
    pub cursors: CursorCodec,
    pub validator: Arc<dyn EventValidator>,
    /// Recently verified API keys.
    pub auth_cache: keys::AuthCache,
    /// Webhook config, SSRF guard, sealing key and delivery client (see [`webhooks::WebhookKit`]).
    pub webhooks: Arc<webhooks::WebhookKit>,
    /// Bumped after every webhook change made through this process (patch, pause, enable,
    /// revoke): the delivery worker starts no further attempt from a webhook list older than
    /// that, so a revoke or pause answered here stops this node's sends at once (other nodes
    /// follow within their list cache age).
    pub webhook_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Services {
    /// Builds the services over a store, loading the store's cursor key.
    pub async fn new(
        store: DynStore,
        catalog: Arc<crate::catalog::Catalog>,
        validator: Arc<dyn EventValidator>,
    ) -> Result<Self, ServiceError> {
        let key = store.secret("cursor").await?;
        Ok(Self {
            store,
            catalog,
            cursors: CursorCodec::new(key),
            validator,
            auth_cache: keys::AuthCache::default(),
            webhook_epoch: Arc::default(),
            webhooks: Arc::new(
                webhooks::WebhookKit::ephemeral()
                    .map_err(|e| ServiceError::Store(crate::store::StoreError::Backend(e)))?,
            ),
        })
    }
}
