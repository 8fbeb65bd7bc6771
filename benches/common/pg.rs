//! PostgreSQL helpers shared by the benchmarks (a module, not a bench target).
#![allow(dead_code)]

/// The server the benchmarks use: `IPM_BENCH_PG_URL`, default a server with default settings
/// on 127.0.0.1:5432 (role ipm/ipm). Not the test suite's own instance, which runs with fsync off.
pub fn admin_url() -> String {
    std::env::var("IPM_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://ipm:ipm@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database on that server; its URL.
pub async fn fresh_db() -> String {
    let admin = admin_url();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to IPM_BENCH_PG_URL (default postgres://ipm:ipm@127.0.0.1:5432/postgres)");
    tokio::spawn(conn);
    let name = format!(
        "ipm_b_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    client
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}
