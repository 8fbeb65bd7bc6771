//! Error types of the catalog: load-time check failures and payload validation outcomes.

use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

/// How `Display` shows the empty pointer (the whole file).
pub const WHOLE_FILE: &str = "(file)";

/// One failed catalog check.
///
/// `file` is relative to the catalog root (e.g. `orders/events/orders.order.placed.toml`),
/// `pointer` is a JSON pointer into that file (for TOML files the key path written as a JSON
/// pointer, e.g. `/versions/0/schema`; empty for the whole file, shown as `(file)`).
/// `Display` prints `file: pointer: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckError {
    /// File the problem is in, relative to the catalog root.
    pub file: String,
    /// JSON pointer (or TOML key path in pointer form) of the offending element.
    pub pointer: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl CheckError {
    /// Builds a check error.
    pub fn new(
        file: impl Into<String>,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            WHOLE_FILE
        } else {
            &self.pointer
        };
        write!(f, "{}: {pointer}: {}", self.file, self.message)
    }
}

/// Every check failure found while loading a catalog (never empty when returned as an error).
///
/// `Display` prints one `file: pointer: message` line per failure, sorted by file then pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, thiserror::Error)]
pub struct CatalogErrors {
    /// The failures, sorted by file, pointer and message.
    pub errors: Vec<CheckError>,
}

impl CatalogErrors {
    pub(crate) fn from_vec(mut errors: Vec<CheckError>) -> Self {
        errors.sort_by(|a, b| {
            (&a.file, &a.pointer, &a.message).cmp(&(&b.file, &b.pointer, &b.message))
        });
        errors.dedup();
        Self { errors }
    }
}

impl fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One schema violation in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Violation {
    /// JSON pointer into the payload (relative to the payload root, e.g. `/customer/email`).
    /// For a missing required property it points at the missing property itself.
    pub pointer: String,
    /// Human-readable reason.
    pub message: String,
}

/// Why a payload was not accepted by [`super::Catalog::validate_payload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PayloadCheck {
    /// The event type is not in the catalog.
    #[error("unknown event type `{event_type}`")]
    UnknownEventType {
        /// The type that was asked for.
        event_type: String,
    },
    /// The event type exists but has no such schema version.
    #[error("event type `{event_type}` has no schema version {version} (known: {known:?})")]
    UnknownVersion {
        /// The type that was asked for.
        event_type: String,
        /// The version that was asked for.
        version: u32,
        /// The versions the catalog knows for this type.
        known: Vec<u32>,
    },
    /// The payload violates the schema; at least one violation.
    #[error("payload violates the schema: {}", violations.iter().map(|v| format!("{}: {}", v.pointer, v.message)).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// Every violation found.
        violations: Vec<Violation>,
    },
}
