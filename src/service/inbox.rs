//! The operator inbox (SPEC §9): items such as `webhook_paused`, org-scoped, acknowledged once.
use super::webhooks::Listed;
use super::{ServiceError, Services};
use crate::domain::auth::Principal;
use crate::domain::context::RequestContext;
use crate::domain::ids::{IdKind, is_id};
use crate::store::InboxRow;
use serde::{Deserialize, Serialize};

/// What an item points at.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxRef {
    #[serde(rename = "type")]
    pub type_: String,
    pub id: String,
}

/// An inbox item.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxItem {
    pub id: String,
    /// e.g. `webhook_paused`, `alert_fired`, `alert_resolved`.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub title: String,
    pub body: String,
    #[serde(rename = "ref")]
    pub ref_: InboxRef,
    pub created_at: String,
    pub acked_at: Option<String>,
}

impl From<InboxRow> for InboxItem {
    fn from(r: InboxRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            severity: r.severity,
            title: r.title,
            body: r.body,
            ref_: InboxRef {
                type_: r.ref_type,
                id: r.ref_id,
            },
            created_at: r.created_at,
            acked_at: r.acked_at,
        }
    }
}

impl Services {
    /// The org's inbox, newest first.
    pub async fn list_inbox(
        &self,
        who: &Principal,
        org: &str,
        unread: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Listed<InboxItem>, ServiceError> {
        who.can_read_org(org)?;
        let binding = format!("{org}:{unread}");
        let before = match cursor {
            Some(c) => Some(
                self.cursors
                    .decode("inbox", binding.as_bytes(), c)
                    .map_err(|_| ServiceError::InvalidCursor)?,
            ),
            None => None,
        };
        let mut rows = self
            .store
            .list_inbox(org, unread, before.as_deref(), limit + 1)
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last()
                .map(|r| self.cursors.encode("inbox", binding.as_bytes(), &r.id))
        } else {
            None
        };
        Ok(Listed {
            items: rows.into_iter().map(InboxItem::from).collect(),
            next_cursor,
        })
    }

    /// Acknowledges an item (idempotent).
    pub async fn ack_inbox(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        org: &str,
        id: &str,
    ) -> Result<InboxItem, ServiceError> {
        who.can_manage_org(org)?;
        if !is_id(IdKind::Inbox, id) {
            return Err(ServiceError::NotFound("inbox item"));
        }
        self.store
            .ack_inbox(org, id, &ctx.at, &ctx.to_json())
            .await?
            .map(InboxItem::from)
            .ok_or(ServiceError::NotFound("inbox item"))
    }
}
