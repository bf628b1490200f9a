//! The API's own description: the OpenAPI document, completed with the
//! bearer schemes this server enforces, and the `/docs` page that renders it
//! with Swagger UI (from the npm registry, served from `/assets/` like the
//! dashboard's scripts, so the page runs no inline script).

use std::sync::Arc;

use poem::web::Data;
use poem::{Response, handler};
use poem_openapi::OpenApiService;
use serde_json::{Value, json};

use super::ServeConfig;

/// The docs page may only be framed by itself (Swagger UI does not need
/// frames) and loads everything from this server.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

const DOCS_HTML: &str = include_str!("../../web/docs.html");

/// The OpenAPI document as served, made once at start.
pub struct Spec(String);

/// Operations that need the ingest token when the server has one.
const INGEST_OPERATIONS: &[&str] = &["/api/ingest", "/api/ingest/batch"];
/// Operations that need the read token when the server has one.
const READ_OPERATIONS: &[&str] = &["/api/metrics", "/api/events", "/api/query"];

impl Spec {
    pub fn new<T: poem_openapi::OpenApi>(
        api: &OpenApiService<T, ()>,
        config: &ServeConfig,
    ) -> Self {
        let mut spec: Value = serde_json::from_str(&api.spec()).unwrap_or_else(|_| json!({}));
        add_security(&mut spec, config);
        add_constraints(&mut spec);
        add_event_formats(&mut spec);
        Self(serde_json::to_string_pretty(&spec).unwrap_or_default())
    }
}

/// Declares the bearer schemes, and on each operation the one this server
/// requires, so readers see which routes need a token and `/docs` can send it.
fn add_security(spec: &mut Value, config: &ServeConfig) {
    spec["components"]["securitySchemes"] = json!({
        "ingestToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token `rta serve --token` was started with. Required for ingest when set."
        },
        "readToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token `rta serve --read-token` was started with (the --token works too). Required for reading when set."
        }
    });
    let mut require = |paths: &[&str], scheme: &str| {
        for path in paths {
            if let Some(Value::Object(methods)) = spec["paths"].get_mut(*path) {
                for operation in methods.values_mut() {
                    operation["security"] = json!([{ scheme: [] }]);
                }
            }
        }
    };
    if config.token.is_some() {
        require(INGEST_OPERATIONS, "ingestToken");
    }
    if config.read_token.is_some() {
        require(READ_OPERATIONS, "readToken");
    }
}

/// States in the spec the limits the handlers enforce with their own
/// messages (poem-openapi's validators would answer with theirs), from the
/// same constants, so the spec and the server agree; `tests/it/spec.rs`
/// checks each both ways.
fn add_constraints(spec: &mut Value) {
    let max_type = crate::event::Limits::default().max_type_len;
    let type_schema = json!({
        "type": "string",
        "pattern": format!("^[A-Za-z0-9_.-]{{1,{max_type}}}$"),
        "minLength": 1,
        "maxLength": max_type,
    });
    let constraints: [(&str, &str, Value); 7] = [
        ("/api/metrics", "type", type_schema.clone()),
        ("/api/events", "type", type_schema.clone()),
        (
            "/api/metrics",
            "top",
            json!({"type": "integer", "format": "uint32", "minimum": 1, "maximum": super::metrics::MAX_TOP}),
        ),
        (
            "/api/events",
            "limit",
            json!({"type": "integer", "format": "uint64", "minimum": 1}),
        ),
        (
            "/api/events",
            "order",
            json!({"type": "string", "enum": ["newest", "oldest"]}),
        ),
        (
            "/api/events",
            "format",
            json!({"type": "string", "enum": ["json", "ndjson", "csv"]}),
        ),
        (
            "/api/ingest",
            "Idempotency-Key",
            json!({"type": "string", "pattern": format!("^[!-~]{{1,{}}}$", super::api::MAX_KEY_LEN), "minLength": 1, "maxLength": super::api::MAX_KEY_LEN}),
        ),
    ];
    for (path, name, schema) in constraints {
        let paths = if path == "/api/ingest" {
            vec![path, "/api/ingest/batch"]
        } else {
            vec![path]
        };
        for path in paths {
            let Some(Value::Object(methods)) = spec["paths"].get_mut(path) else {
                continue;
            };
            for operation in methods.values_mut() {
                let Some(Value::Array(params)) = operation.get_mut("parameters") else {
                    continue;
                };
                for param in params.iter_mut().filter(|p| p["name"] == name) {
                    param["schema"] = schema.clone();
                }
            }
        }
    }
    spec["components"]["schemas"]["QueryIn"]["properties"]["type"] = type_schema;
}

/// poem-openapi keeps one body per status, and `GET /api/events` answers
/// 200 in three formats: the spec lists them all.
fn add_event_formats(spec: &mut Value) {
    let ok = &mut spec["paths"]["/api/events"]["get"]["responses"]["200"];
    if !ok.is_object() {
        return;
    }
    let streamed = json!({"schema": {"type": "string", "format": "binary"}});
    ok["description"] = json!(
        "A page of events (JSON), with `X-Next-Cursor` when more remain; with `format=ndjson` (one JSON object a line) or `format=csv`, every matching event, streamed."
    );
    ok["content"] = json!({
        "application/json; charset=utf-8": {
            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/EventOut"}}
        },
        "application/x-ndjson": streamed,
        "text/csv; charset=utf-8": streamed,
    });
    ok["headers"]["X-Next-Cursor"] = json!({
        "description": "Pass as `cursor` for the next page; absent on the last.",
        "schema": {"type": "string"},
    });
}

#[handler]
pub fn spec_json(Data(spec): Data<&Arc<Spec>>) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .header(poem::http::header::CACHE_CONTROL, "no-cache")
        .body(spec.0.clone())
}

#[handler]
pub fn page() -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(poem::http::header::CACHE_CONTROL, "no-cache")
        .header(poem::http::header::CONTENT_SECURITY_POLICY, DOCS_CSP)
        .body(DOCS_HTML)
}
