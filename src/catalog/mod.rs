//! The event catalog: what events exist, what they look like, which states an entity moves
//! through, and what consumers of each stream can rely on (SPEC §5).
//!
//! Pure domain code: no HTTP, no SQL. The format is documented in `docs/catalog.md`.
//!
//! Layout:
//! - `files` — serde structs of the TOML/JSON files (unknown keys rejected);
//! - `source` — the embedded catalog or a directory, flattened into a file map;
//! - `load` / `event` / `artifacts` — the loader and every load-time check (services and
//!   lifecycles / event files / schemas and specimens), collecting all [`CheckError`]s;
//! - `checks` — name, pointer and graph helpers;
//! - `validate` — schema compilation and payload validation (compiled once, reused);
//! - `specimens`, `conventions`, `contracts`, `maturity`, `asyncapi` — derived documents.

mod artifacts;
mod asyncapi;
mod checks;
mod contracts;
mod conventions;
mod error;
mod event;
mod files;
mod load;
mod maturity;
mod model;
mod source;
mod specimens;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

pub use contracts::{DeliverySemantics, ExportContract, TypeVersions};
pub use error::{CatalogErrors, CheckError, PayloadCheck, Violation};
pub use maturity::{
    CheckOutcome, EventTypeMaturity, Level, MaturityChecks, Scorecard, ServiceMaturity,
};
pub use model::{
    Classification, Deprecation, EventTypeEntry, Lifecycle, RedactionRule, SchemaVersion,
    ServiceEntry, Status, Strategy, Transition,
};

use event::{CompiledVersion, LoadedType};

/// A loaded, fully checked catalog. Immutable and cheap to share (`Arc<Catalog>`).
pub struct Catalog {
    services: Vec<ServiceEntry>,
    types: Vec<EventTypeEntry>,
    compiled: Vec<Vec<CompiledVersion>>,
    index: HashMap<String, usize>,
    lifecycles: Vec<Lifecycle>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("services", &self.services.len())
            .field("event_types", &self.types.len())
            .field("lifecycles", &self.lifecycles.len())
            .finish()
    }
}

impl Catalog {
    /// The example catalog embedded in the binary (the `catalog/` folder of the repository).
    ///
    /// # Errors
    /// Only if the embedded files are broken, which the test suite rules out.
    pub fn embedded() -> Result<Catalog, CatalogErrors> {
        load::load(&source::embedded())
    }

    /// Loads and checks the catalog in `dir` (one folder per service). Returns every check
    /// failure at once; paths in errors are relative to `dir`.
    ///
    /// # Errors
    /// [`CatalogErrors`] with one entry per failed check.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogErrors> {
        let files = source::directory(dir).map_err(CatalogErrors::from_vec)?;
        load::load(&files)
    }

    pub(crate) fn assemble(
        services: Vec<ServiceEntry>,
        types: Vec<LoadedType>,
        mut lifecycles: Vec<Lifecycle>,
    ) -> Self {
        let mut types = types;
        types.sort_by(|a, b| a.entry.event_type.cmp(&b.entry.event_type));
        lifecycles.sort_by(|a, b| a.entity.cmp(&b.entity));
        let mut entries = Vec::with_capacity(types.len());
        let mut compiled = Vec::with_capacity(types.len());
        let mut index = HashMap::with_capacity(types.len());
        for (i, t) in types.into_iter().enumerate() {
            index.insert(t.entry.event_type.clone(), i);
            entries.push(t.entry);
            compiled.push(t.versions);
        }
        Catalog {
            services,
            types: entries,
            compiled,
            index,
            lifecycles,
        }
    }

    /// Validates an event payload against the schema of `event_type` at `schema_version`.
    ///
    /// A version without a schema accepts any payload. Violations carry JSON pointers relative
    /// to the payload root (the caller prefixes `/payload` if it reports envelope pointers).
    ///
    /// # Errors
    /// [`PayloadCheck::UnknownEventType`], [`PayloadCheck::UnknownVersion`] or
    /// [`PayloadCheck::Invalid`] with every violation.
    pub fn validate_payload(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<(), PayloadCheck> {
        let Some(&i) = self.index.get(event_type) else {
            return Err(PayloadCheck::UnknownEventType {
                event_type: event_type.to_string(),
            });
        };
        let versions = &self.compiled[i];
        let Some(v) = versions.iter().find(|v| v.version == schema_version) else {
            return Err(PayloadCheck::UnknownVersion {
                event_type: event_type.to_string(),
                version: schema_version,
                known: versions.iter().map(|v| v.version).collect(),
            });
        };
        match &v.validator {
            None => Ok(()),
            Some(validator) => validate::violations(validator, payload)
                .map_err(|violations| PayloadCheck::Invalid { violations }),
        }
    }

    /// One event type by name.
    pub fn event_type(&self, name: &str) -> Option<&EventTypeEntry> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    /// Every event type, sorted by name (stable order for keyset pagination on the name).
    pub fn event_types(&self) -> &[EventTypeEntry] {
        &self.types
    }

    /// Every service, sorted by name.
    pub fn services(&self) -> &[ServiceEntry] {
        &self.services
    }

    /// Every lifecycle, sorted by entity.
    pub fn lifecycles(&self) -> &[Lifecycle] {
        &self.lifecycles
    }

    /// The lifecycle of `entity` (entities are unique across the catalog).
    pub fn lifecycle(&self, entity: &str) -> Option<&Lifecycle> {
        self.lifecycles.iter().find(|l| l.entity == entity)
    }

    /// The catalog as pagination, cursor, error, idempotency, signature and time conventions.
    pub fn conventions(&self) -> Value {
        conventions::conventions()
    }

    fn compiled_of(&self, name: &str) -> Option<(&EventTypeEntry, &[CompiledVersion])> {
        self.index
            .get(name)
            .map(|&i| (&self.types[i], self.compiled[i].as_slice()))
    }
}
