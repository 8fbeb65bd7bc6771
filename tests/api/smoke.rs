use crate::helpers::{TestApp, event};
use serde_json::json;

#[tokio::test]
async fn publish_then_read_back_through_cdc() {
    let app = TestApp::spawn().await;
    let report = app
        .publish(&json!([
            event("org_a", "e1", "orders.order.created"),
            event("org_a", "e2", "orders.order.paid")
        ]))
        .await;
    assert_eq!(report["accepted"], 2);
    let events = app.cdc_all("org_a", "service=orders").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_id"], "e1");
    assert!(events[0]["sequence"].as_i64().unwrap() < events[1]["sequence"].as_i64().unwrap());
    app.stop().await;
}
