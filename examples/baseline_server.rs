//! The benchmark's baselines: the least a server can do for `POST /api/ingest`.
//!
//! Plain: it reads the body, parses it into rta's own `Event`s with rta's
//! own parser, and throws them away: no storage, no engine, no WebSocket.
//! The ratio of rta's throughput to this server's, measured in the same
//! run, says how much of the machine's HTTP+JSON ceiling rta's pipeline
//! keeps.
//!
//! Durable (`--durable FILE`): the same, plus the least a server that
//! promises durability must do: each request's bytes go to one writer
//! thread, which writes every request waiting into a preallocated,
//! zero-filled log (so a flush writes data, never the file's size) with one
//! `fdatasync` per group, and only then are they answered. The ratio of rta
//! to this one says what rta spends beyond what durability costs.
//!
//! cargo run --release --example baseline_server -- 127.0.0.1:9090 [--durable /tmp/log]

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{Body, EndpointExt, Request, Response, Route, Server, handler, post};
use rta::event::{BodyFormat, Limits, Timestamp, parse_body};
use tokio::sync::oneshot;

/// The log's size; writes wrap around at its end (it only has to cost what
/// a real log costs, not keep anything).
const LOG_BYTES: u64 = 256 * 1024 * 1024;

/// Hands a request's bytes to the writer; answers once they are flushed.
#[derive(Clone)]
struct Log(Option<mpsc::Sender<(bytes::Bytes, oneshot::Sender<()>)>>);

#[handler]
async fn ingest(
    req: &Request,
    body: Body,
    Data(limits): Data<&Limits>,
    Data(log): Data<&Log>,
) -> Response {
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
    let parsed = match parse_body(&bytes, format, limits, Timestamp::now()) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(e.0);
        }
    };
    if let Log(Some(writer)) = log {
        let (done, flushed) = oneshot::channel();
        if writer.send((bytes, done)).is_err() || flushed.await.is_err() {
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body("the log writer stopped");
        }
    }
    Response::builder()
        .content_type("application/json")
        .body(format!(
            r#"{{"accepted":{},"rejected":{}}}"#,
            parsed.events.len(),
            parsed.rejected.len()
        ))
}

/// Group commit: every request waiting, written at once, one `fdatasync`.
fn write_log(file: File, requests: mpsc::Receiver<(bytes::Bytes, oneshot::Sender<()>)>) {
    let mut offset = 0u64;
    let mut group = Vec::new();
    while let Ok(first) = requests.recv() {
        group.push(first);
        while let Ok(more) = requests.try_recv() {
            group.push(more);
        }
        for (bytes, _) in &group {
            let len = bytes.len() as u64 + 8;
            if offset + len > LOG_BYTES {
                offset = 0;
            }
            let mut record = Vec::with_capacity(len as usize);
            record.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            record.extend_from_slice(bytes);
            if let Err(e) = file.write_all_at(&record, offset) {
                eprintln!("baseline log: {e}");
                return;
            }
            offset += len;
        }
        if let Err(e) = file.sync_data() {
            eprintln!("baseline log: {e}");
            return;
        }
        for (_, done) in group.drain(..) {
            let _ = done.send(());
        }
    }
}

/// A zero-filled file of `LOG_BYTES`, flushed, so that later flushes write
/// only data.
fn preallocate(path: &str) -> std::io::Result<File> {
    let mut file = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..LOG_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    Ok(file)
}

/// The same allocator as rta, so the ratio compares pipelines, not allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let log = match args.iter().position(|a| a == "--durable") {
        Some(i) => {
            let path = args
                .get(i + 1)
                .ok_or_else(|| std::io::Error::other("--durable needs the log file's path"))?;
            let file = preallocate(path)?;
            let (sender, requests) = mpsc::channel();
            std::thread::spawn(move || write_log(file, requests));
            Log(Some(sender))
        }
        None => Log(None),
    };
    let durable = log.0.is_some();
    let app = Route::new()
        .at("/api/ingest", post(ingest))
        .data(Limits::default())
        .data(log);
    eprintln!(
        "{} baseline listening on http://{addr}",
        if durable { "durable" } else { "plain" }
    );
    Server::new(TcpListener::bind(addr)).run(app).await
}
