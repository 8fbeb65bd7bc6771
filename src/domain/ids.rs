//! Prefixed, time-sortable identifiers (`evt_`, `key_`, …) built on ULIDs.
use ulid::Ulid;

/// The kinds of ids IPM hands out, each with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Event,
    Key,
    Webhook,
    Delivery,
    Inbox,
    Alert,
    Rule,
}

impl IdKind {
    /// The textual prefix, including the underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Event => "evt_",
            IdKind::Key => "key_",
            IdKind::Webhook => "whk_",
            IdKind::Delivery => "dlv_",
            IdKind::Inbox => "inb_",
            IdKind::Alert => "alr_",
            IdKind::Rule => "rul_",
        }
    }
}

/// A new id of the given kind: prefix + a ULID (time-sortable, 128 bits).
pub fn new_id(kind: IdKind) -> String {
    format!("{}{}", kind.prefix(), Ulid::generate())
}

/// True when `s` is a well-formed id of `kind` (prefix + 26 Crockford base32 chars).
pub fn is_id(kind: IdKind, s: &str) -> bool {
    s.strip_prefix(kind.prefix())
        .is_some_and(|rest| Ulid::from_string(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = new_id(IdKind::Event);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(IdKind::Event);
        assert!(a.starts_with("evt_") && a.len() == 30);
        assert!(a < b);
        assert!(is_id(IdKind::Event, &a));
        assert!(!is_id(IdKind::Key, &a));
        assert!(!is_id(IdKind::Event, "evt_nope"));
    }
}
