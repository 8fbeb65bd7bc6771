//! Sending one delivery attempt: a shared reqwest client (connection reuse, no redirects, no
//! proxy, an attempt timeout) whose DNS resolver refuses non-global addresses unless
//! allow-listed. Because the check runs on the addresses the connection actually uses, a name
//! that resolved to a public address at create time and to a private one now (DNS rebinding) is
//! still refused. IP-literal URLs skip DNS, so they are checked before sending.
use crate::domain::signature;
use crate::domain::ssrf::AllowList;
use crate::domain::webhook::parse_retry_after;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Url, header};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response body excerpt kept per attempt.
pub const EXCERPT_BYTES: usize = 4096;

/// Resolves like the system resolver, then drops every address the guard refuses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: AllowList,
    lookup: Arc<dyn Lookup>,
}

/// Name resolution, replaceable in tests (e.g. to simulate a DNS answer that changes).
pub trait Lookup: Send + Sync + std::fmt::Debug {
    fn lookup(
        &self,
        host: String,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo` via tokio).
#[derive(Debug)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

impl GuardedResolver {
    pub fn new(allow: AllowList, lookup: Arc<dyn Lookup>) -> Self {
        Self { allow, lookup }
    }

    /// The permitted addresses of `host`; an error when there is none.
    pub async fn permitted(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let all = self.lookup.lookup(host.to_string()).await?;
        let ok: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| self.allow.permits(*ip))
            .collect();
        if ok.is_empty() {
            return Err(std::io::Error::other(format!(
                "SSRF guard: {host} resolves only to non-global addresses"
            )));
        }
        Ok(ok)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = this.permitted(&host).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub retry_after_secs: Option<u64>,
    pub error: Option<String>,
    pub excerpt: Option<String>,
    pub duration: Duration,
}

impl AttemptResult {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s)) && self.error.is_none()
    }
}

/// One signed request to send.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    pub event_type: &'a str,
    pub attempt: u32,
    pub secret_key: &'a [u8],
    pub body: &'a str,
}

/// The shared HTTP client of the delivery worker.
#[derive(Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
    allow: AllowList,
    timeout: Duration,
}

impl Dispatcher {
    /// A client over `allow`, with `timeout` per attempt.
    pub fn new(
        allow: AllowList,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, String> {
        crate::app::init_crypto();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(allow.clone(), lookup)))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the delivery HTTP client: {e}"))?;
        Ok(Self {
            client,
            allow,
            timeout,
        })
    }

    /// The client (the benchmark's raw baseline uses the same one).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Refuses IP-literal targets the guard does not permit (DNS names are checked on connect).
    pub fn check_literal(&self, url: &Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("the URL has no host".into()),
        };
        if self.allow.permits(ip) {
            Ok(())
        } else {
            Err(format!("SSRF guard: {ip} is not a global address"))
        }
    }

    /// Sends one signed attempt and reads at most [`EXCERPT_BYTES`] of the answer.
    pub async fn send(&self, o: Outgoing<'_>) -> AttemptResult {
        let start = Instant::now();
        let done = |status, retry_after_secs, error: Option<String>, excerpt| AttemptResult {
            status,
            retry_after_secs,
            error,
            excerpt,
            duration: start.elapsed(),
        };
        let url = match Url::parse(o.url) {
            Ok(u) => u,
            Err(e) => return done(None, None, Some(format!("invalid URL: {e}")), None),
        };
        if let Err(e) = self.check_literal(&url) {
            return done(None, None, Some(e), None);
        }
        let ts = chrono::Utc::now().timestamp();
        let sig = signature::sign(o.secret_key, o.webhook_id, ts, o.body.as_bytes());
        let req = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("ipm/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", o.webhook_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .header("ipm-event-type", o.event_type)
            .header("ipm-attempt", o.attempt.to_string())
            .body(o.body.to_string());
        let exchange = async {
            let mut res = req.send().await.map_err(describe)?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let mut buf: Vec<u8> = Vec::new();
            while buf.len() < EXCERPT_BYTES {
                match res.chunk().await {
                    Ok(Some(c)) => buf.extend_from_slice(&c),
                    Ok(None) => break,
                    // The status is in; a broken body does not turn a 2xx into a failure.
                    Err(_) => break,
                }
            }
            buf.truncate(EXCERPT_BYTES);
            let excerpt = (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned());
            Ok::<_, String>((status, retry_after, excerpt))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, ra, excerpt))) => {
                let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}"));
                done(Some(status), ra, error, excerpt)
            }
            Ok(Err(e)) => done(None, None, Some(e), None),
            Err(_) => done(
                None,
                None,
                Some(format!("timeout after {} s", self.timeout.as_secs())),
                None,
            ),
        }
    }
}

/// A short description of a transport error, with its causes (never the request body).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut msg = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);
    impl Lookup for Fixed {
        fn lookup(
            &self,
            _: String,
        ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let v = self.0.clone();
            Box::pin(async move { Ok(v) })
        }
    }

    #[tokio::test]
    async fn resolver_refuses_rebinding_to_private_addresses() {
        let public = GuardedResolver::new(
            AllowList::default(),
            Arc::new(Fixed(vec!["93.184.216.34".parse().unwrap()])),
        );
        assert!(public.permitted("partner.example").await.is_ok());
        // The same name now answers with loopback and metadata addresses: refused at connect.
        let rebound = GuardedResolver::new(
            AllowList::default(),
            Arc::new(Fixed(vec![
                "127.0.0.1".parse().unwrap(),
                "169.254.169.254".parse().unwrap(),
            ])),
        );
        assert!(rebound.permitted("partner.example").await.is_err());
        let mixed = GuardedResolver::new(
            AllowList::default(),
            Arc::new(Fixed(vec![
                "10.0.0.1".parse().unwrap(),
                "93.184.216.34".parse().unwrap(),
            ])),
        );
        assert_eq!(
            mixed.permitted("x").await.unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn ip_literals_are_checked_before_sending() {
        let d = Dispatcher::new(
            AllowList::default(),
            Duration::from_secs(1),
            Arc::new(SystemLookup),
        )
        .unwrap();
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://0x7f.1/",
            "http://[fc00::1]/",
            "http://169.254.169.254/",
        ] {
            let url = Url::parse(u).unwrap();
            assert!(d.check_literal(&url).is_err(), "{u}");
        }
        assert!(
            d.check_literal(&Url::parse("http://8.8.8.8/").unwrap())
                .is_ok()
        );
    }
}
