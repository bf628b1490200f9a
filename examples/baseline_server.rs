//! The benchmark's baseline: the least a server can do for `POST /api/ingest`.
//! It reads the body, parses it into rta's own `Event`s with rta's own
//! parser, and throws them away: no storage, no engine, no WebSocket. The
//! ratio of rta's throughput to this server's, measured in the same run,
//! says how much of the machine's HTTP+JSON ceiling rta's pipeline keeps.
//!
//! cargo run --release --example baseline_server -- 127.0.0.1:9090

use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{Body, EndpointExt, Request, Response, Route, Server, handler, post};
use rta::event::{BodyFormat, Limits, Timestamp, parse_body};

#[handler]
async fn ingest(req: &Request, body: Body, Data(limits): Data<&Limits>) -> Response {
    let format = match req.content_type() {
        Some(ct) if ct.starts_with("application/x-ndjson") => BodyFormat::Ndjson,
        _ => BodyFormat::Json,
    };
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(e.to_string());
        }
    };
    match parse_body(&bytes, format, limits, Timestamp::now()) {
        Ok(parsed) => Response::builder()
            .content_type("application/json")
            .body(format!(
                r#"{{"accepted":{},"rejected":{}}}"#,
                parsed.events.len(),
                parsed.rejected.len()
            )),
        Err(e) => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(e.0),
    }
}

/// The same allocator as rta, so the ratio compares pipelines, not allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let app = Route::new()
        .at("/api/ingest", post(ingest))
        .data(Limits::default());
    eprintln!("baseline listening on http://{addr}");
    Server::new(TcpListener::bind(addr)).run(app).await
}
