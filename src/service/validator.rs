//! Ingest validation against the catalog (SPEC §3): unknown types and schema violations,
//! each governed by its config switch.
use super::{EventValidator, Rejected};
use crate::catalog::{Catalog, PayloadCheck};
use crate::config::{UnknownTypes, ValidationMode};
use crate::domain::FieldError;
use std::sync::Arc;

/// Checks events against a loaded catalog.
pub struct CatalogValidator {
    catalog: Arc<Catalog>,
    unknown_types: UnknownTypes,
    validation: ValidationMode,
}

impl CatalogValidator {
    pub fn new(
        catalog: Arc<Catalog>,
        unknown_types: UnknownTypes,
        validation: ValidationMode,
    ) -> Self {
        Self {
            catalog,
            unknown_types,
            validation,
        }
    }
}

impl EventValidator for CatalogValidator {
    fn check(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<(), Rejected> {
        if self.validation == ValidationMode::Off {
            // Only the type's existence is checked.
            return match self.catalog.event_type(event_type) {
                None if self.unknown_types == UnknownTypes::Reject => Err(unknown(event_type)),
                _ => Ok(()),
            };
        }
        match self
            .catalog
            .validate_payload(event_type, schema_version, payload)
        {
            Ok(()) => Ok(()),
            Err(PayloadCheck::UnknownEventType { .. }) => match self.unknown_types {
                UnknownTypes::Reject => Err(unknown(event_type)),
                UnknownTypes::Accept => Ok(()),
            },
            Err(PayloadCheck::UnknownVersion { version, known, .. }) => Err(Rejected {
                code: "schema_violation",
                errors: vec![FieldError::new(
                    "schema_version",
                    format!("`{event_type}` has no schema version {version}; known: {known:?}"),
                )],
            }),
            Err(PayloadCheck::Invalid { violations }) => {
                if self.validation == ValidationMode::Warn {
                    metrics::counter!("ipm_schema_violations_accepted_total").increment(1);
                    tracing::warn!(
                        event_type,
                        violations = violations.len(),
                        "payload violates its schema (validation = warn)"
                    );
                    return Ok(());
                }
                Err(Rejected {
                    code: "schema_violation",
                    errors: violations
                        .into_iter()
                        .map(|v| FieldError::new(format!("/payload{}", v.pointer), v.message))
                        .collect(),
                })
            }
        }
    }
}

fn unknown(event_type: &str) -> Rejected {
    Rejected {
        code: "unknown_event_type",
        errors: vec![FieldError::new(
            "event_type",
            format!("`{event_type}` is not in the catalog (see GET /v1/catalog/event-types)"),
        )],
    }
}
