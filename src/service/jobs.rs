//! What export and import jobs share: the file store, limits, ids and JSON helpers.
use super::ServiceError;
use crate::store::StoreError;
use crate::store::files::FileStore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Default limit of one import's uploaded data: 1 GiB.
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 1 << 30;

/// The job side of the application: where files live and how big uploads may get.
pub struct JobEnv {
    /// Export output and import uploads.
    pub files: Arc<dyn FileStore>,
    /// Largest total upload of one import job, in bytes.
    pub max_import_bytes: u64,
}

/// A new job id with the given prefix (`exp_`, `imp_`): time-sortable, like every IPM id.
pub fn new_job_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::generate())
}

/// True when `s` looks like a job id with `prefix`.
pub fn is_job_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|r| ulid::Ulid::from_string(r).is_ok())
}

/// Parses one of a job's JSON columns; a column that does not parse is a store fault.
pub fn from_col<T: DeserializeOwned>(text: &str) -> Result<T, ServiceError> {
    serde_json::from_str(text)
        .map_err(|e| ServiceError::Store(StoreError::Backend(format!("bad job JSON: {e}"))))
}

/// Renders a value for a job's JSON column.
pub fn to_col<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Wraps an I/O failure of the file store.
pub fn io_err(e: std::io::Error) -> ServiceError {
    ServiceError::Store(StoreError::Backend(format!("file store: {e}")))
}
