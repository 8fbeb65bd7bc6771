//! Validated names: event types, services, org/channel/facility ids, producer event ids.

/// Max length of org, channel and facility ids.
pub const MAX_SCOPE_ID_LEN: usize = 128;

fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks an event type `service.entity.action` (lower-case `[a-z0-9_]` segments).
pub fn check_event_type(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_segment(p)) {
        return Err(format!(
            "`{}` is not an event type of the form service.entity.action with lower-case [a-z0-9_] segments",
            truncate(s)
        ));
    }
    Ok(())
}

/// The service of an event type: its first dot-segment.
pub fn service_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// Checks a service name (one `[a-z0-9_]` segment).
pub fn check_service(s: &str) -> Result<(), String> {
    if is_segment(s) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a service name (lower-case [a-z0-9_], 1..64 chars)",
            truncate(s)
        ))
    }
}

/// Checks an event-type filter: an exact type or a prefix form such as `orders.*` / `orders.order.*`.
pub fn check_event_type_filter(s: &str) -> Result<(), String> {
    if let Some(prefix) = s.strip_suffix(".*") {
        let parts: Vec<&str> = prefix.split('.').collect();
        if (1..=2).contains(&parts.len()) && parts.iter().all(|p| is_segment(p)) {
            return Ok(());
        }
        return Err(format!(
            "`{}` is not a valid prefix form (e.g. `orders.*`)",
            truncate(s)
        ));
    }
    check_event_type(s)
}

/// Checks an org, channel or facility id: 1..128 chars of `[A-Za-z0-9._:-]`.
pub fn check_scope_id(s: &str) -> Result<(), String> {
    check_token(s, MAX_SCOPE_ID_LEN)
}

/// Checks a producer event id: 1..128 chars of `[A-Za-z0-9._:-]`.
pub fn check_event_id(s: &str) -> Result<(), String> {
    check_token(s, 128)
}

fn check_token(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1..{max} characters long"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(format!(
            "`{}` may only contain [A-Za-z0-9._:-]",
            truncate(s)
        ));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The regex pattern of event types, for OpenAPI.
pub const EVENT_TYPE_PATTERN: &str = r"^[a-z0-9_]{1,64}\.[a-z0-9_]{1,64}\.[a-z0-9_]{1,64}$";
/// The regex pattern of org/channel/facility/event ids, for OpenAPI.
pub const TOKEN_PATTERN: &str = r"^[A-Za-z0-9._:-]{1,128}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_event_type("orders.order.created").is_ok());
        assert!(check_event_type("Orders.order.created").is_err());
        assert!(check_event_type("orders.order").is_err());
        assert_eq!(service_of("orders.order.created"), "orders");
        assert!(check_event_type_filter("orders.*").is_ok());
        assert!(check_event_type_filter("orders.order.*").is_ok());
        assert!(check_event_type_filter("*").is_err());
        assert!(check_scope_id("fac_berlin-01:a.b").is_ok());
        assert!(check_scope_id("a b").is_err());
        assert!(check_scope_id(&"x".repeat(129)).is_err());
    }
}
