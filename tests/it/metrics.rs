//! The metrics API equals what was sent.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestServer, measure, type_metrics};

#[tokio::test]
async fn metrics_equal_what_was_sent() {
    let server = TestServer::start().await;
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    let mut expected_sum = 0.0;
    for i in 0..200u32 {
        let amount = f64::from(i % 50) * 1.5 + 1.0;
        expected_sum += amount;
        let region = ["North", "South", "East"][(i % 3) as usize];
        let ts = now - chrono::Duration::seconds(i64::from(i % 120));
        events.push(json!({"timestamp": ts.to_rfc3339(), "type": "sales",
                           "values": {"amount": amount, "region": region}}));
    }
    for i in 0..50u32 {
        events.push(json!({"type": "users", "values": {"active": i, "plan": "pro"}}));
    }
    // An old event: counted in totals, outside every window.
    events.push(
        json!({"timestamp": "2020-01-01T00:00:00Z", "type": "sales", "values": {"amount": 1000}}),
    );
    let (status, report) = server.ingest(&Value::Array(events)).await;
    assert_eq!(status, StatusCode::OK, "{report}");

    let m = server.metrics("").await;
    assert_eq!(m["totalEvents"], 251);
    assert_eq!(m["eventsByType"], json!({"sales": 201, "users": 50}));
    let sales = type_metrics(&m, "sales");
    let amount = measure(sales, "amount");
    assert_eq!(amount["count"], 201);
    assert!((amount["sum"].as_f64().unwrap() - (expected_sum + 1000.0)).abs() < 1e-6);
    assert_eq!(amount["min"], 1.0);
    assert_eq!(amount["max"], 1000.0);
    let p50 = amount["p50"].as_f64().unwrap();
    assert!(
        (37.0..=40.0).contains(&p50),
        "p50 {p50} near the true median 38.5"
    );
    let region = &sales["dimensions"][0];
    assert_eq!(region["name"], "region");
    assert_eq!(region["top"][0], json!({"value": "North", "count": 67}));
    let active = measure(type_metrics(&m, "users"), "active");
    assert_eq!(
        (active["sum"].as_f64(), active["last"].as_f64()),
        (Some(1225.0), Some(49.0))
    );
    assert_eq!(
        m["recentValues"]["users"]["active"]
            .as_array()
            .unwrap()
            .len(),
        20
    );

    // Windows count by event time.
    let w = server.metrics("?window=1h&type=sales").await;
    assert_eq!(w["windowEvents"], 200);
    assert_eq!(w["totalEvents"], 251);
    assert_eq!(type_metrics(&w, "sales")["count"], 200);
    assert!(
        (measure(type_metrics(&w, "sales"), "amount")["sum"]
            .as_f64()
            .unwrap()
            - expected_sum)
            .abs()
            < 1e-6
    );

    // Group by a dimension, and a series for one field.
    let g = server.metrics("?type=sales&by=region&window=24h").await;
    let groups = g["groups"]["groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["count"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    let s = server
        .metrics("?type=sales&field=amount&window=5m&step=10s")
        .await;
    assert_eq!(s["series"]["stepSeconds"], 10.0);
    let counted: u64 = s["series"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 200);
    let ts = &s["timeSeriesData"]["types"]["sales"];
    assert_eq!(
        ts.as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );

    // Bad parameters are named.
    for (query, needle) in [
        ("?window=forever", "window"),
        ("?window=1h&to=2023-04-01", "not both"),
        ("?by=region", "need `type`"),
        ("?type=a%20b", "type"),
    ] {
        let (status, body) = server.get(&format!("/api/metrics{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn recent_events_newest_first_and_filtered() {
    let server = TestServer::start().await;
    for i in 0..10 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        server
            .ingest(&json!({"type": kind, "values": {"i": i}}))
            .await;
    }
    let (_, events) = server.get("/api/events?limit=3&type=odd").await;
    let is: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["values"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(is, vec![9, 7, 5]);
    let (status, _) = server.get("/api/events?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn serves_the_openapi_spec_docs_and_health() {
    let server = TestServer::start().await;
    let (status, spec) = server.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/ingest",
        "/api/ingest/batch",
        "/api/metrics",
        "/api/events",
        "/healthz",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    assert!(
        spec["paths"]["/api/ingest"]["post"]["requestBody"]["content"]["application/x-ndjson"]
            .is_object()
    );
    let (status, docs) = server.get("/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(docs.as_str().unwrap().contains("swagger"));
    assert_eq!(server.get("/healthz").await, (StatusCode::OK, json!("ok")));
    let (status, page) = server.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("<html"));
}

#[tokio::test]
async fn every_answer_says_nosniff_and_errors_are_json() {
    let server = TestServer::start().await;
    for (method, path, status) in [
        (reqwest::Method::GET, "/api/metrics", StatusCode::OK),
        (reqwest::Method::GET, "/", StatusCode::OK),
        (reqwest::Method::GET, "/no/such/page", StatusCode::NOT_FOUND),
        (
            reqwest::Method::POST,
            "/api/ingest",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::DELETE,
            "/api/metrics",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let response = server
            .http
            .request(method.clone(), format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{method} {path}"
        );
        if !status.is_success() {
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].is_string(), "{method} {path}: {body}");
            assert!(body["message"].is_string(), "{method} {path}: {body}");
        }
    }
}

#[tokio::test]
async fn a_million_distinct_values_keep_memory_and_answers_small() {
    let server = TestServer::start().await;
    let warm: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "visit", "values": {"user": format!("warm-{i}"), "ms": i}}))
        .collect();
    server.ingest(&Value::Array(warm)).await;
    const TOTAL: usize = 1_000_000;
    const BATCH: usize = 25_000;
    // Measured once the first 100,000 values are in (the allocator and the
    // caches have then taken what 25,000-event requests need) and at the end.
    let mut rss_early = 0;
    for start in (0..TOTAL).step_by(BATCH) {
        if start == 100_000 {
            rss_early = server.rss_kib();
        }
        let mut body = String::with_capacity(BATCH * 64);
        for i in start..start + BATCH {
            body.push_str(&format!(
                "{{\"type\":\"visit\",\"values\":{{\"user\":\"u{i}\",\"ms\":{}}}}}\n",
                i % 997
            ));
        }
        let (status, report) = server
            .post("/api/ingest", "application/x-ndjson", body)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
    }
    let rss_end = server.rss_kib();
    // 900,000 more distinct values: a leak of even 30 bytes per value shows.
    let grown_mib = rss_end.saturating_sub(rss_early) / 1024;
    assert!(
        grown_mib < 24,
        "memory grew by {grown_mib} MiB over the last 900,000 distinct values"
    );
    assert!(rss_end / 1024 < 200, "RSS {} MiB", rss_end / 1024);

    let (status, text) = server.get("/api/metrics?top=100").await;
    assert_eq!(status, StatusCode::OK);
    let size = text.to_string().len();
    assert!(size < 100_000, "the metrics stay small: {size} bytes");
    let visit = type_metrics(&text, "visit");
    let user = &visit["dimensions"][0];
    assert_eq!(user["name"], "user");
    let listed: u64 = user["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    assert!(user["top"].as_array().unwrap().len() <= 100);
    assert_eq!(
        listed + user["others"].as_u64().unwrap(),
        (TOTAL + 1000) as u64,
        "top values and others add up"
    );
    let groups = server
        .metrics("?type=visit&by=user&window=1h&top=100")
        .await;
    assert!(groups["groups"]["groups"].as_array().unwrap().len() <= 100);
}
