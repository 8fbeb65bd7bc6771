//! The embedded example catalog: loads, has the promised breadth, and every specimen (and every
//! mutation breaking it) behaves.

use serde_json::Value;

use crate::catalog::{Catalog, PayloadCheck};

fn catalog() -> Catalog {
    match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded catalog does not load:\n{e}"),
    }
}

#[test]
fn embedded_catalog_loads_with_promised_breadth() {
    let c = catalog();
    let services: Vec<&str> = c
        .services()
        .iter()
        .map(|s| s.service.as_str())
        .filter(|s| *s != "ipm")
        .collect();
    assert!(services.len() >= 4, "{services:?}");
    let non_ipm = c
        .event_types()
        .iter()
        .filter(|t| t.service != "ipm")
        .count();
    assert!(non_ipm >= 20, "{non_ipm}");
    assert!(c.lifecycles().len() >= 4);
    for name in [
        "ipm.webhook.paused",
        "ipm.webhook.enabled",
        "ipm.webhook.test",
        "ipm.kpi.alert_fired",
        "ipm.kpi.alert_resolved",
    ] {
        assert!(c.event_type(name).is_some(), "{name}");
    }
    let names: Vec<&str> = c
        .event_types()
        .iter()
        .map(|t| t.event_type.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(c.event_types().iter().any(|t| t.versions.len() >= 2));
    assert!(c.lifecycle("order").is_some() && c.lifecycle("shipment").is_some());
}

#[test]
fn every_type_and_version_has_a_validating_specimen() {
    let c = catalog();
    for t in c.event_types() {
        let specimens = c.specimens(&t.event_type);
        for v in &t.versions {
            let of_version: Vec<&Value> = specimens
                .iter()
                .filter(|s| s["schema_version"] == v.version)
                .collect();
            assert!(
                !of_version.is_empty(),
                "{} v{} has no specimen",
                t.event_type,
                v.version
            );
            for s in of_version {
                for key in [
                    "id",
                    "sequence",
                    "ingested_at",
                    "service",
                    "event_id",
                    "event_type",
                    "org_id",
                    "occurred_at",
                    "payload",
                ] {
                    assert!(s.get(key).is_some(), "{} lacks {key}", t.event_type);
                }
                assert_eq!(s["event_type"], Value::from(t.event_type.clone()));
                assert_eq!(
                    c.validate_payload(&t.event_type, v.version, &s["payload"]),
                    Ok(()),
                    "{s}"
                );
            }
        }
    }
}

/// Breaks `payload` against `schema`: drops a required property, or else gives a property the
/// wrong type. Returns the mutated payload and the pointer that must be reported.
fn break_payload(schema: &Value, payload: &Value) -> (Value, String) {
    let mut broken = payload.clone();
    if let Some(field) = schema["required"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        && let Some(obj) = broken.as_object_mut()
    {
        obj.remove(field);
        return (broken, format!("/{field}"));
    }
    let Some((key, _)) = payload.as_object().and_then(|o| o.iter().next()) else {
        panic!("specimen payload is empty")
    };
    broken[key] = Value::from(vec![true, false]);
    (broken, format!("/{key}"))
}

#[test]
fn every_mutated_specimen_is_rejected_with_the_failing_pointer() {
    let c = catalog();
    let mut checked = 0;
    for t in c.event_types() {
        for s in c.specimens(&t.event_type) {
            let version = s["schema_version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(1);
            let schema = t
                .versions
                .iter()
                .find(|v| v.version == version)
                .and_then(|v| v.schema.clone())
                .unwrap_or_default();
            for (mutated, pointer) in [
                break_payload(&schema, &s["payload"]),
                wrong_type(&s["payload"]),
            ] {
                match c.validate_payload(&t.event_type, version, &mutated) {
                    Err(PayloadCheck::Invalid { violations }) => {
                        assert!(
                            violations.iter().any(|v| v.pointer == pointer),
                            "{}: want {pointer}, got {violations:?}",
                            t.event_type
                        );
                    }
                    other => panic!(
                        "{}: mutation at {pointer} not rejected: {other:?}",
                        t.event_type
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "{checked}");
}

/// Gives the last property of the payload a value of the wrong type (a number for anything but
/// numbers, a string for numbers).
fn wrong_type(payload: &Value) -> (Value, String) {
    let mut broken = payload.clone();
    let Some(key) = payload
        .as_object()
        .and_then(|o| o.keys().next_back().cloned())
    else {
        panic!("specimen payload is empty")
    };
    broken[&key] = if payload[&key].is_number() {
        Value::from("oops")
    } else {
        Value::from(42.5)
    };
    (broken, format!("/{key}"))
}

#[test]
fn nested_violation_points_into_the_payload_and_unknowns_are_distinguished() {
    let c = catalog();
    let mut payload = c.specimens("orders.order.placed")[0]["payload"].clone();
    payload["customer"]["email"] = Value::from("not-an-email");
    let Err(PayloadCheck::Invalid { violations }) =
        c.validate_payload("orders.order.placed", 1, &payload)
    else {
        panic!("bad email accepted")
    };
    assert_eq!(violations[0].pointer, "/customer/email");
    if let Some(obj) = payload["customer"].as_object_mut() {
        obj.remove("customer_id");
    }
    payload["customer"]["email"] = Value::from("a@example.com");
    let Err(PayloadCheck::Invalid { violations }) =
        c.validate_payload("orders.order.placed", 1, &payload)
    else {
        panic!("missing nested field accepted")
    };
    assert_eq!(violations[0].pointer, "/customer/customer_id");
    assert!(matches!(
        c.validate_payload("orders.order.nope", 1, &payload),
        Err(PayloadCheck::UnknownEventType { .. })
    ));
    assert!(matches!(
        c.validate_payload("orders.order.placed", 9, &payload),
        Err(PayloadCheck::UnknownVersion { version: 9, ref known, .. }) if known == &[1, 2]
    ));
}

#[test]
fn catalog_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Catalog>();
}

#[test]
fn contracts_and_conventions_describe_the_streams() {
    let c = catalog();
    let billing = c
        .contract("billing")
        .unwrap_or_else(|| panic!("no billing contract"));
    assert_eq!(billing.format, "ndjson");
    assert_eq!(billing.ordering, "sequence ascending");
    assert_eq!(billing.delivery.webhooks, "at-least-once");
    assert_eq!(billing.delivery.cdc, "exactly-once-in-order");
    assert_eq!(billing.dedupe_key, ["org_id", "event_id", "occurred_at"]);
    assert_eq!(billing.retention_days, Some(3650));
    assert_eq!(billing.surfaces, ["cdc", "webhooks", "exports"]);
    let captured = billing
        .event_types
        .iter()
        .find(|t| t.event_type == "billing.payment.captured");
    assert_eq!(captured.map(|t| t.versions.clone()), Some(vec![1, 2]));
    assert_eq!(c.contracts().len(), c.services().len());
    let conv = c.conventions();
    assert_eq!(conv["pagination"]["query"]["limit"]["max"], 1000);
    assert_eq!(conv["signature"]["scheme"], "Standard Webhooks");
    assert_eq!(conv["idempotency"]["dedupe_key"][2], "occurred_at");
}

#[test]
fn embedded_catalog_is_gold_except_the_deprecated_type() {
    let c = catalog();
    for m in c.maturity().event_types {
        if m.event_type == "inventory.stock_item.level_changed" {
            assert!(!m.checks.not_deprecated.pass);
        } else {
            assert_eq!(m.level, crate::catalog::Level::Gold, "{m:#?}");
        }
    }
}
