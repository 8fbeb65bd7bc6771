//! Helpers of the PostgreSQL store tests: a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::PgStore;
use crate::domain::ids::{IdKind, new_id};
use crate::store::EventRow;

/// The server the tests use (`TEST_IPM_PG_URL`).
pub(super) fn server_url() -> String {
    std::env::var("TEST_IPM_PG_URL")
        .unwrap_or_else(|_| "postgres://ipm:ipm@127.0.0.1:5432/postgres".into())
}

/// A store on a new, empty database.
pub(super) async fn fresh_store() -> PgStore {
    let url = server_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    let db = format!(
        "ipm_u_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    client
        .batch_execute(&format!(
            "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .await
        .unwrap();
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname(&db);
    let new_url = format!(
        "postgres://{}:{}@{}:{}/{db}",
        config.get_user().unwrap_or("ipm"),
        String::from_utf8_lossy(config.get_password().unwrap_or(b"ipm")),
        match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        },
        config.get_ports().first().copied().unwrap_or(5432),
    );
    PgStore::open(&new_url).await.unwrap()
}

/// A minimal event of `org`.
pub(super) fn event(org: &str, event_id: &str, event_type: &str) -> EventRow {
    EventRow {
        id: new_id(IdKind::Event),
        org_id: org.into(),
        event_id: event_id.into(),
        occurred_at: 1_700_000_000_000_000_000,
        event_type: event_type.into(),
        service: "test".into(),
        channel_id: None,
        facility_id: None,
        payload_hash: format!("h-{event_id}"),
        rendered: format!("{{\"event_id\":\"{event_id}\",\"type\":\"{event_type}\"}}"),
        context: "{}".into(),
    }
}
