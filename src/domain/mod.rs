//! Pure domain types: nothing here knows about HTTP or SQL.
pub mod auth;
pub mod context;
pub mod cursor;
pub mod envelope;
pub mod filter;
pub mod ids;
pub mod kpi;
pub mod names;
pub mod sealing;
pub mod signature;
pub mod ssrf;
pub mod time;
pub mod webhook;

/// A field-level validation problem, reported in problem+json `errors`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field (or JSON pointer) at fault.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error from anything printable.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
