//! The claim guard the prefetching delivery worker relies on: its webhook list is cached, so the
//! store must refuse to lease deliveries of a webhook that is no longer active.
use crate::receiver::{Receiver, Reply};
use crate::webhooks::{create, wh_app};
use ipm::store::{ClaimSlot, NewDelivery};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_webhooks_pending_deliveries_are_never_claimed() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    let w = create(&app, "org_c", json!({"url": rx.url()})).await;
    let wid = w["id"].as_str().unwrap().to_string();
    let r = app
        .req(
            reqwest::Method::POST,
            &format!("/v1/orgs/org_c/webhooks/{wid}/pause"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let store = &app.services.store;
    // A `pending` row of the paused webhook, as a worker holding a stale list would ask for it.
    let now = ipm::domain::time::now_millis();
    store
        .enqueue(vec![NewDelivery {
            id: ipm::domain::ids::new_id(ipm::domain::ids::IdKind::Delivery),
            org_id: "org_c".into(),
            webhook_id: wid.clone(),
            event_id: "evt_stale".into(),
            event_type: "ipm.webhook.test".into(),
            sequence: 0,
            body: Some("{}".into()),
            ingested_at_ms: now,
        }])
        .await
        .unwrap();
    let slot = ClaimSlot {
        webhook_id: wid.clone(),
        ordered: false,
        free: 8,
    };
    let claimed = store
        .claim(now + 1_000, 60_000, "test", vec![slot])
        .await
        .unwrap();
    assert!(
        claimed.is_empty(),
        "claimed for a paused webhook: {claimed:?}"
    );
    assert_eq!(rx.count(), 0);
}
