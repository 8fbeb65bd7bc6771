//! Shared pagination rules (SPEC §2): `limit` default 100, 1..=1000; `{data, next_cursor, has_more}`.
use super::problem::ApiError;
use serde::{Deserialize, Serialize};

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

/// The query parameters of a plain list: `limit` and `cursor` (unknown parameters are refused).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}
