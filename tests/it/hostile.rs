//! Hostile input: every body gets a precise 4xx, never a 5xx or a crash, and
//! what was stored before is still there.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestServer;

pub struct Case {
    pub name: String,
    pub content_type: &'static str,
    pub encoding: Option<&'static str>,
    pub body: Vec<u8>,
    pub expected: u16,
}

fn case(name: &str, content_type: &'static str, body: Vec<u8>, expected: u16) -> Case {
    Case {
        name: name.into(),
        content_type,
        encoding: None,
        body,
        expected,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The committed corpus: `tests/hostile/<status>-<name>`.
pub fn corpus() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile");
    let mut cases: Vec<Case> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "ndjson"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let expected = name[..3].parse().expect("file names start with a status");
            let content_type = if name.ends_with(".ndjson") {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            case(&name, content_type, std::fs::read(&path).unwrap(), expected)
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 20, "the corpus is there");
    cases
}

/// Bodies too big to commit, built here.
pub fn generated() -> Vec<Case> {
    let deep_array = "[".repeat(100_000).into_bytes();
    let deep_values =
        format!(r#"{{"type":"a","values":{}}}"#, r#"{"a":"#.repeat(100_000)).into_bytes();
    let many_keys = {
        let fields: Vec<String> = (0..100_000).map(|i| format!(r#""k{i}":{i}"#)).collect();
        format!(r#"{{"type":"a","values":{{{}}}}}"#, fields.join(",")).into_bytes()
    };
    let long_type = json!({"type": "t".repeat(100_000)})
        .to_string()
        .into_bytes();
    let long_field = json!({"type": "a", "values": {"f".repeat(100_000): 1}})
        .to_string()
        .into_bytes();
    let long_string = json!({"type": "a", "values": {"s": "x".repeat(100_000)}})
        .to_string()
        .into_bytes();
    let mut truncated_gzip = gzip(br#"{"type":"a","values":{"x":1}}"#);
    truncated_gzip.truncate(truncated_gzip.len() / 2);
    // 64 MiB of spaces compress to about 64 KiB.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let huge_line = {
        let mut line = br#"{"type":"a","values":{"s":""#.to_vec();
        line.resize(50 << 20, b'x');
        line.extend_from_slice(b"\"}}\n");
        line
    };
    let mut cases = vec![
        case(
            "100,000 nested arrays",
            "application/json",
            deep_array.clone(),
            400,
        ),
        case(
            "100,000 nested arrays as NDJSON",
            "application/x-ndjson",
            deep_array,
            422,
        ),
        case(
            "100,000 nested objects in values",
            "application/json",
            deep_values,
            400,
        ),
        case("100,000 keys in values", "application/json", many_keys, 422),
        case(
            "a 100,000-character type",
            "application/json",
            long_type,
            422,
        ),
        case(
            "a 100,000-character field name",
            "application/json",
            long_field,
            422,
        ),
        case(
            "a 100,000-character string value",
            "application/json",
            long_string,
            422,
        ),
        case(
            "wrong Content-Type",
            "text/plain",
            br#"{"type":"a"}"#.to_vec(),
            415,
        ),
        case(
            "form Content-Type",
            "application/x-www-form-urlencoded",
            b"type=a".to_vec(),
            415,
        ),
        case(
            "NDJSON with a 50 MB line",
            "application/x-ndjson",
            huge_line,
            413,
        ),
    ];
    cases.push(Case {
        encoding: Some("gzip"),
        ..case("truncated gzip", "application/json", truncated_gzip, 400)
    });
    cases.push(Case {
        encoding: Some("gzip"),
        ..case(
            "gzip bomb (64 MiB of spaces)",
            "application/json",
            bomb,
            413,
        )
    });
    cases.push(Case {
        encoding: Some("br"),
        ..case("unknown encoding", "application/json", b"{}".to_vec(), 415)
    });
    cases.push(Case {
        encoding: Some("gzip"),
        ..case(
            "gzip header on plain text",
            "application/json",
            br#"{"type":"a"}"#.to_vec(),
            400,
        )
    });
    cases
}

#[tokio::test]
async fn hostile_bodies_get_a_precise_4xx_and_lose_nothing() {
    let server = TestServer::start().await;
    let (status, _) = server
        .ingest(&json!({"type": "before", "values": {"n": 1}}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut stored_by_corpus = 0;
    for c in corpus().into_iter().chain(generated()) {
        let mut request = server
            .http
            .post(format!("{}/api/ingest", server.url))
            .header("content-type", c.content_type)
            .body(c.body);
        if let Some(encoding) = c.encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", c.name));
        let status = response.status().as_u16();
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", c.name));
        assert_eq!(status, c.expected, "{}: {body}", c.name);
        if status == 200 {
            stored_by_corpus += body["accepted"].as_u64().unwrap();
        } else if status == 422 {
            assert!(
                !body["rejected"].as_array().unwrap().is_empty(),
                "{}: says why: {body}",
                c.name
            );
        } else {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.len() > 10,
                "{}: a message that says what went wrong: {body}",
                c.name
            );
        }
        assert_eq!(
            server.get("/healthz").await.0,
            StatusCode::OK,
            "{}: the server is up",
            c.name
        );
    }

    let m = server.metrics("").await;
    assert_eq!(
        m["eventsByType"]["before"], 1,
        "the earlier event is still there"
    );
    assert_eq!(m["totalEvents"], 1 + stored_by_corpus);
}
