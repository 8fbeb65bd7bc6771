//! The request context stored with every write (SPEC §2).
use serde::{Deserialize, Serialize};

/// Who did a write, from where, and why. Stored as `created_context` / `updated_context` / `context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestContext {
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// `X-Actor-Id`: who acts (required on management writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// The API key used.
    pub key_id: String,
    /// That key's role.
    pub role: String,
    /// `X-Reason-Code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// `X-Correlation-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The client's `User-Agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When the write happened (RFC 3339, UTC).
    pub at: String,
}

impl RequestContext {
    /// The context as a JSON string for storage.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}
