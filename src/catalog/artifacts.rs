//! Files referenced from an event file: JSON Schemas (checked and compiled) and specimens
//! (parsed, envelope fields checked, payload validated against the version's schema).

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;

use super::error::CheckError;
use super::event::Specimen;
use super::files::{SpecimenFile, parse_json};
use super::source::{Files, text};
use super::validate::{compile, violations};

/// Resolves a path written in an event file (relative to the service folder).
fn resolve(dir: &str, rel: &str) -> Option<String> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|s| s == ".." || s == "." || s.is_empty());
    (!bad).then(|| format!("{dir}/{rel}"))
}

pub(crate) fn load_schema(
    files: &Files,
    dir: &str,
    rel: &str,
    key: &str,
    path: &str,
    errs: &mut Vec<CheckError>,
) -> (Option<Value>, Option<Arc<Validator>>) {
    let Some(file) = resolve(dir, rel) else {
        errs.push(CheckError::new(
            path,
            key,
            format!("`{rel}` must be a relative path inside the service folder"),
        ));
        return (None, None);
    };
    let raw = match text(files, &file) {
        Ok(t) => t,
        Err(m) => {
            errs.push(CheckError::new(
                path,
                key,
                format!("schema file `{file}`: {m}"),
            ));
            return (None, None);
        }
    };
    let schema: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => {
            errs.push(CheckError::new(&file, "", format!("invalid JSON: {e}")));
            return (None, None);
        }
    };
    match compile(&file, &schema) {
        Ok(v) => (Some(schema), Some(Arc::new(v))),
        Err(mut e) => {
            errs.append(&mut e);
            (Some(schema), None)
        }
    }
}

pub(crate) fn load_specimen(
    files: &Files,
    dir: &str,
    rel: &str,
    key: &str,
    path: &str,
    validator: Option<&Validator>,
    errs: &mut Vec<CheckError>,
) -> Option<Specimen> {
    let Some(file) = resolve(dir, rel) else {
        errs.push(CheckError::new(
            path,
            key,
            format!("`{rel}` must be a relative path inside the service folder"),
        ));
        return None;
    };
    let data: SpecimenFile = match text(files, &file) {
        Err(m) => {
            errs.push(CheckError::new(
                path,
                key,
                format!("specimen file `{file}`: {m}"),
            ));
            return None;
        }
        Ok(t) => match parse_json(t) {
            Ok(d) => d,
            Err((p, m)) => {
                errs.push(CheckError::new(&file, p, m));
                return None;
            }
        },
    };
    let before = errs.len();
    if data
        .event_id
        .as_deref()
        .is_some_and(|id| !valid_event_id(id))
    {
        errs.push(CheckError::new(
            &file,
            "/event_id",
            "event_id must be 1..128 chars of [A-Za-z0-9._:-]",
        ));
    }
    if let Some(t) = &data.occurred_at
        && chrono::DateTime::parse_from_rfc3339(t).is_err()
    {
        errs.push(CheckError::new(
            &file,
            "/occurred_at",
            format!("`{t}` is not an RFC 3339 timestamp"),
        ));
    }
    if let Some(v) = validator
        && let Err(vs) = violations(v, &Value::Object(data.payload.clone()))
    {
        for violation in vs {
            errs.push(CheckError::new(
                &file,
                format!("/payload{}", violation.pointer),
                violation.message,
            ));
        }
    }
    (errs.len() == before).then_some(Specimen { data })
}

fn valid_event_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}
