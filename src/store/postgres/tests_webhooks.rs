//! Webhooks, deliveries and inbox on a real PostgreSQL (`TEST_IPM_PG_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::PgStore;
use super::tests_util::store;
use crate::domain::ids::{IdKind, new_id};
use crate::store::{
    AttemptRecord, AttemptRow, ClaimSlot, Claimed, Deliveries, EventLog, EventRow, Inbox, InboxRow,
    PauseChange, WebhookRow, Webhooks,
};

const ORG: &str = "org_a";
const OTHER: &str = "org_b";

fn webhook(org: &str, mode: &str, max_in_flight: u32) -> WebhookRow {
    WebhookRow {
        id: new_id(IdKind::Webhook),
        org_id: org.into(),
        url: "https://example.test/hook".into(),
        description: Some("d".into()),
        filters: "{}".into(),
        mode: mode.into(),
        max_in_flight,
        pause_after: Some(5),
        status: "active".into(),
        secret_sealed: vec![1, 2, 3],
        secret_last4: "abcd".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        created_context: "{}".into(),
        ..WebhookRow::default()
    }
}

fn event(org: &str, n: usize) -> EventRow {
    EventRow {
        id: new_id(IdKind::Event),
        org_id: org.into(),
        event_id: format!("e{n}-{}", ulid::Ulid::generate()),
        occurred_at: 1_000 + n as i64,
        event_type: "orders.created".into(),
        service: "shop".into(),
        channel_id: None,
        facility_id: None,
        payload_hash: format!("h{n}"),
        rendered: format!("{{\"type\":\"orders.created\",\"n\":{n}}}"),
        context: "{}".into(),
    }
}

fn inbox_item(org: &str, title: &str) -> InboxRow {
    InboxRow {
        id: new_id(IdKind::Inbox),
        org_id: org.into(),
        kind: "webhook_paused".into(),
        severity: "warning".into(),
        title: title.into(),
        body: "b".into(),
        ref_type: "webhook".into(),
        ref_id: "wh".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        acked_at: None,
        acked_context: None,
    }
}

fn slot(w: &WebhookRow, free: u32) -> Vec<ClaimSlot> {
    vec![ClaimSlot {
        webhook_id: w.id.clone(),
        ordered: w.mode == "ordered",
        free,
    }]
}

fn attempt(c: &Claimed, success: bool, status: &str, next: Option<i64>) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.id.clone(),
        webhook_id: c.webhook_id.clone(),
        lease_token: c.lease_token,
        attempt: AttemptRow {
            attempt: c.attempt,
            started_at: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: 12,
            status_code: Some(if success { 200 } else { 500 }),
            error: None,
            response_body_excerpt: Some("ok".into()),
        },
        started_ms: 1_000,
        success,
        new_status: status.into(),
        next_attempt_at_ms: next,
    }
}

async fn statuses(s: &PgStore, org: &str, w: &WebhookRow) -> Vec<String> {
    s.list_deliveries(org, &w.id, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.status)
        .collect()
}

fn now() -> i64 {
    crate::domain::time::now_millis()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_crud_and_org_isolation() {
    let (s, db) = store().await;
    let (a, b) = (webhook(ORG, "concurrent", 4), webhook(ORG, "concurrent", 4));
    // Ids of one millisecond are not ordered: name them in id order.
    let (a, b) = if a.id < b.id { (a, b) } else { (b, a) };
    s.insert_webhook(a.clone()).await.unwrap();
    s.insert_webhook(b.clone()).await.unwrap();
    assert_eq!(s.get_webhook(ORG, &a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_webhook(OTHER, &a.id).await.unwrap(), None);
    let all = s.list_webhooks(ORG, None, 10).await.unwrap();
    assert_eq!(all, vec![a.clone(), b.clone()]);
    assert_eq!(
        s.list_webhooks(ORG, Some(&a.id), 10).await.unwrap(),
        vec![b.clone()]
    );
    assert_eq!(
        s.list_webhooks(ORG, None, 1).await.unwrap(),
        vec![a.clone()]
    );
    assert!(s.list_webhooks(OTHER, None, 10).await.unwrap().is_empty());

    let mut u = a.clone();
    u.url = "https://example.test/other".into();
    u.max_in_flight = 9;
    u.pause_min_secs = Some(60);
    u.updated_context = Some("{\"u\":1}".into());
    assert!(s.update_webhook(u.clone()).await.unwrap());
    assert_eq!(s.get_webhook(ORG, &a.id).await.unwrap(), Some(u.clone()));
    let mut wrong_org = u.clone();
    wrong_org.org_id = OTHER.into();
    assert!(!s.update_webhook(wrong_org).await.unwrap());

    assert!(!s.revoke_webhook(OTHER, &a.id, "{}".into()).await.unwrap());
    assert!(s.revoke_webhook(ORG, &a.id, "{}".into()).await.unwrap());
    assert!(!s.revoke_webhook(ORG, &a.id, "{}".into()).await.unwrap());
    assert!(!s.update_webhook(u).await.unwrap());
    let got = s.get_webhook(ORG, &a.id).await.unwrap().unwrap();
    assert_eq!(got.status, "revoked");
    let active: Vec<String> = s
        .active_webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(active, vec![b.id]);
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_pause_enable_revoke() {
    let (s, db) = store().await;
    let a = webhook(ORG, "concurrent", 4);
    let p = webhook(ORG, "concurrent", 4);
    let r = webhook(ORG, "concurrent", 4);
    let other = webhook(OTHER, "concurrent", 4);
    for w in [&a, &p, &r, &other] {
        s.insert_webhook(w.clone()).await.unwrap();
    }
    s.append(vec![event(ORG, 1)]).await.unwrap();
    assert_eq!(statuses(&s, ORG, &a).await, vec!["pending"]);

    // Pause with event and inbox item: backlog held, event fanned out, inbox written.
    let item = inbox_item(ORG, "paused");
    let change = PauseChange {
        reason: "failing".into(),
        paused_at: "2026-01-01T00:00:02.000Z".into(),
        context: None,
        event: Some(event(ORG, 2)),
        inbox: Some(item.clone()),
    };
    let head_before = s.head(ORG).await.unwrap();
    assert!(s.pause_webhook(ORG, &p.id, change.clone()).await.unwrap());
    assert!(!s.pause_webhook(ORG, &p.id, change.clone()).await.unwrap());
    assert!(!s.pause_webhook(OTHER, &a.id, change).await.unwrap());
    assert!(s.head(ORG).await.unwrap() > head_before);
    let pw = s.get_webhook(ORG, &p.id).await.unwrap().unwrap();
    assert_eq!(
        (pw.status.as_str(), pw.pause_reason.as_deref()),
        ("paused", Some("failing"))
    );
    // Event 1 was held by the pause, event 2 (the pause event) arrived held.
    assert_eq!(statuses(&s, ORG, &p).await, vec!["held", "held"]);
    assert_eq!(statuses(&s, ORG, &a).await, vec!["pending", "pending"]);
    assert_eq!(
        s.list_inbox(ORG, false, None, 10).await.unwrap(),
        vec![item]
    );
    assert!(
        s.list_inbox(OTHER, false, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Other org: nothing fanned out.
    assert!(statuses(&s, OTHER, &other).await.is_empty());
    assert!(statuses(&s, OTHER, &a).await.is_empty());

    // Enable: held -> pending, counters reset, event appended.
    assert_eq!(
        s.enable_webhook(ORG, &p.id, false, "{}".into(), Some(event(ORG, 3)))
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        s.enable_webhook(ORG, &p.id, false, "{}".into(), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(statuses(&s, ORG, &p).await, vec!["pending"; 3]);

    // Pause again and enable skipping the backlog.
    let change = PauseChange {
        reason: "manual".into(),
        paused_at: "2026-01-01T00:00:03.000Z".into(),
        context: Some("{}".into()),
        event: None,
        inbox: None,
    };
    assert!(s.pause_webhook(ORG, &p.id, change).await.unwrap());
    s.append(vec![event(ORG, 4)]).await.unwrap();
    assert_eq!(statuses(&s, ORG, &p).await, vec!["held"; 4]);
    assert_eq!(
        s.enable_webhook(ORG, &p.id, true, "{}".into(), None)
            .await
            .unwrap(),
        Some(4)
    );
    assert_eq!(statuses(&s, ORG, &p).await, vec!["skipped"; 4]);

    // Revoke: backlog skipped, no new deliveries.
    assert!(s.revoke_webhook(ORG, &r.id, "{}".into()).await.unwrap());
    assert_eq!(statuses(&s, ORG, &r).await, vec!["skipped"; 4]);
    s.append(vec![event(ORG, 5)]).await.unwrap();
    assert_eq!(statuses(&s, ORG, &r).await.len(), 4);
    assert_eq!(statuses(&s, ORG, &a).await.len(), 5);
    // a: 5 pending, p: event 5 pending (the rest skipped); r: all skipped.
    assert_eq!(s.queue_depth().await.unwrap(), 6);
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_are_bounded_per_node_and_never_shared() {
    let (s, db) = store().await;
    let w = webhook(ORG, "concurrent", 3);
    s.insert_webhook(w.clone()).await.unwrap();
    s.append((0..5).map(|n| event(ORG, n)).collect())
        .await
        .unwrap();
    let t = now() + 10;
    let a = s.claim(t, 60_000, "node-a", slot(&w, 2)).await.unwrap();
    assert_eq!(a.len(), 2);
    assert!(
        a.iter()
            .all(|c| c.attempt == 1 && c.body.is_some() && c.org_id == ORG)
    );
    // `max_in_flight` is each node's own capacity (its slots): node b gets the other 3.
    let b = s.claim(t, 60_000, "node-b", slot(&w, 5)).await.unwrap();
    assert_eq!(b.len(), 3, "bounded by max_in_flight and by what is left");
    assert!(
        s.claim(t, 60_000, "node-b", slot(&w, 3))
            .await
            .unwrap()
            .is_empty()
    );
    let ids: std::collections::HashSet<_> = a.iter().chain(&b).map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 5, "no delivery is leased to two claimers");
    // Nothing is claimable before its lease ends; a node that does not hold an id cannot
    // release its leases.
    assert_eq!(s.release_leases("node-a").await.unwrap(), 0);
    assert!(
        s.claim(t, 60_000, "node-c", slot(&w, 3))
            .await
            .unwrap()
            .is_empty()
    );
    // Success frees a slot.
    let rec = s
        .record(t, vec![attempt(&a[0], true, "succeeded", None)])
        .await
        .unwrap();
    assert!(rec[0].applied);
    let c = s.claim(t, 60_000, "node-c", slot(&w, 3)).await.unwrap();
    assert!(c.is_empty(), "the rest is still leased");
    // Expired leases are claimable again, with a new token.
    let later = t + 60_001;
    let again = s.claim(later, 60_000, "node-c", slot(&w, 3)).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|x| x.lease_token == 2));
    // Another org's webhook has nothing to claim.
    let p = webhook(OTHER, "concurrent", 3);
    s.insert_webhook(p.clone()).await.unwrap();
    assert!(
        s.claim(later, 60_000, "n", slot(&p, 3))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.next_due_ms().await.unwrap().is_some());
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_claims_only_the_head() {
    let (s, db) = store().await;
    let w = webhook(ORG, "ordered", 1);
    s.insert_webhook(w.clone()).await.unwrap();
    s.append((0..3).map(|n| event(ORG, n)).collect())
        .await
        .unwrap();
    let all = s.list_deliveries(ORG, &w.id, None, None, 10).await.unwrap();
    let lowest = all.iter().min_by_key(|d| d.sequence).unwrap().id.clone();
    let t = now() + 10;
    let a = s.claim(t, 60_000, "node-a", slot(&w, 5)).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, lowest);
    assert!(
        s.claim(t, 60_000, "node-b", slot(&w, 5))
            .await
            .unwrap()
            .is_empty()
    );
    // A failed head stays the head: not due yet, so nothing is claimed.
    let rec = s
        .record(t, vec![attempt(&a[0], false, "failed", Some(t + 5_000))])
        .await
        .unwrap();
    assert!(rec[0].applied);
    assert_eq!(rec[0].consecutive_failures, 1);
    assert_eq!(rec[0].first_failure_at_ms, Some(1_000));
    assert!(
        s.claim(t, 60_000, "node-b", slot(&w, 5))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.next_due_ms().await.unwrap().is_some());
    let b = s
        .claim(t + 5_000, 60_000, "node-b", slot(&w, 5))
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].id.as_str(), b[0].attempt), (lowest.as_str(), 2));
    let rec = s
        .record(t, vec![attempt(&b[0], true, "succeeded", None)])
        .await
        .unwrap();
    assert_eq!(
        (rec[0].consecutive_failures, rec[0].first_failure_at_ms),
        (0, None)
    );
    let c = s
        .claim(t + 5_000, 60_000, "node-a", slot(&w, 5))
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_ne!(c[0].id, lowest);
    let attempts = s.delivery_attempts(ORG, &lowest).await.unwrap();
    assert_eq!(
        attempts.iter().map(|x| x.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(attempts[0].status_code, Some(500));
    assert!(
        s.delivery_attempts(OTHER, &lowest)
            .await
            .unwrap()
            .is_empty()
    );
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_token_is_not_recorded_and_retry() {
    let (s, db) = store().await;
    let w = webhook(ORG, "concurrent", 2);
    s.insert_webhook(w.clone()).await.unwrap();
    s.append(vec![event(ORG, 1)]).await.unwrap();
    let t = now() + 10;
    let first = s.claim(t, 1_000, "node-a", slot(&w, 1)).await.unwrap();
    let second = s
        .claim(t + 2_000, 1_000, "node-b", slot(&w, 1))
        .await
        .unwrap();
    assert_eq!(first[0].id, second[0].id);
    assert_eq!(second[0].lease_token, first[0].lease_token + 1);
    let rec = s
        .record(t, vec![attempt(&first[0], false, "failed", Some(t))])
        .await
        .unwrap();
    assert!(!rec[0].applied);
    assert_eq!(rec[0].consecutive_failures, 0);
    assert!(
        s.delivery_attempts(ORG, &first[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    let d = s
        .get_delivery(ORG, &w.id, &first[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status.as_str(), d.attempt_count), ("pending", 0));
    // In flight: no retry.
    assert!(
        s.retry_delivery(ORG, &w.id, &first[0].id, t + 2_100)
            .await
            .unwrap()
            .is_none()
    );
    let rec = s
        .record(t, vec![attempt(&second[0], true, "succeeded", None)])
        .await
        .unwrap();
    assert!(rec[0].applied);
    let d = s
        .get_delivery(ORG, &w.id, &first[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status.as_str(), d.attempt_count, d.last_status_code),
        ("succeeded", 1, Some(200))
    );
    assert!(s.get_delivery(OTHER, &w.id, &d.id).await.unwrap().is_none());
    assert!(
        s.retry_delivery(OTHER, &w.id, &d.id, t + 3_000)
            .await
            .unwrap()
            .is_none()
    );
    let r = s
        .retry_delivery(ORG, &w.id, &d.id, t + 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status.as_str(), r.next_attempt_at_ms),
        ("pending", Some(t + 3_000))
    );
    assert_eq!(
        s.list_deliveries(ORG, &w.id, Some("pending"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.list_deliveries(ORG, &w.id, Some("succeeded"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A result recorded while the webhook is paused holds the delivery.
    let c = s
        .claim(t + 3_000, 1_000, "node-a", slot(&w, 1))
        .await
        .unwrap();
    assert_eq!(c[0].attempt, 2);
    let change = PauseChange {
        reason: "manual".into(),
        paused_at: "x".into(),
        context: None,
        event: None,
        inbox: None,
    };
    assert!(s.pause_webhook(ORG, &w.id, change).await.unwrap());
    let rec = s
        .record(
            t + 3_000,
            vec![attempt(&c[0], false, "failed", Some(t + 9_000))],
        )
        .await
        .unwrap();
    assert!(rec[0].applied);
    assert_eq!(statuses(&s, ORG, &w).await, vec!["held"]);
    let r = s
        .retry_delivery(ORG, &w.id, &d.id, t + 4_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, "held");
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inbox_newest_first_ack_and_isolation() {
    let (s, db) = store().await;
    let mut items = Vec::new();
    for n in 0..3 {
        let i = inbox_item(ORG, &format!("t{n}"));
        s.insert_inbox(i.clone()).await.unwrap();
        items.push(i);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    s.insert_inbox(inbox_item(OTHER, "other")).await.unwrap();
    let titles = |v: Vec<InboxRow>| v.into_iter().map(|i| i.title).collect::<Vec<_>>();
    assert_eq!(
        titles(s.list_inbox(ORG, false, None, 10).await.unwrap()),
        vec!["t2", "t1", "t0"]
    );
    assert_eq!(
        titles(
            s.list_inbox(ORG, false, Some(&items[2].id), 1)
                .await
                .unwrap()
        ),
        vec!["t1"]
    );
    assert!(
        s.ack_inbox(OTHER, &items[1].id, "2026-01-02T00:00:00.000Z", "{}")
            .await
            .unwrap()
            .is_none()
    );
    let acked = s
        .ack_inbox(ORG, &items[1].id, "2026-01-02T00:00:00.000Z", "{\"a\":1}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acked.acked_at.as_deref(), Some("2026-01-02T00:00:00.000Z"));
    // Idempotent: the first acknowledgement stays.
    let again = s
        .ack_inbox(ORG, &items[1].id, "2026-01-03T00:00:00.000Z", "{}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, acked);
    assert_eq!(
        titles(s.list_inbox(ORG, true, None, 10).await.unwrap()),
        vec!["t2", "t0"]
    );
    assert_eq!(
        titles(s.list_inbox(OTHER, false, None, 10).await.unwrap()),
        vec!["other"]
    );
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claimers_never_share_a_delivery_and_ordered_stays_single() {
    let (s, db) = store().await;
    let c = webhook(ORG, "concurrent", 3);
    let o = webhook(ORG, "ordered", 1);
    s.insert_webhook(c.clone()).await.unwrap();
    s.insert_webhook(o.clone()).await.unwrap();
    s.append((0..20).map(|n| event(ORG, n)).collect())
        .await
        .unwrap();
    let t = now() + 10;
    let slots = vec![
        ClaimSlot {
            webhook_id: o.id.clone(),
            ordered: true,
            free: 1,
        },
        ClaimSlot {
            webhook_id: c.id.clone(),
            ordered: false,
            free: 3,
        },
    ];
    let mut set = tokio::task::JoinSet::new();
    for n in 0..6 {
        let (s, slots) = (s.clone(), slots.clone());
        set.spawn(async move {
            s.claim(t, 60_000, &format!("node-{n}"), slots)
                .await
                .unwrap()
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = set.join_next().await {
        claimed.extend(r.unwrap());
    }
    let per = |w: &WebhookRow| claimed.iter().filter(|x| x.webhook_id == w.id).count();
    // Six claimers with 3 slots each share 20 deliveries without overlap; the ordered webhook
    // has exactly one in flight across all of them.
    assert_eq!(per(&c), 18);
    let distinct: std::collections::HashSet<_> = claimed.iter().map(|x| x.id.clone()).collect();
    assert_eq!(distinct.len(), claimed.len());
    assert_eq!(per(&o), 1);
    db.drop(s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_releases_its_own_leases_and_no_one_elses() {
    use crate::store::Meta;
    let (s1, db) = store().await;
    let w = webhook(ORG, "concurrent", 10);
    s1.insert_webhook(w.clone()).await.unwrap();
    s1.append((0..5).map(|n| event(ORG, n)).collect())
        .await
        .unwrap();
    let t = now() + 10;
    assert!(s1.hold_node("node_a").await.unwrap());
    assert!(s1.hold_node("node_a").await.unwrap(), "held already");
    assert!(!s1.hold_node("node_z").await.unwrap(), "one id per store");
    let a = s1.claim(t, 60_000, "node_a", slot(&w, 2)).await.unwrap();
    let b = s1.claim(t, 60_000, "node_b", slot(&w, 2)).await.unwrap();
    assert_eq!((a.len(), b.len()), (2, 2));
    // A second process with the same id (a copied data dir) gets neither the id nor the leases.
    let s2 = PgStore::open(&db.url()).await.unwrap();
    assert!(!s2.hold_node("node_a").await.unwrap());
    assert_eq!(s2.release_leases("node_a").await.unwrap(), 0);
    // The first process ends; its id is free, and its next incarnation drops exactly its leases.
    s1.close().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s2.hold_node("node_a").await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the id was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s2.release_leases("node_a").await.unwrap(), 2);
    let c = s2.claim(t, 60_000, "node_a", slot(&w, 10)).await.unwrap();
    let mut got: Vec<String> = c.iter().map(|c| c.id.clone()).collect();
    got.sort();
    let mut want: Vec<String> = a.iter().map(|c| c.id.clone()).collect();
    let leased: std::collections::HashSet<String> =
        a.iter().chain(&b).map(|c| c.id.clone()).collect();
    let free: Vec<String> = delivery_ids(&s2, &w)
        .await
        .into_iter()
        .filter(|id| !leased.contains(id))
        .collect();
    want.extend(free);
    want.sort();
    assert_eq!(
        got, want,
        "the released leases and the free delivery, not node_b's"
    );
    db.drop(s2).await;
}

/// Every delivery id of `w`.
async fn delivery_ids(s: &PgStore, w: &WebhookRow) -> Vec<String> {
    let c = s.conn().await.unwrap();
    c.query("SELECT id FROM deliveries WHERE webhook_id = $1", &[&w.id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
