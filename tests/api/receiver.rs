//! A real webhook receiver on 127.0.0.1 with scripted replies, capturing every request.
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Status(u16),
    /// 429 with `Retry-After: n`.
    RetryAfter(u64),
    /// Never answers (until the client gives up).
    Hang,
}

/// One captured request.
#[derive(Debug, Clone)]
pub struct Captured {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// Fail (500) the first time any webhook-id whose request number satisfies this is seen.
    fail_every: Option<usize>,
    seen: usize,
    captured: Vec<Captured>,
    /// Every request waits this long before answering (makes overlapping attempts observable).
    delay: Option<Duration>,
    /// `webhook-id`s being handled right now, per path.
    in_flight: std::collections::HashSet<(String, String)>,
    /// Requests that arrived while the same delivery (path + `webhook-id`) was being handled.
    overlaps: usize,
    /// Requests being handled now, and the most ever at once.
    open: usize,
    max_open: usize,
}

/// Removes a request from the in-flight set when it ends (answered, or the client went away).
struct InFlight {
    inner: Arc<Mutex<Inner>>,
    key: Option<(String, String)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut g) = self.inner.lock() {
            g.open = g.open.saturating_sub(1);
            if let Some(k) = self.key.take() {
                g.in_flight.remove(&k);
            }
        }
    }
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = InFlight {
        inner: inner.clone(),
        key: None,
    };
    let (reply, delay) = {
        let mut g = inner.lock().unwrap();
        g.open += 1;
        g.max_open = g.max_open.max(g.open);
        if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
            let key = (uri.path().to_string(), id.to_string());
            if g.in_flight.insert(key.clone()) {
                guard.key = Some(key);
            } else {
                g.overlaps += 1;
            }
        }
        g.seen += 1;
        let seen = g.seen;
        let mut reply = g.script.pop_front().or(g.default).unwrap_or(Reply::Ok);
        if let Some(n) = g.fail_every
            && seen % n == 0
        {
            reply = Reply::Status(500);
        }
        g.captured.push(Captured {
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        (reply, g.delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    // A hanging request stays open until the client gives up (the guard drops with this future).
    let hanging = (reply == Reply::Hang).then_some(guard);
    match reply {
        Reply::Ok => (StatusCode::OK, "ok").into_response(),
        Reply::Status(s) => {
            (StatusCode::from_u16(s).unwrap(), format!("status {s}")).into_response()
        }
        Reply::RetryAfter(n) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", n.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            let _open = hanging;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// Starts a receiver answering `default` to everything.
    pub async fn start(default: Reply) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            default: Some(default),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Replies to use first, in order, before the default.
    pub fn script(&self, replies: &[Reply]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    pub fn set_default(&self, r: Reply) {
        self.inner.lock().unwrap().default = Some(r);
    }

    /// Answer 500 to every `n`-th request.
    pub fn fail_every(&self, n: usize) {
        self.inner.lock().unwrap().fail_every = Some(n);
    }

    /// Every request waits `d` before it is answered.
    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = Some(d);
    }

    /// The most requests this receiver was handling at once.
    pub fn max_concurrent(&self) -> usize {
        self.inner.lock().unwrap().max_open
    }

    /// How many requests arrived while the same delivery was still being handled.
    pub fn overlaps(&self) -> usize {
        self.inner.lock().unwrap().overlaps
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.inner.lock().unwrap().captured.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().captured.len()
    }

    /// Waits until every one of `ids` arrived as a `webhook-id` (or panics at `deadline`,
    /// naming the receiver `label`).
    pub async fn wait_for_ids(
        &self,
        ids: &std::collections::HashSet<String>,
        deadline: Instant,
        label: &str,
    ) {
        loop {
            let got: std::collections::HashSet<String> = self
                .captured()
                .iter()
                .filter_map(|c| c.header("webhook-id").map(str::to_string))
                .collect();
            if ids.is_subset(&got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: {} of {} events delivered",
                ids.intersection(&got).count(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until at least `n` requests arrived (or panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Captured> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.count() >= n {
                return self.captured();
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests in {secs} s",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A URL on a port nothing listens on (connection refused).
pub async fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

/// Captured requests as JSON lines for `scripts/verify_webhooks.py`.
pub fn to_json_lines(secret: &str, caps: &[Captured]) -> String {
    caps.iter()
        .map(|c| {
            let headers: serde_json::Map<String, Value> = c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"secret": secret, "headers": headers, "body": c.body}).to_string() + "\n"
        })
        .collect()
}
