//! `ipm export` and `ipm import`: start a job, follow it with a progress bar, fetch the result.
//!
//! Exit codes: 0 = the job succeeded (import: `completed`); 1 = it failed, was canceled or
//! aborted, or the CLI hit an error; 2 = an import finished `completed_with_errors` (the good
//! lines are ingested; the error report is written next to the input and its path printed).
use super::client::{Client, Conn};
use super::progress::Progress;
use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Timeout for streamed uploads and downloads.
const STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    conn: Conn,
    /// The org to export.
    #[arg(long)]
    org: String,
    /// Filter by service (repeatable).
    #[arg(long)]
    service: Vec<String>,
    /// Filter by event type (repeatable; `orders.*` allowed).
    #[arg(long = "event-type")]
    event_type: Vec<String>,
    #[arg(long)]
    channel_id: Option<String>,
    #[arg(long)]
    facility_id: Option<String>,
    /// occurred_at >= SINCE (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// occurred_at < UNTIL (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Continue after a previous export's `next_cursor`.
    #[arg(long)]
    from_cursor: Option<String>,
    /// Events per file.
    #[arg(long)]
    max_events_per_file: Option<u64>,
    /// gzip the files.
    #[arg(long)]
    gzip: bool,
    /// Wait for the job to finish (and download its files when --out is given).
    #[arg(long)]
    wait: bool,
    /// Directory to download the files into (needs --wait).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (hides the progress bar).
    #[arg(long)]
    json: bool,
    /// Show progress even when stdout is not a terminal (also IPM_PROGRESS=1).
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    conn: Conn,
    /// NDJSON file, one envelope per line.
    file: PathBuf,
    /// The org the events belong to.
    #[arg(long)]
    org: String,
    /// A label for the job.
    #[arg(long)]
    source: Option<String>,
    /// Wait for processing to finish.
    #[arg(long)]
    wait: bool,
    /// Where to write the error report (default: FILE.errors.ndjson).
    #[arg(long)]
    errors_out: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (hides the progress bar).
    #[arg(long)]
    json: bool,
    /// Show progress even when stdout is not a terminal (also IPM_PROGRESS=1).
    #[arg(long)]
    progress: bool,
}

async fn poll(
    c: &Client,
    path: &str,
    done: impl Fn(&Value) -> bool,
    mut show: impl FnMut(&Value),
) -> anyhow::Result<Value> {
    loop {
        let r = c
            .raw(reqwest::Method::GET, path, Duration::from_secs(60))
            .send()
            .await
            .context("polling the job")?;
        let status = r.status();
        let wait = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, 5);
        let v: Value = r.json().await.context("reading the job")?;
        if !status.is_success() {
            bail!("server answered {status}: {}", v["detail"]);
        }
        show(&v);
        if done(&v) {
            return Ok(v);
        }
        // Poll faster than Retry-After for a lively bar, but never hammer the server.
        tokio::time::sleep(Duration::from_millis(300).min(Duration::from_secs(wait))).await;
    }
}

pub async fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.conn)?;
    let mut filters = json!({});
    if !a.service.is_empty() {
        filters["service"] = a.service.clone().into();
    }
    if !a.event_type.is_empty() {
        filters["event_type"] = a.event_type.clone().into();
    }
    for (k, v) in [
        ("channel_id", &a.channel_id),
        ("facility_id", &a.facility_id),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            filters[k] = v.clone().into();
        }
    }
    let mut body = json!({"filters": filters, "compression": if a.gzip { "gzip" } else { "none" }});
    if let Some(cur) = &a.from_cursor {
        body["from_cursor"] = cur.clone().into();
    }
    if let Some(m) = a.max_events_per_file {
        body["max_events_per_file"] = m.into();
    }
    let org = &a.org;
    let job = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/orgs/{org}/exports"),
            Some(("application/json", body.to_string())),
        )
        .await?;
    let id = job["id"]
        .as_str()
        .context("the server returned no job id")?
        .to_string();
    let path = format!("/v1/orgs/{org}/exports/{id}");
    if !a.wait {
        if a.json {
            println!("{job}");
        } else {
            println!("export {id} queued; poll {path}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut bar = Progress::new("export", "events", a.json, a.progress);
    let job = poll(
        &c,
        &path,
        |v| {
            matches!(
                v["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            )
        },
        |v| {
            let p = &v["progress"];
            bar.set(
                p["events_written"].as_u64().unwrap_or(0),
                p["events_estimate"].as_u64().unwrap_or(0),
            );
        },
    )
    .await?;
    bar.finish();
    let status = job["status"].as_str().unwrap_or("").to_string();
    let mut downloaded = Vec::new();
    if status == "succeeded"
        && let Some(dir) = &a.out
    {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        for f in job["files"].as_array().into_iter().flatten() {
            downloaded.push(download(&c, f, dir).await?);
        }
    }
    if a.json {
        let mut out = job.clone();
        out["downloaded"] = downloaded
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .into();
        println!("{out}");
    } else {
        let p = &job["progress"];
        println!(
            "export {id} {status}: {} events, {} bytes in {} file(s)",
            p["events_written"], p["bytes_written"], p["files"]
        );
        for d in &downloaded {
            println!("  {}", d.display());
        }
        if let Some(n) = job["next_cursor"].as_str() {
            println!("next cursor (use with --from-cursor): {n}");
        }
        for e in job["errors"].as_array().into_iter().flatten() {
            eprintln!("error: {}", e.as_str().unwrap_or(""));
        }
    }
    Ok(if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Streams one export file to `dir`, checking its size and sha256.
async fn download(c: &Client, f: &Value, dir: &Path) -> anyhow::Result<PathBuf> {
    let name = f["name"].as_str().context("file without a name")?;
    if name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("refusing a file name with a path in it: {name}");
    }
    let url = f["url"].as_str().context("file without a url")?;
    let r = c
        .raw(reqwest::Method::GET, url, STREAM_TIMEOUT)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("downloading {name}: server answered {}", r.status());
    }
    let dest = dir.join(name);
    let tmp = dir.join(format!("{name}.part"));
    let mut out = tokio::fs::File::create(&tmp).await?;
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("downloading {name}"))?;
        hasher.update(&chunk);
        n += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.sync_all().await?;
    let sha = hex::encode(hasher.finalize());
    if Some(sha.as_str()) != f["sha256"].as_str() || Some(n) != f["bytes"].as_u64() {
        bail!("{name}: size or sha256 does not match the manifest");
    }
    tokio::fs::rename(&tmp, &dest).await?;
    Ok(dest)
}

pub async fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.conn)?;
    let org = &a.org;
    let file = tokio::fs::File::open(&a.file)
        .await
        .with_context(|| format!("opening {}", a.file.display()))?;
    let size = file.metadata().await?.len();
    let mut body = json!({});
    if let Some(s) = &a.source {
        body["source"] = s.clone().into();
    } else if let Some(n) = a.file.file_name() {
        body["source"] = n
            .to_string_lossy()
            .chars()
            .take(200)
            .collect::<String>()
            .into();
    }
    let job = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/orgs/{org}/imports"),
            Some(("application/json", body.to_string())),
        )
        .await?;
    let id = job["id"]
        .as_str()
        .context("the server returned no job id")?
        .to_string();
    let path = format!("/v1/orgs/{org}/imports/{id}");

    let mut bar = Progress::new("upload", "bytes", a.json, a.progress);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if let Ok(b) = &chunk {
            counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        chunk
    });
    let put = c
        .raw(
            reqwest::Method::PUT,
            &format!("{path}/data"),
            STREAM_TIMEOUT,
        )
        .header("content-type", "application/x-ndjson")
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    tokio::pin!(put);
    let r = loop {
        tokio::select! {
            r = &mut put => break r?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                bar.set(sent.load(std::sync::atomic::Ordering::Relaxed), size);
            }
        }
    };
    bar.set(size, size);
    bar.finish();
    if !r.status().is_success() {
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        bail!("uploading: server answered {status}: {}", v["detail"]);
    }
    c.send(reqwest::Method::POST, &format!("{path}/commit"), None)
        .await?;
    if !a.wait {
        if a.json {
            println!("{}", json!({"id": id, "status": "upload_complete"}));
        } else {
            println!("import {id} uploaded and committed; poll {path}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut bar = Progress::new("import", "lines", a.json, a.progress);
    let job = poll(
        &c,
        &path,
        |v| {
            matches!(
                v["status"].as_str(),
                Some("completed" | "completed_with_errors" | "failed" | "aborted")
            )
        },
        |v| {
            bar.set(
                v["lines_processed"].as_u64().unwrap_or(0),
                v["lines_received"].as_u64().unwrap_or(0),
            )
        },
    )
    .await?;
    bar.finish();
    let status = job["status"].as_str().unwrap_or("").to_string();
    let mut report: Option<PathBuf> = None;
    if job["rejected"].as_u64().unwrap_or(0) > 0 {
        let dest = a.errors_out.clone().unwrap_or_else(|| {
            let mut p = a.file.clone().into_os_string();
            p.push(".errors.ndjson");
            PathBuf::from(p)
        });
        let url = job["errors_url"].as_str().unwrap_or_default();
        let text = c
            .raw(reqwest::Method::GET, url, STREAM_TIMEOUT)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        tokio::fs::write(&dest, &text)
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
        report = Some(dest);
    }
    if a.json {
        let mut out = job.clone();
        out["error_report"] = report.as_ref().map(|p| p.display().to_string()).into();
        println!("{out}");
    } else {
        println!(
            "import {id} {status}: {} lines, accepted {}, duplicates {}, rejected {}",
            job["lines_received"], job["accepted"], job["duplicates"], job["rejected"]
        );
        if let Some(p) = &report {
            println!("error report: {}", p.display());
        }
    }
    Ok(match status.as_str() {
        "completed" => ExitCode::SUCCESS,
        "completed_with_errors" => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    })
}
