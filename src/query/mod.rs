//! The query model: one description of a question about stored events,
//! shared by the HTTP API, `rta query`, the dashboard and the WebSocket.
//!
//! A [`Query`] says which events (a time range and filters), how to break
//! them down (up to three dimensions and a time bucket) and what to compute
//! per field. [`parse`] reads it from the text syntax the CLI and query
//! strings use; [`exec`] answers it over any sequence of events, so every
//! source of events (the store, the engine) gives the same answer.
//!
//! Pure: no I/O, no clock (callers resolve times against `now`).

mod acc;
pub mod exec;
pub mod parse;
pub mod rollup;

use crate::event::{Event, EventFields, EventType, Timestamp, ValueRef};

/// Breakdowns at most: dimensions (and the event's type or source).
pub const MAX_DIMENSIONS: usize = 3;
/// The shortest relative window.
pub const MIN_WINDOW_MS: i64 = 10_000;

/// What to answer, resolved: an absolute time range, filters, breakdowns
/// and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub range: TimeRange,
    pub filters: Vec<Filter>,
    pub by: Vec<Breakdown>,
    /// Statistics asked for; empty means the defaults for the layout.
    pub stats: Vec<StatRequest>,
    pub order: Option<Order>,
    /// Rows kept; the rest are summed in one "others" row. `None` keeps
    /// every row (still bounded by the executor's group limit).
    pub top: Option<usize>,
    /// Whether the default columns come before the statistics asked for;
    /// without them only `stats` are computed.
    pub defaults: bool,
}

/// Event times `from <= t < to`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        from: i64::MIN,
        to: i64::MAX,
    };

    pub fn contains(&self, ts: i64) -> bool {
        self.from <= ts && ts < self.to
    }

    /// The part of the range after `cutoff` (retention).
    pub fn not_before(self, cutoff: Option<i64>) -> TimeRange {
        match cutoff {
            Some(cutoff) => TimeRange {
                from: self.from.max(cutoff),
                to: self.to,
            },
            None => self,
        }
    }

    pub fn is_bounded_below(&self) -> bool {
        self.from != i64::MIN
    }
}

/// The time part of a query as asked: relative to now, or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// The last `ms` milliseconds up to now.
    Window(i64),
    /// Everything stored.
    All,
    /// From `from` (inclusive; the beginning when absent) to `to`
    /// (exclusive; now when absent).
    Between {
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    },
}

impl TimeSpec {
    /// The range as of `now` (an event at `now` is inside).
    pub fn resolve(self, now: Timestamp) -> TimeRange {
        let end = now.millis().saturating_add(1);
        match self {
            TimeSpec::Window(ms) => TimeRange {
                from: end.saturating_sub(ms),
                to: end,
            },
            TimeSpec::All => TimeRange::ALL,
            TimeSpec::Between { from, to } => TimeRange {
                from: from.map_or(i64::MIN, |t| t.millis()),
                to: to.map_or(end, |t| t.millis()),
            },
        }
    }
}

/// What a filter or a breakdown looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// The event's own `type`.
    Type,
    /// The event's own `source`.
    Source,
    /// A value (`values.NAME`; `type` and `source` need the prefix).
    Value(String),
}

impl Field {
    /// `type`, `source`, or the value's name (`values.type` for a value
    /// named like the event's own fields).
    pub fn name(&self) -> String {
        match self {
            Field::Type => "type".into(),
            Field::Source => "source".into(),
            Field::Value(name) if name == "type" || name == "source" => format!("values.{name}"),
            Field::Value(name) => name.clone(),
        }
    }

    /// The field's text in an event, if it has text there.
    fn text<'e, E: EventFields + ?Sized>(&self, event: &'e E) -> Option<&'e str> {
        match self {
            Field::Type => Some(event.kind()),
            Field::Source => Some(event.source()),
            Field::Value(name) => match event.value(name)? {
                ValueRef::Dimension(s) => Some(s),
                ValueRef::Measure(_) => None,
            },
        }
    }
}

/// An event's value by name (values are sorted by name).
pub fn value<'e>(event: &'e Event, name: &str) -> Option<&'e crate::event::Value> {
    event
        .values
        .binary_search_by(|(k, _)| (**k).cmp(name))
        .ok()
        .map(|i| &event.values[i].1)
}

/// One condition on events; a query's filters all hold (AND).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: Field,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The text equals this (a dimension, the type or the source).
    Is(String),
    /// The text differs, or the event has no such dimension.
    IsNot(String),
    /// The text is one of these.
    OneOf(Vec<String>),
    /// The text is none of these (or the event has no such dimension).
    NoneOf(Vec<String>),
    /// The text contains this (case-sensitive).
    Contains(String),
    /// The measure compares so with this number.
    Compare(Comparison, f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
        }
    }
}

impl Filter {
    pub fn matches<E: EventFields + ?Sized>(&self, event: &E) -> bool {
        // `=` and `!=` on a measure compare numbers (`units=5` holds for 5.0).
        let is = |v: &str| match &self.field {
            Field::Value(name) => match event.value(name) {
                Some(ValueRef::Dimension(s)) => s == v,
                Some(ValueRef::Measure(x)) => v.trim().parse::<f64>() == Ok(x),
                None => false,
            },
            field => field.text(event) == Some(v),
        };
        match &self.op {
            Op::Is(v) => is(v),
            Op::IsNot(v) => !is(v),
            Op::OneOf(vs) => vs.iter().any(|v| is(v)),
            Op::NoneOf(vs) => !vs.iter().any(|v| is(v)),
            Op::Contains(part) => self
                .field
                .text(event)
                .is_some_and(|t| t.contains(part.as_str())),
            Op::Compare(cmp, n) => {
                let Field::Value(name) = &self.field else {
                    return false;
                };
                let Some(ValueRef::Measure(x)) = event.value(name) else {
                    return false;
                };
                match cmp {
                    Comparison::Less => x < *n,
                    Comparison::LessOrEqual => x <= *n,
                    Comparison::Greater => x > *n,
                    Comparison::GreaterOrEqual => x >= *n,
                }
            }
        }
    }

    /// Whether an event of this type may pass, for a filter on the type
    /// (`None` for a filter on anything else).
    pub fn allows_type(&self, kind: &str) -> Option<bool> {
        if self.field != Field::Type {
            return None;
        }
        Some(match &self.op {
            Op::Is(v) => kind == v,
            Op::IsNot(v) => kind != v,
            Op::OneOf(vs) => vs.iter().any(|v| v == kind),
            Op::NoneOf(vs) => !vs.iter().any(|v| v == kind),
            Op::Contains(part) => kind.contains(part.as_str()),
            Op::Compare(..) => false,
        })
    }

    /// The event types this filter allows, when it names them.
    fn types(&self) -> Option<Vec<&str>> {
        if self.field != Field::Type {
            return None;
        }
        match &self.op {
            Op::Is(v) => Some(vec![v.as_str()]),
            Op::OneOf(vs) => Some(vs.iter().map(String::as_str).collect()),
            _ => None,
        }
    }
}

impl Query {
    /// The only event types that can match, when the filters say so: lets a
    /// store skip what holds none of them.
    pub fn types(&self) -> Option<Vec<EventType>> {
        let mut allowed: Option<Vec<&str>> = None;
        for f in &self.filters {
            if let Some(types) = f.types() {
                allowed = Some(match allowed {
                    None => types,
                    Some(before) => before.into_iter().filter(|t| types.contains(t)).collect(),
                });
            }
        }
        allowed.map(|types| {
            types
                .into_iter()
                .filter_map(|t| EventType::parse(t, &crate::event::Limits::unbounded()).ok())
                .collect()
        })
    }

    /// The values the query reads by name (in filters, breakdowns and
    /// statistics); besides them it reads only the measures.
    pub fn names_read(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.values_named().collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every value the query names, in filters, breakdowns and statistics
    /// (repeats included).
    fn values_named(&self) -> impl Iterator<Item = &str> {
        self.filters
            .iter()
            .map(|f| &f.field)
            .chain(self.by.iter().filter_map(|b| match b {
                Breakdown::Field(f) => Some(f),
                Breakdown::Time(_) => None,
            }))
            .filter_map(|f| match f {
                Field::Value(name) => Some(name.as_str()),
                _ => None,
            })
            .chain(self.stats.iter().map(|s| s.field.as_str()))
    }

    /// Whether an event is one the query is about.
    pub fn matches<E: EventFields + ?Sized>(&self, event: &E) -> bool {
        self.range.contains(event.millis()) && self.filters.iter().all(|f| f.matches(event))
    }
}

/// One way to split events into groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakdown {
    /// By the text of a dimension (or the type, or the source).
    Field(Field),
    /// By the start of the event's minute, hour or day (UTC).
    Time(Bucket),
}

impl Breakdown {
    /// Its column name: the field's name, or `time`.
    pub fn name(&self) -> String {
        match self {
            Breakdown::Field(f) => f.name(),
            Breakdown::Time(_) => "time".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn ms(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// A statistic of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRequest {
    pub stat: Stat,
    /// The measure or dimension it is about.
    pub field: String,
}

impl StatRequest {
    /// Its column name: `latency_ms_p95`, `user_distinct`.
    pub fn column(&self) -> String {
        format!("{}_{}", self.field, self.stat.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    /// Events with the measure.
    Count,
    Sum,
    Min,
    Max,
    Mean,
    /// The measure's value in the latest event (by event time).
    Last,
    P50,
    P90,
    P95,
    P99,
    /// Distinct values of a dimension (HyperLogLog).
    Distinct,
    /// The most frequent values of a dimension.
    Top,
}

impl Stat {
    pub const MEASURE: [Stat; 10] = [
        Stat::Count,
        Stat::Sum,
        Stat::Min,
        Stat::Max,
        Stat::Mean,
        Stat::Last,
        Stat::P50,
        Stat::P90,
        Stat::P95,
        Stat::P99,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stat::Count => "count",
            Stat::Sum => "sum",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Mean => "mean",
            Stat::Last => "last",
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::Distinct => "distinct",
            Stat::Top => "top",
        }
    }

    pub fn parse(s: &str) -> Option<Stat> {
        Stat::MEASURE
            .into_iter()
            .chain([Stat::Distinct, Stat::Top])
            .find(|stat| stat.name() == s)
    }

    /// Whether it is about a dimension (text) rather than a measure.
    pub fn of_dimension(self) -> bool {
        matches!(self, Stat::Distinct | Stat::Top)
    }

    /// The quantile it stands for, if it is one.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Stat::P50 => Some(0.5),
            Stat::P90 => Some(0.9),
            Stat::P95 => Some(0.95),
            Stat::P99 => Some(0.99),
            _ => None,
        }
    }
}

/// How rows are ordered before `top` is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// A column: `events`, a breakdown's name, or a statistic's column.
    pub column: String,
    pub descending: bool,
}

/// The field names seen per type: what a query's fields are checked
/// against, so a misspelt field is an error rather than an empty answer.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub types: std::collections::BTreeMap<EventType, KnownFields>,
    /// False when events of types beyond the engine's limit were stored.
    pub complete: bool,
}

#[derive(Debug, Clone, Default)]
pub struct KnownFields {
    pub measures: Vec<String>,
    pub dimensions: Vec<String>,
    /// False when the type has more fields than the engine tracks.
    pub complete: bool,
}

impl Query {
    /// Every value the query names must be a field some type it is about
    /// has had; the error lists the fields there are.
    pub fn check_fields(&self, catalog: &Catalog) -> Result<(), String> {
        let allowed = self.types();
        let concerned: Vec<(&EventType, &KnownFields)> = catalog
            .types
            .iter()
            .filter(|(kind, _)| allowed.as_ref().is_none_or(|a| a.contains(kind)))
            .collect();
        if !catalog.complete || concerned.iter().any(|(_, f)| !f.complete) {
            return Ok(());
        }
        if let Some(allowed) = &allowed
            && concerned.is_empty()
        {
            let known: Vec<&str> = catalog.types.keys().map(EventType::as_str).collect();
            return Err(format!(
                "no events of type {}; known types: {}",
                allowed
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if known.is_empty() {
                    "none yet".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        for name in self.values_named() {
            let known = concerned.iter().any(|(_, f)| {
                f.measures.iter().any(|m| m == name) || f.dimensions.iter().any(|d| d == name)
            });
            if !known {
                let mut fields: Vec<&str> = concerned
                    .iter()
                    .flat_map(|(_, f)| f.measures.iter().chain(&f.dimensions))
                    .map(String::as_str)
                    .collect();
                fields.sort_unstable();
                fields.dedup();
                let whose = match &allowed {
                    Some(types) => types
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "any type".into(),
                };
                return Err(format!(
                    "no field `{name}` in {whose}; the fields are: {}",
                    if fields.is_empty() {
                        "none".into()
                    } else {
                        fields.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }
}
