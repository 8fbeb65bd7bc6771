//! Loading and checking one `events/<event_type>.toml` file with its schemas and specimens.

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;

use super::artifacts::{load_schema, load_specimen};
use super::checks::{pointer_resolves, split_event_type};
use super::error::CheckError;
use super::files::{EventFile, ServiceFile, SpecimenFile, parse_toml};
use super::model::{Deprecation, EventTypeEntry, RedactionRule, SchemaVersion, Status};
use super::source::{Files, text};

/// A loaded specimen: the parsed contents of its file.
#[derive(Debug)]
pub(crate) struct Specimen {
    pub data: SpecimenFile,
}

/// A schema version ready for validation.
pub(crate) struct CompiledVersion {
    pub version: u32,
    pub validator: Option<Arc<Validator>>,
    pub specimens: Vec<Specimen>,
}

/// An event type with everything needed at run time.
pub(crate) struct LoadedType {
    pub file: String,
    pub entry: EventTypeEntry,
    pub versions: Vec<CompiledVersion>,
}

/// Loads `path` (an event file of service folder `dir`); pushes every problem to `errs`.
pub(crate) fn load_event(
    files: &Files,
    dir: &str,
    path: &str,
    svc: &ServiceFile,
    errs: &mut Vec<CheckError>,
) -> Option<LoadedType> {
    let err = |pointer: &str, msg: String| CheckError::new(path, pointer, msg);
    let raw = match text(files, path) {
        Ok(t) => t,
        Err(m) => {
            errs.push(err("", m));
            return None;
        }
    };
    let ev: EventFile = match parse_toml(raw) {
        Ok(ev) => ev,
        Err((p, m)) => {
            errs.push(err(&p, m));
            return None;
        }
    };
    match split_event_type(&ev.event_type) {
        Err(m) => errs.push(err("/event_type", m)),
        Ok([s, e, a]) => {
            if s != dir {
                errs.push(err(
                    "/event_type",
                    format!("service segment `{s}` does not match the folder `{dir}`"),
                ));
            }
            if e != ev.entity {
                errs.push(err(
                    "/entity",
                    format!(
                        "entity `{}` does not match the event type's entity segment `{e}`",
                        ev.entity
                    ),
                ));
            }
            if a != ev.action {
                errs.push(err(
                    "/action",
                    format!(
                        "action `{}` does not match the event type's action segment `{a}`",
                        ev.action
                    ),
                ));
            }
        }
    }
    if !svc.entities.is_empty() && !svc.entities.contains(&ev.entity) {
        errs.push(err(
            "/entity",
            format!(
                "entity `{}` is not declared in {dir}/service.toml",
                ev.entity
            ),
        ));
    }
    let deprecation = check_deprecation(&ev, &err, errs);

    if ev.versions.is_empty() {
        errs.push(err(
            "/versions",
            "at least one schema version is required".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut versions = Vec::new();
    let mut public_versions = Vec::new();
    for (i, v) in ev.versions.iter().enumerate() {
        let Ok(number) = u32::try_from(v.version) else {
            errs.push(err(
                &format!("/versions/{i}/version"),
                format!("version must be a positive integer, got {}", v.version),
            ));
            continue;
        };
        if number == 0 {
            errs.push(err(
                &format!("/versions/{i}/version"),
                "version must be a positive integer, got 0".into(),
            ));
            continue;
        }
        if !seen.insert(number) {
            errs.push(err(
                &format!("/versions/{i}/version"),
                format!("duplicate version {number}"),
            ));
            continue;
        }
        let (schema, validator) = match &v.schema {
            None => (None, None),
            Some(rel) => load_schema(
                files,
                dir,
                rel,
                &format!("/versions/{i}/schema"),
                path,
                errs,
            ),
        };
        let mut specimens = Vec::new();
        for (j, rel) in v.specimens.iter().enumerate() {
            let key = format!("/versions/{i}/specimens/{j}");
            if let Some(s) = load_specimen(files, dir, rel, &key, path, validator.as_deref(), errs)
            {
                specimens.push(s);
            }
        }
        public_versions.push(SchemaVersion {
            version: number,
            schema,
            specimen_count: specimens.len(),
            changes: v.changes.clone(),
        });
        versions.push(CompiledVersion {
            version: number,
            validator,
            specimens,
        });
    }
    versions.sort_by_key(|v| v.version);
    public_versions.sort_by_key(|v| v.version);

    let schemas: Vec<&Value> = public_versions
        .iter()
        .filter_map(|v| v.schema.as_ref())
        .collect();
    // A declared schema that failed to load is already reported; resolving pointers against
    // the remaining versions would only add noise.
    let schema_failed = ev.versions.iter().filter(|v| v.schema.is_some()).count() > schemas.len();
    let mut redaction = Vec::new();
    for (k, r) in ev.redaction.iter().flatten().enumerate() {
        let key = format!("/redaction/{k}/pointer");
        if !r.pointer.starts_with('/') {
            errs.push(err(
                &key,
                format!(
                    "`{}` is not a JSON pointer (must start with `/`)",
                    r.pointer
                ),
            ));
        } else if schemas.is_empty() && !schema_failed {
            errs.push(err(
                &key,
                "cannot resolve the pointer: no version has a schema".into(),
            ));
        } else if !schema_failed && !schemas.iter().any(|s| pointer_resolves(s, &r.pointer)) {
            errs.push(err(
                &key,
                format!(
                    "pointer `{}` does not resolve in any schema version",
                    r.pointer
                ),
            ));
        }
        redaction.push(RedactionRule {
            pointer: r.pointer.clone(),
            classification: r.classification,
            strategy: r.strategy,
            note: r.note.clone(),
        });
    }

    let (service, entity, action) = match split_event_type(&ev.event_type) {
        Ok([s, e, a]) => (s.to_string(), e.to_string(), a.to_string()),
        Err(_) => (dir.to_string(), ev.entity.clone(), ev.action.clone()),
    };
    let owner_declared = ev.owner.is_some();
    let entry = EventTypeEntry {
        latest_version: public_versions.last().map_or(0, |v| v.version),
        event_type: ev.event_type,
        service,
        entity,
        action,
        summary: ev.summary,
        owner: ev.owner.or_else(|| svc.owner.clone()),
        owner_declared,
        status: ev.status,
        deprecation,
        not_lifecycle_bound: ev.not_lifecycle_bound,
        redaction_declared: ev.redaction.is_some(),
        redaction,
        versions: public_versions,
    };
    Some(LoadedType {
        file: path.to_string(),
        entry,
        versions,
    })
}

fn check_deprecation(
    ev: &EventFile,
    err: &dyn Fn(&str, String) -> CheckError,
    errs: &mut Vec<CheckError>,
) -> Option<Deprecation> {
    if ev.status != Status::Deprecated {
        for (key, present) in [
            ("/deprecated_since", ev.deprecated_since.is_some()),
            ("/deprecation_message", ev.deprecation_message.is_some()),
            ("/replaced_by", ev.replaced_by.is_some()),
        ] {
            if present {
                errs.push(err(key, "only allowed when status is `deprecated`".into()));
            }
        }
        return None;
    }
    let since = match &ev.deprecated_since {
        None => {
            errs.push(err(
                "/deprecated_since",
                "required when status is `deprecated`".into(),
            ));
            String::new()
        }
        Some(d) => {
            if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
                errs.push(err(
                    "/deprecated_since",
                    format!("`{d}` is not a date (YYYY-MM-DD)"),
                ));
            }
            d.clone()
        }
    };
    if ev.deprecation_message.is_none() {
        errs.push(err(
            "/deprecation_message",
            "required when status is `deprecated`".into(),
        ));
    }
    Some(Deprecation {
        since,
        message: ev.deprecation_message.clone().unwrap_or_default(),
        replaced_by: ev.replaced_by.clone(),
    })
}
