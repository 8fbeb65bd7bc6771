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
        raw: &serde_json::value::RawValue,
    ) -> Result<(), Rejected> {
        let known = self.catalog.event_type(event_type).is_some();
        if !known {
            return match self.unknown_types {
                UnknownTypes::Reject => Err(unknown(event_type)),
                UnknownTypes::Accept => Ok(()),
            };
        }
        if self.validation == ValidationMode::Off {
            return Ok(());
        }
        // Parse only here: events of unknown types, or with validation off, never pay for it.
        let payload: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| Rejected {
            code: "validation_failed",
            errors: vec![FieldError::new("payload", e.to_string())],
        })?;
        let payload = &payload;
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
