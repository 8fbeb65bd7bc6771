//! Client subcommands against a running server (`--url`, `--key` / `IPM_URL`, `IPM_KEY`).
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and which key to use.
#[derive(Debug, Args)]
pub struct Conn {
    /// Server base URL.
    #[arg(
        long,
        env = "IPM_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// API key.
    #[arg(long, env = "IPM_KEY", global = true, hide_env_values = true)]
    key: Option<String>,
}

/// A small JSON client that turns problem responses into readable errors.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(conn: &Conn) -> anyhow::Result<Self> {
        crate::app::init_crypto();
        let key = conn
            .key
            .clone()
            .context("an API key is needed: pass --key or set IPM_KEY")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_string(),
            key,
        })
    }

    fn request_id() -> String {
        format!("cli_{}", ulid::Ulid::generate())
    }

    /// A request with the key and request-context headers, for streamed bodies (uploads,
    /// downloads): no JSON handling, and `timeout` replaces the client's 60 s default.
    pub(crate) fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header("x-request-id", Self::request_id())
            .header(
                "x-actor-id",
                std::env::var("USER").unwrap_or_else(|_| "ipm-cli".into()),
            )
            .timeout(timeout)
    }

    /// Sends a request and returns the JSON body, or a readable error from a problem response.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> anyhow::Result<Value> {
        self.send_with_headers(method, path, body, &[]).await
    }

    /// [`Self::send`] with extra headers (e.g. `X-Reason-Code`).
    pub async fn send_with_headers(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header("x-request-id", Self::request_id())
            .header(
                "x-actor-id",
                std::env::var("USER").unwrap_or_else(|_| "ipm-cli".into()),
            );
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .map(|v| {
                    format!(
                        "{} ({}): {}",
                        v["title"].as_str().unwrap_or(""),
                        v["code"].as_str().unwrap_or(""),
                        v["detail"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or(text);
            bail!("server answered {status}: {detail}");
        }
        if text.is_empty() {
            Ok(Value::Null)
        } else {
            Ok(serde_json::from_str(&text)?)
        }
    }
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Create a key; prints it once.
    Create {
        /// admin, org_admin, reader or publisher.
        #[arg(long)]
        role: String,
        /// The org of an org_admin/reader key.
        #[arg(long)]
        org: Option<String>,
        /// Publisher: a service it may publish for (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
        /// Publisher: an org it may publish for (repeatable).
        #[arg(long = "publish-org")]
        orgs: Vec<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys.
    List,
    /// Revoke a key.
    Revoke { id: String },
}

pub async fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.conn)?;
    match a.cmd {
        KeysCmd::Create {
            role,
            org,
            services,
            orgs,
            label,
        } => {
            let mut body = serde_json::json!({ "role": role });
            if let Some(o) = org {
                body["org_id"] = o.into();
            }
            if !services.is_empty() {
                body["services"] = services.into();
            }
            if !orgs.is_empty() {
                body["orgs"] = orgs.into();
            }
            if let Some(l) = label {
                body["label"] = l.into();
            }
            let v = c
                .send(
                    reqwest::Method::POST,
                    "/v1/admin/keys",
                    Some(("application/json", body.to_string())),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        KeysCmd::List => {
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(cur) => format!("/v1/admin/keys?limit=1000&cursor={cur}"),
                    None => "/v1/admin/keys?limit=1000".to_string(),
                };
                let v = c.send(reqwest::Method::GET, &path, None).await?;
                for k in v["data"].as_array().into_iter().flatten() {
                    println!("{}", k);
                }
                match v["next_cursor"].as_str() {
                    Some(n) => cursor = Some(n.to_string()),
                    None => break,
                }
            }
        }
        KeysCmd::Revoke { id } => {
            c.send(
                reqwest::Method::DELETE,
                &format!("/v1/admin/keys/{id}"),
                None,
            )
            .await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: EventsCmd,
}

#[derive(Debug, Subcommand)]
enum EventsCmd {
    /// Publish an NDJSON file (one envelope per line) in batches of 1000.
    Publish { file: PathBuf },
}

pub async fn events(a: EventsArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.conn)?;
    let EventsCmd::Publish { file } = a.cmd;
    let text = tokio::fs::read_to_string(&file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    for (chunk_no, chunk) in lines.chunks(1000).enumerate() {
        let v = c
            .send(
                reqwest::Method::POST,
                "/v1/events",
                Some(("application/x-ndjson", chunk.join("\n"))),
            )
            .await?;
        accepted += v["accepted"].as_u64().unwrap_or(0);
        duplicates += v["duplicates"].as_u64().unwrap_or(0);
        rejected += v["rejected"].as_u64().unwrap_or(0);
        for r in v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"] == "rejected")
        {
            let line = chunk_no * 1000 + r["index"].as_u64().unwrap_or(0) as usize + 1;
            eprintln!("line {line}: rejected: {}", r["errors"]);
        }
    }
    println!("accepted {accepted}, duplicates {duplicates}, rejected {rejected}");
    if rejected > 0 {
        bail!("{rejected} event(s) were rejected");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CdcArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: CdcCmd,
}

#[derive(Debug, Subcommand)]
enum CdcCmd {
    /// Print an org's events as NDJSON, following cursors.
    Tail {
        #[arg(long)]
        org: String,
        /// Keep waiting for new events (long-poll).
        #[arg(long)]
        follow: bool,
        /// Filter by service (repeatable).
        #[arg(long)]
        service: Vec<String>,
        /// Filter by event type (repeatable; `orders.*` allowed).
        #[arg(long = "event-type")]
        event_type: Vec<String>,
        /// Start after this cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
}

pub async fn cdc(a: CdcArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.conn)?;
    let CdcCmd::Tail {
        org,
        follow,
        service,
        event_type,
        mut cursor,
    } = a.cmd;
    loop {
        let mut q: Vec<(String, String)> = vec![("limit".into(), "1000".into())];
        q.extend(service.iter().map(|s| ("service".to_string(), s.clone())));
        q.extend(
            event_type
                .iter()
                .map(|s| ("event_type".to_string(), s.clone())),
        );
        if let Some(cur) = &cursor {
            q.push(("cursor".into(), cur.clone()));
        }
        if follow {
            q.push(("wait".into(), "30".into()));
        }
        let qs = serde_html_form::to_string(&q)?;
        let v = c
            .send(
                reqwest::Method::GET,
                &format!("/v1/orgs/{org}/cdc?{qs}"),
                None,
            )
            .await?;
        for e in v["data"].as_array().into_iter().flatten() {
            println!("{e}");
        }
        cursor = v["next_cursor"].as_str().map(str::to_string);
        if v["has_more"] != true && !follow {
            eprintln!("next cursor: {}", cursor.unwrap_or_default());
            return Ok(());
        }
    }
}
