//! The connection layer (`server.*`, issue 11 item 2): every connection is bounded in time and
//! their number stays below the open-files limit, so clients that connect and stall cannot stop
//! everyone else — while long-polls, h2c and slow-but-steady uploads keep working.
use crate::helpers::{TestApp, rid, serve_limited};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection and returns what it sent; fails the test when
/// the connection is still open after `deadline`.
async fn read_until_closed(s: &mut TcpStream, deadline: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server kept the connection open past the deadline");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_half_sent_request_is_disconnected_while_others_are_served() {
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout_secs = 2).await;
    let started = Instant::now();
    let mut half_line = TcpStream::connect(app.addr).await.unwrap();
    half_line.write_all(b"GET /healthz HTT").await.unwrap();
    let mut half_headers = TcpStream::connect(app.addr).await.unwrap();
    half_headers
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // The start of an h2c preface: the protocol is not even known yet.
    let mut half_preface = TcpStream::connect(app.addr).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    // Meanwhile, normal requests are served.
    app.assert_alive().await;
    let r = app.cdc("org_a", "").await;
    assert_eq!(r.status(), 200);

    let deadline = Duration::from_secs(30);
    for (name, s) in [
        ("half request line", &mut half_line),
        ("half headers", &mut half_headers),
        ("silent", &mut silent),
        ("half h2c preface", &mut half_preface),
    ] {
        // Closed, with at most a `408 Request Timeout` (hyper's, when its timer fires first).
        let got = read_until_closed(s, deadline).await;
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 408"),
            "{name}: {got:?}"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed before the configured 2 s timeout: {:?}",
        started.elapsed()
    );
    app.assert_alive().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    // The header read timeout stays at its default 30 s: the close must come from the idle one.
    let app = TestApp::spawn_with(|c| c.server.idle_timeout_secs = 2).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(20)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got:?}");
}

#[tokio::test]
async fn h2c_is_served_and_an_idle_h2c_connection_is_closed() {
    let app = TestApp::spawn_with(|c| c.server.idle_timeout_secs = 2).await;
    let io = TokioIo::new(TcpStream::connect(app.addr).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..2 {
        let req = hyper::Request::get(app.url("/healthz"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), hyper::Version::HTTP_2);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["status"],
            "ok"
        );
    }
    tokio::time::timeout(Duration::from_secs(20), conn)
        .await
        .expect("the idle h2c connection stayed open")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_long_poll_outlives_the_header_and_idle_timeouts() {
    let app = TestApp::spawn_with(|c| {
        c.server.header_read_timeout_secs = 1;
        c.server.idle_timeout_secs = 1;
    })
    .await;
    // Nothing arrives: the poll answers an empty page after its whole wait.
    let started = Instant::now();
    let r = app.cdc("org_lp", "wait=3").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // An event published during a long wait wakes it.
    let poll = {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/orgs/org_lp/cdc?wait=30"),
            app.admin_key.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(key).send().await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.publish(&json!([crate::helpers::event(
        "org_lp",
        "lp-1",
        "orders.order.created"
    )]))
    .await;
    let r = tokio::time::timeout(Duration::from_secs(40), poll)
        .await
        .expect("the long-poll never answered")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["event_id"], "lp-1", "{v}");
}

/// An open import job on `app`; returns its data URL path.
async fn open_import(app: &TestApp) -> String {
    let r = app
        .req(Method::POST, "/v1/orgs/org_up/imports", &app.admin_key)
        .json(&json!({"source": "slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    format!(
        "/v1/orgs/org_up/imports/{}/data",
        job["id"].as_str().unwrap()
    )
}

fn ndjson_line(i: usize) -> String {
    format!(
        "{}\n",
        crate::helpers::event("org_up", &format!("up-{i}"), "orders.order.created")
    )
}

#[tokio::test]
async fn a_slow_upload_that_keeps_sending_is_not_cut() {
    let app = TestApp::spawn_with(|c| {
        c.server.body_read_timeout_secs = 2;
        c.server.idle_timeout_secs = 1;
    })
    .await;
    let path = open_import(&app).await;
    // Eight lines, one every 800 ms: 6 s in all, three times the body read timeout.
    let chunks = futures_util::stream::unfold(0usize, |i| async move {
        if i == 8 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        Some((Ok::<_, std::io::Error>(ndjson_line(i)), i + 1))
    });
    let r = app
        .req(Method::PUT, &path, &app.admin_key)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["lines_received"], 8, "{v}");
}

#[tokio::test]
async fn a_stalled_upload_is_cut_after_the_body_read_timeout() {
    let app = TestApp::spawn_with(|c| c.server.body_read_timeout_secs = 2).await;
    let path = open_import(&app).await;
    let line = ndjson_line(0);
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Request-Id: {}\r\n\
         X-Actor-Id: tester\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n",
        app.admin_key,
        rid()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(line.as_bytes()).await.unwrap();
    // … and nothing more: the server must give up on the body and answer.
    let got = read_until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(got.starts_with("HTTP/1.1 4"), "{got:?}");
    assert!(got.contains("not received within"), "{got:?}");
    app.assert_alive().await;
}

/// The reported outage: more stalled sockets than the process may open files. The server runs
/// under `ulimit -n 200`; 400 clients each send half a request and stop. A normal client must
/// still be served (the cap keeps descriptors free, the header timeout recycles the slots).
#[tokio::test]
async fn stalled_sockets_beyond_the_open_files_limit_do_not_stop_a_normal_client() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_limited(
        dir.path(),
        &[("IPM_SERVER__HEADER_READ_TIMEOUT_SECS", "2")],
        None,
        Some(200),
    )
    .await;
    let addr = served.base.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..400 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        stalled.push(s);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .expect("a normal client was not served while stalled sockets were open");
    assert_eq!(r.status(), 200);
    drop(stalled);
    let r = client
        .get(format!("{}/readyz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
