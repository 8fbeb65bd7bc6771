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

/// A new, empty database on the test server (named like the API suite's, so `scripts/test.sh`
/// drops any a failing test leaves behind).
pub(super) struct Db {
    admin: tokio_postgres::Client,
    name: String,
}

impl Db {
    /// The database's URL (for a second store on it: another node).
    pub(super) fn url(&self) -> String {
        let mut url = url::Url::parse(&server_url()).unwrap();
        url.set_path(&format!("/{}", self.name));
        url.to_string()
    }

    /// Closes `s` and removes the database.
    pub(super) async fn drop(self, s: PgStore) {
        crate::store::Meta::close(&s).await.unwrap();
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// A fresh database and a store on it.
pub(super) async fn store() -> (PgStore, Db) {
    let base = server_url();
    let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    let name = format!(
        "ipm_t_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&format!("/{name}"));
    (
        PgStore::open(url.as_str()).await.unwrap(),
        Db { admin, name },
    )
}

/// A store on a new, empty database (left for `scripts/test.sh` to drop).
pub(super) async fn fresh_store() -> PgStore {
    store().await.0
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
