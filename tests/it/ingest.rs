//! Every form of ingest, and every way a request can be refused.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestServer;

fn sale(amount: u32, region: &str) -> Value {
    json!({"timestamp": "2023-04-01T12:00:00Z", "source": "web-app", "type": "sales",
           "values": {"amount": amount, "units": 5, "region": region}})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn accepts_every_form_of_ingest() {
    let server = TestServer::start().await;

    let (status, report) = server.ingest(&sale(1, "EU")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["firstSeq"], 1);

    let (status, report) = server.ingest(&json!([sale(2, "EU"), sale(3, "US")])).await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (StatusCode::OK, json!(2))
    );

    let batch = json!([sale(4, "EU"), sale(5, "US"), sale(6, "US")]).to_string();
    let (status, report) = server
        .post("/api/ingest/batch", "application/json", batch)
        .await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (StatusCode::OK, json!(3))
    );

    let ndjson = format!(
        "{}\n{}\n\n{}\n",
        sale(7, "EU"),
        sale(8, "EU"),
        sale(9, "US")
    );
    let (status, report) = server
        .post("/api/ingest", "application/x-ndjson", ndjson)
        .await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (StatusCode::OK, json!(3))
    );

    let body = gzip(
        json!([sale(10, "EU"), sale(11, "US")])
            .to_string()
            .as_bytes(),
    );
    let resp = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .header("content-type", "application/json; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let metrics = server.metrics("").await;
    assert_eq!(metrics["totalEvents"], 11);
    assert_eq!(metrics["eventsByType"], json!({"sales": 11}));
    let (_, events) = server.get("/api/events?limit=3").await;
    let amounts: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["values"]["amount"].clone())
        .collect();
    assert_eq!(
        amounts,
        vec![json!(11), json!(10), json!(9)],
        "newest first"
    );
}

#[tokio::test]
async fn stores_every_valid_event_of_a_mixed_batch() {
    let server = TestServer::start().await;
    let batch = json!([
        sale(1, "EU"),
        {"type": "sales", "values": {"amount": [1, 2]}},
        sale(2, "US"),
        {"source": "x"},
        {"type": "sales", "values": {"amount": 1}, "colour": "red"},
        sale(3, "US"),
    ]);
    let (status, report) = server.ingest(&batch).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["accepted"], 3);
    let rejected = report["rejected"].as_array().unwrap();
    let indexes: Vec<_> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 3, 4]);
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .contains("`values.amount` is an array")
    );
    assert!(
        rejected[1]["error"]
            .as_str()
            .unwrap()
            .contains("missing field `type`")
    );
    assert!(
        rejected[2]["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`")
    );
    assert_eq!(server.metrics("").await["totalEvents"], 3);

    // NDJSON rejections carry the line number.
    let ndjson = format!("{}\n{{broken\n{}\n", sale(1, "EU"), sale(2, "EU"));
    let (status, report) = server
        .post("/api/ingest", "application/x-ndjson", ndjson)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["rejected"][0]["line"], 2);
    assert_eq!(server.metrics("").await["totalEvents"], 5);
}

#[tokio::test]
async fn refuses_what_it_cannot_store_with_a_precise_status() {
    let server = TestServer::start_with(&["--max-body", "2KiB"]).await;

    let (status, body) = server
        .post("/api/ingest", "application/json", "[{\"type\": \"a\"},")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("line 1 column"),
        "{body}"
    );

    let (status, body) = server.post("/api/ingest", "application/json", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = server
        .ingest(&json!([{"type": 1}, {"type": "ok", "values": {"x": "y".repeat(2000)}}]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"].as_array().unwrap().len(), 2);

    let big = json!([{"type": "a", "values": {"s": "x".repeat(3000)}}]).to_string();
    let (status, body) = server
        .post("/api/ingest", "application/json", big.clone())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("2048-byte limit")
    );

    // A small gzip body that expands past the limit is refused too.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 2048);
    let resp = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, body) = server.post("/api/ingest", "text/csv", "a,b").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    assert_eq!(
        server.metrics("").await["totalEvents"],
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_token_protects_ingest() {
    let server = TestServer::start_with(&["--token", "s3cret"]).await;
    let (status, body) = server.ingest(&sale(1, "EU")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let resp = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .bearer_auth("wrong")
        .json(&sale(1, "EU"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .bearer_auth("s3cret")
        .json(&sale(1, "EU"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        server.metrics("").await["totalEvents"],
        1,
        "metrics stay readable"
    );
}

#[tokio::test]
async fn an_idempotency_key_stores_a_retried_request_once() {
    let server = TestServer::start().await;
    let send = |key: &'static str| {
        server
            .http
            .post(format!("{}/api/ingest", server.url))
            .header("idempotency-key", key)
            .json(&json!([sale(1, "EU"), {"type": 5}, sale(2, "US")]))
            .send()
    };
    let first: Value = send("batch-0001").await.unwrap().json().await.unwrap();
    assert_eq!(
        (first["accepted"].clone(), first.get("replayed")),
        (json!(2), None)
    );
    let again: Value = send("batch-0001").await.unwrap().json().await.unwrap();
    assert_eq!(again["replayed"], true);
    assert_eq!(
        (&again["accepted"], &again["firstSeq"]),
        (&first["accepted"], &first["firstSeq"])
    );
    assert_eq!(again["rejected"], first["rejected"], "the same rejections");
    assert_eq!(server.metrics("").await["totalEvents"], 2);

    // Keys survive a restart, like the events they name.
    let server = TestServer::start_in(server.kill9(), &[]).await;
    let response = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .header("idempotency-key", "batch-0001")
        .json(&json!([sale(1, "EU"), {"type": 5}, sale(2, "US")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["replayed"], true);
    assert_eq!(server.metrics("").await["totalEvents"], 2);

    let (status, body) = server
        .post("/api/ingest", "application/json", "{\"type\":\"a\"}")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bad = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .header("idempotency-key", "has spaces")
        .json(&sale(1, "EU"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
