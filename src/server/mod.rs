//! `rta serve`: the poem application that ties storage, engine, API,
//! WebSocket hub and dashboard together.
//!
//! Flow: ingest -> [`Store::append`] (durable) -> [`Feed`] -> engine and hub.
//! The server takes its listener and its shutdown signal, so tests run it on
//! port 0 and `main` decides how to stop it.

mod api;
mod models;
mod web;
mod ws;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::middleware::SetHeader;
use poem::web::websocket::WebSocket;
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, Server, get, handler};
use poem_openapi::OpenApiService;
use tokio::sync::watch;

use crate::engine::{self, Engine, EngineConfig};
use crate::event::{Limits, Timestamp};
use crate::feed::{CommittedBatch, Feed, Subscriber};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

pub use api::MetricsParams;

/// Everything `rta serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// Delete events older than this (by timestamp).
    pub retention: Option<Duration>,
    /// Required as a Bearer token on ingest when set.
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub limits: Limits,
    pub engine: EngineConfig,
    /// How often WebSocket clients get an update at most.
    pub push_interval: Duration,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            retention: None,
            token: None,
            max_body_bytes: 16 * 1024 * 1024,
            limits: Limits::default(),
            engine: EngineConfig::default(),
            push_interval: Duration::from_millis(250),
        }
    }
}

/// The engine shared by the API, the hub and the feed.
pub struct LiveEngine {
    engine: Mutex<Engine>,
}

impl LiveEngine {
    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn query(&self, query: &engine::Query) -> engine::Snapshot {
        self.lock().query(query, Timestamp::now())
    }

    pub fn version(&self) -> u64 {
        self.lock().version()
    }
}

impl Subscriber for LiveEngine {
    fn on_commit(&self, batch: &CommittedBatch) {
        self.lock()
            .apply_committed(batch.first_seq, &batch.events, Timestamp::now());
    }
}

pub struct AppState {
    pub config: ServeConfig,
    pub store: Arc<dyn Store>,
    pub engine: Arc<LiveEngine>,
}

/// Opens the data directory and rebuilds the engine from what it holds.
fn build_engine(store: &dyn Store, config: EngineConfig) -> anyhow::Result<(Engine, u64)> {
    let mut engine = Engine::new(config);
    let now = Timestamp::now();
    let n = store.scan(0, &mut |first, events| {
        engine.apply_committed(first, events, now)
    })?;
    Ok((engine, n))
}

/// Binds `addr`; the returned acceptor knows its real port (for port 0).
pub async fn bind(addr: &str) -> anyhow::Result<TcpAcceptor> {
    poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind(addr.to_string()))
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Runs the server on `acceptor` until `shutdown` resolves, then drains
/// requests and flushes pending writes.
pub async fn run(
    acceptor: TcpAcceptor,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let feed = Arc::new(Feed::default());
    let dir = config.data_dir.clone();
    let store: Arc<dyn Store> = {
        let feed = feed.clone();
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(&dir, feed)).await??)
    };
    let (engine, rebuilt) = {
        let store = store.clone();
        let engine_config = config.engine;
        tokio::task::spawn_blocking(move || build_engine(&*store, engine_config)).await??
    };
    let engine = Arc::new(LiveEngine {
        engine: Mutex::new(engine),
    });
    let hub = Arc::new(ws::Hub::new(engine.clone(), config.push_interval));
    for event in store.recent(50, None).await?.into_iter().rev() {
        hub.on_commit(&CommittedBatch {
            first_seq: event.seq,
            events: vec![event.event],
        });
    }
    feed.subscribe(engine.clone());
    feed.subscribe(hub.clone());

    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the listener has no address")?;
    tracing::info!(
        "listening on http://{local}, storing in {} ({rebuilt} events loaded in {} ms)",
        config.data_dir.display(),
        started.elapsed().as_millis()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let hub_task = tokio::spawn(hub.clone().run(stopped()));
    let retention_task = config.retention.map(|keep| {
        tokio::spawn(retention_loop(
            store.clone(),
            engine.clone(),
            config.engine,
            keep,
            stopped(),
        ))
    });

    let state = Arc::new(AppState {
        config,
        store: store.clone(),
        engine,
    });
    let app = routes(state, hub);
    let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        app,
        async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests and flushing writes");
            let _ = stop_tx.send(true);
        },
        Some(Duration::from_secs(10)),
    );
    let result = server.await;
    let _ = hub_task.await;
    if let Some(task) = retention_task {
        task.abort();
    }
    store.close().await;
    tracing::info!("stopped");
    result.context("the server failed")
}

fn routes(state: Arc<AppState>, hub: Arc<ws::Hub>) -> impl poem::Endpoint {
    let api = OpenApiService::new(api::Api { state }, "rta", env!("CARGO_PKG_VERSION"))
        .description(include_str!("api_description.md"));
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/", api)
        .at("/api/openapi.json", spec)
        .nest("/docs", docs)
        .at("/api/ws", get(ws_handler))
        .at("/assets/*path", get(web::asset))
        .data(hub)
        .with(SetHeader::new().overriding("X-Content-Type-Options", "nosniff"))
        .catch_all_error(|err: poem::Error| async move {
            let status = err.status();
            let body = serde_json::json!({
                "error": status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"),
                "message": err.to_string(),
            });
            Response::builder()
                .status(status)
                .content_type("application/json")
                .body(body.to_string())
        })
}

#[handler]
fn ws_handler(
    ws: WebSocket,
    Query(params): Query<MetricsParams>,
    Data(hub): Data<&Arc<ws::Hub>>,
) -> Response {
    let query = match params.to_query() {
        Ok(q) => q,
        Err(message) => {
            return Response::builder()
                .status(poem::http::StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(serde_json::json!({"error": "bad_request", "message": message}).to_string());
        }
    };
    let key = format!("{params:?}");
    let hub = hub.clone();
    ws.on_upgrade(move |socket| hub.serve(socket, key, query))
        .into_response()
}

/// Deletes expired events now and then; after a deletion, rebuilds the
/// engine so all-time aggregates match what is stored.
async fn retention_loop(
    store: Arc<dyn Store>,
    engine: Arc<LiveEngine>,
    config: EngineConfig,
    keep: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let period = (keep / 60).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut ticker = tokio::time::interval(period);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => return,
        }
        let cutoff = Timestamp::from_millis(Timestamp::now().millis() - keep.as_millis() as i64)
            .unwrap_or_else(|| Timestamp::from_millis(0).expect("0 is a valid timestamp"));
        match store.delete_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(deleted = n, "retention removed events older than {cutoff}");
                if let Err(e) = rebuild(store.clone(), engine.clone(), config).await {
                    tracing::error!("could not rebuild the engine after retention: {e:#}");
                }
            }
            Err(e) => tracing::error!("retention failed: {e}"),
        }
    }
}

/// Rebuilds the engine from the store without missing or doubling events
/// committed meanwhile (the engine skips sequence numbers it has seen).
async fn rebuild(
    store: Arc<dyn Store>,
    live: Arc<LiveEngine>,
    config: EngineConfig,
) -> anyhow::Result<()> {
    let scan_store = store.clone();
    let (mut fresh, _) =
        tokio::task::spawn_blocking(move || build_engine(&*scan_store, config)).await??;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut engine = live.lock();
        let now = Timestamp::now();
        store.scan(fresh.last_seq(), &mut |first, events| {
            fresh.apply_committed(first, events, now)
        })?;
        *engine = fresh;
        Ok(())
    })
    .await?
}
