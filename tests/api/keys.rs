//! `/v1/admin/keys`: create, list with pagination, revoke, stored request context.
use crate::helpers::{TestApp, assert_problem, event, rid};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn create_shows_the_key_once_and_stores_the_request_context() {
    let app = TestApp::spawn().await;
    let created = app
        .key_full(json!({"role": "reader", "org_id": "org_a", "label": "bi"}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("key_"));
    assert!(
        created["key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("ipm_{id}_"))
    );
    assert_eq!(created["role"], "reader");
    assert_eq!(created["org_id"], "org_a");
    assert_eq!(created["label"], "bi");
    let ctx = &created["created_context"];
    assert!(ctx["request_id"].as_str().unwrap().starts_with("test-"));
    assert_eq!(ctx["actor_id"], "tester");
    assert!(ctx["key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(ctx["role"], "admin");
    assert_eq!(ctx["source_ip"], "127.0.0.1");
    assert!(ctx["at"].as_str().unwrap().ends_with('Z'));

    let listed = all_keys(&app, 1000).await;
    let row = listed.iter().find(|k| k["id"] == id).unwrap();
    assert!(row.get("key").is_none(), "a listing never shows the secret");
    assert_eq!(row["created_context"], created["created_context"]);
}

async fn all_keys(app: &TestApp, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/keys?limit={limit}&cursor={c}"),
            None => format!("/v1/admin/keys?limit={limit}"),
        };
        let r = app
            .req(Method::GET, &path, &app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let page = v["data"].as_array().unwrap();
        assert!(page.len() <= limit);
        out.extend(page.iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(v["has_more"], true);
                cursor = Some(c.to_string());
            }
            None => {
                assert_eq!(v["has_more"], false);
                return out;
            }
        }
    }
}

#[tokio::test]
async fn list_pages_through_every_key_once() {
    let app = TestApp::spawn().await;
    for i in 0..6 {
        app.key(json!({"role": "publisher", "label": format!("k{i}")}))
            .await;
    }
    let keys = all_keys(&app, 2).await;
    assert_eq!(keys.len(), 7, "6 created + the bootstrap admin");
    let mut ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let created = app.key_full(json!({"role": "publisher"})).await;
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    assert_eq!(
        app.publish_as(key, &event("org_a", "1", "orders.order.created"))
            .await
            .status(),
        200
    );
    let r = app
        .req(
            Method::DELETE,
            &format!("/v1/admin/keys/{id}"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(
        app.publish_as(key, &event("org_a", "2", "orders.order.created"))
            .await,
        401,
        "unauthorized",
    )
    .await;
    let listed = all_keys(&app, 100).await;
    assert!(listed.iter().find(|k| k["id"] == id).unwrap()["revoked_at"].is_string());
    // Revoking again, or an unknown id, is a 404.
    for path in [
        format!("/v1/admin/keys/{id}"),
        "/v1/admin/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
    ] {
        let r = app
            .req(Method::DELETE, &path, &app.admin_key)
            .send()
            .await
            .unwrap();
        assert_problem(r, 404, "not_found").await;
    }
}

#[tokio::test]
async fn key_management_needs_request_and_actor_ids() {
    let app = TestApp::spawn().await;
    let body = json!({"role": "publisher"});
    let no_actor = app
        .client
        .post(app.url("/v1/admin/keys"))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", rid())
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = assert_problem(no_actor, 400, "request_context_required").await;
    assert!(p["detail"].as_str().unwrap().contains("X-Actor-Id"));
    let neither = app
        .client
        .post(app.url("/v1/admin/keys"))
        .bearer_auth(&app.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = assert_problem(neither, 400, "request_context_required").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["X-Request-Id", "X-Actor-Id"]);
    let del = app
        .client
        .delete(app.url("/v1/admin/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", rid())
        .send()
        .await
        .unwrap();
    assert_problem(del, 400, "request_context_required").await;
}

#[tokio::test]
async fn key_shapes_are_validated() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"role": "reader"}),
        json!({"role": "org_admin"}),
        json!({"role": "admin", "org_id": "org_a"}),
        json!({"role": "reader", "org_id": "org_a", "services": ["orders"]}),
        json!({"role": "publisher", "services": ["Not A Service"]}),
        json!({"role": "superuser"}),
        json!({"role": "publisher", "extra": 1}),
    ] {
        let r = app
            .req(Method::POST, "/v1/admin/keys", &app.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "validation_failed").await;
    }
}
