//! The WebSocket: a snapshot on connect, then coalesced updates.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestServer, next_json};

#[tokio::test]
async fn snapshot_then_coalesced_updates() {
    let server = TestServer::start().await;
    server
        .ingest(&json!({"type": "sales", "values": {"amount": 5}}))
        .await;

    let (mut ws, _) = connect_async(server.ws_url(""))
        .await
        .expect("the WebSocket connects");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["kind"], "snapshot");
    assert_eq!(snapshot["metrics"]["totalEvents"], 1);
    assert_eq!(snapshot["events"][0]["values"]["amount"], 5);

    // 100 requests in quick succession: far fewer than 100 messages, and the
    // last one reflects all of them.
    for i in 0..100 {
        server
            .ingest(&json!({"type": "sales", "values": {"amount": i}}))
            .await;
    }
    let mut messages = 0;
    loop {
        let update = next_json(&mut ws).await;
        assert_eq!(update["kind"], "update");
        messages += 1;
        if update["metrics"]["totalEvents"] == 101 {
            break;
        }
    }
    assert!(
        messages < 50,
        "updates are coalesced, got {messages} messages for 100 requests"
    );
}

#[tokio::test]
async fn a_view_filters_by_type_and_window() {
    let server = TestServer::start().await;
    let (mut ws, _) = connect_async(server.ws_url("?type=users&window=5m"))
        .await
        .unwrap();
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["metrics"]["windowSeconds"], 300.0);
    server.ingest(&json!([{"type": "sales", "values": {"amount": 1}}, {"type": "users", "values": {"active": 3}}])).await;
    let update = loop {
        let m = next_json(&mut ws).await;
        if m["metrics"]["totalEvents"] == 2 {
            break m;
        }
    };
    let types: Vec<_> = update["metrics"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(types, vec![json!("users")]);
    assert_eq!(update["events"].as_array().unwrap().len(), 1);

    let bad = connect_async(server.ws_url("?window=never")).await;
    assert!(
        bad.is_err(),
        "an invalid view is refused before the upgrade"
    );
}

#[tokio::test]
async fn stuck_and_idle_clients_do_not_hold_up_ingest_or_memory() {
    let server = TestServer::start().await;
    // A client that never reads a byte.
    let (stuck, _) = connect_async(server.ws_url("?window=24h")).await.unwrap();
    // A thousand quiet dashboards, each reading what it is sent.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let (mut ws, _) = connect_async(server.ws_url(""))
            .await
            .expect("1000 clients connect");
        idle.push(tokio::spawn(async move {
            // Read everything, look only for the final state (parsing every
            // message in a thousand clients would measure the test, not the server).
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg
                    && text.contains("\"totalEvents\":20000")
                {
                    return 20_000;
                }
            }
            0
        }));
    }
    let rss_before = server.rss_kib();

    for i in 0..200 {
        let batch: Vec<Value> = (0..100)
            .map(|j| json!({"type": "load", "values": {"v": i * 100 + j, "k": format!("k{j}")}}))
            .collect();
        let started = std::time::Instant::now();
        let (status, _) = server.ingest(&Value::Array(batch)).await;
        assert_eq!(status, reqwest::StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ingest keeps going"
        );
    }

    // A new client gets the current state at once, and every idle one caught up.
    let (mut fresh, _) = connect_async(server.ws_url("")).await.unwrap();
    assert_eq!(
        next_json(&mut fresh).await["metrics"]["totalEvents"],
        20_000
    );
    for client in idle {
        let total = tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .expect("idle clients are served")
            .unwrap();
        assert_eq!(total, 20_000);
    }
    let grown_mib = server.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 64, "memory grew by {grown_mib} MiB");
    drop(stuck);
}
