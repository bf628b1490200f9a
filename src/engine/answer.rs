//! What the engine answers: the metrics of a view, in plain types the
//! server turns into its API's.

use std::collections::BTreeMap;

use super::Basic;
use crate::event::EventType;

/// What to compute. Every field narrows or extends the default answer.
#[derive(Debug, Clone)]
pub struct Query {
    /// Only this type.
    pub kind: Option<EventType>,
    /// Aggregates over the last `window_ms` instead of all time.
    pub window_ms: Option<i64>,
    /// Group the selected type by this dimension.
    pub by: Option<String>,
    /// A detailed series of this measure of the selected type.
    pub field: Option<String>,
    /// The step of every series.
    pub step_ms: Option<i64>,
    /// How many top values per dimension (and groups) to report.
    pub top: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            kind: None,
            window_ms: None,
            by: None,
            field: None,
            step_ms: None,
            top: 10,
        }
    }
}

/// A consistent view of the metrics at one moment.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub version: u64,
    pub generated_at: i64,
    pub total_events: u64,
    pub untracked_events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub window_ms: Option<i64>,
    pub window_events: Option<u64>,
    pub types: Vec<TypeMetrics>,
    pub recent_values: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    pub time_series: TimeSeries,
    pub groups: Option<Groups>,
    pub field_series: Option<FieldSeries>,
}

#[derive(Debug, Clone)]
pub struct TypeMetrics {
    pub name: String,
    pub count: u64,
    pub rate: f64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub measures: Vec<MeasureMetrics>,
    pub dimensions: Vec<DimensionMetrics>,
}

#[derive(Debug, Clone)]
pub struct MeasureMetrics {
    pub name: String,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DimensionMetrics {
    pub name: String,
    pub top: Vec<(String, u64)>,
    /// Events whose value is not among `top`.
    pub others: u64,
}

#[derive(Debug, Clone)]
pub struct TimeSeries {
    pub step_ms: i64,
    pub start_ms: i64,
    pub points: BTreeMap<String, Vec<SeriesPointOut>>,
}

#[derive(Debug, Clone)]
pub struct SeriesPointOut {
    pub ts_ms: i64,
    pub count: u64,
    pub measures: BTreeMap<String, Basic>,
}

#[derive(Debug, Clone)]
pub struct Groups {
    pub by: String,
    pub groups: Vec<Group>,
    pub others: u64,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub value: String,
    pub count: u64,
    pub measures: BTreeMap<String, Basic>,
}

#[derive(Debug, Clone)]
pub struct FieldSeries {
    pub field: String,
    pub step_ms: i64,
    pub points: Vec<(i64, Basic)>,
}
