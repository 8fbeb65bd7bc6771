//! Helpers for the job tests: a server whose job worker the test drives step by step, event
//! generators, and NDJSON/CDC comparisons.
use ipm::App;
use ipm::config::Config;
use ipm::workers::jobs::JobWorker;
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A server without a background job worker; the test calls [`JobApp::drain`].
pub struct JobApp {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub worker: JobWorker,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for JobApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl JobApp {
    pub async fn spawn() -> JobApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> JobApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        config.catalog.unknown_types = ipm::config::UnknownTypes::Accept;
        config.workers.jobs = false;
        config.database_url = crate::helpers::database_url_for(dir.path());
        tweak(&mut config);
        let app = App::build(config).await.unwrap();
        let admin_key = app.minted_admin_key.clone().unwrap();
        let worker = app.job_worker();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(ipm::run(app, listener, async move {
            let _ = rx.await;
        }));
        JobApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            admin_key,
            worker,
            dir,
            stop: Some(tx),
        }
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(key)
            .header("x-request-id", crate::helpers::rid())
            .header("x-actor-id", "tester")
    }

    /// Runs the job worker until it has nothing left to do.
    pub async fn drain(&self) -> u64 {
        self.worker.run_until_idle().await.unwrap()
    }

    /// Creates a key as admin and returns the token.
    pub async fn key(&self, body: Value) -> String {
        let r = self
            .req(Method::POST, "/v1/admin/keys", &self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Publishes NDJSON lines in batches of 1000; returns the summed accepted count.
    pub async fn publish_lines(&self, lines: &[String]) -> u64 {
        let mut accepted = 0;
        for chunk in lines.chunks(1000) {
            let r = self
                .req(Method::POST, "/v1/events", &self.admin_key)
                .header("content-type", "application/x-ndjson")
                .body(chunk.join("\n"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            accepted += r.json::<Value>().await.unwrap()["accepted"]
                .as_u64()
                .unwrap();
        }
        accepted
    }

    /// Every CDC event body (raw JSON text, byte for byte) for `query`, and the last cursor.
    pub async fn cdc_raw(&self, org: &str, query: &str) -> (Vec<String>, String) {
        cdc_raw(&self.client, &self.base, &self.admin_key, org, query).await
    }

    /// Starts an export as admin; returns the job JSON.
    pub async fn export(&self, org: &str, body: Value) -> Value {
        let r = self
            .req(
                Method::POST,
                &format!("/v1/orgs/{org}/exports"),
                &self.admin_key,
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// Polls a job as admin (status and body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .req(Method::GET, path, &self.admin_key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Downloads an export file's bytes.
    pub async fn download(&self, url: &str) -> Vec<u8> {
        let r = self
            .req(Method::GET, url, &self.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }
}

#[derive(Deserialize)]
struct RawPage {
    data: Vec<Box<RawValue>>,
    next_cursor: String,
    has_more: bool,
}

/// Follows the CDC feed to its end, keeping each event's exact bytes.
pub async fn cdc_raw(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    org: &str,
    query: &str,
) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{query}&limit=1000");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let r = client
            .get(format!("{base}/v1/orgs/{org}/cdc?{q}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: RawPage = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        out.extend(page.data.into_iter().map(|d| d.get().to_string()));
        cursor = Some(page.next_cursor);
        if !page.has_more {
            return (out, cursor.unwrap_or_default());
        }
    }
}

/// An NDJSON envelope line for event `i` of `org`.
pub fn line(org: &str, prefix: &str, i: usize, event_type: &str) -> String {
    json!({
        "event_id": format!("{prefix}-{i}"),
        "event_type": event_type,
        "org_id": org,
        "occurred_at": format!("2026-11-26T10:{:02}:{:02}.{:03}Z", (i / 60000) % 60, (i / 1000) % 60, i % 1000),
        "facility_id": format!("fac_{}", i % 7),
        "payload": {"n": i, "sku": format!("sku-{}", i % 113), "qty": i % 9, "note": "some padding text to make lines realistic"}
    })
    .to_string()
}

/// The lines of an NDJSON byte buffer.
pub fn lines_of(bytes: &[u8]) -> Vec<String> {
    std::str::from_utf8(bytes)
        .unwrap()
        .split_terminator('\n')
        .map(str::to_string)
        .collect()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The real `ipm` binary serving on a data dir, killable with SIGKILL.
pub struct RealServer {
    pub child: std::process::Child,
    pub base: String,
}

impl RealServer {
    /// Starts `ipm serve` on `dir`; returns the server and the admin key if one was minted.
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (RealServer, Option<String>) {
        use std::io::BufRead;
        ipm::app::init_crypto();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ipm"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("IPM_CATALOG__UNKNOWN_TYPES", "accept")
            .env_remove("IPM_ADMIN_KEY")
            .envs(crate::helpers::backend_env(dir))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut key = None;
        let base = loop {
            let l = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if l.starts_with("ipm_") {
                key = Some(l.trim().to_string());
            } else if let Some(addr) = l.strip_prefix("listening on ") {
                break addr.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (RealServer { child, base }, key)
    }

    /// SIGKILL, no shutdown of any kind.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client request against a real server with request-context headers.
pub fn real_req(base: &str, method: Method, path: &str, key: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key)
        .header("x-request-id", crate::helpers::rid())
        .header("x-actor-id", "tester")
}

/// Polls `path` until `done` holds for its JSON body, or panics after `secs`.
pub async fn poll_until(
    base: &str,
    key: &str,
    path: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(r) = real_req(base, Method::GET, path, key).send().await
            && let Ok(v) = r.json::<Value>().await
            && done(&v)
        {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out polling {path}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Publishes lines to a real server in batches of 1000.
pub async fn real_publish(base: &str, key: &str, lines: &[String]) {
    for chunk in lines.chunks(1000) {
        let r = real_req(base, Method::POST, "/v1/events", key)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
