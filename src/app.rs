//! Wiring: config → store → services → HTTP server and workers.
use crate::catalog::Catalog;
use crate::config::{Config, Worker};
use crate::http::{self, AppState};
use crate::node::NodeDir;
use crate::service::jobs::JobEnv;
use crate::service::validator::CatalogValidator;
use crate::service::{EventValidator, Services};
use crate::store::DynStore;
use crate::store::files::{FileStore, LocalFiles};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::workers::jobs::{JobTuning, JobWorker};
use crate::workers::retention::RetentionWorker;
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built application: config, store and services, ready to serve.
pub struct App {
    pub config: Config,
    pub services: Arc<Services>,
    /// The admin key minted on first start (print it once), if any.
    pub minted_admin_key: Option<String>,
    /// Job files and limits (exports, imports).
    pub jobs: Arc<JobEnv>,
    /// This node's id: the workers lease work under it (see [`crate::node`]).
    pub node_id: String,
    /// The data-dir lock, held until the app is dropped (when [`run`] returns).
    _node_dir: NodeDir,
}

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (e.g. by a test harness): render an empty one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

impl App {
    /// Checks everything that can be checked (the `IPM_ADMIN_KEY` format, the connection cap,
    /// the catalog, the data dir and store reachability) and only then creates anything: the
    /// data dir and its lock, the sealing key, the store and its schema, the first admin key.
    /// So a start that fails leaves nothing behind and prints no admin key that would be lost.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        init_crypto();
        let checked = preflight(&config).await?;
        let node_dir = NodeDir::open(&config.data_dir)
            .with_context(|| format!("data_dir = {}", config.data_dir.display()))?;
        let webhooks =
            crate::service::webhooks::WebhookKit::new(&config.webhooks, &config.data_dir).map_err(
                |e| {
                    anyhow::anyhow!(
                        "the webhook sealing key (webhooks.encryption_key, else {}): {e}",
                        config.data_dir.join("webhook-secrets.key").display()
                    )
                },
            )?;
        let (store, files) = open_store(&config).await?;
        let node_id = if store.hold_node(&node_dir.id).await? {
            node_dir.id.clone()
        } else {
            let fresh = crate::node::fresh_id();
            tracing::warn!(
                node_id = %node_dir.id, fresh = %fresh,
                "another live node uses this data dir's node id (a copied data dir?); running \
                 under a fresh id, so this node's earlier leases lapse instead of being released"
            );
            anyhow::ensure!(
                store.hold_node(&fresh).await?,
                "the store refused a fresh node id"
            );
            fresh
        };
        let catalog = Arc::new(checked.catalog);
        let validator: Arc<dyn EventValidator> = Arc::new(CatalogValidator::new(
            catalog.clone(),
            config.catalog.unknown_types,
            config.catalog.validation,
        ));
        let mut services = Services::new(store, catalog, validator).await?;
        services.webhooks = Arc::new(webhooks);
        let services = Arc::new(services);
        if checked.admin_key.is_some() && services.store.count_keys().await? > 0 {
            tracing::warn!(
                "IPM_ADMIN_KEY is ignored: the store already has API keys (it only seeds an \
                 empty store)"
            );
        }
        let minted_admin_key = services
            .bootstrap_admin(checked.admin_key.as_deref())
            .await?;
        let jobs = Arc::new(JobEnv {
            files,
            max_import_bytes: config.jobs.max_import_bytes,
        });
        Ok(App {
            config,
            services,
            minted_admin_key,
            jobs,
            node_id,
            _node_dir: node_dir,
        })
    }

    /// A job worker over this app's services (`run_once` for tests; `spawn` in `run`).
    pub fn job_worker(&self) -> JobWorker {
        JobWorker::new(
            self.services.clone(),
            self.jobs.clone(),
            JobTuning {
                lease: std::time::Duration::from_secs(self.config.jobs.lease_secs.max(1)),
                export_chunk: self.config.jobs.export_chunk,
                import_chunk: self.config.jobs.import_chunk,
                ..JobTuning::default()
            },
            &self.node_id,
        )
    }

    /// The HTTP router over this app's services.
    pub fn router(&self) -> axum::Router {
        http::router(AppState {
            services: self.services.clone(),
            max_body: http::DEFAULT_MAX_BODY,
            metrics: metrics_handle(),
            jobs: self.jobs.clone(),
        })
    }
}

/// Loads the configured catalog (or the embedded one); an invalid catalog refuses the start.
pub fn load_catalog(config: &Config) -> anyhow::Result<Catalog> {
    match &config.catalog.dir {
        Some(dir) => Catalog::load_dir(dir).map_err(|e| {
            anyhow::anyhow!(
                "the catalog in {} (catalog.dir / --catalog) is invalid:\n{e}",
                dir.display()
            )
        }),
        None => Catalog::embedded()
            .map_err(|e| anyhow::anyhow!("the embedded catalog is invalid:\n{e}")),
    }
}

/// What [`preflight`] checked and hands on.
struct Checked {
    catalog: Catalog,
    /// `IPM_ADMIN_KEY`, well-formed.
    admin_key: Option<String>,
}

/// Every check that needs no creation, so a failing start creates nothing.
async fn preflight(config: &Config) -> anyhow::Result<Checked> {
    let admin_key = std::env::var("IPM_ADMIN_KEY")
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(k) = &admin_key
        && crate::domain::auth::ApiToken::parse(k).is_none()
    {
        // Never echo the value: it is meant to be a secret.
        let what = if k.starts_with("ipm_key_") {
            "its key id (a 26-character ULID) or its secret part is malformed"
        } else {
            "it does not start with ipm_key_"
        };
        anyhow::bail!(
            "IPM_ADMIN_KEY is not an API key ({what}; {} characters): expected \
             ipm_key_<26-character ULID>_<secret of 16 to 256 characters from A-Z a-z 0-9 ->, \
             or unset it and the first start mints an admin key and prints it once",
            k.len()
        );
    }
    crate::server::connection_cap(&config.server).map_err(anyhow::Error::msg)?;
    let catalog = load_catalog(config)?;
    if config.data_dir.exists() && !config.data_dir.is_dir() {
        anyhow::bail!(
            "data_dir = {} is not a directory: choose another with --data-dir",
            config.data_dir.display()
        );
    }
    match config.database_url.as_deref() {
        Some(u) if u.starts_with("postgres") => crate::store::postgres::check(u)
            .await
            .map_err(|e| anyhow::anyhow!(store_message(e)))?,
        _ => check_sqlite_file(&config.sqlite_path())?,
    }
    Ok(Checked { catalog, admin_key })
}

/// An existing SQLite store file must be one (a new one is created later).
fn check_sqlite_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Read;
    if !path.exists() {
        return Ok(());
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading the SQLite store {}", path.display()))?;
    anyhow::ensure!(
        n == 0 || head == *b"SQLite format 3\0",
        "{} is not a SQLite database (database_url / data_dir): point database_url or \
         --data-dir elsewhere",
        path.display()
    );
    Ok(())
}

fn store_message(e: crate::store::StoreError) -> String {
    match e {
        crate::store::StoreError::Backend(m) | crate::store::StoreError::Conflict(m) => m,
    }
}

/// Opens the configured store and the job file store that goes with it: local files beside
/// SQLite; the database itself on PostgreSQL, so every node reaches every job's files.
async fn open_store(config: &Config) -> anyhow::Result<(DynStore, Arc<dyn FileStore>)> {
    match config.database_url.as_deref() {
        Some(u) if u.starts_with("postgres") => {
            // The data dir still holds node-local files (the webhook sealing key by default).
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
            let store = PgStore::open(u)
                .await
                .map_err(|e| anyhow::anyhow!(store_message(e)))?;
            let files = store.files();
            Ok((Arc::new(store), files))
        }
        _ => {
            let path = config.sqlite_path();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating data dir {}", dir.display()))?;
            }
            let store = SqliteStore::open(&path).await.with_context(|| {
                format!(
                    "opening the SQLite store at {} (database_url / data_dir)",
                    path.display()
                )
            })?;
            let files: Arc<dyn FileStore> =
                Arc::new(LocalFiles::new(config.data_dir.join("files")));
            Ok((Arc::new(store), files))
        }
    }
}

/// Serves the API on `listener` with this node's workers (`workers.*`) until `shutdown`
/// resolves, then drains in-flight requests, stops the workers and closes the store.
pub async fn run(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    let mut running = Vec::new();
    let config = &app.config;
    if config.runs(Worker::Retention)
        && let Some(days) = config.retention.days
    {
        workers.push(RetentionWorker::new(app.services.store.clone(), days).spawn(stop.clone()));
        running.push(Worker::Retention.key());
    }
    if config.runs(Worker::Jobs) {
        workers.push(app.job_worker().spawn(stop.clone()));
        running.push(Worker::Jobs.key());
    }
    if config.runs(Worker::Delivery) {
        workers.push(
            crate::workers::delivery::DeliveryWorker::new(app.services.clone(), &app.node_id)
                .spawn(stop.clone()),
        );
        running.push(Worker::Delivery.key());
    }
    if running.is_empty() {
        tracing::info!("no background workers on this node (API-only; see workers.*)");
    } else {
        tracing::info!(workers = %running.join(","), "background workers started");
    }
    let http_stop = CancellationToken::new();
    let signal = http_stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    let result = crate::server::serve(listener, app.router(), &app.config.server, http_stop).await;
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    app.services.store.close().await?;
    result.map_err(anyhow::Error::msg).context("serving HTTP")
}
