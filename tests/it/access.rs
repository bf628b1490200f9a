//! Access: tokens, origins, CORS, and connection-level limits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::TestServer;

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_read_token_protects_metrics_events_and_the_websocket() {
    let server = TestServer::start_with(&["--token", "writer", "--read-token", "reader"]).await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = server.http.get(format!("{}{path}", server.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for path in ["/api/metrics", "/api/events"] {
        let response = get(path, None).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("needs a token"),
            "{body}"
        );
        assert_eq!(
            get(path, Some("wrong")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(path, Some("reader")).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            get(path, Some("writer")).await.unwrap().status(),
            StatusCode::OK,
            "the ingest token reads too"
        );
    }
    // A token in the URL is for the WebSocket only (browsers cannot set its
    // headers); elsewhere it would end up in proxy logs for nothing.
    for path in [
        "/api/metrics?access_token=reader",
        "/api/events?access_token=reader",
    ] {
        assert_eq!(
            get(path, None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // The read token does not let anyone write.
    let response = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .bearer_auth("reader")
        .json(&json!({"type": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The dashboard itself loads and asks for the token.
    let (status, page) = server.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("needs a token"));
    assert!(connect_async(server.ws_url("")).await.is_err());
    assert!(
        connect_async(server.ws_url("?access_token=reader"))
            .await
            .is_ok()
    );
    // Stop cleanly so every log line is flushed, then look for the tokens.
    let logs = server.logs.clone();
    server.stop();
    let logs = logs.lock().unwrap().join("\n");
    assert!(logs.contains("listening on"), "the logs were captured");
    assert!(
        !logs.contains("writer") && !logs.contains("reader"),
        "tokens never appear in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn the_websocket_checks_origin_and_cors_is_off_unless_configured() {
    let server = TestServer::start_with(&["--cors-origin", "https://good.example"]).await;
    let with_origin = |origin: &str| {
        let mut request = server.ws_url("").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        connect_async(request)
    };
    assert!(
        with_origin("https://evil.example").await.is_err(),
        "a foreign page may not connect"
    );
    assert!(with_origin("https://good.example").await.is_ok());
    let own = with_origin(&server.url).await;
    assert!(
        own.is_ok(),
        "the dashboard's own origin may: {:?}",
        own.err()
    );
    assert!(
        connect_async(server.ws_url("")).await.is_ok(),
        "clients without Origin (not browsers) may"
    );

    let preflight = |server: &TestServer, origin: &str| {
        server
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/ingest", server.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight(&server, "https://good.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    let refused = preflight(&server, "https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let plain = TestServer::start().await;
    let response = preflight(&plain, "https://good.example").await.unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "CORS is off by default"
    );
}

/// A page on another origin, allowed by --cors-origin, gets the same
/// `{error, message}` answers as any other client (the CORS layer answered
/// the router's errors in plain text), plus the CORS header.
#[tokio::test]
async fn errors_answer_a_cross_origin_page_as_any_client() {
    let server = TestServer::start_with(&["--cors-origin", "https://good.example"]).await;
    let cases: &[(reqwest::Method, &str, &str, &str)] = &[
        (reqwest::Method::DELETE, "/api/ingest", "", ""),
        (reqwest::Method::GET, "/api/nope", "", ""),
        (reqwest::Method::GET, "/api/metrics?top=abc", "", ""),
        (reqwest::Method::GET, "/api/events?limit=-1", "", ""),
        (reqwest::Method::POST, "/api/ingest", "text/plain", "{}"),
        (
            reqwest::Method::POST,
            "/api/ingest",
            "application/json",
            "{bad",
        ),
        (
            reqwest::Method::POST,
            "/api/query",
            "application/json",
            "[]",
        ),
        (
            reqwest::Method::POST,
            "/api/alerts",
            "application/json",
            "{}",
        ),
    ];
    for (method, path, content_type, body) in cases {
        let send = |origin: Option<&str>| {
            let mut request = server
                .http
                .request(method.clone(), format!("{}{path}", server.url));
            if !content_type.is_empty() {
                request = request
                    .header("content-type", *content_type)
                    .body(body.to_string());
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.send()
        };
        let plain = send(None).await.unwrap();
        let cross = send(Some("https://good.example")).await.unwrap();
        let what = format!("{method} {path}");
        assert!(
            plain.status().is_client_error(),
            "{what}: {}",
            plain.status()
        );
        assert_eq!(cross.status(), plain.status(), "{what}");
        assert_eq!(
            cross.headers()["access-control-allow-origin"],
            "https://good.example",
            "{what}"
        );
        assert_eq!(
            cross.headers().get("allow"),
            plain.headers().get("allow"),
            "{what}"
        );
        for response in [&plain, &cross] {
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(
                content_type.starts_with("application/json"),
                "{what}: {content_type}"
            );
        }
        let (plain, cross): (serde_json::Value, serde_json::Value) =
            (plain.json().await.unwrap(), cross.json().await.unwrap());
        assert_eq!(cross, plain, "{what}");
        assert!(
            plain["error"].is_string() && plain["message"].is_string(),
            "{what}: {plain}"
        );
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off() {
    let server = TestServer::start_with(&["--request-timeout", "1s"]).await;
    let mut slow = TcpStream::connect(addr(&server)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    // Trickle a header byte every 200 ms: always active, never finishing.
    let mut closed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let read = slow.read(&mut buf);
        slow.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server closed the trickling connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the timeout, not the trickle's end"
    );
    // Honest clients are not affected.
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
}

/// Whether the server closed `stream` within `limit` (reading what it sends).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let server = TestServer::start_with(&["--idle-timeout", "1s"]).await;
    // Connected, silent: closed after the idle timeout.
    let mut silent = TcpStream::connect(addr(&server)).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );

    // A request answered, then silence: closed too.
    let mut once = TcpStream::connect(addr(&server)).unwrap();
    once.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut once, Duration::from_secs(5)));

    // A request every 400 ms for 3 s on one connection: kept open.
    let mut busy = TcpStream::connect(addr(&server)).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    for i in 0..8 {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap_or_else(|e| panic!("request {i}: the connection was closed: {e}"));
        let n = busy.read(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "request {i} answered"
        );
        std::thread::sleep(Duration::from_millis(400));
    }
}

#[tokio::test]
async fn connections_are_capped() {
    let server = TestServer::start_with(&["--max-connections", "3"]).await;
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr(&server)).unwrap())
        .collect();
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let url = format!("{}/healthz", server.url);
    assert!(
        quick.get(&url).send().await.is_err(),
        "a fourth connection waits while three are open"
    );
    drop(idle);
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(
        fresh.get(&url).send().await.unwrap().status(),
        StatusCode::OK,
        "served once one closes"
    );
}
