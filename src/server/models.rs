//! The API's request and response models: what the OpenAPI spec documents.

use std::collections::BTreeMap;

use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{Example, Type};
use poem_openapi::{Object, Union};
use serde::Serialize;

use crate::engine::{self, Basic};
use crate::event::{Rejection, Timestamp};
use crate::store::StoredEvent;

/// Which node answered and where it keeps events.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct NodeStatus {
    /// This node's name (`--node-id`).
    pub node_id: String,
    pub version: String,
    /// `sqlite` (one node) or `clickhouse` (a cluster).
    pub store: String,
    /// The data directory, or the ClickHouse URL without credentials.
    pub location: String,
    /// The NATS URL without credentials, on a cluster.
    #[oai(skip_serializing_if_is_none)]
    pub bus: Option<String>,
    /// Events this node's live view holds.
    pub events: u64,
    /// On a cluster: the last stream message this node's live view was given.
    #[oai(skip_serializing_if_is_none)]
    pub followed: Option<u64>,
    /// On a cluster: the last stream message whose events are all in ClickHouse.
    #[oai(skip_serializing_if_is_none)]
    pub loaded: Option<u64>,
    /// On a cluster: whether this node is the one loading ClickHouse now.
    #[oai(skip_serializing_if_is_none)]
    pub loading: Option<bool>,
    /// On a cluster: the last event (sequence number) the hour summaries in
    /// ClickHouse hold.
    #[oai(skip_serializing_if_is_none)]
    pub summarised: Option<u64>,
}

/// An event as sent. Numbers in `values` are measures; strings and booleans
/// are dimensions; nested objects are flattened to dotted names.
#[derive(Debug, Object)]
#[oai(example)]
pub struct EventIn {
    /// RFC 3339 time, or Unix seconds or milliseconds. Defaults to the time of arrival.
    pub timestamp: Option<String>,
    /// Where the event comes from (default `unknown`, at most 128 characters).
    pub source: Option<String>,
    /// The event type: 1-64 letters, digits, `_`, `-` or `.`.
    #[oai(rename = "type")]
    pub kind: String,
    /// Up to 256 fields: numbers (measures), strings up to 1 KiB and booleans (dimensions).
    pub values: Option<BTreeMap<String, serde_json::Value>>,
}

impl Example for EventIn {
    fn example() -> Self {
        Self {
            timestamp: Some("2023-04-01T12:00:00Z".into()),
            source: Some("web-app".into()),
            kind: "sales".into(),
            values: Some(BTreeMap::from([
                ("amount".into(), serde_json::json!(150)),
                ("units".into(), serde_json::json!(5)),
                ("region".into(), serde_json::json!("North America")),
            ])),
        }
    }
}

/// One event, or an array of them.
#[derive(Debug, Union)]
pub enum EventsIn {
    One(EventIn),
    Many(Vec<EventIn>),
}

/// What happened to the events of one request.
#[derive(Debug, Object, Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct IngestReport {
    /// Events stored durably by this request.
    pub accepted: u64,
    /// Sequence number of the first accepted event; the others follow in
    /// order. Absent when nothing was accepted.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// Every event that was not stored, and why.
    pub rejected: Vec<RejectedEvent>,
    /// True when this answers a repeated `Idempotency-Key`: nothing new was stored.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
}

/// A JSON answer written straight from `T` by serde, documented with `T`'s
/// schema. poem-openapi's `Json` builds a `serde_json::Value` first, which
/// cost the ingest answer 3,000 instructions: more than storing its event.
/// `T`'s serde and poem-openapi forms must agree (tested for `IngestReport`).
pub struct SerdeJson<T>(pub T);

impl<T: Type + Send> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder()
                // Static: not parsed and checked again for every answer.
                .header(
                    poem::http::header::CONTENT_TYPE,
                    poem::http::HeaderValue::from_static(Self::CONTENT_TYPE),
                )
                .body(body),
            Err(e) => Response::builder()
                .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                .body(e.to_string()),
        }
    }
}

impl Example for IngestReport {
    fn example() -> Self {
        Self {
            accepted: 2,
            first_seq: Some(41),
            rejected: vec![RejectedEvent {
                index: 1,
                line: None,
                error:
                    "field `values.amount` is an array; values must be numbers, strings or booleans"
                        .into(),
            }],
            replayed: None,
        }
    }
}

#[derive(Debug, Object, Serialize)]
pub struct RejectedEvent {
    /// 0-based position of the event in the request.
    pub index: u64,
    /// 1-based line in an NDJSON body.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What was wrong.
    pub error: String,
}

impl From<Rejection> for RejectedEvent {
    fn from(r: Rejection) -> Self {
        Self {
            index: r.index as u64,
            line: r.line.map(|l| l as u64),
            error: r.error,
        }
    }
}

/// An error: a short code and a message saying what to do.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ApiError {
    /// Machine-readable code, such as `payload_too_large`.
    pub error: String,
    /// What went wrong, where, and what to do.
    pub message: String,
}

impl ApiError {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}

impl Example for ApiError {
    fn example() -> Self {
        Self::new(
            "bad_request",
            "the body is not valid JSON: expected `,` or `}` at line 1 column 18",
        )
    }
}

/// A stored event.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventOut {
    /// Position in commit order.
    pub seq: u64,
    pub timestamp: String,
    pub source: String,
    #[oai(rename = "type")]
    pub kind: String,
    pub values: BTreeMap<String, serde_json::Value>,
}

impl From<StoredEvent> for EventOut {
    fn from(s: StoredEvent) -> Self {
        let e = s.event;
        Self {
            seq: s.seq,
            timestamp: e.timestamp.to_rfc3339(),
            source: e.source.to_string(),
            kind: e.kind.to_string(),
            values: e
                .values
                .into_iter()
                .map(|(k, v)| {
                    let json = match v {
                        crate::event::Value::Measure(x) => measure_json(x),
                        crate::event::Value::Dimension(s) => {
                            serde_json::Value::String(s.to_string())
                        }
                    };
                    (k.to_string(), json)
                })
                .collect(),
        }
    }
}

/// The metrics: seed-compatible fields first, then the richer aggregates.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Metrics {
    /// Every event stored, whatever the window.
    pub total_events: u64,
    /// All-time event count per type.
    pub events_by_type: BTreeMap<String, u64>,
    /// Per type and measure, the latest values (oldest first, at most 20).
    pub recent_values: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// Per type, event counts and measure means over time.
    pub time_series_data: TimeSeries,
    /// When these metrics were computed (RFC 3339).
    pub generated_at: String,
    /// The window's or the range's length in seconds; absent for the live
    /// all-time view.
    #[oai(skip_serializing_if_is_none)]
    pub window_seconds: Option<f64>,
    /// Events within the window or range that pass the filters (of the
    /// selected type); absent for the live all-time view.
    #[oai(skip_serializing_if_is_none)]
    pub window_events: Option<u64>,
    /// Events of types beyond the limit on distinct types (`max_types`,
    /// 100): counted in `totalEvents`, not summarised here. Ask for such a
    /// type by name to see it.
    pub untracked_events: u64,
    /// Per type: counts, rate, measures and top dimension values (over the window if any).
    pub types: Vec<TypeMetrics>,
    /// With `by`: the selected type grouped by that dimension; absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub groups: Option<Groups>,
    /// With `field`: a detailed series of that measure of the selected type; absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub series: Option<FieldSeries>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct TypeMetrics {
    pub name: String,
    pub count: u64,
    /// Events per second: over the window, or the last minute.
    pub rate: f64,
    /// The earliest event time (RFC 3339); absent without events.
    #[oai(skip_serializing_if_is_none)]
    pub first_seen: Option<String>,
    /// The latest event time (RFC 3339); absent without events.
    #[oai(skip_serializing_if_is_none)]
    pub last_seen: Option<String>,
    pub measures: Vec<MeasureMetrics>,
    pub dimensions: Vec<DimensionMetrics>,
}

/// Aggregates of one numeric field.
///
/// Quantiles (`p50` ... `p99`) use the nearest-rank definition: the
/// smallest value with at least that share of the values at or below it
/// (p99 of {1, 1000} is 1000). Over at most 64 values they are exact; over
/// more they come from a sketch, within 1% of the true value. They never lie
/// outside [`min`, `max`].
#[derive(Debug, Clone, Object)]
pub struct MeasureMetrics {
    pub name: String,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    #[oai(skip_serializing_if_is_none)]
    pub p50: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub p90: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub p95: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub p99: Option<f64>,
}

/// The most frequent values of one text field.
#[derive(Debug, Clone, Object)]
pub struct DimensionMetrics {
    pub name: String,
    pub top: Vec<ValueCount>,
    /// Events whose value is not listed in `top`.
    pub others: u64,
}

#[derive(Debug, Clone, Object)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct TimeSeries {
    /// Width of each point in seconds.
    pub step_seconds: f64,
    /// Per type, one point per step, oldest first, including empty steps.
    pub types: BTreeMap<String, Vec<SeriesPoint>>,
}

#[derive(Debug, Clone, Object)]
pub struct SeriesPoint {
    /// Start of the step (RFC 3339).
    pub t: String,
    /// Events in the step.
    pub count: u64,
    /// Mean of each measure in the step.
    pub mean: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Object)]
pub struct Groups {
    /// The dimension grouped by.
    pub by: String,
    pub groups: Vec<Group>,
    /// Events whose value is not among the groups.
    pub others: u64,
}

#[derive(Debug, Clone, Object)]
pub struct Group {
    pub value: String,
    pub count: u64,
    pub measures: BTreeMap<String, Stats>,
}

#[derive(Debug, Clone, Object)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    /// Absent when `count` is 0 (as are `max` and `mean`).
    #[oai(skip_serializing_if_is_none)]
    pub min: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub max: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub mean: Option<f64>,
}

impl From<Basic> for Stats {
    fn from(b: Basic) -> Self {
        let some = |x: f64| (b.count > 0).then_some(x);
        Self {
            count: b.count,
            sum: b.sum(),
            min: some(b.min),
            max: some(b.max),
            mean: b.mean(),
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct FieldSeries {
    pub field: String,
    pub step_seconds: f64,
    pub points: Vec<FieldPoint>,
}

#[derive(Debug, Clone, Object)]
pub struct FieldPoint {
    pub t: String,
    #[oai(flatten)]
    pub stats: Stats,
}

/// A measure as JSON: integers without a fraction, as they were sent.
fn measure_json(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        serde_json::Value::from(x as i64)
    } else {
        serde_json::Value::from(x)
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    Timestamp::from_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

impl From<engine::Metrics> for Metrics {
    fn from(s: engine::Metrics) -> Self {
        let step = s.time_series.step_ms;
        Self {
            total_events: s.total_events,
            events_by_type: s.events_by_type,
            recent_values: s.recent_values,
            time_series_data: TimeSeries {
                step_seconds: step as f64 / 1000.0,
                types: s
                    .time_series
                    .points
                    .into_iter()
                    .map(|(kind, points)| {
                        let points = points
                            .into_iter()
                            .map(|p| SeriesPoint {
                                t: rfc3339(p.ts_ms),
                                count: p.count,
                                mean: p
                                    .measures
                                    .iter()
                                    .filter_map(|(n, b)| Some((n.clone(), b.mean()?)))
                                    .collect(),
                            })
                            .collect();
                        (kind, points)
                    })
                    .collect(),
            },
            generated_at: rfc3339(s.generated_at),
            window_seconds: s.window_ms.map(|w| w as f64 / 1000.0),
            window_events: s.window_events,
            untracked_events: s.untracked_events,
            types: s.types.into_iter().map(TypeMetrics::from).collect(),
            groups: s.groups.map(|g| Groups {
                by: g.by,
                others: g.others,
                groups: g
                    .groups
                    .into_iter()
                    .map(|g| Group {
                        value: g.value,
                        count: g.count,
                        measures: g.measures.into_iter().map(|(n, b)| (n, b.into())).collect(),
                    })
                    .collect(),
            }),
            series: s.field_series.map(|f| FieldSeries {
                field: f.field,
                step_seconds: f.step_ms as f64 / 1000.0,
                points: f
                    .points
                    .into_iter()
                    .map(|(ts, b)| FieldPoint {
                        t: rfc3339(ts),
                        stats: b.into(),
                    })
                    .collect(),
            }),
        }
    }
}

impl From<engine::TypeMetrics> for TypeMetrics {
    fn from(t: engine::TypeMetrics) -> Self {
        let seen = t.count > 0;
        Self {
            name: t.name,
            count: t.count,
            rate: t.rate,
            first_seen: seen.then(|| rfc3339(t.first_seen)),
            last_seen: seen.then(|| rfc3339(t.last_seen)),
            measures: t
                .measures
                .into_iter()
                .map(|m| MeasureMetrics {
                    name: m.name,
                    count: m.count,
                    sum: m.sum,
                    min: m.min,
                    max: m.max,
                    mean: m.mean,
                    last: m.last,
                    p50: m.p50,
                    p90: m.p90,
                    p95: m.p95,
                    p99: m.p99,
                })
                .collect(),
            dimensions: t
                .dimensions
                .into_iter()
                .map(|d| DimensionMetrics {
                    name: d.name,
                    others: d.others,
                    top: d
                        .top
                        .into_iter()
                        .map(|(value, count)| ValueCount { value, count })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn the_ingest_answer_is_what_its_schema_says() {
        let mut replayed = IngestReport::example();
        replayed.replayed = Some(true);
        replayed.rejected[0].line = Some(3);
        let empty = IngestReport {
            accepted: 1,
            first_seq: None,
            rejected: vec![],
            replayed: None,
        };
        for report in [IngestReport::example(), replayed, empty] {
            let ours = serde_json::to_value(&report).expect("serializable");
            assert_eq!(Some(ours), report.to_json(), "{report:?}");
        }
    }
}
