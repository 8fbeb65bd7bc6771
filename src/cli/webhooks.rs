//! `ipm webhooks …` (client) and `ipm verify` (a receiver's signature check, offline).
use super::client::{Client, Conn};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(flatten)]
    conn: Conn,
    /// The org.
    #[arg(long, global = true)]
    org: Option<String>,
    #[command(subcommand)]
    cmd: WebhooksCmd,
}

#[derive(Debug, Subcommand)]
enum WebhooksCmd {
    /// Create a webhook; prints it with its signing secret (shown only this once).
    Create {
        #[arg(long)]
        url: String,
        #[arg(long)]
        description: Option<String>,
        /// Event type filter (repeatable; `orders.*` allowed).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Service filter (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
        /// Deliver one at a time in sequence order.
        #[arg(long)]
        ordered: bool,
    },
    /// List webhooks.
    List,
    /// Show one webhook.
    Get { id: String },
    /// Pause deliveries (held until enabled).
    Pause { id: String },
    /// Re-enable a paused webhook.
    Enable {
        id: String,
        /// Why (sent as X-Reason-Code; required).
        #[arg(long)]
        reason: String,
        /// Mark the held backlog skipped instead of delivering it.
        #[arg(long)]
        skip_backlog: bool,
    },
    /// Revoke (no further deliveries).
    Revoke { id: String },
    /// Send a synthetic ipm.webhook.test event.
    Test { id: String },
    /// Re-deliver stored events; follows next_cursor until done unless --once.
    Replay {
        id: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        once: bool,
    },
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn run(a: WebhooksArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.conn)?;
    let org = a.org.context("--org is required")?;
    let base = format!("/v1/orgs/{org}/webhooks");
    let json_body = |v: Value| Some(("application/json", v.to_string()));
    match a.cmd {
        WebhooksCmd::Create {
            url,
            description,
            event_types,
            services,
            ordered,
        } => {
            let mut body =
                json!({"url": url, "filters": {"event_types": event_types, "services": services}});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if ordered {
                body["delivery"] = json!({"mode": "ordered"});
            }
            print(&c.send(Method::POST, &base, json_body(body)).await?);
        }
        WebhooksCmd::List => print(
            &c.send(Method::GET, &format!("{base}?limit=1000"), None)
                .await?,
        ),
        WebhooksCmd::Get { id } => {
            print(&c.send(Method::GET, &format!("{base}/{id}"), None).await?)
        }
        WebhooksCmd::Pause { id } => print(
            &c.send(Method::POST, &format!("{base}/{id}/pause"), None)
                .await?,
        ),
        WebhooksCmd::Enable {
            id,
            reason,
            skip_backlog,
        } => print(
            &c.send_with_headers(
                Method::POST,
                &format!("{base}/{id}/enable"),
                json_body(json!({"skip_backlog": skip_backlog})),
                &[("x-reason-code", reason)],
            )
            .await?,
        ),
        WebhooksCmd::Revoke { id } => {
            c.send(Method::DELETE, &format!("{base}/{id}"), None)
                .await?;
            println!("revoked {id}");
        }
        WebhooksCmd::Test { id } => print(
            &c.send(Method::POST, &format!("{base}/{id}/test"), None)
                .await?,
        ),
        WebhooksCmd::Replay {
            id,
            since,
            until,
            limit,
            once,
        } => {
            let mut cursor: Option<String> = None;
            let mut total = 0u64;
            loop {
                let body =
                    json!({"since": since, "until": until, "limit": limit, "cursor": cursor});
                let v = c
                    .send(
                        Method::POST,
                        &format!("{base}/{id}/replay"),
                        json_body(body),
                    )
                    .await?;
                total += v["enqueued"].as_u64().unwrap_or(0);
                eprintln!("enqueued {total}");
                cursor = v["next_cursor"].as_str().map(str::to_string);
                if once || v["has_more"] != true {
                    print(&json!({"enqueued": total, "next_cursor": cursor}));
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// `ipm verify`: checks a received webhook's signature (exit 0 when it verifies).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signing secret (`whsec_…`).
    #[arg(long, env = "IPM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// A file of `name: value` header lines (as captured by the receiver).
    #[arg(long)]
    headers: Option<PathBuf>,
    /// One header as `name:value` (repeatable).
    #[arg(long = "header")]
    header: Vec<String>,
    /// The raw request body.
    #[arg(long)]
    body: PathBuf,
    /// Accepted clock skew in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: i64,
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let mut lines: Vec<String> = a.header.clone();
    if let Some(f) = &a.headers {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    let mut get = |name: &str| -> Option<String> {
        lines.iter_mut().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let (Some(id), Some(ts), Some(sig)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        bail!("the headers webhook-id, webhook-timestamp and webhook-signature are all needed");
    };
    let body = std::fs::read(&a.body).with_context(|| format!("reading {}", a.body.display()))?;
    let now = chrono::Utc::now().timestamp();
    crate::domain::signature::verify(&a.secret, &id, &ts, &sig, &body, now, a.tolerance)
        .map_err(|e| anyhow::anyhow!("signature does not verify: {e}"))?;
    println!("signature verified ({id})");
    Ok(())
}
