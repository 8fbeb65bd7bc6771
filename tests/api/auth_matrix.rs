//! Every role × every endpoint × own/foreign org, plus missing, malformed and revoked keys (SPEC §2).
use crate::helpers::{TestApp, event};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Admin,
    OrgAdmin,
    Reader,
    Publisher,
    /// A publisher limited to `orders` for `org_a`.
    ScopedPublisher,
    NoKey,
    BadKey,
    Revoked,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    PublishOwn,
    PublishForeign,
    CdcOwn,
    CdcForeign,
    CreateKey,
    ListKeys,
    /// Revoke an existing key.
    RevokeKey,
    /// Revoke an id that does not exist.
    RevokeMissing,
    OpenApi,
    Healthz,
}

use Op::*;
use Who::*;

/// Expected status per (who, op); one row per case.
const MATRIX: &[(Who, Op, u16)] = &[
    (Admin, PublishOwn, 200),
    (Admin, PublishForeign, 200),
    (Admin, CdcOwn, 200),
    (Admin, CdcForeign, 200),
    (Admin, CreateKey, 201),
    (Admin, ListKeys, 200),
    (Admin, RevokeKey, 204),
    (Admin, RevokeMissing, 404),
    (Admin, OpenApi, 200),
    (Admin, Healthz, 200),
    (OrgAdmin, PublishOwn, 403),
    (OrgAdmin, PublishForeign, 403),
    (OrgAdmin, CdcOwn, 200),
    (OrgAdmin, CdcForeign, 403),
    (OrgAdmin, CreateKey, 403),
    (OrgAdmin, ListKeys, 403),
    (OrgAdmin, RevokeKey, 403),
    (OrgAdmin, RevokeMissing, 403),
    (OrgAdmin, OpenApi, 200),
    (OrgAdmin, Healthz, 200),
    (Reader, PublishOwn, 403),
    (Reader, PublishForeign, 403),
    (Reader, CdcOwn, 200),
    (Reader, CdcForeign, 403),
    (Reader, CreateKey, 403),
    (Reader, ListKeys, 403),
    (Reader, RevokeKey, 403),
    (Reader, RevokeMissing, 403),
    (Reader, OpenApi, 200),
    (Reader, Healthz, 200),
    (Publisher, PublishOwn, 200),
    (Publisher, PublishForeign, 200),
    (Publisher, CdcOwn, 403),
    (Publisher, CdcForeign, 403),
    (Publisher, CreateKey, 403),
    (Publisher, ListKeys, 403),
    (Publisher, RevokeKey, 403),
    (Publisher, RevokeMissing, 403),
    (Publisher, OpenApi, 200),
    (Publisher, Healthz, 200),
    // Per-event scoping: the request succeeds, the foreign event is rejected (checked below).
    (ScopedPublisher, PublishOwn, 200),
    (ScopedPublisher, PublishForeign, 200),
    (ScopedPublisher, CdcOwn, 403),
    (ScopedPublisher, CreateKey, 403),
    (NoKey, PublishOwn, 401),
    (NoKey, CdcOwn, 401),
    (NoKey, CreateKey, 401),
    (NoKey, ListKeys, 401),
    (NoKey, RevokeKey, 401),
    (NoKey, OpenApi, 200),
    (NoKey, Healthz, 200),
    (BadKey, PublishOwn, 401),
    (BadKey, CdcOwn, 401),
    (BadKey, CreateKey, 401),
    (BadKey, ListKeys, 401),
    (BadKey, RevokeKey, 401),
    (BadKey, OpenApi, 200),
    (BadKey, Healthz, 200),
    (Revoked, PublishOwn, 401),
    (Revoked, CdcOwn, 401),
    (Revoked, CreateKey, 401),
    (Revoked, ListKeys, 401),
    (Revoked, RevokeKey, 401),
    (Revoked, Healthz, 200),
];

struct Keys {
    admin: String,
    org_admin: String,
    reader: String,
    publisher: String,
    scoped: String,
    revoked: String,
    bad: String,
}

async fn keys(app: &TestApp) -> Keys {
    let revoked = app.key_full(json!({"role": "admin"})).await;
    let r = app
        .req(
            Method::DELETE,
            &format!("/v1/admin/keys/{}", revoked["id"].as_str().unwrap()),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Right shape, real key id, wrong secret.
    let admin_id = app
        .admin_key
        .split('_')
        .take(3)
        .collect::<Vec<_>>()
        .join("_");
    Keys {
        admin: app.admin_key.clone(),
        org_admin: app
            .key(json!({"role": "org_admin", "org_id": "org_a"}))
            .await,
        reader: app.key(json!({"role": "reader", "org_id": "org_a"})).await,
        publisher: app.key(json!({"role": "publisher"})).await,
        scoped: app
            .key(json!({"role": "publisher", "services": ["orders"], "orgs": ["org_a"]}))
            .await,
        revoked: revoked["key"].as_str().unwrap().to_string(),
        bad: format!("{admin_id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    }
}

fn token(k: &Keys, who: Who) -> Option<&str> {
    Some(match who {
        Admin => &k.admin,
        OrgAdmin => &k.org_admin,
        Reader => &k.reader,
        Publisher => &k.publisher,
        ScopedPublisher => &k.scoped,
        Revoked => &k.revoked,
        BadKey => &k.bad,
        NoKey => return None,
    })
}

#[tokio::test]
async fn auth_matrix() {
    let app = TestApp::spawn().await;
    let k = keys(&app).await;
    let mut failures = Vec::new();
    for (n, &(who, op, want)) in MATRIX.iter().enumerate() {
        let row = format!("row {n}: {who:?} × {op:?} → {want}");
        let (method, path, body): (Method, String, Option<Value>) = match op {
            PublishOwn => (
                Method::POST,
                "/v1/events".into(),
                Some(event("org_a", &format!("m{n}"), "orders.order.created")),
            ),
            PublishForeign => (
                Method::POST,
                "/v1/events".into(),
                Some(event("org_b", &format!("m{n}"), "orders.order.created")),
            ),
            CdcOwn => (Method::GET, "/v1/orgs/org_a/cdc".into(), None),
            CdcForeign => (Method::GET, "/v1/orgs/org_b/cdc".into(), None),
            CreateKey => (
                Method::POST,
                "/v1/admin/keys".into(),
                Some(json!({"role": "publisher"})),
            ),
            ListKeys => (Method::GET, "/v1/admin/keys".into(), None),
            RevokeKey => {
                let victim = app.key_full(json!({"role": "publisher"})).await;
                (
                    Method::DELETE,
                    format!("/v1/admin/keys/{}", victim["id"].as_str().unwrap()),
                    None,
                )
            }
            RevokeMissing => (
                Method::DELETE,
                "/v1/admin/keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
                None,
            ),
            OpenApi => (Method::GET, "/v1/openapi.json".into(), None),
            Healthz => (Method::GET, "/healthz".into(), None),
        };
        let mut rb = app
            .client
            .request(method, app.url(&path))
            .header("x-request-id", format!("matrix-{n}"))
            .header("x-actor-id", "matrix");
        if let Some(t) = token(&k, who) {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let got = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        if got != want {
            failures.push(format!("{row}: got {got}: {text}"));
            continue;
        }
        if got >= 400 {
            let code = match got {
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                _ => unreachable!(),
            };
            if ct != "application/problem+json" || !text.contains(&format!("\"code\":\"{code}\"")) {
                failures.push(format!("{row}: expected a {code} problem, got {ct} {text}"));
            }
        }
        if who == ScopedPublisher && matches!(op, PublishForeign) {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["results"][0]["code"] != "forbidden" {
                failures.push(format!(
                    "{row}: the foreign event must be rejected as forbidden: {text}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "auth matrix failures:\n{}",
        failures.join("\n")
    );
}
