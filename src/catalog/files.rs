//! The on-disk catalog format: serde structs for `service.toml`, `events/*.toml` and specimen
//! files. Every struct rejects unknown keys so typos fail loudly. See `docs/catalog.md`.

use serde::Deserialize;

use super::model::{Classification, Status, Strategy, Transition};

/// `<service>/service.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceFile {
    pub service: String,
    pub summary: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub entities: Vec<String>,
    #[serde(default)]
    pub contract: Option<ContractFile>,
    #[serde(default)]
    pub lifecycles: Vec<LifecycleFile>,
}

/// `[contract]` table of `service.toml`: the parts of the export contract a service decides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContractFile {
    #[serde(default)]
    pub surfaces: Option<Vec<String>>,
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// One `[[lifecycles]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LifecycleFile {
    pub entity: String,
    #[serde(default)]
    pub summary: Option<String>,
    pub states: Vec<String>,
    pub initial: String,
    #[serde(default)]
    pub terminal: Vec<String>,
    #[serde(default)]
    pub entered_by: Vec<String>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
}

/// `<service>/events/<event_type>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventFile {
    pub event_type: String,
    pub entity: String,
    pub action: String,
    pub summary: String,
    #[serde(default)]
    pub owner: Option<String>,
    pub status: Status,
    #[serde(default)]
    pub deprecated_since: Option<String>,
    #[serde(default)]
    pub deprecation_message: Option<String>,
    #[serde(default)]
    pub replaced_by: Option<String>,
    #[serde(default)]
    pub not_lifecycle_bound: Option<String>,
    #[serde(default)]
    pub redaction: Option<Vec<RedactionFile>>,
    #[serde(default)]
    pub versions: Vec<VersionFile>,
}

/// One `[[redaction]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedactionFile {
    pub pointer: String,
    pub classification: Classification,
    pub strategy: Strategy,
    #[serde(default)]
    pub note: Option<String>,
}

/// One `[[versions]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionFile {
    pub version: i64,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub specimens: Vec<String>,
    #[serde(default)]
    pub changes: Option<String>,
}

/// A specimen file: an example payload plus the envelope fields that make it realistic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecimenFile {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub facility_id: Option<String>,
    #[serde(default)]
    pub request_context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(default)]
    pub source_refs: Option<Vec<serde_json::Value>>,
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// Parses TOML, reporting a failure with the key path (as a JSON pointer) where it happened.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, (String, String)> {
    let de = toml::Deserializer::parse(text).map_err(|e| (String::new(), clean(e.message())))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = path_to_pointer(e.path());
        (pointer, clean(e.inner().message()))
    })
}

/// Parses a JSON document, reporting failures with the key path as a JSON pointer.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = path_to_pointer(e.path());
        (pointer, e.inner().to_string())
    })
}

fn clean(message: &str) -> String {
    message.trim().replace('\n', " ")
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&super::checks::escape_pointer(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}
