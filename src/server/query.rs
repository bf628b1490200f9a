//! `POST /api/query`: the query model over everything stored.
//!
//! The body is the query in JSON, its filters, breakdowns and statistics
//! in the same text syntax as `rta query` (so one reference serves both).
//! The answer comes from the live aggregates when they hold exactly the
//! events asked about (see `Engine::answer`), else from the store
//! (`store::answer`): whole hours from their summaries where the query
//! allows, the other events read a segment at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde_json::Value;

use super::access::TokenIn;
use super::models::{ApiError, rfc3339};
use super::{ApiFailure, AppState};
use crate::event::Timestamp;
use crate::query::exec::{Answer, KeyValue, Row, StatValue};
use crate::query::parse::QueryText;
use crate::query::{Query, TimeRange};
use crate::store::answer::AnswerError;

/// Threads a scan is split between (the machines rta runs on have few cores).
const SCAN_THREADS: u64 = 2;

#[derive(Tags)]
enum QueryTags {
    /// Asking anything of everything stored
    Query,
}

pub struct QueryApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl QueryApi {
    /// Query stored events
    ///
    /// Answers over every stored event: a time range (`window`, or
    /// `from`/`to`), filters (`where`, combined with AND), breakdowns (`by`,
    /// up to three dimensions and a time bucket) and statistics (`stats`).
    ///
    /// **Filters** (`where`): `dim=value`; `dim=a,b` (one of; `\,` for a
    /// comma in a value, `\\` for a backslash); `dim!=value` or `dim!=a,b`
    /// (none of; an event without the dimension counts as not equal); on a
    /// measure, `=` and `!=` compare numbers; `dim~text` (contains, case-sensitive); `measure>N`,
    /// `>=`, `<`, `<=`. `type` and `source` are the event's own fields; a
    /// value named so is `values.type`. A field no matching type has ever had
    /// is an error that lists the fields there are.
    ///
    /// **Breakdowns** (`by`): dimension names, `type`, `source`, and one of
    /// `time:minute`, `time:hour`, `time:day` (UTC). Rows are ordered by
    /// `order` (a column, then `asc` or `desc`; default: events, most first,
    /// or time, oldest first); the first `top` (default 10, or every time
    /// bucket) are kept and the rest summed in `others`, so counts add up.
    ///
    /// **Statistics** (`stats`, each `stat:field`): `count`, `sum`, `min`,
    /// `max`, `mean`, `last` (the value of the latest event), `p50`, `p90`,
    /// `p95`, `p99` of a measure; `distinct` and `top` of a dimension. They
    /// come after the default columns: every statistic of every measure per
    /// type or overall, sums and means when broken down further
    /// (`"defaults": false` leaves those out and computes only `stats`). Counts,
    /// sums, min, max, mean and last are exact. Quantiles are nearest-rank,
    /// exact over up to 64 values in a group and within 1% relative beyond,
    /// never outside [min, max]. Distinct counts are exact while small, then
    /// HyperLogLog++ within 5% (99.7% confidence).
    ///
    /// `totalEvents` counts every stored event; everything else follows the
    /// range and filters. Events older than `--retention` are never counted.
    #[oai(path = "/api/query", method = "post", tag = "QueryTags::Query")]
    async fn query(&self, req: &Request, body: Json<QueryIn>) -> QueryResponse {
        match self.ask(req, body.0).await {
            Ok(answer) => QueryResponse::Ok(Json(Box::new(answer))),
            Err(failure) => failure.into(),
        }
    }
}

impl From<ApiFailure> for QueryResponse {
    fn from(failure: ApiFailure) -> Self {
        let body = failure.body();
        match failure {
            ApiFailure::BadRequest(_) => QueryResponse::BadRequest(body),
            ApiFailure::Unauthorized(_) => QueryResponse::Unauthorized(body),
            // Nothing else fails here but the store.
            _ => QueryResponse::Unavailable(body),
        }
    }
}

impl QueryApi {
    async fn ask(&self, req: &Request, body: QueryIn) -> Result<QueryOut, ApiFailure> {
        self.state
            .access
            .can_read(req, TokenIn::Header)
            .map_err(|denied| ApiFailure::Unauthorized(denied.message("querying")))?;
        let now = Timestamp::now();
        let query = body
            .to_text()
            .to_query(now)
            .map_err(ApiFailure::BadRequest)?;
        let catalog = self.state.engine.with(|e| e.fields());
        query
            .check_fields(&catalog)
            .map_err(ApiFailure::BadRequest)?;
        let started = std::time::Instant::now();
        let answer = self.answer(query, now).await;
        self.state.telemetry.queried(started.elapsed());
        answer
    }

    async fn answer(&self, query: Query, now: Timestamp) -> Result<QueryOut, ApiFailure> {
        let asked = query.range;
        let total = self.state.engine.with(|e| e.total());
        let (answer, read) = answer(&self.state, query, now).await?;
        Ok(QueryOut::new(answer, asked, total, read))
    }
}

/// Answers a query from the live aggregates when they hold exactly its
/// events, else from the store, off the async threads.
pub async fn answer(
    state: &Arc<AppState>,
    mut query: Query,
    now: Timestamp,
) -> Result<(Answer, QueryRead), ApiFailure> {
    // Retention is exact for every answer, whatever the last pass left.
    let cutoff = state
        .config
        .retention
        .map(|keep| now.millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    query.range = query.range.not_before(cutoff);
    let store = state.store.clone();
    let started = std::time::Instant::now();
    let elapsed_ms = || started.elapsed().as_secs_f64() * 1000.0;
    if let Some(answer) = state.engine.with(|e| e.answer(&query, cutoff)) {
        let answer = answer.map_err(|e| ApiFailure::BadRequest(e.to_string()))?;
        let read = QueryRead {
            from: "engine".into(),
            elapsed_ms: elapsed_ms(),
            ..QueryRead::default()
        };
        return Ok((answer, read));
    }
    // Scans run a few at a time (each takes two threads).
    let _permit = state.stored_answers.acquire().await.ok();
    let answered = tokio::task::spawn_blocking(move || {
        crate::store::answer::answer(store.as_ref(), &query, SCAN_THREADS)
    })
    .await
    .map_err(|e| ApiFailure::Unavailable(e.to_string()))?
    .map_err(|e| match e {
        AnswerError::Store(e) => ApiFailure::Unavailable(e.to_string()),
        AnswerError::Query(e) => ApiFailure::BadRequest(e.to_string()),
    })?;
    let read = QueryRead {
        from: "store".into(),
        summary_hours: answered.summary_hours,
        events_read: answered.events_read,
        elapsed_ms: elapsed_ms(),
    };
    Ok((answered.answer, read))
}

/// A query. Filters, breakdowns and statistics use the text syntax of
/// `rta query`'s `--where`, `--by` and `--stat`.
#[derive(Debug, Object, Default)]
#[oai(example)]
pub struct QueryIn {
    /// The last `10s`, `5m`, `24h`, `30d`... up to now, or `all`. Not with `from`/`to`.
    pub window: Option<String>,
    /// Start, inclusive: RFC 3339 (`2023-04-01T09:00:00Z`) or a date (00:00 UTC that day).
    pub from: Option<String>,
    /// End, exclusive (default: now): RFC 3339 or a date.
    pub to: Option<String>,
    /// Only this event type (the same as the filter `type=NAME`).
    #[oai(rename = "type")]
    pub kind: Option<String>,
    /// Filters, all of which must hold: `region=Europe`, `region=Europe,Asia`,
    /// `device!=mobile`, `path~/blog`, `amount>100`.
    #[oai(rename = "where")]
    pub filters: Option<Vec<String>>,
    /// Breakdowns: up to three of dimension names, `type`, `source`; and
    /// `time:minute`, `time:hour` or `time:day`.
    pub by: Option<Vec<String>>,
    /// Statistics beyond the default columns, each `stat:field`:
    /// `p95:latency_ms`, `distinct:user`, `top:path`, `sum:amount`.
    pub stats: Option<Vec<String>>,
    /// A column to order by, then `asc` or `desc`: `events`, `amount_sum desc`, `time asc`.
    pub order: Option<String>,
    /// Rows to keep (1-1000); the rest are summed in `others`.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub top: Option<u32>,
    /// `false` leaves out the default columns: only `stats` are computed
    /// (less work over many events). Default `true`.
    pub defaults: Option<bool>,
}

impl QueryIn {
    fn to_text(&self) -> QueryText {
        QueryText {
            window: self.window.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            kind: self.kind.clone(),
            filters: self.filters.clone().unwrap_or_default(),
            by: self.by.clone().unwrap_or_default(),
            stats: self.stats.clone().unwrap_or_default(),
            order: self.order.clone(),
            top: self.top.map(|t| t as usize),
            defaults: self.defaults,
        }
    }
}

impl Example for QueryIn {
    fn example() -> Self {
        Self {
            window: Some("30d".into()),
            kind: Some("sales".into()),
            filters: Some(vec!["region=Europe".into(), "amount>100".into()]),
            by: Some(vec!["channel".into()]),
            stats: Some(vec!["p95:amount".into(), "distinct:customer".into()]),
            top: Some(5),
            ..Self::default()
        }
    }
}

/// The answer: one row per group, ordered, the first `top` of them.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct QueryOut {
    /// The range asked for (RFC 3339); absent when unbounded.
    #[oai(skip_serializing_if_is_none)]
    pub from: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub to: Option<String>,
    /// Every event stored, whatever the query.
    pub total_events: u64,
    /// Events in the range that passed the filters.
    pub matched_events: u64,
    /// The breakdowns' names, in order: the keys of each row's `key`.
    pub keys: Vec<String>,
    /// The statistic columns, in order (`amount_sum`, `latency_ms_p95`): the keys of each row's `stats`.
    pub columns: Vec<String>,
    pub rows: Vec<QueryRow>,
    /// The groups beyond `top`, summed (absent when there are none).
    #[oai(skip_serializing_if_is_none)]
    pub others: Option<QueryRow>,
    /// How the answer was found, and what that took.
    pub read: QueryRead,
}

/// Where an answer came from. The live aggregates answer when they hold
/// exactly the events asked about; otherwise whole hours come from their
/// summaries where the query allows (filters and breakdowns on fields
/// with few values in that hour, hour or day buckets, no `top`) and the
/// other events are read one at a time.
#[derive(Debug, Object, Default)]
#[oai(rename_all = "camelCase")]
pub struct QueryRead {
    /// `engine` (the live aggregates) or `store`.
    pub from: String,
    /// Hours of one type taken from their summaries.
    pub summary_hours: u64,
    /// Stored events read one at a time.
    pub events_read: u64,
    /// Time spent answering, in milliseconds.
    pub elapsed_ms: f64,
}

/// One group.
#[derive(Debug, Object)]
pub struct QueryRow {
    /// The group's value of each breakdown: text, a bucket's start time
    /// (RFC 3339), or null for events without that field.
    pub key: BTreeMap<String, Value>,
    /// Events in the group.
    pub events: u64,
    /// The earliest event time in the group (RFC 3339).
    #[oai(rename = "firstSeen", skip_serializing_if_is_none)]
    pub first_seen: Option<String>,
    /// The latest event time in the group (RFC 3339).
    #[oai(rename = "lastSeen", skip_serializing_if_is_none)]
    pub last_seen: Option<String>,
    /// Each statistic: a number (null when no event of the group has the
    /// field), a distinct count, or for `top` a list of `{value, count}`.
    pub stats: BTreeMap<String, Value>,
}

impl QueryOut {
    fn new(answer: Answer, range: TimeRange, total: u64, read: QueryRead) -> Self {
        let columns: Vec<String> = answer.stats.iter().map(|s| s.column()).collect();
        let row = |r: &Row| QueryRow {
            key: answer
                .keys
                .iter()
                .zip(&r.key)
                .map(|(name, k)| {
                    let v = match k {
                        KeyValue::Missing => Value::Null,
                        KeyValue::Text(t) => Value::String(t.to_string()),
                        KeyValue::Time(ms) => Value::String(rfc3339(*ms)),
                    };
                    (name.clone(), v)
                })
                .collect(),
            events: r.events,
            first_seen: r.span.map(|(first, _)| rfc3339(first)),
            last_seen: r.span.map(|(_, last)| rfc3339(last)),
            stats: columns
                .iter()
                .zip(&r.stats)
                .map(|(c, v)| {
                    let v = match v {
                        StatValue::Number(x) => x
                            .and_then(serde_json::Number::from_f64)
                            .map_or(Value::Null, Value::Number),
                        StatValue::Count(n) => Value::from(*n),
                        StatValue::Top(values) => Value::Array(
                            values
                                .iter()
                                .map(|(v, n)| serde_json::json!({"value": v, "count": n}))
                                .collect(),
                        ),
                    };
                    (c.clone(), v)
                })
                .collect(),
        };
        Self {
            from: range.is_bounded_below().then(|| rfc3339(range.from)),
            to: (range.to != i64::MAX).then(|| rfc3339(range.to)),
            total_events: total,
            matched_events: answer.matched,
            keys: answer.keys.clone(),
            rows: answer.rows.iter().map(row).collect(),
            others: answer.others.as_ref().map(row),
            columns,
            read,
        }
    }
}

#[derive(ApiResponse)]
enum QueryResponse {
    #[oai(status = 200)]
    Ok(Json<Box<QueryOut>>),
    /// The query is invalid (the message says which part and why), names a
    /// field no matching type has had, or makes too many groups.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// The store could not be read.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}
