//! `GET /api/metrics` and the views the WebSocket pushes: the metrics of a
//! view (a type, a time range, filters).
//!
//! A view the live engine holds (no filter, a window of up to 24 hours, a
//! type it tracks) is answered from it in microseconds. Any other (a
//! `from`/`to` range, a longer window, `where` filters, a type beyond the
//! engine's caps) is summarised from the store
//! ([`crate::engine::overview`]), in the same shape.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::ApiFailure;
use super::AppState;
use super::access::TokenIn;
use super::models::{ApiError, Metrics};
use crate::engine;
use crate::engine::overview::{Overview, OverviewSpec};
use crate::event::{self, Event, EventType, Timestamp};
use crate::query::parse::{parse_filter, time_spec};
use crate::query::rollup::Covered;
use crate::query::{self, Field, Filter, Op, TimeRange, TimeSpec};
use crate::store::{Part, ScanOrder, StoreError, StoredEvent};

/// The most top values and groups a view lists.
pub const MAX_TOP: u32 = 100;

#[derive(Tags)]
enum MetricsTags {
    /// Reading aggregates and events
    Metrics,
}

pub struct MetricsApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl MetricsApi {
    /// Read the metrics
    ///
    /// The metrics of a view: all time by default; with `window`, over that
    /// much recent time; with `from`/`to`, over that range; with `where`,
    /// of the events that pass every filter (the same syntax as
    /// `POST /api/query`). `totalEvents` counts every stored event;
    /// `eventsByType`, `recentValues` and `timeSeriesData` give the
    /// headline numbers per type, `types` the full statistics, all following
    /// the range and filters. A view without filters (other than its type),
    /// with no window or one of up to 24 hours, of a type the live
    /// aggregates track, comes from them; any other is computed from the
    /// stored events, and then `windowSeconds` is the range's length and
    /// `windowEvents` the events that match. For breakdowns by several
    /// dimensions and chosen statistics, use `POST /api/query`.
    #[oai(path = "/api/metrics", method = "get", tag = "MetricsTags::Metrics")]
    // One argument per documented query parameter.
    #[allow(clippy::too_many_arguments)]
    async fn metrics(
        &self,
        req: &Request,
        /// Only this event type.
        #[oai(name = "type")]
        kind: Query<Option<String>>,
        /// Aggregate over the last `5m`, `1h`, `30d`... up to now, or `all`. Not with `from`/`to`.
        window: Query<Option<String>>,
        /// Start, inclusive: RFC 3339 (`2023-04-01T09:00:00Z`) or a date (00:00 UTC that day).
        from: Query<Option<String>>,
        /// End, exclusive (default: now): RFC 3339 or a date.
        to: Query<Option<String>>,
        /// A filter, repeated for several (all must hold): `region=Europe`,
        /// `region=Europe,Asia`, `device!=mobile`, `path~/blog`, `amount>100`.
        #[oai(name = "where")]
        filters: Query<Option<Vec<String>>>,
        /// Group the selected `type` by this dimension.
        by: Query<Option<String>>,
        /// Add a detailed series of this measure of the selected `type`.
        field: Query<Option<String>>,
        /// Width of each series point, such as `10s` or `1m` (default: about 180 points).
        step: Query<Option<String>>,
        /// How many top values per dimension and groups to list (1-100, default 10).
        top: Query<Option<u32>>,
    ) -> MetricsResponse {
        let params = MetricsParams {
            kind: kind.0,
            window: window.0,
            from: from.0,
            to: to.0,
            filters: filters.0.unwrap_or_default(),
            by: by.0,
            field: field.0,
            step: step.0,
            top: top.0,
        };
        match self.read(req, params).await {
            Ok(metrics) => MetricsResponse::Ok(Json(Box::new(metrics.into()))),
            Err(failure) => failure.into(),
        }
    }
}

impl MetricsApi {
    async fn read(
        &self,
        req: &Request,
        params: MetricsParams,
    ) -> Result<engine::Metrics, ApiFailure> {
        self.state
            .access
            .can_read(req, TokenIn::Header)
            .map_err(|denied| ApiFailure::Unauthorized(denied.message("reading metrics")))?;
        let view = params
            .to_view(&self.state)
            .map_err(ApiFailure::BadRequest)?;
        let state = self.state.clone();
        // Stored answers scan: a few at a time, off the async threads.
        let _permit = match &view {
            MetricsView::Live(_) => None,
            MetricsView::Stored(_) => self.state.stored_answers.acquire().await.ok(),
        };
        let answer = tokio::task::spawn_blocking(move || view.answer(&state, Timestamp::now()))
            .await
            .map_err(|e| ApiFailure::Unavailable(e.to_string()))??;
        Ok(answer)
    }
}

impl From<ApiFailure> for MetricsResponse {
    fn from(failure: ApiFailure) -> Self {
        let body = failure.body();
        match failure {
            ApiFailure::BadRequest(_) => MetricsResponse::BadRequest(body),
            ApiFailure::Unauthorized(_) => MetricsResponse::Unauthorized(body),
            // Nothing else fails here but the store.
            _ => MetricsResponse::Unavailable(body),
        }
    }
}

#[derive(ApiResponse)]
enum MetricsResponse {
    #[oai(status = 200)]
    Ok(Json<Box<Metrics>>),
    /// A parameter is invalid, or a filter names a field no matching type has had.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// The store could not be read.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

/// A view's parameters as sent: the HTTP API's and the WebSocket URL's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetricsParams {
    pub kind: Option<String>,
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub filters: Vec<String>,
    pub by: Option<String>,
    pub field: Option<String>,
    pub step: Option<String>,
    pub top: Option<u32>,
}

/// What answers a view.
#[derive(Debug, Clone)]
pub enum MetricsView {
    /// The live engine.
    Live(engine::Query),
    /// A summary of the stored events.
    Stored(StoredView),
}

/// A view answered from the store.
#[derive(Debug, Clone)]
pub struct StoredView {
    time: TimeSpec,
    /// The filters, the type's among them.
    selection: Vec<Filter>,
    kind: Option<EventType>,
    by: Option<String>,
    field: Option<String>,
    step_ms: Option<i64>,
    top: usize,
}

impl MetricsParams {
    /// Reads a URL's query string (`where` may repeat); other parameters
    /// (`access_token`) are left to their readers.
    pub fn from_query_string(query: &str) -> Result<Self, String> {
        let mut params = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match &*name {
                "type" => params.kind = Some(value),
                "window" => params.window = Some(value),
                "from" => params.from = Some(value),
                "to" => params.to = Some(value),
                "where" => params.filters.push(value),
                "by" => params.by = Some(value),
                "field" => params.field = Some(value),
                "step" => params.step = Some(value),
                "top" => {
                    params.top = Some(value.parse().map_err(|_| {
                        format!("top={value:?} is not a whole number; use 1 to 100")
                    })?)
                }
                _ => {}
            }
        }
        Ok(params)
    }

    /// Checks every parameter and decides what answers the view; the error
    /// says which parameter is wrong and why.
    pub fn to_view(&self, state: &AppState) -> Result<MetricsView, String> {
        let present = |p: &Option<String>| p.clone().filter(|s| !s.trim().is_empty());
        let kind = self.kind.as_deref().map(parse_type).transpose()?;
        let step_ms = present(&self.step)
            .map(|s| parse_duration_ms("step", &s))
            .transpose()?;
        let by = present(&self.by);
        let field = present(&self.field);
        let top = self.top.unwrap_or(10);
        if !(1..=MAX_TOP).contains(&top) {
            return Err(format!("top={top} is out of range; use 1 to {MAX_TOP}"));
        }
        let window = present(&self.window);
        let absolute = present(&self.from).is_some() || present(&self.to).is_some();
        // Windows from 1 s, as the live engine always took them.
        let time = match window.as_deref() {
            Some(w) if !absolute && !w.eq_ignore_ascii_case("all") => {
                TimeSpec::Window(parse_duration_ms("window", w)?)
            }
            _ => time_spec(window.as_deref(), self.from.as_deref(), self.to.as_deref())?,
        };
        let mut selection = Vec::new();
        if let Some(kind) = &kind {
            selection.push(Filter {
                field: Field::Type,
                op: Op::Is(kind.to_string()),
            });
        }
        let mut kind = kind;
        for text in self.filters.iter().filter(|f| !f.trim().is_empty()) {
            let filter = parse_filter(text)?;
            // `where=type=X` is `type=X`, which the engine may answer.
            if let (Field::Type, Op::Is(name), None) = (&filter.field, &filter.op, &kind) {
                kind = Some(parse_type(name)?);
            }
            selection.push(filter);
        }
        if kind.is_none() && (by.is_some() || field.is_some()) {
            return Err(
                "`by` and `field` need `type` too (for example type=sales&by=region)".into(),
            );
        }
        let only_type = selection.iter().all(|f| {
            f.field == Field::Type && kind.as_ref().is_some_and(|k| f.op == Op::Is(k.to_string()))
        });
        let catalog = state.engine.with(|e| e.fields());
        // A type the engine tracks, or one not seen yet that it would track.
        let tracked = kind
            .as_ref()
            .is_none_or(|k| catalog.complete || catalog.types.contains_key(k));
        let live_window = match time {
            TimeSpec::All => Some(None),
            TimeSpec::Window(ms) if ms <= engine::MAX_WINDOW_MS => Some(Some(ms)),
            _ => None,
        };
        if let Some(window_ms) = live_window
            && tracked
            && only_type
        {
            return Ok(MetricsView::Live(engine::Query {
                kind,
                window_ms,
                by,
                field,
                step_ms,
                top: top as usize,
            }));
        }
        let view = StoredView {
            time,
            selection,
            kind,
            by,
            field,
            step_ms,
            top: top as usize,
        };
        view.selection(Timestamp::now()).check_fields(&catalog)?;
        Ok(MetricsView::Stored(view))
    }
}

impl MetricsView {
    /// The metrics as of `now`. Blocking for a stored view (a store scan).
    pub fn answer(&self, state: &AppState, now: Timestamp) -> Result<engine::Metrics, StoreError> {
        match self {
            MetricsView::Live(query) => Ok(state.engine.query(query)),
            MetricsView::Stored(view) => view.answer(state, now),
        }
    }

    /// Whether an event belongs to the view (for the recent events sent
    /// beside the metrics).
    pub fn shows(&self, event: &Event, now: Timestamp) -> bool {
        match self {
            MetricsView::Live(query) => query.kind.as_ref().is_none_or(|k| *k == event.kind),
            MetricsView::Stored(view) => view.selection(now).matches(event),
        }
    }

    /// The latest events of the view, newest first, at most `limit`.
    /// Blocking for a stored view.
    pub fn latest_events(
        &self,
        state: &AppState,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let selection = match self {
            MetricsView::Live(query) => query::Query {
                range: TimeRange::ALL,
                filters: query
                    .kind
                    .iter()
                    .map(|k| Filter {
                        field: Field::Type,
                        op: Op::Is(k.to_string()),
                    })
                    .collect(),
                by: Vec::new(),
                stats: Vec::new(),
                order: None,
                top: None,
                defaults: true,
            },
            MetricsView::Stored(view) => view.selection(now),
        };
        let mut events = Vec::new();
        let types = selection.types();
        state.store.scan_events(
            selection.range,
            types.as_deref(),
            ScanOrder::NewestFirst,
            None,
            &mut |seq, event| {
                if selection.matches(event) {
                    events.push(StoredEvent {
                        seq,
                        event: event.clone(),
                    });
                }
                events.len() < limit
            },
        )?;
        Ok(events)
    }

    /// The type the view is about, if one.
    pub fn kind(&self) -> Option<&EventType> {
        match self {
            MetricsView::Live(query) => query.kind.as_ref(),
            MetricsView::Stored(view) => view.kind.as_ref(),
        }
    }
}

impl StoredView {
    /// The events the view is about, as a query (its range as of `now`).
    fn selection(&self, now: Timestamp) -> query::Query {
        query::Query {
            range: self.time.resolve(now),
            filters: self.selection.clone(),
            by: Vec::new(),
            stats: Vec::new(),
            order: None,
            top: None,
            defaults: true,
        }
    }

    /// Whether the range moves with the clock (a relative window), so the
    /// answer changes even without new events.
    pub fn slides(&self) -> bool {
        matches!(
            self.time,
            TimeSpec::Window(_) | TimeSpec::Between { to: None, .. }
        )
    }

    /// Summarises the stored events of the view. Blocking.
    pub fn answer(&self, state: &AppState, now: Timestamp) -> Result<engine::Metrics, StoreError> {
        let mut selection = self.selection(now);
        let cutoff = state
            .config
            .retention
            .map(|keep| now.millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        selection.range = selection.range.not_before(cutoff);
        // The series spans the range, up to now; from the first stored
        // event when the range has no start.
        let to = selection.range.to.min(now.millis().saturating_add(1));
        let from = match selection.range.is_bounded_below() {
            true => selection.range.from,
            false => state.store.earliest()?.unwrap_or(to - 15 * 60_000),
        }
        .max(0);
        let span = TimeRange {
            from,
            to: to.max(from.saturating_add(1000)),
        };
        let spec = OverviewSpec {
            span,
            kind: self.kind.clone(),
            by: self.by.clone(),
            field: self.field.clone(),
            step_ms: self.step_ms,
            top: self.top,
        };
        let total = state.engine.with(|e| e.total());
        let types = selection.types();
        // A part of the segments a thread, merged at the end; read again in
        // one part when the parts may have kept different types or fields.
        let scan = |of: u64| {
            Part::in_parallel(of, |part| {
                let mut overview = Overview::new(&selection, spec.clone(), &state.config.engine);
                state
                    .store
                    .visit_range(
                        selection.range,
                        types.as_deref(),
                        None,
                        part,
                        &Covered::default(),
                        &mut |seq, event| overview.add_one(seq, event),
                    )
                    .map(|()| overview)
            })
        };
        let mut parts = scan(2)?;
        if parts.iter().any(Overview::capped) {
            parts = scan(1)?;
        }
        let mut parts = parts.into_iter();
        let mut overview = parts
            .next()
            .unwrap_or_else(|| Overview::new(&selection, spec, &state.config.engine));
        for part in parts {
            overview.merge(part);
        }
        Ok(overview.finish(total, now.millis()))
    }
}

fn parse_type(s: &str) -> Result<EventType, String> {
    EventType::parse(s, &event::Limits::default()).map_err(|reason| format!("type {reason}"))
}

fn parse_duration_ms(name: &str, s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{name}={s:?} is not a duration ({e}); use e.g. 30s, 5m, 1h"))?;
    if d.as_millis() < 1000 {
        return Err(format!("{name}={s:?} is shorter than one second"));
    }
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
