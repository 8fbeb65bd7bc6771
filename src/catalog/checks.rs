//! Small reusable checks: names, JSON pointers, schema walking, lifecycle graphs.

use std::collections::{BTreeSet, VecDeque};

use serde_json::Value;

/// True when `s` is a non-empty run of `[a-z0-9_]`.
pub(crate) fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks an event type name; returns its three segments or a reason.
pub(crate) fn split_event_type(name: &str) -> Result<[&str; 3], String> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [s, e, a] if [s, e, a].iter().all(|p| valid_segment(p)) => Ok([s, e, a]),
        _ => Err(format!(
            "invalid event type name `{name}`: expected `service.entity.action` with lower-case [a-z0-9_] segments"
        )),
    }
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape_pointer(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Whether the payload pointer `pointer` (with `*` or a number for array items) names a field
/// declared by `schema`, following `properties`, `items`, `allOf`/`anyOf`/`oneOf` and local `$ref`s.
pub(crate) fn pointer_resolves(schema: &Value, pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return false;
    };
    let segments: Vec<String> = rest.split('/').map(unescape_pointer).collect();
    resolves(schema, schema, &segments, 0)
}

fn resolves(root: &Value, node: &Value, segments: &[String], depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let Some((first, rest)) = segments.split_first() else {
        return true;
    };
    let Some(obj) = node.as_object() else {
        return false;
    };
    if let Some(Value::String(r)) = obj.get("$ref")
        && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
        && resolves(root, target, segments, depth + 1)
    {
        return true;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key)
            && branches
                .iter()
                .any(|b| resolves(root, b, segments, depth + 1))
        {
            return true;
        }
    }
    if let Some(child) = obj.get("properties").and_then(|p| p.get(first.as_str()))
        && resolves(root, child, rest, depth + 1)
    {
        return true;
    }
    let is_index = first == "*" || (!first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()));
    if is_index
        && let Some(items) = obj.get("items")
        && items.is_object()
        && resolves(root, items, rest, depth + 1)
    {
        return true;
    }
    false
}

/// States of a lifecycle not reachable from `initial` through `edges`, in declaration order.
pub(crate) fn unreachable_states<'a>(
    states: &'a [String],
    initial: &str,
    edges: &[(&str, &str)],
) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([initial]);
    seen.insert(initial);
    while let Some(state) = queue.pop_front() {
        for &(from, to) in edges {
            if from == state && seen.insert(to) {
                queue.push_back(to);
            }
        }
    }
    states
        .iter()
        .map(String::as_str)
        .filter(|s| !seen.contains(s))
        .collect()
}

/// Property paths of a schema whose names look like personal data (email, phone, names, addresses,
/// birth dates, national ids), as payload pointers with `*` for array items.
pub(crate) fn personal_data_fields(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_personal(schema, schema, "", &mut out, 0);
    out.sort();
    out.dedup();
    out
}

const PERSONAL_MARKERS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "given_name",
    "family_name",
    "recipient_name",
    "contact_name",
    "customer_name",
    "birth",
    "ssn",
    "tax_id",
    "iban",
    "address",
    "street",
    "postal_code",
];

fn collect_personal(root: &Value, node: &Value, prefix: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    let Some(obj) = node.as_object() else { return };
    if let Some(Value::String(r)) = obj.get("$ref")
        && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
    {
        collect_personal(root, target, prefix, out, depth + 1);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            for b in branches {
                collect_personal(root, b, prefix, out, depth + 1);
            }
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            let path = format!("{prefix}/{}", escape_pointer(name));
            if PERSONAL_MARKERS.iter().any(|m| name.contains(m)) {
                out.push(path.clone());
            }
            collect_personal(root, child, &path, out, depth + 1);
        }
    }
    if let Some(items) = obj.get("items") {
        collect_personal(root, items, &format!("{prefix}/*"), out, depth + 1);
    }
}

/// Whether a redaction rule at `rule` covers the field at `field` (same path or an ancestor).
pub(crate) fn covers(rule: &str, field: &str) -> bool {
    let norm = |p: &str| {
        p.split('/')
            .map(|s| {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    "*"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let (rule, field) = (norm(rule), norm(field));
    field == rule || field.starts_with(&format!("{rule}/"))
}
