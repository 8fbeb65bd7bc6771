//! The HTTP connection layer: our own accept loop over hyper, so every connection is bounded.
//!
//! `axum::serve` keeps a connection as long as the client likes: a client that sends half a
//! request line holds its socket (and file descriptor) forever, and enough of them exhaust the
//! open-files limit so nobody else is served. Here (all from `server.*`, see
//! [`ServerConfig`]):
//! - **Header read timeout.** HTTP/1.1 uses hyper's own (it starts when the server waits for a
//!   request head, also on a kept-alive connection, and answers `408`); every connection —
//!   whatever its protocol, including one still silent or mid-preface — must start its first
//!   request within it.
//! - **Idle timeout.** A connection with no request in flight for `idle_timeout_secs` after its
//!   last request ended is shut down gracefully (HTTP/1.1 and h2c). A request in flight — a CDC
//!   long-poll waiting 30 s, a download streaming — keeps its connection.
//! - **Body read timeout** between chunks of a request body (tower-http's `TimeoutBody`: the
//!   timer restarts at every chunk), so a slow upload that keeps sending is never cut and a
//!   stalled one fails.
//! - **A connection cap** below the open-files limit: the accept loop takes a permit before it
//!   accepts, so over the cap new connections wait in the kernel's listen backlog (never an
//!   `EMFILE` storm) and are accepted as soon as any connection closes.
//! - Graceful shutdown as before: stop accepting, let every connection finish its requests.
use crate::config::ServerConfig;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// File descriptors kept out of the connection cap's reach when it is derived from the limit
/// (store files, PostgreSQL connections, job files, outbound webhook connections).
const FD_RESERVE: u64 = 64;
/// The derived cap never goes above this (a node with a huge limit still bounds its memory).
const AUTO_CAP_MAX: u64 = 10_000;

/// The open-files limit (soft) of this process, if the platform tells.
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft open-files limit to the hard one (what the administrator allows) and
/// returns the soft limit now in force. Done once by `ipm serve`; many systems start processes
/// with a soft limit of 1,024 under a much larger hard limit.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let lim = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (lim.current, lim.maximum)
            && hard > soft
        {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(soft, hard, error = %e, "could not raise the open-files limit");
            }
        }
    }
    open_files_limit()
}

/// The connection cap for `config`: `server.max_connections`, or half the open-files limit
/// (at most 10,000). An explicit cap the limit cannot carry is an error that says what to do.
pub fn connection_cap(config: &ServerConfig) -> Result<usize, String> {
    let limit = open_files_limit();
    match (config.max_connections, limit) {
        (Some(n), Some(limit)) if n as u64 + FD_RESERVE > limit => Err(format!(
            "invalid configuration: server.max_connections = {n} does not fit under this \
             process's open-files limit of {limit} ({FD_RESERVE} are kept for the store and \
             outbound connections): raise the limit (`ulimit -n`, systemd `LimitNOFILE=`) or \
             lower server.max_connections to at most {}",
            limit.saturating_sub(FD_RESERVE)
        )),
        (Some(n), _) => Ok(n),
        (None, Some(limit)) => Ok((limit / 2).clamp(1, AUTO_CAP_MAX) as usize),
        (None, None) => Ok(1_024),
    }
}

/// Serves `router` on `listener` under the limits of `config` until `stop` is cancelled, then
/// stops accepting and waits for every open connection to finish its requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    stop: CancellationToken,
) -> Result<(), String> {
    let cap = connection_cap(config)?;
    let limits = Limits {
        header_read: Duration::from_secs(config.header_read_timeout_secs),
        idle: Duration::from_secs(config.idle_timeout_secs),
        body_read: Duration::from_secs(config.body_read_timeout_secs),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(cap));
    let tracker = TaskTracker::new();
    metrics::gauge!("ipm_http_connections_max").set(cap as f64);
    tracing::debug!(cap, "connection cap");
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // E.g. EMFILE: files opened elsewhere in the process. Back off instead
                    // of spinning; the connections that close free descriptors.
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = stop.cancelled() => break,
                    }
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, router, stop) = (builder.clone(), router.clone(), stop.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let _open = OpenGauge::new();
            serve_connection(&builder, stream, addr, router, limits, stop).await;
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

#[derive(Clone, Copy)]
struct Limits {
    header_read: Duration,
    idle: Duration,
    body_read: Duration,
}

async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let (activity, mut watch) = Activity::new();
    let activity = Arc::new(activity);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let busy = activity.begin();
        req.extensions_mut().insert(ConnectInfo(addr));
        let req = req.map(|b| Body::new(TimeoutBody::new(limits.body_read, b)));
        let router = router.clone();
        async move {
            let res = router.oneshot(req).await?;
            Ok::<_, Infallible>(res.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(%addr, error = %e, "connection ended with an error");
                }
                return;
            }
            () = idle_expired(&mut watch, limits), if !closing => {
                tracing::trace!(%addr, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// A connection's request activity: requests in flight, when the last one ended (or the
/// connection opened), and whether it has had a request at all.
#[derive(Debug, Clone, Copy)]
struct State {
    in_flight: usize,
    since: Instant,
    served: bool,
}

struct Activity(Arc<watch::Sender<State>>);

impl Activity {
    fn new() -> (Self, watch::Receiver<State>) {
        let (tx, rx) = watch::channel(State {
            in_flight: 0,
            since: Instant::now(),
            served: false,
        });
        (Self(Arc::new(tx)), rx)
    }

    /// Marks a request in flight until the returned guard (kept by its response body) drops.
    fn begin(&self) -> Busy {
        self.0.send_modify(|s| {
            s.in_flight += 1;
            s.served = true;
        });
        Busy(self.0.clone())
    }
}

/// One request in flight; dropped when hyper is done with its response body.
struct Busy(Arc<watch::Sender<State>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.since = Instant::now();
        });
    }
}

/// Resolves once the connection has had no request in flight for its limit: the header read
/// timeout before its first request, the idle timeout after.
async fn idle_expired(watch: &mut watch::Receiver<State>, limits: Limits) {
    loop {
        let s = *watch.borrow_and_update();
        if s.in_flight > 0 {
            if watch.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        let limit = if s.served {
            limits.idle
        } else {
            limits.header_read
        };
        tokio::select! {
            () = tokio::time::sleep_until(s.since + limit) => return,
            r = watch.changed() => if r.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts open connections in `ipm_http_connections`.
struct OpenGauge;

impl OpenGauge {
    fn new() -> Self {
        metrics::gauge!("ipm_http_connections").increment(1.0);
        Self
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("ipm_http_connections").decrement(1.0);
    }
}

/// Errors of one connection attempt, not of the listener (as `axum::serve` treats them).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
