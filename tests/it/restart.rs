//! Durability: what was acknowledged survives a restart and `kill -9`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestServer;

/// The parts of the metrics that must not change across a restart.
fn stable(m: &Value) -> Value {
    json!({
        "totalEvents": m["totalEvents"],
        "eventsByType": m["eventsByType"],
        "recentValues": m["recentValues"],
        "types": m["types"],
    })
}

fn events(n: usize, offset: usize) -> Value {
    let events: Vec<_> = (0..n)
        .map(|i| {
            let i = i + offset;
            let kind = ["sales", "users", "pageview"][i % 3];
            let region = ["EU", "US"][i % 2];
            json!({"timestamp": format!("2023-04-01T12:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                   "type": kind,
                   "values": {"amount": i as f64 * 0.5, "region": region, "latency_ms": (i * 7 % 300) as f64}})
        })
        .collect();
    Value::Array(events)
}

#[tokio::test]
async fn metrics_after_a_restart_equal_metrics_before() {
    let server = TestServer::start().await;
    for batch in 0..5 {
        let (status, _) = server.ingest(&events(200, batch * 200)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let before = server.metrics("").await;
    assert_eq!(before["totalEvents"], 1000);
    let dir = server.stop();

    // A clean stop saves the engine's state: the restart reads no events.
    let server = TestServer::start_in(dir, &[]).await;
    assert!(
        server.startup_line.contains("saved state + 0 newer events"),
        "{}",
        server.startup_line
    );
    let after = server.metrics("").await;
    assert_eq!(stable(&after), stable(&before));

    // After kill -9 the saved state is stale: the events after it are read again.
    let (status, _) = server.ingest(&events(300, 1000)).await;
    assert_eq!(status, StatusCode::OK);
    let before = server.metrics("").await;
    let server = TestServer::start_in(server.kill9(), &[]).await;
    assert!(
        server
            .startup_line
            .contains("saved state + 300 newer events"),
        "{}",
        server.startup_line
    );
    assert_eq!(stable(&server.metrics("").await), stable(&before));

    // A state that does not match the store is ignored, never trusted.
    let dir = server.stop();
    std::fs::write(
        dir.path().join("engine.snapshot"),
        b"\0\0\0\0\0\0\0\0garbage",
    )
    .unwrap();
    let server = TestServer::start_in(dir, &[]).await;
    assert!(
        server.startup_line.contains("1300 events read"),
        "{}",
        server.startup_line
    );
    assert_eq!(stable(&server.metrics("").await), stable(&before));
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let server = TestServer::start().await;
    let mut acknowledged = 0;
    for batch in 0..20 {
        let (status, report) = server.ingest(&events(250, batch * 250)).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        acknowledged += report["accepted"].as_u64().unwrap();
    }
    // Kill right after the last acknowledgement: no shutdown, no flush.
    let dir = server.kill9();

    let server = TestServer::start_in(dir, &[]).await;
    let m = server.metrics("").await;
    assert_eq!(m["totalEvents"], acknowledged);
    let (_, newest) = server.get("/api/events?limit=1").await;
    assert_eq!(
        newest[0]["seq"], acknowledged,
        "the last acknowledged event is the newest stored"
    );
}

#[tokio::test]
async fn retention_deletes_old_events_and_metrics_follow() {
    let server = TestServer::start_with(&["--retention", "1m"]).await;
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::hours(2)).to_rfc3339();
    let mut batch: Vec<_> = (0..100)
        .map(|i| json!({"timestamp": old, "type": "old", "values": {"v": i}}))
        .collect();
    batch.extend((0..10).map(|i| json!({"type": "fresh", "values": {"v": i}})));
    let (status, _) = server.ingest(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = server.metrics("").await;
        if m["totalEvents"] == 10 {
            assert_eq!(m["eventsByType"], json!({"fresh": 10}));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old events still counted: {}",
            m["eventsByType"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, events) = server.get("/api/events?limit=1000").await;
    assert_eq!(events.as_array().unwrap().len(), 10);
}
