//! The CDC feed (SPEC §4): keyset pages over an org's log, cursors bound to their filters,
//! long-poll, and retention expiry.
use super::{ServiceError, Services};
use crate::domain::auth::Principal;
use crate::domain::filter::EventFilter;
use crate::store::StoredEvent;
use std::time::Duration;

/// Longest `wait` a client may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

/// A CDC request, validated.
#[derive(Debug, Clone)]
pub struct CdcQuery {
    pub filter: EventFilter,
    pub cursor: Option<String>,
    pub limit: usize,
    pub wait: Duration,
}

/// One page of the feed.
#[derive(Debug)]
pub struct CdcPage {
    pub events: Vec<StoredEvent>,
    /// Where to continue; present even on an empty page so a consumer can poll again.
    pub next_cursor: String,
    pub has_more: bool,
}

fn scope(org: &str) -> String {
    format!("cdc:{org}")
}

impl Services {
    /// Decodes a CDC cursor for `org` and `filter` into a sequence position.
    pub fn cdc_position(
        &self,
        org: &str,
        filter: &EventFilter,
        cursor: Option<&str>,
    ) -> Result<i64, ServiceError> {
        match cursor {
            None => Ok(0),
            Some(c) => self
                .cursors
                .decode_seq(&scope(org), &filter.fingerprint(), c)
                .map_err(|_| ServiceError::InvalidCursor),
        }
    }

    /// Encodes a CDC position for `org` and `filter`.
    pub fn cdc_cursor(&self, org: &str, filter: &EventFilter, seq: i64) -> String {
        self.cursors
            .encode_seq(&scope(org), &filter.fingerprint(), seq)
    }

    /// Reads one page of `org`'s feed.
    pub async fn cdc_page(
        &self,
        who: &Principal,
        org: &str,
        q: CdcQuery,
    ) -> Result<CdcPage, ServiceError> {
        who.can_read_org(org)?;
        let after = self.cdc_position(org, &q.filter, q.cursor.as_deref())?;
        if q.cursor.is_some() && after < self.store.purged_through().await? {
            return Err(ServiceError::CursorExpired);
        }
        let deadline = tokio::time::Instant::now() + q.wait;
        let mut commits = self.store.commits();
        loop {
            commits.borrow_and_update();
            let mut events = self.store.page(org, &q.filter, after, q.limit + 1).await?;
            let has_more = events.len() > q.limit;
            events.truncate(q.limit);
            if !events.is_empty() || q.wait.is_zero() || tokio::time::Instant::now() >= deadline {
                let last = events.last().map(|e| e.sequence).unwrap_or(after);
                return Ok(CdcPage {
                    next_cursor: self.cdc_cursor(org, &q.filter, last),
                    events,
                    has_more,
                });
            }
            // Wake on the next commit, but poll at least every 250 ms in case a backend's
            // notifications are coarse.
            let tick = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(tick, commits.changed()).await;
        }
    }
}
