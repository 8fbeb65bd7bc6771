//! Event filters shared by the CDC feed (and later webhooks and exports).
use super::FieldError;
use super::names;
use super::time::parse_rfc3339;
use sha2::{Digest, Sha256};

/// A validated filter over an org's event stream. All parts are optional and combine with AND;
/// the lists combine with OR inside themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Services (exact).
    pub services: Vec<String>,
    /// Exact event types.
    pub event_types: Vec<String>,
    /// Prefixes from `orders.*` forms, kept with their trailing dot (`orders.`).
    pub type_prefixes: Vec<String>,
    /// Channel id (exact).
    pub channel_id: Option<String>,
    /// Facility id (exact).
    pub facility_id: Option<String>,
    /// `occurred_at >= since` (Unix nanoseconds).
    pub since: Option<i64>,
    /// `occurred_at < until` (Unix nanoseconds).
    pub until: Option<i64>,
}

/// Raw filter input, as it comes from a query string or a JSON body.
#[derive(Debug, Clone, Default)]
pub struct FilterInput<'a> {
    pub services: &'a [String],
    pub event_types: &'a [String],
    pub channel_id: Option<&'a str>,
    pub facility_id: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl EventFilter {
    /// Validates raw input, collecting every problem.
    pub fn parse(input: FilterInput<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut f = EventFilter::default();
        for s in input.services {
            match names::check_service(s) {
                Ok(()) => f.services.push(s.clone()),
                Err(m) => errors.push(FieldError::new("service", m)),
            }
        }
        for t in input.event_types {
            match names::check_event_type_filter(t) {
                Ok(()) => match t.strip_suffix('*') {
                    Some(prefix) => f.type_prefixes.push(prefix.to_string()),
                    None => f.event_types.push(t.clone()),
                },
                Err(m) => errors.push(FieldError::new("event_type", m)),
            }
        }
        for (field, value, slot) in [
            ("channel_id", input.channel_id, &mut f.channel_id),
            ("facility_id", input.facility_id, &mut f.facility_id),
        ] {
            if let Some(v) = value {
                match names::check_scope_id(v) {
                    Ok(()) => *slot = Some(v.to_string()),
                    Err(m) => errors.push(FieldError::new(field, m)),
                }
            }
        }
        for (field, value, slot) in [
            ("since", input.since, &mut f.since),
            ("until", input.until, &mut f.until),
        ] {
            if let Some(v) = value {
                match parse_rfc3339(v) {
                    Ok(i) => *slot = Some(i.unix_nanos),
                    Err(m) => errors.push(FieldError::new(field, m)),
                }
            }
        }
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            errors.push(FieldError::new("until", "must be later than since"));
        }
        f.services.sort();
        f.services.dedup();
        f.event_types.sort();
        f.event_types.dedup();
        f.type_prefixes.sort();
        f.type_prefixes.dedup();
        if errors.is_empty() {
            Ok(f)
        } else {
            Err(errors)
        }
    }

    /// True when the event's attributes match this filter.
    pub fn matches(&self, e: &EventAttrs<'_>) -> bool {
        (self.services.is_empty() || self.services.iter().any(|s| s == e.service))
            && ((self.event_types.is_empty() && self.type_prefixes.is_empty())
                || self.event_types.iter().any(|t| t == e.event_type)
                || self
                    .type_prefixes
                    .iter()
                    .any(|p| e.event_type.starts_with(p.as_str())))
            && self
                .channel_id
                .as_deref()
                .is_none_or(|c| Some(c) == e.channel_id)
            && self
                .facility_id
                .as_deref()
                .is_none_or(|c| Some(c) == e.facility_id)
            && self.since.is_none_or(|s| e.occurred_at >= s)
            && self.until.is_none_or(|u| e.occurred_at < u)
    }

    /// A stable fingerprint of the filter; cursors are bound to it.
    pub fn fingerprint(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        let mut put = |tag: &str, v: &str| {
            h.update(tag.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        };
        self.services.iter().for_each(|s| put("s", s));
        self.event_types.iter().for_each(|s| put("t", s));
        self.type_prefixes.iter().for_each(|s| put("p", s));
        if let Some(c) = &self.channel_id {
            put("c", c);
        }
        if let Some(c) = &self.facility_id {
            put("f", c);
        }
        if let Some(s) = self.since {
            put("a", &s.to_string());
        }
        if let Some(u) = self.until {
            put("b", &u.to_string());
        }
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }
}

/// The attributes of an event a filter looks at.
#[derive(Debug, Clone, Copy)]
pub struct EventAttrs<'a> {
    pub service: &'a str,
    pub event_type: &'a str,
    pub channel_id: Option<&'a str>,
    pub facility_id: Option<&'a str>,
    pub occurred_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let services = vec!["orders".to_string()];
        let types = vec!["orders.order.*".to_string()];
        let f = EventFilter::parse(FilterInput {
            services: &services,
            event_types: &types,
            facility_id: Some("fac_1"),
            ..Default::default()
        })
        .unwrap();
        let e = EventAttrs {
            service: "orders",
            event_type: "orders.order.created",
            channel_id: None,
            facility_id: Some("fac_1"),
            occurred_at: 0,
        };
        assert!(f.matches(&e));
        assert!(!f.matches(&EventAttrs {
            facility_id: Some("fac_2"),
            ..e
        }));
        assert!(!f.matches(&EventAttrs {
            event_type: "orders.line.added",
            ..e
        }));
        let bad = vec!["Orders".to_string()];
        let err = EventFilter::parse(FilterInput {
            services: &bad,
            since: Some("x"),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.len(), 2);
        assert_ne!(f.fingerprint(), EventFilter::default().fingerprint());
    }
}
