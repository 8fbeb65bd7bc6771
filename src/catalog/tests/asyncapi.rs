//! The AsyncAPI document: structure checks, and validation by the official parser via
//! `scripts/validate-asyncapi.sh` (must really run: no npm means a failing test, not a skip).

use std::process::Command;

use crate::catalog::Catalog;

fn catalog() -> Catalog {
    match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn document_has_a_channel_and_operation_per_type_and_a_message_per_version() {
    let c = catalog();
    let doc = c.asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().map_or(0, |m| m.len());
    let operations = doc["operations"].as_object().map_or(0, |m| m.len());
    let messages = doc["components"]["messages"]
        .as_object()
        .map_or(0, |m| m.len());
    let versions: usize = c.event_types().iter().map(|t| t.versions.len()).sum();
    assert_eq!(
        (channels, operations, messages),
        (c.event_types().len(), c.event_types().len(), versions)
    );
    assert_eq!(
        doc["channels"]["orders-order-placed"]["address"],
        "orders.order.placed"
    );
    assert_eq!(
        doc["operations"]["receive-orders-order-placed"]["action"],
        "receive"
    );
    let text = doc.to_string();
    assert!(
        !text.contains("$defs") && !text.contains("json-schema.org"),
        "schemas not converted"
    );
}

#[test]
fn official_parser_accepts_the_document() {
    let dir = std::env::temp_dir().join(format!("ipm-asyncapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let file = dir.join("asyncapi.json");
    let doc = serde_json::to_string_pretty(&catalog().asyncapi()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, doc).unwrap_or_else(|e| panic!("write: {e}"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/validate-asyncapi.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "validate-asyncapi.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("valid AsyncAPI 3.0.0"), "{stdout}");
}

#[test]
#[ignore = "manual: writes the document to /tmp/ipm-asyncapi.json"]
fn dump_document() {
    let doc = serde_json::to_string_pretty(&catalog().asyncapi()).unwrap_or_default();
    std::fs::write("/tmp/ipm-asyncapi.json", doc).unwrap_or_else(|e| panic!("{e}"));
}
