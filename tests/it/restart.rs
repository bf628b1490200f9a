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
    // Inside the retention when sent (older events are refused at ingest),
    // outside it a few seconds later.
    let old = (now - chrono::Duration::seconds(57)).to_rfc3339();
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
    // The kept events shared a stored segment with the deleted ones: they keep their seqs.
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (101..=110).rev().collect::<Vec<_>>());
    // After a restart, new events continue after the highest seq ever given.
    let server = TestServer::start_in(server.stop(), &["--retention", "1m"]).await;
    let (_, report) = server
        .ingest(&json!({"type": "fresh", "values": {"v": 1}}))
        .await;
    assert_eq!(report["firstSeq"], 111);
}

/// A data directory written by rta 0.1 (one row per event) is moved to the
/// segment layout at start-up, keeping every event and its seq.
#[tokio::test]
async fn a_data_directory_of_the_old_layout_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,
                 type TEXT NOT NULL, source TEXT NOT NULL, vals TEXT NOT NULL);
             CREATE INDEX events_by_type ON events(type, seq);
             CREATE TABLE batches (key TEXT PRIMARY KEY, first_seq INTEGER NOT NULL,
                 accepted INTEGER NOT NULL, note TEXT NOT NULL, created INTEGER NOT NULL);
             CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .unwrap();
        let ts = chrono::Utc::now().timestamp_millis();
        for i in 1..=5000i64 {
            let kind = ["sales", "users"][i as usize % 2];
            conn.execute(
                "INSERT INTO events (ts, type, source, vals) VALUES (?1, ?2, 'old', ?3)",
                rusqlite::params![ts, kind, format!(r#"{{"amount":{i},"region":"EU"}}"#)],
            )
            .unwrap();
        }
        // Retention had removed some: a gap in the middle and the newest ten.
        conn.execute(
            "DELETE FROM events WHERE seq BETWEEN 100 AND 199 OR seq > 4990",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO meta VALUES ('deleted', 110)", [])
            .unwrap();
    }
    let server = TestServer::start_in(dir, &[]).await;
    let m = server.metrics("").await;
    assert_eq!(m["totalEvents"], 4890);
    assert_eq!(m["eventsByType"], json!({"sales": 2445, "users": 2445}));
    let (_, newest) = server.get("/api/events?limit=2&type=sales").await;
    assert_eq!(newest[0]["seq"], 4990);
    assert_eq!(newest[0]["values"], json!({"amount": 4990, "region": "EU"}));
    assert_eq!(newest[1]["seq"], 4988);
    // Seqs go on after the highest one 0.1 handed out, deleted or not.
    let (_, report) = server
        .ingest(&json!({"type": "sales", "values": {"amount": 1}}))
        .await;
    assert_eq!(report["firstSeq"], 5001);
    let dir = server.stop();
    let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the old table is gone");
}
