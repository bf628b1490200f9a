//! `rta serve`: the poem application that ties storage, engine, API,
//! WebSocket hub and dashboard together.
//!
//! Flow: ingest -> [`Store::append`] (durable) -> [`Feed`] -> engine and hub.
//! The server takes its listener and its shutdown signal, so tests run it on
//! port 0 and `main` decides how to stop it.

mod access;
mod alerts;
mod api;
mod backend;
mod docs;
mod edge;
mod error;
mod events;
mod guard;
mod live;
mod metrics;
mod models;
mod query;
mod saved_state;
mod telemetry;
mod web;
mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use poem::http::Method;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::middleware::Cors;
use poem::web::Data;
use poem::web::websocket::WebSocket;
use poem::{EndpointExt, IntoResponse, Response, Route, Server, get, handler};
use poem_openapi::OpenApiService;
use tokio::sync::watch;

use crate::bus::BusUrl;
use crate::engine::{Engine, EngineConfig};
use crate::event::{Limits, Timestamp};
use crate::feed::{CommittedBatch, Feed, Subscriber};
use crate::store::clickhouse::ClickHouseUrl;
use crate::store::{Part, Store};

pub use access::{check_allowed_host, check_origin};
pub use alerts::AlertConfig;
pub use edge::{ROUTES, route_of};
pub use error::ApiFailure;
pub use live::LiveEngine;
pub use metrics::MetricsParams;

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
    /// Required (or the ingest token) to read metrics, events and the WebSocket.
    pub read_token: Option<String>,
    /// Browser origins allowed to call the API from other sites (CORS) and to
    /// open the WebSocket; the server's own origin is always allowed.
    pub cors_origins: Vec<String>,
    /// Host names answered besides IP literals and localhost (`*` for any).
    pub allowed_hosts: Vec<String>,
    /// Open connections at most; more wait until one closes.
    pub max_connections: usize,
    /// A request must arrive in full within this long of its first byte.
    pub request_timeout: Duration,
    /// Connections with no traffic for this long are closed.
    pub idle_timeout: Duration,
    /// `POST /api/ingest` skips the router (see `Edge`); off only to
    /// compare both ways.
    pub direct_ingest: bool,
    /// This node's name in logs and `/api/status`.
    pub node_id: String,
    /// Set for a node of a cluster: ClickHouse and the bus instead of SQLite.
    pub cluster: Option<ClusterConfig>,
    pub alerts: AlertConfig,
}

/// Where a cluster node keeps events and hears of them.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub store: ClickHouseUrl,
    pub bus: BusUrl,
    pub node_id: String,
    /// How long the stream keeps events after ClickHouse has them.
    pub bus_keep: Duration,
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
            push_interval: Duration::from_millis(200),
            read_token: None,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: 4096,
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            direct_ingest: true,
            node_id: "rta".into(),
            cluster: None,
            alerts: AlertConfig {
                interval: Duration::from_secs(1),
                allow_private: false,
                public_url: None,
                retry_for: Duration::from_secs(600),
            },
        }
    }
}

pub struct AppState {
    pub config: ServeConfig,
    pub access: access::Access,
    pub store: Arc<dyn Store>,
    pub engine: Arc<LiveEngine>,
    pub backend: Arc<backend::Backend>,
    /// Metrics answers computed from the store run this many at a time.
    pub stored_answers: tokio::sync::Semaphore,
    /// rta's own metrics, for `/metrics`.
    pub telemetry: telemetry::Telemetry,
    pub alerts: Arc<alerts::Alerts>,
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
    mut config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    config.engine.retention_ms = config
        .retention
        .map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
    let feed = Arc::new(Feed::default());
    let backend = Arc::new(backend::Backend::open(&config, feed.clone()).await?);
    let store = backend.store();
    // The dashboard's newest events are read while the engine loads.
    let (loaded, recent) = tokio::join!(backend.load_engine(&config), store.recent(50, None));
    let (loaded, recent) = (loaded?, recent?);
    let total = loaded.engine.total();
    let how = if loaded.from_saved_state {
        format!("saved state + {} newer events", loaded.replayed)
    } else {
        format!("{} events read", loaded.replayed)
    };
    let engine = LiveEngine::start(loaded.engine).context("cannot start the engine's thread")?;
    let acceptor = guard::GuardedAcceptor::new(
        acceptor,
        config.max_connections,
        config.request_timeout,
        config.idle_timeout,
    );
    let push_interval = config.push_interval;
    let maintenance = Maintenance {
        backend: backend.clone(),
        store: store.clone(),
        engine: engine.clone(),
        config: config.clone(),
    };
    let alerts = Arc::new(alerts::Alerts::new(
        backend.alert_book(&config).await?,
        config.alerts.clone(),
    )?);
    let state = Arc::new(AppState {
        alerts: alerts.clone(),
        access: access::Access::new(&config),
        telemetry: telemetry::Telemetry::new(&config.node_id, backend.kind()),
        config,
        store: store.clone(),
        engine: engine.clone(),
        backend: backend.clone(),
        stored_answers: tokio::sync::Semaphore::new(2),
    });
    let hub = Arc::new(ws::Hub::new(state.clone(), push_interval));
    for event in recent.into_iter().rev() {
        hub.on_commit(&Arc::new(CommittedBatch {
            first_seq: event.seq,
            events: vec![event.event],
        }));
    }
    feed.subscribe(engine.clone());
    feed.subscribe(hub.clone());

    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the listener has no address")?;
    tracing::info!(
        "node {} listening on http://{local}, storing in {} ({total} events ready in {} ms: {})",
        state.config.node_id,
        backend.describe(&state.config),
        started.elapsed().as_millis(),
        how
    );
    tracing::info!(
        "ingest {}; reading metrics, events and the WebSocket {}",
        if state.config.token.is_some() {
            "needs the --token"
        } else {
            "is open to anyone who can connect (no --token)"
        },
        if state.config.read_token.is_some() {
            "needs the --read-token or the --token"
        } else {
            "is open to anyone who can connect (no --read-token)"
        }
    );

    if !state.config.direct_ingest {
        tracing::info!("ingest requests go through the router (RTA_INGEST_VIA_ROUTER=1)");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let cluster_tasks = backend.start(feed.clone(), stop_rx.clone());
    backend.catch_up().await;
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let hub_task = tokio::spawn(hub.clone().run(stopped()));
    let maintenance_task = tokio::spawn(maintenance.clone().run(stopped()));
    let alerts_task = tokio::spawn(alerts.run(state.clone(), stopped()));
    let app = routes(state, hub);
    // Idle connections are closed by the guard (see `guard`), not by poem.
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
    let _ = maintenance_task.await;
    let _ = alerts_task.await;
    for task in cluster_tasks {
        let _ = task.await;
    }
    store.close().await;
    if let Err(e) = maintenance.save_state_at_stop().await {
        tracing::warn!(
            "could not save the engine state (the next start reads the store instead): {e:#}"
        );
    }
    tracing::info!("stopped");
    result.context("the server failed")
}

fn routes(state: Arc<AppState>, hub: Arc<ws::Hub>) -> impl poem::Endpoint {
    // CORS is off unless origins are configured; `*` allows any.
    let cors_enabled = !state.config.cors_origins.is_empty();
    let cors = state
        .config
        .cors_origins
        .iter()
        .filter(|origin| *origin != "*")
        .fold(Cors::new(), |cors, origin| {
            cors.allow_origin(origin.trim_end_matches('/'))
        })
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .allow_headers([
            "authorization",
            "content-type",
            "content-encoding",
            "idempotency-key",
        ]);
    let api = OpenApiService::new(
        (
            api::Api {
                state: state.clone(),
            },
            metrics::MetricsApi {
                state: state.clone(),
            },
            query::QueryApi {
                state: state.clone(),
            },
            events::EventsApi {
                state: state.clone(),
                exports: Arc::new(tokio::sync::Semaphore::new(events::MAX_EXPORTS)),
            },
            telemetry::TelemetryApi {
                state: state.clone(),
            },
            alerts::AlertsApi {
                state: state.clone(),
            },
        ),
        "rta",
        env!("CARGO_PKG_VERSION"),
    )
    .description(include_str!("api_description.md"));
    let spec = Arc::new(docs::Spec::new(&api, &state.config));
    let routed = Route::new()
        .nest("/", api)
        .at("/api/openapi.json", get(docs::spec_json))
        .at("/docs", get(docs::page))
        .at("/api/ws", get(ws_handler))
        .at("/assets/*path", get(web::asset))
        .data(hub)
        .data(spec)
        .data(state.clone())
        // Each layer's future holds the one inside it, and poem moves the
        // outermost into a box per request. Boxing here and below keeps every
        // layer's future small.
        .boxed()
        .catch_all_error(|err| async move { edge::failure(err) })
        .with_if(cors_enabled, cors)
        .boxed();
    edge::Edge {
        ingest: api::Api {
            state: state.clone(),
        },
        direct_ingest: state.config.direct_ingest,
        cors_enabled,
        state,
        routed,
    }
}

#[handler]
fn ws_handler(
    req: &poem::Request,
    ws: WebSocket,
    Data(hub): Data<&Arc<ws::Hub>>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    match ws_view(req, state) {
        Ok(view) => {
            // Keyed by the view as understood, so spellings of one view share it.
            let updates = hub.subscribe(format!("{view:?}"), view.clone());
            let hub = hub.clone();
            ws.on_upgrade(move |socket| async move {
                match updates {
                    Ok(updates) => hub.serve(socket, view, updates).await,
                    // A browser cannot read a refused handshake: it is told in the close frame.
                    Err(full) => ws::refuse(socket, &full.to_string()).await,
                }
            })
            .into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

/// The view a WebSocket asks for, once it may ask.
fn ws_view(req: &poem::Request, state: &AppState) -> Result<metrics::MetricsView, ApiFailure> {
    if !state.access.origin_allowed(req) {
        return Err(ApiFailure::Forbidden(
            "this page's origin may not open the WebSocket; allow it with --cors-origin".into(),
        ));
    }
    if let Err(denied) = state.access.can_read(req, access::TokenIn::HeaderOrQuery) {
        return Err(ApiFailure::Unauthorized(format!(
            "{} (a browser's WebSocket may send it as ?access_token=TOKEN)",
            denied.message("reading metrics")
        )));
    }
    MetricsParams::from_query_string(req.uri().query().unwrap_or_default())
        .and_then(|params| params.to_view(state))
        .map_err(ApiFailure::BadRequest)
}

/// Background upkeep, one task so its steps never interleave: retention
/// (delete, then rebuild the engine) and saving the engine's state.
#[derive(Clone)]
struct Maintenance {
    backend: Arc<backend::Backend>,
    store: Arc<dyn Store>,
    engine: Arc<LiveEngine>,
    config: ServeConfig,
}

/// How long an idempotency key protects against a repeated request.
const KEYS_KEPT: Duration = Duration::from_secs(3600);
/// How often older keys are forgotten.
const KEYS_PRUNE_EVERY: Duration = Duration::from_secs(300);

/// How often the engine's state is saved when it changed.
const SAVE_STATE_EVERY: Duration = Duration::from_secs(30);

impl Maintenance {
    async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let retention_every = self
            .config
            .retention
            .map(|keep| (keep / 60).clamp(Duration::from_secs(1), Duration::from_secs(600)));
        let mut retention_tick =
            tokio::time::interval(retention_every.unwrap_or(Duration::from_secs(3600)));
        let mut save_tick = tokio::time::interval(SAVE_STATE_EVERY);
        let mut keys_tick = tokio::time::interval(KEYS_PRUNE_EVERY);
        save_tick.tick().await;
        let mut saved_version = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = retention_tick.tick(), if retention_every.is_some() => self.apply_retention().await,
                _ = save_tick.tick() => {
                    let version = self.engine.version();
                    if saved_version != Some(version) {
                        match self.save_state().await {
                            Ok(()) => saved_version = Some(version),
                            Err(e) => tracing::warn!("could not save the engine state: {e:#}"),
                        }
                    }
                }
                _ = keys_tick.tick() => {
                    if let Err(e) = self.store.forget_keys_before(Timestamp::ago(KEYS_KEPT)).await {
                        tracing::warn!("could not forget old idempotency keys: {e}");
                    }
                }
                _ = &mut stop => return,
            }
        }
    }

    async fn apply_retention(&self) {
        let Some(keep) = self.config.retention else {
            return;
        };
        let cutoff = Timestamp::ago(keep);
        // In a cluster one node deletes, and every node's engine forgets.
        let cluster = self.config.cluster.is_some();
        match self.store.delete_before(cutoff).await {
            Ok(0) if !cluster => {}
            Ok(n) => {
                tracing::debug!(deleted = n, "retention removed events older than {cutoff}");
                // A cluster node cannot know how many another node deleted.
                let deleted = (!cluster).then_some(n);
                if let Err(e) = self.forget_before(cutoff, deleted).await {
                    tracing::warn!(
                        "could not read the store after retention ({e:#}); rebuilding the engine from it"
                    );
                    if let Err(e) = self.rebuild().await {
                        tracing::error!("could not rebuild the engine after retention: {e:#}");
                    }
                }
            }
            Err(e) => tracing::error!("retention failed: {e}"),
        }
    }

    /// Rebuilds the engine from the store without missing or doubling events
    /// committed meanwhile (the engine skips sequence numbers it has seen).
    async fn rebuild(&self) -> anyhow::Result<()> {
        let (store, live, config) = (self.store.clone(), self.engine.clone(), self.config.engine);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut fresh = Engine::new(config);
            let now = Timestamp::now();
            store.scan(0, &mut |first, events| {
                fresh.apply_committed(first, events, now)
            })?;
            live.with(|engine| {
                store.scan(fresh.last_seq(), &mut |first, events| {
                    fresh.apply_committed(first, events, now)
                })?;
                *engine = fresh;
                Ok(())
            })
        })
        .await??;
        self.save_state().await
    }

    /// Has the engine forget what retention deleted, reading again from the
    /// store only the span the cutoff cuts, without holding the engine; the
    /// events it applied meanwhile are then read by sequence number, also
    /// without holding it, so that holding it reads only those it applied
    /// during that read (the store may be a slow ClickHouse).
    async fn forget_before(&self, cutoff: Timestamp, deleted: Option<u64>) -> anyhow::Result<()> {
        let (store, live) = (self.store.clone(), self.engine.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut failed = None;
            let mut reread = live.with(|engine| engine.forget_plan(cutoff));
            if let Some(reread) = &mut reread {
                let range = reread.range;
                store.scan_range(range, None, Part::ALL, &mut |first, events| {
                    reread.take(first, events)
                })?;
                // Under steady ingest each read is shorter than the last;
                // what the third leaves is read holding the engine.
                for _ in 0..3 {
                    let upto = live.with(|engine| engine.applied());
                    if upto.seq() <= reread.read_to() {
                        break;
                    }
                    reread.catch_up(upto, &mut |after, sink| {
                        if let Err(e) = store.scan(after, sink) {
                            failed = Some(e);
                        }
                    });
                    if let Some(e) = failed.take() {
                        return Err(e.into());
                    }
                }
            }
            live.with(|engine| {
                engine.forget_before(cutoff, deleted, reread, &mut |after, sink| {
                    if let Err(e) = store.scan(after, sink) {
                        failed = Some(e);
                    }
                })
            });
            failed.map_or(Ok(()), |e| Err(anyhow::Error::from(e)))
        })
        .await?
    }

    async fn save_state(&self) -> anyhow::Result<()> {
        self.backend
            .save_engine(&self.config, &self.engine, false)
            .await
    }

    /// The last save, at a clean stop: on a cluster any node stopping saves
    /// (its state is as good as the loader's), so the next start is quick.
    async fn save_state_at_stop(&self) -> anyhow::Result<()> {
        self.backend
            .save_engine(&self.config, &self.engine, true)
            .await
    }
}
