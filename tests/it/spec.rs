//! The API keeps its word: every operation is driven into each answer its
//! spec lists, and every JSON answer is validated against the schema the
//! spec gives for that status (no `null` where it says integer, no field it
//! does not describe as optional left out). The limits the spec states on
//! parameters are checked both ways against the server. Errors outside
//! the operations (the catch-all, 405, the WebSocket upgrade) share the
//! same `{error, message}` body.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::fixture;
use crate::helpers::TestServer;

/// Answers that cannot be caused from outside: an internal error. (A store
/// that cannot write, 503 on ingest, is driven in `faults.rs` on a full
/// tmpfs, which needs root.)
const NOT_DRIVEN: &[(&str, &str, u16)] = &[
    ("post", "/api/ingest", 500),
    ("post", "/api/ingest/batch", 500),
    ("post", "/api/ingest", 503),
    ("post", "/api/ingest/batch", 503),
    // The alert book (a SQLite file of its own) failing.
    ("get", "/api/alerts", 503),
    ("post", "/api/alerts", 503),
    ("delete", "/api/alerts/{name}", 503),
];

struct Spec {
    doc: Value,
    /// The components, with OpenAPI 3.0's `nullable` turned into JSON Schema.
    components: Value,
    driven: BTreeSet<(String, String, u16)>,
}

/// OpenAPI 3.0 says `nullable: true` where JSON Schema says `"type": [t, "null"]`.
fn json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect();
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                } else {
                    return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

impl Spec {
    async fn load(server: &TestServer) -> Spec {
        let (status, doc) = server.get("/api/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let components = json_schema(&doc["components"]);
        Spec {
            doc,
            components,
            driven: BTreeSet::new(),
        }
    }

    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        let root = json!({"allOf": [schema], "components": self.components});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: the spec's schema compiles: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not match its schema:\n{}\n{body}",
            errors.join("\n")
        );
    }

    /// Checks an operation's answer: its status is listed, and a JSON body
    /// matches the schema given for it.
    fn check(
        &mut self,
        method: &str,
        path: &str,
        status: StatusCode,
        content_type: &str,
        body: &Value,
    ) {
        let what = format!("{} {path} -> {status}", method.to_uppercase());
        let response = &self.doc["paths"][path][method]["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{what}: the spec does not list this answer: {body}"
        );
        if content_type.starts_with("application/json") {
            let schema = &response["content"]["application/json; charset=utf-8"]["schema"];
            let schema = if schema.is_object() {
                schema
            } else {
                &response["content"]["application/json"]["schema"]
            };
            assert!(
                schema.is_object(),
                "{what}: a JSON body the spec gives no schema for"
            );
            self.validate(schema, body, &what);
        }
        self.driven
            .insert((method.into(), path.into(), status.as_u16()));
    }

    /// Whether a value fits a schema of the spec.
    fn fits(&self, schema: &Value, value: &Value) -> bool {
        let root = json!({"allOf": [schema], "components": self.components});
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&root)
            .expect("the spec's schema compiles")
            .is_valid(value)
    }

    fn check_error(&self, what: &str, body: &Value) {
        self.validate(
            &json!({"$ref": "#/components/schemas/ApiError"}),
            body,
            what,
        );
    }

    /// Every (operation, status) the spec lists was driven.
    fn all_driven(&self) {
        let mut missing = Vec::new();
        for (path, methods) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                for status in op["responses"].as_object().unwrap().keys() {
                    let status: u16 = status.parse().unwrap();
                    let key = (method.clone(), path.clone(), status);
                    if !self.driven.contains(&key)
                        && !NOT_DRIVEN.contains(&(method.as_str(), path.as_str(), status))
                    {
                        missing.push(format!("{} {path} {status}", method.to_uppercase()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "answers listed in the spec but never driven: {missing:?}"
        );
    }
}

struct Call<'a> {
    server: &'a TestServer,
    token: Option<&'a str>,
}

impl Call<'_> {
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String, Value) {
        let mut req = self
            .server
            .http
            .request(method, format!("{}{path_and_query}", self.server.url))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(token) = self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, ct, json)
    }
}

fn path_of(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or_default()
}

#[tokio::test]
async fn every_answer_matches_the_published_schema() {
    let server =
        TestServer::start_with(&["--token", "w", "--read-token", "r", "--max-body", "64KiB"]).await;
    let mut spec = Spec::load(&server).await;
    let writer = Call {
        server: &server,
        token: Some("w"),
    };
    let reader = Call {
        server: &server,
        token: Some("r"),
    };
    let nobody = Call {
        server: &server,
        token: None,
    };
    let lines = std::fs::read_to_string(fixture("events.jsonl")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    for chunk in lines.chunks(200) {
        let (status, _, body) = writer
            .send(
                Method::POST,
                "/api/ingest",
                Some("application/x-ndjson"),
                chunk.join("\n").into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Ingest, both paths.
    for path in ["/api/ingest", "/api/ingest/batch"] {
        let big = format!(
            "[{}]",
            vec![r#"{"type":"t","values":{"n":1}}"#; 3000].join(",")
        );
        let cases: Vec<(&Call, Option<&str>, Vec<u8>, StatusCode)> = vec![
            (
                &writer,
                Some("application/json"),
                br#"{"type":"sales","values":{"amount":1}}"#.to_vec(),
                StatusCode::OK,
            ),
            (
                &writer,
                Some("application/json"),
                br#"[{"type":"sales"},{"values":{}}]"#.to_vec(),
                StatusCode::OK,
            ),
            (
                &writer,
                Some("application/json"),
                b"{".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                &nobody,
                Some("application/json"),
                b"{}".to_vec(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                &writer,
                Some("application/json"),
                big.into_bytes(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                &writer,
                Some("text/plain"),
                b"{}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                &writer,
                Some("application/json"),
                br#"[{"values":{}}]"#.to_vec(),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (who, ct, body, expected) in cases {
            let (status, ct, body) = who.send(Method::POST, path, ct, body).await;
            assert_eq!(status, expected, "POST {path}: {body}");
            spec.check("post", path, status, &ct, &body);
        }
    }

    // Reads: each view of the metrics, queries, events.
    let gets: Vec<(&Call, &str, StatusCode)> = vec![
        (&reader, "/api/metrics", StatusCode::OK),
        (&reader, "/api/metrics?window=5m", StatusCode::OK),
        (
            &reader,
            "/api/metrics?type=sales&by=region&field=amount&window=1h",
            StatusCode::OK,
        ),
        (
            &reader,
            "/api/metrics?type=sales&by=region&field=amount&from=2023-04-01&to=2023-04-02",
            StatusCode::OK,
        ),
        (
            &reader,
            "/api/metrics?window=3650d&where=region%3DEurope&where=amount%3E100",
            StatusCode::OK,
        ),
        (&reader, "/api/metrics?type=nothing_yet", StatusCode::OK),
        (&reader, "/api/metrics?type=", StatusCode::BAD_REQUEST),
        (&reader, "/api/metrics?top=101", StatusCode::BAD_REQUEST),
        (&nobody, "/api/metrics", StatusCode::UNAUTHORIZED),
        (&reader, "/api/events?limit=3&type=sales", StatusCode::OK),
        (
            &reader,
            "/api/events?limit=2&order=oldest&where=region%3DEurope&from=2023-04-01",
            StatusCode::OK,
        ),
        (&reader, "/api/events?type=", StatusCode::BAD_REQUEST),
        (
            &reader,
            "/api/events?order=sideways",
            StatusCode::BAD_REQUEST,
        ),
        (&nobody, "/api/events", StatusCode::UNAUTHORIZED),
        (&reader, "/healthz", StatusCode::OK),
        (&reader, "/api/status", StatusCode::OK),
        (&nobody, "/api/status", StatusCode::UNAUTHORIZED),
        (&reader, "/metrics", StatusCode::OK),
        (&nobody, "/metrics", StatusCode::UNAUTHORIZED),
        (&nobody, "/", StatusCode::OK),
    ];
    for (who, url, expected) in gets {
        let (status, ct, body) = who.send(Method::GET, url, None, Vec::new()).await;
        assert_eq!(status, expected, "GET {url}: {body}");
        spec.check("get", path_of(url), status, &ct, &body);
    }
    let queries: Vec<(&Call, Value, StatusCode)> = vec![
        (&reader, json!({}), StatusCode::OK),
        (
            &reader,
            json!({"window": "all", "by": ["type"]}),
            StatusCode::OK,
        ),
        (
            &reader,
            json!({"type": "sales", "by": ["region", "time:hour"], "stats": ["p95:amount", "distinct:channel", "top:channel", "last:units"], "top": 2}),
            StatusCode::OK,
        ),
        (
            &reader,
            json!({"where": ["region=Nowhere"], "by": ["channel"]}),
            StatusCode::OK,
        ),
        (&reader, json!({"type": ""}), StatusCode::BAD_REQUEST),
        (&reader, json!({"by": ["regoin"]}), StatusCode::BAD_REQUEST),
        (&nobody, json!({}), StatusCode::UNAUTHORIZED),
    ];
    for (who, query, expected) in queries {
        let (status, ct, body) = who
            .send(
                Method::POST,
                "/api/query",
                Some("application/json"),
                query.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, expected, "POST /api/query {query}: {body}");
        spec.check("post", "/api/query", status, &ct, &body);
    }

    // Alert rules: added once, refused with the part at fault, listed, removed.
    let rule = json!({"name": "spec-rule", "type": "sales", "where": ["region=Europe"],
        "stat": "p95:amount", "window": "5m", "above": 100, "for": "1m",
        "webhook": "https://hooks.example/rta"});
    let short = json!({"name": "short", "window": "5s", "absent": true, "webhook": "https://hooks.example/"});
    let calls: Vec<(&Call, Method, &str, Option<&Value>, StatusCode)> = vec![
        (
            &writer,
            Method::POST,
            "/api/alerts",
            Some(&rule),
            StatusCode::CREATED,
        ),
        (
            &writer,
            Method::POST,
            "/api/alerts",
            Some(&rule),
            StatusCode::CONFLICT,
        ),
        (
            &writer,
            Method::POST,
            "/api/alerts",
            Some(&short),
            StatusCode::BAD_REQUEST,
        ),
        (
            &reader,
            Method::POST,
            "/api/alerts",
            Some(&rule),
            StatusCode::UNAUTHORIZED,
        ),
        (&reader, Method::GET, "/api/alerts", None, StatusCode::OK),
        (
            &nobody,
            Method::GET,
            "/api/alerts",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            &reader,
            Method::DELETE,
            "/api/alerts/spec-rule",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            &writer,
            Method::DELETE,
            "/api/alerts/spec-rule",
            None,
            StatusCode::NO_CONTENT,
        ),
        (
            &writer,
            Method::DELETE,
            "/api/alerts/spec-rule",
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (who, method, path, body, expected) in calls {
        let (content_type, bytes) = match body {
            Some(b) => (Some("application/json"), b.to_string().into_bytes()),
            None => (None, Vec::new()),
        };
        let (status, ct, answer) = who.send(method.clone(), path, content_type, bytes).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        if status == StatusCode::BAD_REQUEST {
            assert!(
                answer["message"].as_str().unwrap().contains("window"),
                "{answer}"
            );
        }
        if method == Method::GET && status == StatusCode::OK {
            assert_eq!(answer[0]["name"], "spec-rule", "{answer}");
            assert_eq!(answer[0]["state"], "ok");
            assert_eq!(
                answer[0]["webhook"], "https://hooks.example/…",
                "no secret path"
            );
        }
        let template = if path.starts_with("/api/alerts/") {
            "/api/alerts/{name}"
        } else {
            path
        };
        spec.check(
            &method.as_str().to_lowercase(),
            template,
            status,
            &ct,
            &answer,
        );
    }

    // The limits the spec states are the server's, both ways.
    let type_param = &spec.doc["paths"]["/api/metrics"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "type")
        .unwrap()["schema"];
    let longest = type_param["maxLength"].as_u64().unwrap() as usize;
    for (kind, ok) in [
        ("a".repeat(longest), true),
        ("a".repeat(longest + 1), false),
        ("a b".into(), false),
        ("x.y-z_1".into(), true),
    ] {
        let (status, _, body) = reader
            .send(
                Method::GET,
                &format!("/api/metrics?type={}", kind.replace(' ', "%20")),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(
            spec.fits(type_param, &json!(kind)),
            ok,
            "the spec's schema {type_param} on {kind:?}"
        );
        assert_eq!(status == StatusCode::OK, ok, "type={kind:?}: {body}");
    }
    let top = &spec.doc["paths"]["/api/metrics"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "top")
        .unwrap()["schema"];
    for (n, ok) in [
        (top["minimum"].as_u64().unwrap(), true),
        (top["maximum"].as_u64().unwrap(), true),
        (0, false),
        (top["maximum"].as_u64().unwrap() + 1, false),
    ] {
        assert_eq!(
            spec.fits(top, &json!(n)),
            ok,
            "the spec's schema {top} on {n}"
        );
        let (status, _, _) = reader
            .send(
                Method::GET,
                &format!("/api/metrics?top={n}"),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(status == StatusCode::OK, ok, "top={n}");
    }

    // Outside the operations: the same error body.
    for (who, method, url, expected) in [
        (&reader, Method::GET, "/nowhere", StatusCode::NOT_FOUND),
        (
            &reader,
            Method::PUT,
            "/api/metrics",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let (status, _, body) = who.send(method.clone(), url, None, Vec::new()).await;
        assert_eq!(status, expected, "{method} {url}: {body}");
        spec.check_error(&format!("{method} {url}"), &body);
    }
    // A WebSocket handshake refused: without the token, with a bad view, from another site.
    for (token, origin, url, expected) in [
        (None, None, "/api/ws", StatusCode::UNAUTHORIZED),
        (
            Some("r"),
            None,
            "/api/ws?where=nosuch%3D1",
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("r"),
            Some("https://evil.example"),
            "/api/ws",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let mut req = server
            .http
            .get(format!("{}{url}", server.url))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, expected, "{url}: {body}");
        spec.check_error(url, &body);
    }

    // A store that cannot be read: 503 on every route that reads it.
    std::fs::remove_file(server.dir.path().join("events.db")).unwrap();
    for url in [
        "/api/metrics?window=30d&where=region%3DEurope",
        "/api/events?limit=1",
    ] {
        let (status, ct, body) = reader.send(Method::GET, url, None, Vec::new()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "GET {url}: {body}");
        spec.check("get", path_of(url), status, &ct, &body);
    }
    let (status, ct, body) = reader
        .send(
            Method::POST,
            "/api/query",
            Some("application/json"),
            br#"{"where": ["region=Europe"]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    spec.check("post", "/api/query", status, &ct, &body);

    spec.all_driven();
}
