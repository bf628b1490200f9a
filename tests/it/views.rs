//! Views with a range and filters: `GET /api/metrics` and the WebSocket
//! with `from`/`to`/`where`, answered from the store, checked against the
//! fixture's events counted here.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{fixture, rta, text};
use crate::helpers::{
    Socket, TestServer, fixture_events, measure, next_json, ts_millis, type_metrics,
};

fn millis(e: &Value) -> i64 {
    ts_millis(e["timestamp"].as_str().unwrap())
}

#[tokio::test]
async fn metrics_of_a_range_and_filters_match_the_data() {
    let server = TestServer::start().await;
    let out = rta(&server.url, &["replay", &fixture("events.jsonl"), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = fixture_events();
    let (from, to) = (
        ts_millis("2023-04-01T09:00:00Z"),
        ts_millis("2023-04-01T10:30:00Z"),
    );
    let chosen: Vec<&Value> = events
        .iter()
        .filter(|e| (from..to).contains(&millis(e)))
        .filter(|e| {
            e["values"]["region"] == "Europe"
                && e["values"]["amount"].as_f64().is_some_and(|a| a > 100.0)
        })
        .collect();
    assert!(chosen.len() > 10, "the fixture has such events");

    let m = server
        .metrics("?from=2023-04-01T09:00:00Z&to=2023-04-01T10:30:00Z&where=region%3DEurope&where=amount%3E100")
        .await;
    assert_eq!(m["totalEvents"], 3000, "every stored event");
    assert_eq!(m["windowEvents"], chosen.len());
    assert_eq!(m["windowSeconds"], 5400.0);
    assert_eq!(m["eventsByType"], json!({"sales": chosen.len()}));
    let sales = type_metrics(&m, "sales");
    let amount = measure(sales, "amount");
    let sum: f64 = chosen
        .iter()
        .map(|e| e["values"]["amount"].as_f64().unwrap())
        .sum();
    assert!(
        (amount["sum"].as_f64().unwrap() - sum).abs() < 1e-6,
        "{amount} vs {sum}"
    );
    let min = chosen
        .iter()
        .map(|e| e["values"]["amount"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert_eq!(amount["min"].as_f64().unwrap(), min);
    // The series covers the range and adds up.
    let points = m["timeSeriesData"]["types"]["sales"].as_array().unwrap();
    let counted: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, chosen.len());
    assert_eq!(points[0]["t"], "2023-04-01T09:00:00Z");
    // Recent values are the filtered events' values.
    for v in m["recentValues"]["sales"]["amount"].as_array().unwrap() {
        assert!(v.as_f64().unwrap() > 100.0);
    }

    // A window longer than the engine keeps comes from the store, filtered or not.
    let m = server.metrics("?window=3650d").await;
    assert_eq!(m["windowEvents"], 3000);
    assert_eq!(m["windowSeconds"], 3650.0 * 86400.0);
    let m = server.metrics("?window=3650d&where=device%3Dmobile").await;
    let mobile = events
        .iter()
        .filter(|e| e["values"]["device"] == "mobile")
        .count();
    assert!(mobile > 0);
    assert_eq!(m["windowEvents"], mobile);
    let m = server
        .metrics("?window=all&where=type%3Dpageview&by=device")
        .await;
    let groups = &m["groups"]["groups"];
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["value"] == "mobile" && g["count"] == mobile)
    );

    // A field no type has is an error that lists the fields.
    let (status, body) = server.get("/api/metrics?where=regoin%3DEurope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no field `regoin`"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("region"),
        "{body}"
    );
    let (status, body) = server.get("/api/metrics?where=amount%3E%3Eten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server.get("/api/metrics?window=1h&from=2023-04-01").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn types_beyond_the_engines_caps_are_answered_from_the_store() {
    let server = TestServer::start().await;
    let batch: Vec<Value> = (0..150)
        .map(|i| json!({"type": format!("t{i}"), "values": {"n": i, "kind": "x"}}))
        .collect();
    let (status, _) = server.ingest(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK);
    let m = server.metrics("?type=t149").await;
    assert_eq!(m["eventsByType"], json!({"t149": 1}));
    assert_eq!(measure(type_metrics(&m, "t149"), "n")["sum"], 149.0);
    let m = server.metrics("?type=t149&window=1h&by=kind").await;
    assert_eq!(m["groups"]["groups"][0]["value"], "x");
}

#[tokio::test]
async fn a_filtered_websocket_view_pushes_only_its_events() {
    let server = TestServer::start().await;
    server
        .ingest(&json!({"type": "sales", "values": {"amount": 1, "region": "Europe"}}))
        .await;
    let (mut ws, _) =
        connect_async(server.ws_url("?window=1h&where=region%3DEurope&where=amount%3E%3D10"))
            .await
            .expect("the WebSocket connects");
    let first = next_json(&mut ws).await;
    assert_eq!(first["kind"], "snapshot");
    assert_eq!(first["metrics"]["windowEvents"], 0);
    assert_eq!(first["events"], json!([]));

    server
        .ingest(&json!([
            {"type": "sales", "values": {"amount": 50, "region": "Asia"}},
            {"type": "sales", "values": {"amount": 70, "region": "Europe"}},
        ]))
        .await;
    let update = loop {
        let m = next_json(&mut ws).await;
        if m["metrics"]["windowEvents"] == 1 {
            break m;
        }
    };
    assert_eq!(update["kind"], "update");
    assert_eq!(update["metrics"]["totalEvents"], 3);
    let events = update["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{update}");
    assert_eq!(events[0]["values"]["amount"], 70);

    // A new client of a view gets its latest events from the store.
    let (mut again, _) =
        connect_async(server.ws_url("?window=1h&where=region%3DEurope&where=amount%3E%3D10"))
            .await
            .unwrap();
    let first = next_json(&mut again).await;
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    assert_eq!(first["metrics"]["eventsByType"], json!({"sales": 1}));
}

#[tokio::test]
async fn distinct_filtered_views_are_capped() {
    let server = TestServer::start().await;
    server
        .ingest(&json!({"type": "sales", "values": {"amount": 1, "n": "0"}}))
        .await;
    let mut open = Vec::new();
    for i in 0..32 {
        let (mut ws, _) = connect_async(server.ws_url(&format!("?where=n%3D{i}")))
            .await
            .unwrap_or_else(|e| panic!("view {i} is accepted: {e}"));
        next_json(&mut ws).await;
        open.push(ws);
    }
    // Beyond, the socket opens and closes at once with 1013 and the reason,
    // which a browser (unlike a refused handshake) can read.
    let (mut refused, _) = connect_async(server.ws_url("?where=n%3D32")).await.unwrap();
    assert_eq!(
        refused_with(&mut refused).await.as_deref(),
        Some("32 different views")
    );
    // A view already watched, and a view of the live engine, still open.
    let (mut same, _) = connect_async(server.ws_url("?where=n%3D0")).await.unwrap();
    next_json(&mut same).await;
    let (mut live, _) = connect_async(server.ws_url("?window=5m")).await.unwrap();
    next_json(&mut live).await;
    // Once a view's last client leaves, another may take its place.
    let mut first = open.remove(1);
    first.close(None).await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (mut ws, _) = connect_async(server.ws_url("?where=n%3D32")).await.unwrap();
        if refused_with(&mut ws).await.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a freed place is taken again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hostile_ranges_and_steps_get_small_answers() {
    let server = TestServer::start().await;
    server
        .ingest(&json!([{"type": "sales", "values": {"amount": 1}, "timestamp": "2023-04-01T00:00:00Z"}, {"type": "sales", "values": {"amount": 2}}]))
        .await;
    for query in [
        "?window=1000y&step=300000000y",
        "?from=1970-01-01&step=300000000y",
        "?window=300000000y",
        "?window=100y&step=1s",
        "?from=1970-01-01&to=9999-01-01&step=1s",
        "?window=all&where=amount%3E0&step=1s",
    ] {
        let (status, body) = server.get(&format!("/api/metrics{query}")).await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            continue;
        }
        let points = body["timeSeriesData"]["types"]["sales"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(points <= 1001, "{query}: {points} points");
        for p in body["timeSeriesData"]["types"]["sales"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                p["t"].as_str().is_some_and(|t| t.len() >= 20),
                "{query}: a point without its time: {p}"
            );
        }
    }
}

/// The start of the reason a socket was closed with 1013 at once, or None
/// when it sent a message instead.
async fn refused_with(ws: &mut Socket) -> Option<String> {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame within 10 s")?
        .ok()?;
    match msg {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1013);
            Some(frame.reason.chars().take(18).collect())
        }
        Message::Text(_) => None,
        other => panic!("unexpected {other:?}"),
    }
}
