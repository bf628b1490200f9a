//! rta's own health, for Prometheus: `GET /metrics` in the text format,
//! every metric with its HELP and TYPE.
//!
//! What happens on the request path is counted with atomics only: a
//! request's counter is found by index (route x method x status) and made
//! once, and histograms are lock-free. What is a level (the writer's queue,
//! the events held, WebSocket clients, the engine's size, the process's
//! memory) is read when Prometheus asks, so it costs nothing in between.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use poem::Request;
use poem::http::{Method, StatusCode};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi, Tags};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::access::TokenIn;
use super::models::ApiError;
use super::{ApiFailure, AppState, ROUTES};

/// The statuses rta answers with, each with a counter slot per route and
/// method; any other status is counted through the (locking) label lookup.
const STATUSES: [u16; 24] = [
    101, 200, 201, 202, 204, 206, 301, 304, 400, 401, 403, 404, 405, 406, 408, 409, 411, 413, 415,
    422, 429, 431, 500, 503,
];
const METHODS: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
];
/// The route label of a path no route matches (any path: never the path itself).
const UNMATCHED: &str = "unmatched";

/// Upper bounds of the commit-latency buckets (s): a SQLite group commit
/// takes a fraction of a millisecond, a JetStream acknowledgement a few.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of the query-latency buckets (s).
const QUERY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

pub struct Telemetry {
    registry: Registry,
    events_ingested: IntCounter,
    requests: IntCounterVec,
    /// `requests`' children by index: (route or unmatched) x method x status.
    request_slots: Box<[OnceLock<IntCounter>]>,
    commit: Histogram,
    query: Histogram,
    writer_queue: IntGauge,
    store_events: IntGauge,
    ws_clients: IntGauge,
    engine_bytes: IntGauge,
    resident_bytes: IntGauge,
    /// The engine's size as last measured, and when: measuring serialises
    /// the engine, so it is done off the async threads, at most every
    /// [`ENGINE_SIZE_EVERY`].
    engine_size: tokio::sync::Mutex<Option<(std::time::Instant, usize)>>,
}

const ENGINE_SIZE_EVERY: Duration = Duration::from_secs(10);

/// The levels read at each scrape.
pub struct Levels {
    pub writer_queue: usize,
    pub store_events: u64,
    pub engine_bytes: usize,
}

impl Telemetry {
    pub fn new(node_id: &str, store: &str) -> Self {
        let registry = Registry::new();
        // Every name and set of labels below is fixed and valid: registering
        // them cannot fail, and a failure would be a bug found by any test.
        fn add<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
            registry
                .register(Box::new(m.clone()))
                .expect("rta's metrics have distinct, valid names");
            m
        }
        let counter = |name: &str, help: &str| {
            add(
                &registry,
                IntCounter::new(name, help).expect("a valid metric name"),
            )
        };
        let gauge = |name: &str, help: &str| {
            add(
                &registry,
                IntGauge::new(name, help).expect("a valid metric name"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            add(
                &registry,
                Histogram::with_opts(opts).expect("valid histogram buckets"),
            )
        };
        let build = add(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "rta_build_info",
                    "The running rta: its version, node id and store (always 1).",
                ),
                &["version", "node", "store"],
            )
            .expect("a valid metric name"),
        );
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), node_id, store])
            .set(1);
        let requests = add(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "rta_http_requests_total",
                    "HTTP requests answered, by route template, method and status.",
                ),
                &["route", "method", "status"],
            )
            .expect("a valid metric name"),
        );
        let slots = (ROUTES.len() + 1) * (METHODS.len() + 1) * STATUSES.len();
        Self {
            events_ingested: counter(
                "rta_events_ingested_total",
                "Events stored (acknowledged to their sender), not counting replayed requests.",
            ),
            commit: histogram(
                "rta_ingest_commit_seconds",
                "Time from an ingest request's parsed events to their durable acknowledgement.",
                &COMMIT_BUCKETS,
            ),
            query: histogram(
                "rta_query_seconds",
                "Time to answer POST /api/query, from the parsed query to the answer.",
                &QUERY_BUCKETS,
            ),
            writer_queue: gauge(
                "rta_writer_queue_depth",
                "Ingest requests waiting for the store: for SQLite's writer thread, on a cluster for JetStream's acknowledgement.",
            ),
            store_events: gauge(
                "rta_store_events",
                "Events held (stored and not yet past the retention).",
            ),
            ws_clients: gauge("rta_websocket_clients", "WebSocket clients connected now."),
            engine_bytes: gauge(
                "rta_engine_state_bytes",
                "Size of the live engine's aggregates as saved; bounded by the engine's limits, not by the events.",
            ),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory of the rta process.",
            ),
            requests,
            request_slots: (0..slots).map(|_| OnceLock::new()).collect(),
            engine_size: tokio::sync::Mutex::new(None),
            registry,
        }
    }

    /// Counts one answered request, by its route's index in [`ROUTES`]
    /// (`None`: a path no route serves, never labelled with the path).
    pub fn count_request(&self, route: Option<usize>, method: &Method, status: StatusCode) {
        let method_at = METHODS.iter().position(|m| m == method);
        let status_at = STATUSES.iter().position(|s| *s == status.as_u16());
        let labels = || {
            [
                route.map_or(UNMATCHED, |r| ROUTES[r].0),
                method_at.map_or("other", |_| method.as_str()),
                status.as_str(),
            ]
        };
        let Some(status_at) = status_at else {
            self.requests.with_label_values(&labels()).inc();
            return;
        };
        let route_at = route.unwrap_or(ROUTES.len());
        let method_at = method_at.unwrap_or(METHODS.len());
        let slot = (route_at * (METHODS.len() + 1) + method_at) * STATUSES.len() + status_at;
        self.request_slots[slot]
            .get_or_init(|| self.requests.with_label_values(&labels()))
            .inc();
    }

    /// Counts events stored by an ingest request, and how long they took.
    pub fn ingested(&self, events: u64, took: Duration) {
        self.events_ingested.inc_by(events);
        self.commit.observe(took.as_secs_f64());
    }

    pub fn queried(&self, took: Duration) {
        self.query.observe(took.as_secs_f64());
    }

    /// The live engine's saved size, measured at most every 10 s.
    async fn engine_size(&self, engine: &Arc<super::LiveEngine>) -> usize {
        let mut last = self.engine_size.lock().await;
        if let Some((at, size)) = *last
            && at.elapsed() < ENGINE_SIZE_EVERY
        {
            return size;
        }
        let engine = engine.clone();
        let size = tokio::task::spawn_blocking(move || engine.with(|e| e.save_state().len()))
            .await
            .unwrap_or(0);
        *last = Some((std::time::Instant::now(), size));
        size
    }

    /// The gauge of connected WebSocket clients (the hub moves it).
    pub fn ws_clients(&self) -> &IntGauge {
        &self.ws_clients
    }

    /// Every metric in Prometheus's text format, with `levels` as read now.
    pub fn render(&self, levels: Levels) -> String {
        let level = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.writer_queue.set(level(levels.writer_queue as u64));
        self.store_events.set(level(levels.store_events));
        self.engine_bytes.set(level(levels.engine_bytes as u64));
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes.set(level(bytes));
        }
        let mut out = Vec::new();
        // Encoding well-formed metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process's resident memory, from `/proc` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(Tags)]
enum TelemetryTags {
    /// Operations
    Health,
}

pub struct TelemetryApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl TelemetryApi {
    /// rta's own metrics, for Prometheus
    ///
    /// Ingested events, requests by route and status, commit and query
    /// latency, the writer's queue, events held, WebSocket clients, the
    /// engine's size and memory, in Prometheus's text format. Needs the
    /// read token when the server runs with `--read-token` (in a scrape
    /// config: `authorization: {credentials: TOKEN}`).
    #[oai(path = "/metrics", method = "get", tag = "TelemetryTags::Health")]
    async fn metrics(&self, req: &Request) -> ScrapeResponse {
        let state = &self.state;
        if let Err(denied) = state.access.can_read(req, TokenIn::Header) {
            let failure = ApiFailure::Unauthorized(denied.message("reading rta's metrics"));
            return ScrapeResponse::Unauthorized(failure.body());
        }
        let store_events = state.engine.with(|engine| engine.total());
        let engine_bytes = state.telemetry.engine_size(&state.engine).await;
        let levels = Levels {
            writer_queue: state.store.queue_depth(),
            store_events,
            engine_bytes,
        };
        ScrapeResponse::Ok(PlainText(state.telemetry.render(levels)))
    }
}

#[derive(ApiResponse)]
enum ScrapeResponse {
    /// The metrics, in the text exposition format (version 0.0.4).
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
}
