//! Which webhooks an appended event fans out to: shared by every backend, so "matching is
//! decided when the event is ingested" means the same thing everywhere.
use super::EventRow;
use crate::domain::filter::EventAttrs;
use crate::domain::webhook::{WebhookFilter, WebhookFilters};

/// An active or paused webhook as fan-out sees it.
pub(crate) struct Subscription {
    pub id: String,
    /// Paused webhooks get `held` deliveries (delivered or skipped on enable).
    pub paused: bool,
    filter: WebhookFilter,
}

impl Subscription {
    /// Parses a stored webhook's filters. Filters were validated on write; an unreadable row
    /// matches nothing (and is logged) rather than failing every append of the org.
    pub(crate) fn parse(id: String, filters: &str, paused: bool) -> Option<Subscription> {
        match serde_json::from_str::<WebhookFilters>(filters)
            .ok()
            .and_then(|f| WebhookFilter::parse(&f).ok())
        {
            Some(filter) => Some(Subscription { id, paused, filter }),
            None => {
                tracing::error!(webhook_id = %id, "unreadable webhook filters; not fanning out");
                None
            }
        }
    }

    /// Whether `r` is delivered to this webhook.
    pub(crate) fn matches(&self, r: &EventRow) -> bool {
        self.filter.matches(&EventAttrs {
            service: &r.service,
            event_type: &r.event_type,
            channel_id: r.channel_id.as_deref(),
            facility_id: r.facility_id.as_deref(),
            occurred_at: r.occurred_at,
        })
    }

    /// The status a new delivery to this webhook starts in.
    pub(crate) fn initial_status(&self) -> &'static str {
        if self.paused { "held" } else { "pending" }
    }
}
