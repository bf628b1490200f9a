//! The edges a new user and an attacker meet first, on the server's side:
//! cross-site writes, DNS rebinding, tokens, the docs and CORS, retention of
//! old events, quantiles of few values, and `Expect: 100-continue`.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{BIN, TestServer, measure, raw_exchange, type_metrics};

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Sends raw bytes and returns the head the server answered within `wait`.
fn raw(server: &TestServer, request: &[u8], wait: Duration) -> String {
    raw_exchange(server, request, wait, |answer| {
        answer.windows(4).any(|w| w == b"\r\n\r\n")
    })
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_refused_and_not_stored() {
    let server = TestServer::start().await;
    let event = json!({"type": "sales", "values": {"amount": 1}}).to_string();
    for path in ["/api/ingest", "/api/ingest/batch"] {
        // What a page on another site can send without a preflight.
        let none = server
            .http
            .post(format!("{}{path}", server.url))
            .body(event.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        let body: Value = none.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("no Content-Type"),
            "{body}"
        );
        for content_type in [
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let (status, body) = server.post(path, content_type, event.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} {content_type}: {body}"
            );
        }
    }
    assert_eq!(server.metrics("").await["totalEvents"], 0, "nothing stored");
    // The query route takes a body too.
    for content_type in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let (status, body) = server
            .post("/api/query", content_type, r#"{"by": ["type"]}"#)
            .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
    }
}

#[tokio::test]
async fn only_allowed_host_names_are_answered() {
    let server = TestServer::start_with(&["--allowed-host", "rta.example.com"]).await;
    let with_host = |path: &str, host: &str| {
        server
            .http
            .get(format!("{}{path}", server.url))
            .header("host", host)
            .send()
    };
    for path in [
        "/",
        "/api/metrics",
        "/healthz",
        "/api/openapi.json",
        "/nowhere",
    ] {
        let refused = with_host(path, "evil.example").await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = refused.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("--allowed-host evil.example"),
            "the refusal says which flag to pass: {message}"
        );
    }
    let port = addr(&server).rsplit_once(':').unwrap().1.to_string();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        "app.localhost".into(),
        "[::1]:8080".into(),
        "192.168.1.20".into(),
        "rta.example.com".into(),
        format!("RTA.example.com.:{port}"),
    ] {
        assert_eq!(
            with_host("/api/metrics", &host).await.unwrap().status(),
            StatusCode::OK,
            "{host}"
        );
    }
    for host in [
        "rta.example.com.evil.example",
        "localhost.evil.example",
        "x.rta.example.com",
    ] {
        assert_eq!(
            with_host("/healthz", host).await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{host}"
        );
    }
    // The WebSocket too: a rebinding page's Origin matches its own Host.
    let mut request = server.ws_url("").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(connect_async(request).await.is_err());

    let any = TestServer::start_with(&["--allowed-host", "*"]).await;
    let answer = any
        .http
        .get(format!("{}/healthz", any.url))
        .header("host", "behind.a.proxy")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let domain = TestServer::start_with(&["--allowed-host", "*.example.org"]).await;
    for (host, status) in [
        ("a.example.org", StatusCode::OK),
        ("example.org", StatusCode::OK),
        ("badexample.org", StatusCode::FORBIDDEN),
    ] {
        let answer = domain
            .http
            .get(format!("{}/healthz", domain.url))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{host}");
    }
}

#[tokio::test]
async fn empty_tokens_origins_without_scheme_and_zero_retention_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env_remove("RTA_TOKEN")
            .env_remove("RTA_READ_TOKEN");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    for (args, env, expected) in [
        (&["--token", ""][..], &[][..], "--token is empty"),
        (&[][..], &[("RTA_TOKEN", "")][..], "RTA_TOKEN"),
        (&["--read-token", ""][..], &[][..], "--read-token is empty"),
        (&["--token", "two words"][..], &[][..], "without spaces"),
        (
            &["--cors-origin", "intranet.example.com"][..],
            &[][..],
            "https://intranet.example.com",
        ),
        (
            &["--cors-origin", "https://a.example/path"][..],
            &[][..],
            "no path",
        ),
        (&["--retention", "0s"][..], &[][..], "at least one second"),
        (
            &["--allowed-host", "rta.example.com:8080"][..],
            &[][..],
            "without port",
        ),
    ] {
        let out = start(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn tokens_work_in_any_case_stay_out_of_urls_and_refusals_are_logged_without_flooding() {
    let server = TestServer::start_with(&["--token", "w-secret", "--read-token", "r-secret"]).await;
    let startup = server.logs.lock().unwrap().join("\n");
    assert!(
        startup.contains("ingest needs the --token") && startup.contains("needs the --read-token"),
        "the start says what is protected: {startup}"
    );
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let answer = server
            .http
            .get(format!("{}/api/metrics", server.url))
            .header("authorization", format!("{scheme} r-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{scheme}");
    }
    let ingest = server
        .http
        .post(format!("{}/api/ingest", server.url))
        .header("authorization", "bearer w-secret")
        .header("content-type", "application/json")
        .body(r#"{"type": "sales"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), StatusCode::OK);
    // In the URL only where a header cannot be sent: the WebSocket.
    let (status, _) = server.get("/api/metrics?access_token=r-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        connect_async(server.ws_url("?access_token=r-secret"))
            .await
            .is_ok()
    );

    // A flood of refusals: logged, at most one line per 10 s, token-free.
    for i in 0..60 {
        let answer = server
            .http
            .get(format!("{}/api/events", server.url))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let refusals = loop {
        let logs = server.logs.lock().unwrap().clone();
        let refusals: Vec<String> = logs
            .into_iter()
            .filter(|l| l.contains("refused a request"))
            .collect();
        if !refusals.is_empty() || Instant::now() > deadline {
            break refusals;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refusals.len(), 1, "one line for the flood: {refusals:?}");
    assert!(
        refusals[0].contains("WARN") && refusals[0].contains("/api/"),
        "{refusals:?}"
    );
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(
        !logs.contains("guess-") && !logs.contains("secret"),
        "no token in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn an_idempotency_key_that_is_not_printable_ascii_is_refused() {
    let server = TestServer::start().await;
    for key in [&b"cl\xc3\xa9"[..], b"two words", b"tab\there"] {
        let answer = server
            .http
            .post(format!("{}/api/ingest", server.url))
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key).unwrap(),
            )
            .body(r#"{"type": "sales"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{key:?}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{body}"
        );
    }
    assert_eq!(server.metrics("").await["totalEvents"], 0);
}

#[tokio::test]
async fn the_spec_declares_bearer_schemes_and_every_405_says_what_is_allowed() {
    let guarded = TestServer::start_with(&["--token", "w", "--read-token", "r"]).await;
    let (status, spec) = guarded.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["ingestToken"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["readToken"]["type"], "http");
    assert_eq!(
        spec["paths"]["/api/ingest"]["post"]["security"],
        json!([{"ingestToken": []}])
    );
    assert_eq!(
        spec["paths"]["/api/metrics"]["get"]["security"],
        json!([{"readToken": []}])
    );
    assert!(spec["paths"]["/healthz"]["get"].get("security").is_none());
    let open = TestServer::start().await;
    let (_, spec) = open.get("/api/openapi.json").await;
    assert!(
        spec["paths"]["/api/ingest"]["post"]
            .get("security")
            .is_none(),
        "an open server's spec requires no token"
    );

    let docs = open
        .http
        .get(format!("{}/docs", open.url))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = docs.text().await.unwrap();
    assert!(!page.contains("<script>"), "no inline script: {page}");

    for (method, path, allow) in [
        (reqwest::Method::POST, "/docs", "GET, HEAD"),
        (reqwest::Method::DELETE, "/docs", "GET, HEAD"),
        (reqwest::Method::PUT, "/api/openapi.json", "GET, HEAD"),
        (reqwest::Method::GET, "/api/ingest", "POST"),
        (reqwest::Method::PUT, "/api/ingest/batch", "POST"),
        (reqwest::Method::POST, "/api/metrics", "GET, HEAD"),
        (reqwest::Method::DELETE, "/api/events", "GET, HEAD"),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::POST, "/", "GET, HEAD"),
        (reqwest::Method::POST, "/assets/style.css", "GET, HEAD"),
    ] {
        let answer = open
            .http
            .request(method.clone(), format!("{}{path}", open.url))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(answer.headers()["allow"], allow, "{method} {path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
    for path in ["/docs", "/api/openapi.json", "/api/metrics", "/healthz"] {
        let head = open
            .http
            .head(format!("{}{path}", open.url))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
    }
}

#[tokio::test]
async fn cors_allows_what_rta_serves_and_varies_by_origin() {
    let server = TestServer::start_with(&["--cors-origin", "https://good.example"]).await;
    let preflight = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/ingest", server.url),
        )
        .header("origin", "https://good.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "idempotency-key")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    let header = |name: &str| {
        preflight.headers()[name]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
    };
    assert!(header("access-control-allow-headers").contains("idempotency-key"));
    let mut methods: Vec<String> = header("access-control-allow-methods")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    methods.sort();
    assert_eq!(methods, ["get", "head", "post"]);
    assert_eq!(header("vary"), "origin");
    for origin in [Some("https://good.example"), None] {
        let mut request = server.http.get(format!("{}/api/metrics", server.url));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.headers()["vary"], "Origin", "{origin:?}");
    }

    let any = TestServer::start_with(&["--cors-origin", "*"]).await;
    let answer = any
        .http
        .get(format!("{}/api/metrics", any.url))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://anyone.example"
    );
    let mut request = any.ws_url("").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://anyone.example".parse().unwrap());
    assert!(
        connect_async(request).await.is_ok(),
        "`*` opens the WebSocket to any page too"
    );
}

#[tokio::test]
async fn events_older_than_the_retention_are_refused_each_with_its_reason() {
    let server = TestServer::start_with(&["--retention", "2m"]).await;
    let now = chrono::Utc::now();
    let body = json!([
        {"type": "sales", "timestamp": "2023-04-01T12:00:00Z", "values": {"amount": 1}},
        {"type": "sales", "timestamp": (now - chrono::Duration::seconds(30)).to_rfc3339(), "values": {"amount": 2}},
        {"type": "sales", "timestamp": (now - chrono::Duration::minutes(3)).to_rfc3339(), "values": {"amount": 3}},
        {"type": "sales", "values": {"amount": 4}},
    ]);
    let (status, report) = server.ingest(&body).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["accepted"], 2);
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 2]
    );
    for r in rejected {
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("older than the server's retention (2m)"),
            "{r}"
        );
    }
    // One old event alone: nothing valid, so 422, and nothing stored.
    let (status, _) = server.ingest(&body[0]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(server.metrics("").await["totalEvents"], 2);
}

#[tokio::test]
async fn quantiles_of_few_values_are_nearest_rank_and_stay_inside_the_data() {
    let server = TestServer::start().await;
    let events = |kind: &str, values: &[f64]| -> Value {
        values
            .iter()
            .map(|x| json!({"type": kind, "values": {"x": x}}))
            .collect()
    };
    server.ingest(&events("two", &[1.0, 1000.0])).await;
    server.ingest(&events("pair", &[3.0, 4.0])).await;
    let many: Vec<f64> = (0..500).map(|i| 3.0 + (i % 2) as f64).collect();
    server.ingest(&events("many", &many)).await;
    for query in ["", "?window=1h"] {
        let metrics = server.metrics(query).await;
        let two = measure(type_metrics(&metrics, "two"), "x");
        assert_eq!(two["p99"], 1000.0, "{query}: {two}");
        assert_eq!(two["p50"], 1.0, "{query}: {two}");
        let pair = measure(type_metrics(&metrics, "pair"), "x");
        assert_eq!(pair["p50"], 3.0, "{query}: {pair}");
        let many = measure(type_metrics(&metrics, "many"), "x");
        for p in ["p50", "p90", "p95", "p99"] {
            let x = many[p].as_f64().unwrap();
            assert!(
                (3.0..=4.0).contains(&x),
                "{query}: {p} = {x} outside [3, 4]"
            );
        }
    }
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    let server = TestServer::start_with(&["--max-body", "1KiB"]).await;
    let request = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
        addr(&server)
    );
    // No body follows: a server that said `100 Continue` would wait for it.
    let answer = raw(&server, request.as_bytes(), Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "an immediate 413, not 100 Continue: {answer:?}"
    );
    // Within the limit, the client still gets 100 Continue and is stored.
    let small = r#"{"type":"sales"}"#;
    let request = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        addr(&server),
        small.len()
    );
    let answer = raw(&server, request.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer:?}");
}
