//! The test harness: `TestApp::spawn()` starts the real server on 127.0.0.1:0 over a temp-dir
//! store and hands out an admin key and a client.
use ipm::App;
use ipm::config::Config;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server for one test.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub config: Config,
    pub dir: TempDir,
    /// The server's services (store included), for driving workers and inspecting state.
    pub services: std::sync::Arc<ipm::service::Services>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

static REQ: AtomicU64 = AtomicU64::new(1);

/// A fresh request id.
pub fn rid() -> String {
    format!("test-{}", REQ.fetch_add(1, Ordering::Relaxed))
}

impl TestApp {
    /// A server with default config on a temp dir.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose config `tweak` may change first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
        config.database_url = database_url_for(dir.path());
        tweak(&mut config);
        Self::start(config, dir).await
    }

    /// Starts a server on `config` (reusing `dir` as the data dir owner).
    pub async fn start(config: Config, dir: TempDir) -> TestApp {
        Self::start_node(config, dir, None).await
    }

    /// Starts a server on `config`; `admin_key` is the key of a store that already has one
    /// (another node of the same database), else a fresh store must mint it.
    pub async fn start_node(config: Config, dir: TempDir, admin_key: Option<String>) -> TestApp {
        // Server warnings in the test's captured output (shown when it fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("IPM_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let app = App::build(config.clone()).await.expect("build app");
        let admin_key = app
            .minted_admin_key
            .clone()
            .or(admin_key)
            .expect("a fresh store mints an admin key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let services = app.services.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ipm::run(app, listener, async move {
            let _ = rx.await;
        }));
        ipm::app::init_crypto();
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            admin_key,
            config,
            dir,
            services,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits for the store to close.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server result");
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// A request with a key and a fresh `X-Request-Id` / `X-Actor-Id`.
    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(key)
            .header("x-request-id", rid())
            .header("x-actor-id", "tester")
    }

    /// Creates a key as admin and returns the token.
    pub async fn key(&self, body: Value) -> String {
        let r = self
            .req(Method::POST, "/v1/admin/keys", &self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// POSTs events as the admin and returns the report.
    pub async fn publish(&self, events: &Value) -> Value {
        let r = self
            .req(Method::POST, "/v1/events", &self.admin_key)
            .json(events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// GETs a CDC page as the admin.
    pub async fn cdc(&self, org: &str, query: &str) -> Response {
        self.req(
            Method::GET,
            &format!("/v1/orgs/{org}/cdc?{query}"),
            &self.admin_key,
        )
        .send()
        .await
        .unwrap()
    }

    /// Follows the CDC feed until `has_more` is false; returns every event.
    pub async fn cdc_all(&self, org: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("{query}&limit=1000&cursor={c}"),
                None => format!("{query}&limit=1000"),
            };
            let r = self.cdc(org, &q).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            out.extend(v["data"].as_array().unwrap().iter().cloned());
            cursor = v["next_cursor"].as_str().map(str::to_string);
            if v["has_more"] != true {
                return out;
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An event envelope for tests.
pub fn event(org: &str, event_id: &str, event_type: &str) -> Value {
    json!({
        "event_id": event_id,
        "event_type": event_type,
        "org_id": org,
        "occurred_at": "2026-11-26T10:15:00.123Z",
        "payload": { "n": event_id }
    })
}

impl TestApp {
    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Asserts `/healthz` still answers 200.
    pub async fn assert_alive(&self) {
        let r = self.client.get(self.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the server stopped answering /healthz");
    }

    /// POSTs `events` with `key` and returns the response.
    pub async fn publish_as(&self, key: &str, events: &Value) -> Response {
        self.req(Method::POST, "/v1/events", key)
            .json(events)
            .send()
            .await
            .unwrap()
    }

    /// Creates a key as admin and returns the whole creation response.
    pub async fn key_full(&self, body: Value) -> Value {
        let r = self
            .req(Method::POST, "/v1/admin/keys", &self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let has_rid = r.headers().contains_key("x-request-id");
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "status; body: {text}");
    assert_eq!(ct, "application/problem+json", "content-type; body: {text}");
    assert!(has_rid, "X-Request-Id missing on a problem response");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["code"], code, "code; body: {text}");
    assert_eq!(v["status"], status, "status field; body: {text}");
    v
}

/// `n` events of `org` with ids `{prefix}-{i}`.
pub fn events(org: &str, prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| event(org, &format!("{prefix}-{i}"), "orders.order.created"))
            .collect(),
    )
}

/// Whether the suite runs on PostgreSQL (`TEST_IPM_BACKEND=postgres`, set by `scripts/test.sh`
/// for its second pass); SQLite otherwise.
pub fn on_postgres() -> bool {
    std::env::var("TEST_IPM_BACKEND").is_ok_and(|v| v == "postgres")
}

/// The test PostgreSQL server's admin URL (`scripts/setup-postgres.sh` starts the server).
pub fn pg_admin_url() -> String {
    std::env::var("TEST_IPM_PG_URL")
        .unwrap_or_else(|_| "postgres://ipm:ipm@127.0.0.1:5432/postgres".into())
}

/// A new, empty database on the test server; returns its URL.
pub fn fresh_database() -> String {
    let admin = pg_admin_url();
    let name = format!(
        "ipm_t_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let out = std::process::Command::new("psql")
        .arg(&admin)
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .output()
        .expect("run psql (is PostgreSQL set up? see scripts/setup-postgres.sh)");
    assert!(
        out.status.success(),
        "creating a test database failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut url = url::Url::parse(&admin).expect("TEST_IPM_PG_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The `database_url` of servers on `data_dir`: None on SQLite (the file in the data dir); on
/// PostgreSQL a database made for this data dir on first use and remembered in it, so a restart
/// on the same dir (crash tests) finds the same data.
pub fn database_url_for(data_dir: &std::path::Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let marker = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url.trim().to_string());
    }
    let url = fresh_database();
    std::fs::write(&marker, &url).expect("remember the test database");
    Some(url)
}

/// Environment for an `ipm serve` child on `data_dir` (the backend's database URL, if any).
pub fn backend_env(data_dir: &std::path::Path) -> Vec<(String, String)> {
    database_url_for(data_dir)
        .map(|u| vec![("IPM_DATABASE_URL".to_string(), u)])
        .unwrap_or_default()
}

/// A real `ipm serve` process (for `kill -9`, restarts and several nodes).
pub struct Served {
    pub child: tokio::process::Child,
    pub base: String,
    /// The admin key printed on first start (None on restarts or on a second node).
    pub minted: Option<String>,
}

/// Starts `ipm serve` on `dir` with the test defaults (unknown event types accepted, the suite's
/// backend) plus `env`, and waits until it listens. Its stderr goes to `log` when given, else to
/// the test's own.
pub async fn serve(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
) -> Served {
    serve_limited(dir, env, log, None).await
}

/// [`serve`] under an open-files limit of `nofile` (soft and hard, set by `ulimit -n`) when given.
pub async fn serve_limited(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
    nofile: Option<u64>,
) -> Served {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    ipm::app::init_crypto();
    let mut cmd = match nofile {
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_ipm")),
        Some(n) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_ipm"));
            c
        }
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("IPM_LOG", "warn")
        // The tests publish generic event types that the embedded catalog does not define.
        .env("IPM_CATALOG__UNKNOWN_TYPES", "accept")
        .env_remove("IPM_ADMIN_KEY")
        .envs(backend_env(dir))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if log.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn ipm serve");
    if let (Some(log), Some(mut err)) = (log, child.stderr.take()) {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut minted = None;
    let base = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("ipm serve printed nothing for 60 s")
            .unwrap()
            .expect("ipm serve exited before listening");
        if line.starts_with("ipm_") {
            minted = Some(line.trim().to_string());
        } else if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served {
        child,
        base,
        minted,
    }
}

/// Publishes `events` to the server at `base` with `key`; returns the accepted events' ids.
pub async fn publish_ids(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    events: &Value,
) -> Vec<String> {
    let r = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .header("x-request-id", rid())
        .json(events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|res| res["id"].as_str().unwrap().to_string())
        .collect()
}
