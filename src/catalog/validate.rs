//! Schema compilation and payload validation. Validators are compiled once at load; the hot path
//! is a single `is_valid` call, and errors are only collected when it fails.

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::checks::escape_pointer;
use super::error::{CheckError, Violation};

/// The only `$schema` the catalog accepts (absent means the same).
pub(crate) const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Checks `schema` against the draft 2020-12 meta-schema and compiles it (formats asserted).
/// Every problem is reported against `file`.
pub(crate) fn compile(file: &str, schema: &Value) -> Result<Validator, Vec<CheckError>> {
    if !schema.is_object() {
        return Err(vec![CheckError::new(
            file,
            "",
            "a JSON Schema must be a JSON object",
        )]);
    }
    if let Some(s) = schema.get("$schema")
        && s.as_str() != Some(DRAFT_2020_12)
    {
        return Err(vec![CheckError::new(
            file,
            "/$schema",
            format!("unsupported `$schema` {s}: only {DRAFT_2020_12} is accepted"),
        )]);
    }
    let meta = jsonschema::draft202012::meta::validate(schema);
    if let Err(e) = meta {
        return Err(vec![CheckError::new(
            file,
            e.instance_path().as_str(),
            format!("not a valid JSON Schema (draft 2020-12): {}", e),
        )]);
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| {
            vec![CheckError::new(
                file,
                "",
                format!("schema does not compile: {e}"),
            )]
        })
}

/// Validates `instance`; `Ok` on success, otherwise every violation with its pointer.
pub(crate) fn violations(validator: &Validator, instance: &Value) -> Result<(), Vec<Violation>> {
    if validator.is_valid(instance) {
        return Ok(());
    }
    let mut out: Vec<Violation> = validator
        .iter_errors(instance)
        .map(|e| {
            let mut pointer = e.instance_path().as_str().to_string();
            if let ValidationErrorKind::Required { property } = e.kind() {
                let name = property
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| property.to_string());
                pointer = format!("{pointer}/{}", escape_pointer(&name));
            }
            Violation {
                pointer,
                message: e.to_string(),
            }
        })
        .collect();
    if out.is_empty() {
        // `is_valid` and `iter_errors` disagreeing would be a library bug; never report "valid".
        out.push(Violation {
            pointer: String::new(),
            message: "payload does not match the schema".into(),
        });
    }
    Err(out)
}
