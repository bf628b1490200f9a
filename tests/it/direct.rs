//! `POST /api/ingest` takes a direct way past the router; the router's way
//! stays (`RTA_INGEST_VIA_ROUTER`). Both must answer every request alike:
//! the same requests, in the same order, to one server of each kind, with
//! the same flags, and every status, header and body compared.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::helpers::TestServer;
use crate::hostile;

/// One request: the path, its headers and its body.
struct Probe {
    name: String,
    path: &'static str,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
}

fn probe(name: &str, headers: &[(&'static str, &str)], body: &str) -> Probe {
    Probe {
        name: name.into(),
        path: "/api/ingest",
        headers: headers
            .iter()
            .map(|(n, v)| (*n, HeaderValue::from_str(v).unwrap()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");
const EVENT: &str =
    r#"{"type":"sales","source":"web","values":{"amount":150,"region":"North America"}}"#;

/// Ordinary requests and the edges around them: tokens, keys, types,
/// encodings, origins, hosts, sizes.
fn probes(token: &str) -> Vec<Probe> {
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    let two = format!("[{EVENT},{EVENT}]");
    let lines = format!("{EVENT}\n{EVENT}\nnot json\n");
    let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzipped, two.as_bytes()).unwrap();
    let big = format!("[{}]", vec![EVENT; 200].join(","));
    let mut probes = vec![
        probe("one event", &[JSON, auth], EVENT),
        probe("an array", &[JSON, auth], &two),
        probe("NDJSON with a bad line", &[NDJSON, auth], &lines),
        probe(
            "Content-Type with parameters",
            &[("content-type", "Application/JSON; charset=utf-8"), auth],
            EVENT,
        ),
        probe("no Content-Type", &[auth], EVENT),
        probe("text/plain", &[("content-type", "text/plain"), auth], EVENT),
        probe("no token", &[JSON], EVENT),
        probe(
            "a wrong token",
            &[JSON, ("authorization", "Bearer nope")],
            EVENT,
        ),
        probe(
            "a token in another scheme",
            &[JSON, ("authorization", "Basic eDp5")],
            EVENT,
        ),
        probe("a new key", &[JSON, auth, ("idempotency-key", "k-1")], &two),
        probe(
            "the key again",
            &[JSON, auth, ("idempotency-key", "k-1")],
            &two,
        ),
        probe(
            "a key with a space",
            &[JSON, auth, ("idempotency-key", "a b")],
            EVENT,
        ),
        probe(
            "a 129-byte key",
            &[JSON, auth, ("idempotency-key", &"k".repeat(129))],
            EVENT,
        ),
        probe(
            "nothing valid",
            &[JSON, auth],
            r#"[{"type":""},{"values":3}]"#,
        ),
        probe("an empty body", &[JSON, auth], ""),
        probe("over the size limit", &[JSON, auth], &big),
        probe(
            "over the size limit, expecting 100-continue",
            &[JSON, auth, ("expect", "100-continue")],
            &big,
        ),
        probe(
            "an unknown encoding",
            &[JSON, auth, ("content-encoding", "br")],
            EVENT,
        ),
        probe(
            "identity encoding",
            &[JSON, auth, ("content-encoding", "identity")],
            EVENT,
        ),
        probe(
            "the same origin",
            &[JSON, auth, ("origin", "http://127.0.0.1:PORT")],
            EVENT,
        ),
        probe(
            "an allowed origin",
            &[JSON, auth, ("origin", "https://app.example")],
            EVENT,
        ),
        probe(
            "another site",
            &[JSON, auth, ("origin", "https://evil.example")],
            EVENT,
        ),
        probe(
            "a host not allowed",
            &[JSON, auth, ("host", "evil.example")],
            EVENT,
        ),
        probe(
            "an allowed host",
            &[JSON, auth, ("host", "rta.example:8080")],
            EVENT,
        ),
    ];
    probes.push(Probe {
        headers: vec![
            ("content-type", HeaderValue::from_static("application/json")),
            ("authorization", HeaderValue::from_str(&bearer).unwrap()),
            ("content-encoding", HeaderValue::from_static("gzip")),
        ],
        body: gzipped.finish().unwrap(),
        ..probe("gzip", &[], "")
    });
    probes.push(Probe {
        headers: vec![
            ("content-type", HeaderValue::from_static("application/json")),
            ("authorization", HeaderValue::from_str(&bearer).unwrap()),
            (
                "idempotency-key",
                HeaderValue::from_bytes(b"cl\xe9").unwrap(),
            ),
        ],
        ..probe("a key of other bytes", &[], EVENT)
    });
    probes.push(Probe {
        path: "/api/ingest/batch",
        ..probe("the batch path", &[JSON, auth], &two)
    });
    probes.push(Probe {
        path: "/api/ingest?source=ignored",
        ..probe("a query string", &[JSON, auth], EVENT)
    });
    for case in hostile::corpus().into_iter().chain(hostile::generated()) {
        let mut headers = vec![
            ("content-type", HeaderValue::from_static(case.content_type)),
            ("authorization", HeaderValue::from_str(&bearer).unwrap()),
        ];
        if let Some(encoding) = case.encoding {
            headers.push(("content-encoding", HeaderValue::from_static(encoding)));
        }
        probes.push(Probe {
            name: format!("hostile: {}", case.name),
            path: "/api/ingest",
            headers,
            body: case.body,
        });
    }
    probes
}

/// What is compared of an answer: status, headers but `date`, body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

async fn send(server: &TestServer, probe: &Probe) -> Answer {
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let mut headers = HeaderMap::new();
    for (name, value) in &probe.headers {
        let value = match value.to_str() {
            Ok(text) if text.contains("PORT") => {
                HeaderValue::from_str(&text.replace("PORT", &port)).unwrap()
            }
            _ => value.clone(),
        };
        headers.insert(HeaderName::from_static(name), value);
    }
    let response = server
        .http
        .post(format!("{}{}", server.url, probe.path))
        .headers(headers)
        .body(probe.body.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", probe.name));
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

async fn both_ways_answer_alike(flags: &[&str], token: &str) {
    let direct = TestServer::start_with(flags).await;
    let routed = TestServer::start_with_env(flags, &[("RTA_INGEST_VIA_ROUTER", "1")]).await;
    let mut statuses = std::collections::BTreeSet::new();
    for probe in probes(token) {
        let (a, b) = (send(&direct, &probe).await, send(&routed, &probe).await);
        assert_eq!(
            a, b,
            "{}: the direct way answers as the router does",
            probe.name
        );
        statuses.insert(a.status);
    }
    // Both servers stored the same: the same totals, type by type.
    let (a, b) = (direct.metrics("").await, routed.metrics("").await);
    assert_eq!(a["totalEvents"], b["totalEvents"]);
    assert_eq!(a["eventsByType"], b["eventsByType"]);
    assert!(a["totalEvents"].as_u64().unwrap() > 10, "{a}");
    // The probes reach every answer the operation documents but 500 and 503.
    for status in [200, 400, 401, 403, 413, 415, 422] {
        if status != 401 || !token.is_empty() {
            assert!(
                statuses.contains(&status),
                "{status} was answered: {statuses:?}"
            );
        }
    }
}

#[tokio::test]
async fn direct_ingest_answers_as_the_router_does() {
    both_ways_answer_alike(&["--max-body", "8KiB"], "").await;
}

#[tokio::test]
async fn direct_ingest_answers_as_the_router_does_with_tokens_cors_and_hosts() {
    both_ways_answer_alike(
        &[
            "--max-body",
            "8KiB",
            "--token",
            "secret",
            "--cors-origin",
            "https://app.example",
            "--allowed-host",
            "rta.example",
        ],
        "secret",
    )
    .await;
}
