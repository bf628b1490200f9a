//! rta's own metrics (`/metrics`) scraped by a real Prometheus and checked
//! by `promtool`; the logs, as text and as JSON, never holding a token.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::helpers::TestServer;
use crate::services;

const READ: &str = "read-secret-7f3a";
const WRITE: &str = "write-secret-91c2";

/// The samples of a text exposition: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(server: &TestServer, token: Option<&str>) -> (StatusCode, String, String) {
    let mut request = server.http.get(format!("{}/metrics", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

async fn post(server: &TestServer, body: Value, key: Option<&str>) -> StatusCode {
    let mut request = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .bearer_auth(WRITE)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap().status()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_what_rta_counted() {
    let server = TestServer::start_with(&["--token", WRITE, "--read-token", READ]).await;

    // Nothing without the read token; the write token reads too.
    assert_eq!(scrape(&server, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(&server, Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(scrape(&server, Some(WRITE)).await.0, StatusCode::OK);

    // 3 requests of 40 events, one of them replayed with its key (stored
    // once), one with a bad event among good ones, and one refused whole.
    let batch = |n: u64| -> Value {
        (0..n)
            .map(|i| json!({"type": "sales", "values": {"amount": i}}))
            .collect()
    };
    assert_eq!(post(&server, batch(40), Some("k-1")).await, StatusCode::OK);
    assert_eq!(post(&server, batch(40), Some("k-1")).await, StatusCode::OK);
    assert_eq!(post(&server, batch(40), None).await, StatusCode::OK);
    let mut mixed = batch(39);
    mixed
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "sales", "values": {"amount": "x", "n": []}}));
    assert_eq!(post(&server, mixed, None).await, StatusCode::OK);
    assert_eq!(
        post(&server, json!([{"values": {}}]), None).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let stored = 40 + 40 + 39;
    // A path no route serves is counted, but never by its name.
    let (status, _) = server.get("/no/such/page-3b9e").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let query = server
        .http
        .post(format!("{}/api/query", server.url))
        .bearer_auth(READ)
        .json(&json!({"window": "all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), StatusCode::OK);

    // A WebSocket client is counted while connected.
    let (mut ws, _) = connect_async(server.ws_url(&format!("?access_token={READ}")))
        .await
        .unwrap();
    let _first = ws.next().await.unwrap().unwrap();
    let (status, kind, text) = scrape(&server, Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let s = samples(&text);
    assert_eq!(s["rta_events_ingested_total"], stored as f64, "{text}");
    assert_eq!(s["rta_store_events"], stored as f64);
    assert_eq!(s["rta_websocket_clients"], 1.0);
    assert_eq!(s["rta_ingest_commit_seconds_count"], 3.0, "stored requests");
    assert_eq!(s["rta_query_seconds_count"], 1.0);
    assert!(s["rta_engine_state_bytes"] > 0.0);
    assert!(s["process_resident_memory_bytes"] > 1e6);
    assert_eq!(s["rta_writer_queue_depth"], 0.0);
    let requests = |route: &str, method: &str, status: u16| {
        s.get(&format!(
            "rta_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
        .copied()
    };
    assert_eq!(requests("/api/ingest", "POST", 200), Some(4.0), "{text}");
    assert_eq!(requests("/api/ingest", "POST", 422), Some(1.0));
    assert_eq!(requests("/metrics", "GET", 401), Some(2.0));
    assert_eq!(requests("unmatched", "GET", 404), Some(1.0));
    assert_eq!(requests("/api/ws", "GET", 101), Some(1.0));
    assert!(!text.contains("page-3b9e"), "no raw path in a label");
    let node = server
        .startup_line
        .split("node ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(
        text.contains(&format!(
            "rta_build_info{{node=\"{node}\",store=\"sqlite\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "HELP of {family}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "TYPE of {family}"
        );
    }
    drop(ws);
    wait_for(
        "the client's leaving counted",
        Duration::from_secs(5),
        async || samples(&scrape(&server, Some(READ)).await.2)["rta_websocket_clients"] == 0.0,
    )
    .await;

    // promtool's own checks, lint included.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (.ci/run installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scraping every second, with the read token.
    let target = server.url.trim_start_matches("http://").to_string();
    let prometheus = services::prometheus(&target, Some(READ));
    wait_for("the target up", Duration::from_secs(30), async || {
        prometheus.instant("up{job=\"rta\"}").await == Some(1.0)
    })
    .await;
    assert_eq!(post(&server, batch(7), None).await, StatusCode::OK);
    wait_for(
        "Prometheus holds the count of ingested events",
        Duration::from_secs(30),
        async || prometheus.instant("rta_events_ingested_total").await == Some((stored + 7) as f64),
    )
    .await;
}

#[tokio::test]
async fn logs_as_text_or_json_never_hold_a_token() {
    for format in ["text", "json"] {
        let server = TestServer::start_with(&[
            "--token",
            WRITE,
            "--read-token",
            READ,
            "--log-format",
            format,
        ])
        .await;
        assert_eq!(
            post(&server, json!({"type": "t"}), None).await,
            StatusCode::OK
        );
        // A wrong token, the tokens in a WebSocket URL, and a cluster URL's
        // password are the places a secret could leak from.
        let _ = scrape(&server, Some("wrong-secret-55d1")).await;
        let (ws, _) = connect_async(server.ws_url(&format!("?access_token={READ}")))
            .await
            .unwrap();
        drop(ws);
        let stop_line = "stopped";
        let logs = server.logs.clone();
        drop(server.stop());
        let lines = logs.lock().unwrap().clone();
        assert!(lines.iter().any(|l| l.contains(stop_line)), "{lines:?}");
        for line in &lines {
            for secret in [READ, WRITE, "wrong-secret-55d1"] {
                assert!(!line.contains(secret), "{format} log holds a token: {line}");
            }
            if format == "json" {
                let parsed: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
                assert!(parsed["timestamp"].is_string(), "{line}");
                assert!(parsed["level"].is_string(), "{line}");
                assert!(parsed["message"].is_string(), "{line}");
            } else {
                assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
            }
        }
    }
}
