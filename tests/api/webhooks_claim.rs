//! What the prefetching delivery worker relies on: its webhook list is cached, so the store
//! must refuse to lease deliveries of a webhook that is no longer active; claims it drops
//! unattempted are given back (token-fenced, see the conformance suite) instead of waiting for
//! their leases to lapse.
use crate::helpers::events;
use crate::receiver::{Receiver, Reply};
use crate::webhooks::{create, wh_app};
use ipm::store::ClaimSlot;
use serde_json::json;
use std::time::{Duration, Instant};

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
        .enqueue(vec![crate::conformance::test_delivery("org_c", &wid, now)])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_claimed_ahead_are_given_back_on_pause_and_sent_right_after_enable() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    rx.set_delay(Duration::from_millis(300));
    // Two in flight and up to four more claimed ahead in the worker's queue.
    let w = create(
        &app,
        "org_q",
        json!({"url": rx.url(), "delivery": {"max_in_flight": 2}}),
    )
    .await;
    let wid = w["id"].as_str().unwrap().to_string();
    app.publish(&events("org_q", "q", 30)).await;
    // The test's events, not the webhook's own paused/enabled events it is also subscribed to.
    let orders = || {
        rx.captured()
            .iter()
            .filter(|c| c.json()["event_type"] == "orders.order.created")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while orders() < 2 {
        assert!(Instant::now() < deadline, "nothing was delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let action = |what: &str| {
        app.req(
            reqwest::Method::POST,
            &format!("/v1/orgs/org_q/webhooks/{wid}/{what}"),
            &app.admin_key,
        )
        .header("x-reason-code", "test")
    };
    let r = action("pause").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The worker notices within its webhook cache age and drops (gives back) its queue.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(orders() < 30, "everything was delivered before the pause");
    let r = action("enable").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Every event arrives well before a lease (5 × 1 s + 30 s) could have lapsed: the claims
    // dropped at the pause were given back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while orders() < 30 {
        assert!(
            Instant::now() < deadline,
            "{} of 30 delivered 20 s after enable: claims dropped at the pause stayed leased",
            orders()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(orders(), 30, "each exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attempt_starts_on_this_node_once_a_revoke_is_answered() {
    let app = wh_app(vec![1]).await;
    let rx = Receiver::start(Reply::Ok).await;
    rx.set_delay(Duration::from_millis(400));
    let w = create(
        &app,
        "org_v",
        json!({"url": rx.url(), "delivery": {"max_in_flight": 2}}),
    )
    .await;
    let wid = w["id"].as_str().unwrap().to_string();
    app.publish(&events("org_v", "v", 30)).await;
    // Revoke while two attempts are under way and more are claimed ahead, about when the
    // running ones finish and would hand their slots on (arrivals are counted on arrival).
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.count() < 3 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/v1/orgs/org_v/webhooks/{wid}"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Anything started before the revoke has arrived by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_revoke = rx.count();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        rx.count(),
        at_revoke,
        "an attempt started after the revoke was answered"
    );
    assert!(at_revoke < 30, "everything was delivered before the revoke");
}
