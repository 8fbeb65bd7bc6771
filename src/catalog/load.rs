//! The loader: turns a file map into a [`Catalog`], running every SPEC §5 check and collecting
//! all failures instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Catalog;
use super::checks::{split_event_type, unreachable_states, valid_segment};
use super::error::{CatalogErrors, CheckError};
use super::event::{LoadedType, load_event};
use super::files::{LifecycleFile, ServiceFile, parse_toml};
use super::model::{Lifecycle, ServiceEntry};
use super::source::{Files, text};

/// Surfaces a stream is served on unless the service narrows them.
pub(crate) const ALL_SURFACES: [&str; 3] = ["cdc", "webhooks", "exports"];

pub(crate) fn load(files: &Files) -> Result<Catalog, CatalogErrors> {
    let mut errs = Vec::new();
    let dirs: BTreeSet<&str> = files
        .keys()
        .filter_map(|p| p.split_once('/').map(|(d, _)| d))
        .collect();
    let mut services = Vec::new();
    let mut types: Vec<LoadedType> = Vec::new();
    let mut lifecycles = Vec::new();
    let mut lifecycle_owner: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        let svc_path = format!("{dir}/service.toml");
        if !valid_segment(dir) {
            errs.push(CheckError::new(
                dir,
                "",
                "service folder name must be lower-case [a-z0-9_]",
            ));
            continue;
        }
        let raw = match text(files, &svc_path) {
            Ok(t) => t,
            Err(m) => {
                errs.push(CheckError::new(&svc_path, "", m));
                continue;
            }
        };
        let svc: ServiceFile = match parse_toml(raw) {
            Ok(s) => s,
            Err((p, m)) => {
                errs.push(CheckError::new(&svc_path, p, m));
                continue;
            }
        };
        check_service(dir, &svc_path, &svc, &mut errs);
        let prefix = format!("{dir}/events/");
        let first = types.len();
        // Files that failed to load still count as known under their file name, so one broken
        // event file does not cascade into "unknown event type" errors in the lifecycles.
        let mut unloaded: Vec<String> = Vec::new();
        for path in files
            .keys()
            .filter(|p| p.starts_with(&prefix) && p.ends_with(".toml"))
        {
            let stem = path[prefix.len()..path.len() - ".toml".len()].to_string();
            match load_event(files, dir, path, &svc, &mut errs) {
                Some(t) => {
                    if split_event_type(&t.entry.event_type).is_err() {
                        unloaded.push(stem);
                    }
                    types.push(t);
                }
                None => unloaded.push(stem),
            }
        }
        let known: BTreeSet<&str> = types[first..]
            .iter()
            .map(|t| t.entry.event_type.as_str())
            .chain(unloaded.iter().map(String::as_str))
            .collect();
        for (i, lc) in svc.lifecycles.iter().enumerate() {
            let base = format!("/lifecycles/{i}");
            if let Some(other) = lifecycle_owner.get(&lc.entity) {
                errs.push(CheckError::new(
                    &svc_path,
                    format!("{base}/entity"),
                    format!(
                        "duplicate lifecycle for entity `{}` (also in {other})",
                        lc.entity
                    ),
                ));
                continue;
            }
            lifecycle_owner.insert(lc.entity.clone(), svc_path.clone());
            check_lifecycle(dir, &svc_path, &base, &svc, lc, &known, &mut errs);
            lifecycles.push(Lifecycle {
                service: dir.to_string(),
                entity: lc.entity.clone(),
                summary: lc.summary.clone(),
                states: lc.states.clone(),
                initial: lc.initial.clone(),
                terminal: lc.terminal.clone(),
                entered_by: lc.entered_by.clone(),
                transitions: lc.transitions.clone(),
            });
        }
        let c = svc.contract.as_ref();
        services.push(ServiceEntry {
            service: dir.to_string(),
            summary: svc.summary,
            owner: svc.owner,
            entities: svc.entities,
            surfaces: c
                .and_then(|c| c.surfaces.clone())
                .unwrap_or_else(|| ALL_SURFACES.iter().map(|s| s.to_string()).collect()),
            retention_days: c.and_then(|c| c.retention_days),
            contract_notes: c.and_then(|c| c.notes.clone()),
        });
    }
    cross_checks(&types, &lifecycles, &mut errs);
    if !errs.is_empty() {
        return Err(CatalogErrors::from_vec(errs));
    }
    Ok(Catalog::assemble(services, types, lifecycles))
}

fn check_service(dir: &str, path: &str, svc: &ServiceFile, errs: &mut Vec<CheckError>) {
    if svc.service != dir {
        errs.push(CheckError::new(
            path,
            "/service",
            format!(
                "service `{}` does not match its folder `{dir}`",
                svc.service
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, e) in svc.entities.iter().enumerate() {
        if !valid_segment(e) {
            errs.push(CheckError::new(
                path,
                format!("/entities/{i}"),
                format!("invalid entity name `{e}`: lower-case [a-z0-9_] only"),
            ));
        } else if !seen.insert(e) {
            errs.push(CheckError::new(
                path,
                format!("/entities/{i}"),
                format!("duplicate entity `{e}`"),
            ));
        }
    }
    if let Some(surfaces) = svc.contract.as_ref().and_then(|c| c.surfaces.as_ref()) {
        for (i, s) in surfaces.iter().enumerate() {
            if !ALL_SURFACES.contains(&s.as_str()) {
                errs.push(CheckError::new(
                    path,
                    format!("/contract/surfaces/{i}"),
                    format!("unknown surface `{s}` (expected cdc, webhooks or exports)"),
                ));
            }
        }
    }
}

fn check_event_ref(dir: &str, name: &str, known: &BTreeSet<&str>) -> Option<String> {
    if let Err(m) = split_event_type(name) {
        return Some(m);
    }
    if name.split('.').next() != Some(dir) {
        return Some(format!(
            "event type `{name}` does not belong to service `{dir}`"
        ));
    }
    (!known.contains(name))
        .then(|| format!("unknown event type `{name}`: not defined in {dir}/events"))
}

fn check_lifecycle(
    dir: &str,
    path: &str,
    base: &str,
    svc: &ServiceFile,
    lc: &LifecycleFile,
    known: &BTreeSet<&str>,
    errs: &mut Vec<CheckError>,
) {
    let mut push = |p: String, m: String| errs.push(CheckError::new(path, p, m));
    if !svc.entities.is_empty() && !svc.entities.contains(&lc.entity) {
        push(
            format!("{base}/entity"),
            format!("entity `{}` is not declared in `entities`", lc.entity),
        );
    }
    if lc.states.is_empty() {
        push(
            format!("{base}/states"),
            "at least one state is required".into(),
        );
    }
    let mut states = BTreeSet::new();
    for (j, s) in lc.states.iter().enumerate() {
        if !valid_segment(s) {
            push(
                format!("{base}/states/{j}"),
                format!("invalid state name `{s}`: lower-case [a-z0-9_] only"),
            );
        } else if !states.insert(s.as_str()) {
            push(
                format!("{base}/states/{j}"),
                format!("duplicate state `{s}`"),
            );
        }
    }
    if !states.contains(lc.initial.as_str()) {
        push(
            format!("{base}/initial"),
            format!("initial state `{}` is not one of the states", lc.initial),
        );
    }
    for (j, t) in lc.terminal.iter().enumerate() {
        if !states.contains(t.as_str()) {
            push(
                format!("{base}/terminal/{j}"),
                format!("terminal state `{t}` is not one of the states"),
            );
        }
    }
    for (j, name) in lc.entered_by.iter().enumerate() {
        if let Some(m) = check_event_ref(dir, name, known) {
            push(format!("{base}/entered_by/{j}"), m);
        }
    }
    for (k, t) in lc.transitions.iter().enumerate() {
        let tb = format!("{base}/transitions/{k}");
        for (key, s) in [("from", &t.from), ("to", &t.to)] {
            if !states.contains(s.as_str()) {
                push(format!("{tb}/{key}"), format!("unknown state `{s}`"));
            }
        }
        if lc.terminal.contains(&t.from) {
            push(
                format!("{tb}/from"),
                format!("transition leaves terminal state `{}`", t.from),
            );
        }
        if let Some(m) = check_event_ref(dir, &t.event_type, known) {
            push(format!("{tb}/event_type"), m);
        }
    }
    if states.contains(lc.initial.as_str()) {
        let edges: Vec<(&str, &str)> = lc
            .transitions
            .iter()
            .map(|t| (t.from.as_str(), t.to.as_str()))
            .collect();
        for s in unreachable_states(&lc.states, &lc.initial, &edges) {
            push(
                format!("{base}/states"),
                format!(
                    "state `{s}` is not reachable from initial state `{}`",
                    lc.initial
                ),
            );
        }
    }
}

fn cross_checks(types: &[LoadedType], lifecycles: &[Lifecycle], errs: &mut Vec<CheckError>) {
    let mut first: HashMap<&str, &str> = HashMap::new();
    for t in types {
        let name = t.entry.event_type.as_str();
        if let Some(other) = first.get(name) {
            errs.push(CheckError::new(
                &t.file,
                "/event_type",
                format!("duplicate event type `{name}` (also defined in {other})"),
            ));
        } else {
            first.insert(name, &t.file);
        }
    }
    let bound: BTreeSet<&str> = lifecycles
        .iter()
        .flat_map(|l| {
            l.transitions
                .iter()
                .map(|t| t.event_type.as_str())
                .chain(l.entered_by.iter().map(String::as_str))
        })
        .collect();
    for t in types {
        if let Some(r) = &t
            .entry
            .deprecation
            .as_ref()
            .and_then(|d| d.replaced_by.clone())
            && !first.contains_key(r.as_str())
        {
            errs.push(CheckError::new(
                &t.file,
                "/replaced_by",
                format!("unknown event type `{r}`"),
            ));
        }
        if t.entry.not_lifecycle_bound.is_some() && bound.contains(t.entry.event_type.as_str()) {
            errs.push(CheckError::new(
                &t.file,
                "/not_lifecycle_bound",
                "the type is used by a lifecycle; remove `not_lifecycle_bound`",
            ));
        }
    }
}
