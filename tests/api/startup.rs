//! `ipm serve` as an operator starts it (issue 11 items 10, 11, 12, 20): stray `IPM_*`
//! variables, `IPM_CONFIG`, and startup errors that name the setting, the value and what to do —
//! raised before anything is created (no data dir, no store, no admin key printed and lost).
use crate::helpers::{pg_admin_url, serve};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What a failed `ipm serve` left: its exit status and output.
struct Failed {
    stdout: String,
    stderr: String,
}

/// `ipm serve ARGS` in `cwd` with `env` (and none of the caller's IPM_* settings), which must
/// exit with an error within 30 s.
async fn serve_fails(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Failed {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipm"));
    cmd.arg("serve")
        .args(args)
        .current_dir(cwd)
        .env("IPM_LOG", "warn")
        .env_remove("IPM_ADMIN_KEY")
        .env_remove("IPM_DATABASE_URL")
        .env_remove("IPM_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("ipm serve was expected to fail, but it kept running")
        .unwrap();
    let f = Failed {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        f.stdout,
        f.stderr
    );
    f
}

impl Failed {
    /// The `error:` line(s) on stderr.
    fn error(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .skip_while(|l| !l.starts_with("error:"))
            .collect();
        assert!(!lines.is_empty(), "no error line: {}", self.stderr);
        lines.join("\n")
    }

    /// Asserts nothing was created under `data_dir` and no admin key was printed.
    fn created_nothing(&self, data_dir: &Path) {
        assert!(
            !data_dir.exists(),
            "the failed start created {}: {:?}",
            data_dir.display(),
            std::fs::read_dir(data_dir).map(|d| d.count())
        );
        assert!(
            !self.stdout.contains("ipm_key_"),
            "a key was printed: {}",
            self.stdout
        );
        assert!(
            !self.stderr.contains("ipm_key_0"),
            "a key was printed: {}",
            self.stderr
        );
    }
}

#[tokio::test]
async fn a_port_in_use_names_the_address_and_the_flag_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("data");
    let f = serve_fails(
        tmp.path(),
        &["--listen", &addr, "--data-dir", data.to_str().unwrap()],
        &[],
    )
    .await;
    let e = f.error();
    assert!(e.contains(&addr), "{e}");
    assert!(e.contains("--listen"), "{e}");
    assert!(e.contains("in use"), "{e}");
    f.created_nothing(&data);
}

#[tokio::test]
async fn a_malformed_admin_key_names_the_variable_and_the_form_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let f = serve_fails(
        tmp.path(),
        &args,
        &[("IPM_ADMIN_KEY", "bogus-secret-value")],
    )
    .await;
    let e = f.error();
    assert!(e.contains("IPM_ADMIN_KEY"), "{e}");
    assert!(e.contains("ipm_key_<26-character ULID>_<secret"), "{e}");
    assert!(
        !e.contains("bogus-secret-value"),
        "the value is a secret: {e}"
    );
    f.created_nothing(&data);
}

#[tokio::test]
async fn config_errors_name_the_source_the_key_and_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap().to_string();
    let args = ["--listen", "127.0.0.1:0", "--data-dir", data_s.as_str()];
    // An unknown key in the file: no `default.` profile prefix, no doubled quotes.
    std::fs::write(tmp.path().join("ipm.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    let e = serve_fails(tmp.path(), &args, &[]).await.error();
    assert!(e.contains("ipm.toml") && e.contains("`lisen`"), "{e}");
    assert!(
        e.contains("listen, data_dir"),
        "the known keys are listed: {e}"
    );
    assert!(!e.contains("default."), "{e}");
    assert!(!e.contains("``"), "{e}");
    // A wrong type in the file names the key and the value.
    std::fs::write(
        tmp.path().join("ipm.toml"),
        "[webhooks]\nmax_in_flight = \"many\"\n",
    )
    .unwrap();
    let e = serve_fails(tmp.path(), &args, &[]).await.error();
    assert!(
        e.contains("`webhooks.max_in_flight`") && e.contains("\"many\""),
        "{e}"
    );
    std::fs::remove_file(tmp.path().join("ipm.toml")).unwrap();
    // A misspelt key inside a known section is still an error naming the variable.
    let e = serve_fails(
        tmp.path(),
        &args,
        &[("IPM_WEBHOOKS__ATTEMPT_TIMOUT_SECS", "3")],
    )
    .await
    .error();
    assert!(e.contains("IPM_WEBHOOKS__ATTEMPT_TIMOUT_SECS"), "{e}");
    assert!(
        e.contains("attempt_timeout_secs"),
        "the right key is listed: {e}"
    );
    // A value out of range names the key and the value.
    let e = serve_fails(
        tmp.path(),
        &args,
        &[("IPM_WEBHOOKS__ATTEMPT_TIMEOUT_SECS", "0")],
    )
    .await
    .error();
    assert!(e.contains("webhooks.attempt_timeout_secs = 0"), "{e}");
    let e = serve_fails(tmp.path(), &args, &[("IPM_SERVER__MAX_CONNECTIONS", "0")])
        .await
        .error();
    assert!(e.contains("server.max_connections = 0"), "{e}");
    let e = serve_fails(
        tmp.path(),
        &["--listen", "localhost", "--data-dir", &data_s],
        &[],
    )
    .await
    .error();
    assert!(e.contains("listen = \"localhost\""), "{e}");
    assert!(!data.exists());
}

#[tokio::test]
async fn an_invalid_catalog_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let catalog = format!(
        "{}/tests/fixtures/catalogs/duplicate_type",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = serve_fails(
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--catalog",
            &catalog,
        ],
        &[],
    )
    .await;
    assert!(f.error().contains("duplicate_type"), "{}", f.error());
    f.created_nothing(&data);
}

/// Variables Kubernetes injects for a Service named `ipm`, plus the CLI's own.
const STRAYS: &[(&str, &str)] = &[
    ("IPM_PORT", "tcp://10.96.0.12:8080"),
    ("IPM_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
    ("IPM_PORT_8080_TCP_ADDR", "10.96.0.12"),
    ("IPM_PORT_8080_TCP_PORT", "8080"),
    ("IPM_PORT_8080_TCP_PROTO", "tcp"),
    ("IPM_SERVICE_HOST", "10.96.0.12"),
    ("IPM_SERVICE_PORT", "8080"),
    ("IPM_SERVICE_PORT_HTTP", "8080"),
    ("IPM_PROGRESS", "0"),
    ("IPM_WEBHOOK_SECRET", "whsec_dGVzdA=="),
    ("IPM_RETENTION_DAYS", "3"),
];

#[tokio::test]
async fn kubernetes_service_variables_are_ignored_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut served = serve(tmp.path(), STRAYS, Some(log.clone())).await;
    let r = reqwest::get(format!("{}/healthz", served.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    served.child.kill().await.unwrap();
    let log = log.lock().unwrap().clone();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    let strays: Vec<&&str> = warnings.iter().filter(|l| l.contains("IPM_PORT")).collect();
    assert_eq!(strays.len(), 1, "one line for the strays: {log}");
    for (name, _) in &STRAYS[..8] {
        assert!(strays[0].contains(name), "{name} in {}", strays[0]);
    }
    // The CLI's own variables are known: no warning.
    assert!(
        !log.contains("IPM_PROGRESS") && !log.contains("IPM_WEBHOOK_SECRET"),
        "{log}"
    );
    // A single underscore where `__` was meant gets a hint.
    let hint: Vec<&&str> = warnings
        .iter()
        .filter(|l| l.contains("IPM_RETENTION_DAYS"))
        .collect();
    assert_eq!(hint.len(), 1, "{log}");
    assert!(hint[0].contains("IPM_RETENTION__DAYS"), "{}", hint[0]);
}

/// Starts `ipm serve ARGS` in `cwd` with `env`, waits until it listens, then stops it.
async fn serve_starts(cwd: &Path, args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ipm"));
    cmd.arg("serve")
        .args(args)
        .current_dir(cwd)
        .env("IPM_LOG", "warn")
        .env_remove("IPM_ADMIN_KEY")
        .env_remove("IPM_DATABASE_URL")
        .env_remove("IPM_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("listening on") {
                return;
            }
        }
        panic!("ipm serve exited before listening");
    })
    .await
    .expect("ipm serve did not listen within 60 s");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn ipm_config_is_honoured_and_the_flag_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = tmp.path().join("chosen-by-config.sqlite3");
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        format!("database_url = \"sqlite:{}\"\n", store.display()),
    )
    .unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "lisen = \"x\"\n").unwrap();
    let (good_s, bad_s) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];

    // IPM_CONFIG is read: its settings apply …
    serve_starts(tmp.path(), &args, &[("IPM_CONFIG", good_s)]).await;
    assert!(
        store.exists(),
        "the store named in IPM_CONFIG's file was not used"
    );
    // … and its errors name it.
    let e = serve_fails(tmp.path(), &args, &[("IPM_CONFIG", bad_s)])
        .await
        .error();
    assert!(e.contains("bad.toml") && e.contains("lisen"), "{e}");
    let e = serve_fails(
        tmp.path(),
        &args,
        &[("IPM_CONFIG", "/nonexistent/ipm.toml")],
    )
    .await
    .error();
    assert!(
        e.contains("IPM_CONFIG") && e.contains("/nonexistent/ipm.toml"),
        "{e}"
    );
    // --config wins over IPM_CONFIG.
    let mut with_flag = args.to_vec();
    with_flag.extend(["--config", good_s]);
    serve_starts(tmp.path(), &with_flag, &[("IPM_CONFIG", bad_s)]).await;
}

// ---- PostgreSQL connection failures (item 20), against the suite's test server ----

/// `ipm serve` on `database_url` must fail with one line naming the cause; returns it.
async fn pg_start_fails(database_url: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let f = serve_fails(
        tmp.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--database-url",
            database_url,
        ],
        &[],
    )
    .await;
    f.created_nothing(&data);
    let e = f.error();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

/// The test server's URL with `user`, `password` and database `db`.
fn pg_url(user: &str, password: &str, db: &str) -> url::Url {
    let mut u = url::Url::parse(&pg_admin_url()).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(password)).unwrap();
    u.set_path(&format!("/{db}"));
    u
}

fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .arg(pg_admin_url())
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn postgres_missing_database_and_wrong_password_name_the_cause() {
    let suffix = ulid::Ulid::generate().to_string().to_lowercase();
    let admin = url::Url::parse(&pg_admin_url()).unwrap();
    let (admin_user, admin_pw) = (admin.username().to_string(), admin.password().unwrap_or(""));

    let missing = format!("ipm_t_missing_{suffix}");
    let e = pg_start_fails(pg_url(&admin_user, admin_pw, &missing).as_str()).await;
    assert!(e.contains(&format!("no database \"{missing}\"")), "{e}");
    assert!(e.contains("createdb"), "says what to do: {e}");
    assert!(e.contains(":***@"), "the URL, redacted: {e}");
    if !admin_pw.is_empty() {
        assert!(
            !e.contains(&format!(":{admin_pw}@")),
            "the password leaked: {e}"
        );
    }

    let role = format!("ipm_t_role_{suffix}");
    psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
    ));
    let e = pg_start_fails(pg_url(&role, "wrong-password", "postgres").as_str()).await;
    psql(&format!("DROP ROLE {role}"));
    assert!(e.contains("refused the password"), "{e}");
    assert!(e.contains(&format!("\"{role}\"")), "names the user: {e}");
    assert!(e.contains("database_url"), "{e}");
    assert!(!e.contains("wrong-password"), "the password leaked: {e}");
}

#[tokio::test]
async fn postgres_refused_and_unreachable_name_the_cause() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = pg_start_fails(&format!("postgres://u:secret@127.0.0.1:{port}/db")).await;
    assert!(e.contains("connection refused"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("secret"), "{e}");
    // A host that does not resolve.
    let e = pg_start_fails("postgres://u:secret@ipm-no-such-host.invalid:5432/db").await;
    assert!(
        e.contains("cannot reach PostgreSQL at ipm-no-such-host.invalid:5432"),
        "{e}"
    );
    // An address that swallows packets (TEST-NET-1; refused or unreachable on some networks):
    // bounded by the URL's connect_timeout, whatever the network does.
    let e = pg_start_fails("postgres://u:secret@192.0.2.1:5432/db?connect_timeout=2").await;
    assert!(
        ["no answer from", "connection refused", "cannot reach"]
            .iter()
            .any(|s| e.contains(s)),
        "{e}"
    );
    assert!(e.contains("192.0.2.1:5432"), "{e}");
}
