//! Shared pagination rules (SPEC §2): `limit` default 100, 1..=1000; `{data, next_cursor, has_more}`.
use super::problem::ApiError;
use serde::Serialize;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Validates a `limit` query value.
pub fn limit(v: Option<i64>) -> Result<usize, ApiError> {
    match v {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T: utoipa::ToSchema> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; null when there is none.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}
