//! `POST /api/ingest` takes a direct way past the router; the router's way
//! stays (`RTA_INGEST_VIA_ROUTER`). Both must answer every request alike:
//! the same requests, in the same order, to one server of each kind, with
//! the same flags, and every status, header and body compared.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::helpers::{TestServer, raw_exchange};
use crate::hostile;

/// One request: its method, path, headers (a name may repeat) and body.
struct Probe {
    name: String,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
    /// Sent in chunks, without a Content-Length.
    chunked: bool,
    /// The status the hostile corpus expects, when it says.
    expected: Option<u16>,
}

fn probe(name: &str, headers: &[(&'static str, &str)], body: &str) -> Probe {
    Probe {
        name: name.into(),
        method: Method::POST,
        path: "/api/ingest",
        headers: headers
            .iter()
            .map(|(n, v)| (*n, HeaderValue::from_str(v).unwrap()))
            .collect(),
        body: body.as_bytes().to_vec(),
        chunked: false,
        expected: None,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");
const EVENT: &str =
    r#"{"type":"sales","source":"web","values":{"amount":150,"region":"North America"}}"#;

/// Ordinary requests and the edges around them: tokens, keys, types,
/// encodings, origins, hosts, sizes.
fn probes(token: &str, hostile_generated: bool) -> Vec<Probe> {
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
        probe("200 events (over an 8 KiB limit)", &[JSON, auth], &big),
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
        probe("Origin: null", &[JSON, auth, ("origin", "null")], EVENT),
        probe(
            "the same origin spelt otherwise",
            &[JSON, auth, ("origin", "HTTP://localhost:PORT")],
            EVENT,
        ),
        probe(
            "an empty key",
            &[JSON, auth, ("idempotency-key", "")],
            EVENT,
        ),
        probe(
            "Bearer and no token",
            &[JSON, ("authorization", "Bearer ")],
            EVENT,
        ),
        probe(
            "two keys, the second bad",
            &[
                JSON,
                auth,
                ("idempotency-key", "k-2"),
                ("idempotency-key", "a b"),
            ],
            EVENT,
        ),
        probe(
            "two Content-Types",
            &[JSON, ("content-type", "text/plain"), auth],
            EVENT,
        ),
        probe(
            "two Authorizations",
            &[JSON, ("authorization", "Bearer nope"), auth],
            EVENT,
        ),
        probe(
            "two Origins, the same first",
            &[
                JSON,
                auth,
                ("origin", "http://127.0.0.1:PORT"),
                ("origin", "https://evil.example"),
            ],
            EVENT,
        ),
        probe(
            "x-gzip on plain text",
            &[JSON, auth, ("content-encoding", "x-gzip")],
            EVENT,
        ),
        probe(
            "gzip twice",
            &[JSON, auth, ("content-encoding", "gzip, gzip")],
            EVENT,
        ),
    ];
    for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
        for path in ["/api/ingest", "/api/ingest/batch"] {
            probes.push(Probe {
                method: method.clone(),
                path,
                ..probe(&format!("{method} {path}"), &[JSON, auth], EVENT)
            });
        }
    }
    probes.push(Probe {
        method: Method::OPTIONS,
        ..probe(
            "a preflight",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, authorization",
                ),
            ],
            "",
        )
    });
    for path in [
        "/api/ingest/",
        "//api/ingest",
        "/api/%69ngest",
        "/API/ingest",
        "/api/ingest/batch/",
    ] {
        probes.push(Probe {
            path,
            ..probe(&format!("POST {path}"), &[JSON, auth], EVENT)
        });
    }
    probes.push(Probe {
        chunked: true,
        ..probe("chunked, no Content-Length", &[JSON, auth], &two)
    });
    probes.push(Probe {
        chunked: true,
        ..probe("chunked, over the limit", &[JSON, auth], &big)
    });
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
    let generated = if hostile_generated {
        hostile::generated()
    } else {
        Vec::new()
    };
    for case in hostile::corpus().into_iter().chain(generated) {
        let mut headers = vec![
            ("content-type", HeaderValue::from_static(case.content_type)),
            ("authorization", HeaderValue::from_str(&bearer).unwrap()),
        ];
        if let Some(encoding) = case.encoding {
            headers.push(("content-encoding", HeaderValue::from_static(encoding)));
        }
        probes.push(Probe {
            name: format!("hostile: {}", case.name),
            headers,
            body: case.body,
            expected: hostile_generated.then_some(case.expected),
            ..probe("", &[], "")
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

/// A header's value; the CORS layer's lists (`Access-Control-Allow-*`)
/// sorted, since it keeps them in a set whose order differs per process.
fn listed(name: &str, value: &[u8]) -> String {
    let value = String::from_utf8_lossy(value);
    if !name.starts_with("access-control-") {
        return value.into_owned();
    }
    let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
    items.sort_unstable();
    items.join(", ")
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
        headers.append(HeaderName::from_static(name), value);
    }
    let body = if probe.chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            probe.body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
    } else {
        reqwest::Body::from(probe.body.clone())
    };
    let response = server
        .http
        .request(
            probe.method.clone(),
            format!("{}{}", server.url, probe.path),
        )
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", probe.name));
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| (n.to_string(), listed(n.as_str(), v.as_bytes())))
        .collect();
    headers.sort();
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends raw bytes (what reqwest cannot send) and returns the answer's
/// head without its `date`, and the body that came with it.
fn raw(server: &TestServer, request: &str) -> String {
    let addr = server.url.trim_start_matches("http://");
    let request = request.replace("ADDR", addr);
    raw_exchange(server, request.as_bytes(), Duration::from_secs(2), |_| {
        false
    })
    .lines()
    .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Requests only a raw socket sends: no Host, an absolute URI, a client
/// that waits for `100 Continue`.
fn raw_probes(token: &str) -> Vec<String> {
    let event = EVENT;
    let n = event.len();
    vec![
        format!(
            "POST /api/ingest HTTP/1.0\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {n}\r\n\r\n{event}"
        ),
        format!(
            "POST http://ADDR/api/ingest HTTP/1.1\r\nHost: ADDR\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{event}"
        ),
        // Waits for 100 Continue: the answer comes before any body.
        format!(
            "POST /api/ingest HTTP/1.1\r\nHost: ADDR\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "POST /api/ingest HTTP/1.1\r\nHost: ADDR\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nExpect: 100-continue\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        ),
    ]
}

/// `rta_http_requests_total` lines of `/metrics`, as counted so far.
async fn counted(server: &TestServer) -> Vec<String> {
    let (_, text) = server.get("/metrics").await;
    text.as_str()
        .expect("the exposition format, as text")
        .lines()
        .filter(|line| line.starts_with("rta_http_requests_total{"))
        .map(str::to_string)
        .collect()
}

async fn both_ways_answer_alike(flags: &[&str], token: &str, hostile_generated: bool) {
    let direct = TestServer::start_with(flags).await;
    let routed = TestServer::start_with_env(flags, &[("RTA_INGEST_VIA_ROUTER", "1")]).await;
    // Each took the way it was meant to.
    let says_routed = |server: &TestServer| {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("go through the router"))
    };
    assert!(!says_routed(&direct) && says_routed(&routed));
    let mut statuses = std::collections::BTreeSet::new();
    for probe in probes(token, hostile_generated) {
        let (a, b) = (send(&direct, &probe).await, send(&routed, &probe).await);
        assert_eq!(
            a, b,
            "{}: the direct way answers as the router does",
            probe.name
        );
        if let Some(expected) = probe.expected {
            assert_eq!(a.status, expected, "{}: {}", probe.name, a.body);
        }
        statuses.insert(a.status);
    }
    for request in raw_probes(token) {
        assert_eq!(raw(&direct, &request), raw(&routed, &request), "{request}");
    }
    // Both servers stored the same: the same totals, type by type.
    let (a, b) = (direct.metrics("").await, routed.metrics("").await);
    assert_eq!(a["totalEvents"], b["totalEvents"]);
    assert_eq!(a["eventsByType"], b["eventsByType"]);
    assert!(a["totalEvents"].as_u64().unwrap() > 10, "{a}");
    // And counted the same answers for /metrics.
    assert_eq!(counted(&direct).await, counted(&routed).await);
    // The probes reach every answer the operation documents but 500 and 503.
    for status in [200, 400, 401, 403, 405, 413, 415, 422] {
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
    // The default body limit, so the hostile bodies reach the parser.
    both_ways_answer_alike(&[], "", true).await;
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
        false,
    )
    .await;
}
