//! The WebSocket: a snapshot on connect, then coalesced updates.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestServer;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

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
