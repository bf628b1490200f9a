//! The event model and the only way untrusted input becomes an [`Event`].
//!
//! An event is `{timestamp, source, type, values}`. Numbers in `values` are
//! measures, strings and booleans are dimensions. Parsing enforces the
//! [`Limits`] and reports precisely which field was wrong and why; once an
//! `Event` exists it is valid. This module knows nothing of HTTP or storage.

mod fast;
mod view;
pub use view::{EventFields, EventRef, ValueRef};

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use thiserror::Error;

/// Reads the usual shape of an RFC 3339 timestamp, `2023-04-01T12:00:00Z`
/// with or without a fraction of a second, as milliseconds since 1970
/// (the fraction truncated, as chrono does). `None` for any other shape
/// (another offset, lower-case letters, a leap second), which chrono then
/// reads: this only saves it the common case, about six times faster.
fn utc_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let digits = |d: &[u8]| -> Option<i64> {
        d.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let millis = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)?;
            (0..3).fold(0, |ms, i| {
                ms * 10 + fraction.get(i).map_or(0, |&c| i64::from(c - b'0'))
            })
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 in the proleptic Gregorian calendar, counting
    // years from March so that the leap day comes last.
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y.div_euclid(400), y.rem_euclid(400));
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Milliseconds since the Unix epoch, always within [`Timestamp::MIN`]..=[`Timestamp::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const MIN: i64 = 0;
    /// 9999-12-31T23:59:59.999Z.
    pub const MAX: i64 = 253_402_300_799_999;

    /// A timestamp from milliseconds, or `None` when out of range.
    pub fn from_millis(ms: i64) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&ms).then_some(Self(ms))
    }

    /// The current time.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis().clamp(Self::MIN, Self::MAX))
    }

    /// The time `age` before now (at the earliest 1970).
    pub fn ago(age: std::time::Duration) -> Self {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        Self(Self::now().0.saturating_sub(age).max(Self::MIN))
    }

    /// Unix seconds (below 1e11) or milliseconds, when finite and in range.
    pub fn from_number(x: f64) -> Option<Self> {
        let ms = if x.abs() < 1e11 { x * 1000.0 } else { x };
        (Self::MIN as f64..=Self::MAX as f64)
            .contains(&ms)
            .then(|| Self(ms.round() as i64))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Reads an RFC 3339 timestamp as milliseconds since 1970 (not checked
    /// against the supported range); `None` if it is not one.
    pub fn rfc3339_millis(s: &str) -> Option<i64> {
        match utc_millis(s) {
            Some(ms) => Some(ms),
            None => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis()),
        }
    }

    /// Reads a timestamp from JSON: an RFC 3339 string, or a number of Unix
    /// seconds (below 1e11) or milliseconds.
    pub fn from_json(value: &Json) -> Result<Self, String> {
        match value {
            Json::String(s) => {
                let out_of_range =
                    || format!("`{s}` is outside the supported range 1970-01-01..9999-12-31");
                if let Some(ms) = utc_millis(s) {
                    return Self::from_millis(ms).ok_or_else(out_of_range);
                }
                let parsed = DateTime::parse_from_rfc3339(s).map_err(|e| {
                    format!(
                        "`{}` is not an RFC 3339 timestamp ({e}); use e.g. 2023-04-01T12:00:00Z",
                        truncate(s, 40)
                    )
                })?;
                Self::from_millis(parsed.timestamp_millis()).ok_or_else(out_of_range)
            }
            Json::Number(n) => {
                let x = n
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or("is not a finite number")?;
                Self::from_number(x).ok_or_else(|| {
                    format!(
                        "{n} is outside the supported range (Unix seconds or milliseconds from 1970 to 9999)"
                    )
                })
            }
            other => Err(format!(
                "must be an RFC 3339 string or a number of Unix seconds/milliseconds, got {}",
                json_kind(other)
            )),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// An event type name: 1..=`max_type_len` of ASCII letters, digits, `_`, `-`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EventType(Arc<str>);

impl EventType {
    pub fn parse(s: &str, limits: &Limits) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > limits.max_type_len {
            return Err(format!(
                "is {} characters long; the limit is {}",
                s.chars().count(),
                limits.max_type_len
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
        {
            return Err(format!(
                "`{}` contains {c:?}; use only letters, digits, `_`, `-` and `.`",
                truncate(s, 64)
            ));
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Looked up by its text (its order, equality and hash are the text's).
impl std::borrow::Borrow<str> for EventType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Immutable shared text: a source, a field name or a dimension value.
/// Parsing a body gives equal strings one shared allocation (see
/// [`fast::Interner`]), so an event costs few allocations to build and free.
pub type Text = Arc<str>;

/// One value of an event: a number is a measure, text is a dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Measure(f64),
    Dimension(Text),
}

/// Size limits applied while parsing. The defaults suit business events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_type_len: usize,
    pub max_source_len: usize,
    pub max_field_name_len: usize,
    pub max_string_len: usize,
    pub max_fields: usize,
    /// Events older than this (milliseconds before `now`) are refused: the
    /// server's retention would delete them at once.
    pub max_age_ms: Option<i64>,
}

impl Limits {
    /// No limits: for events accepted before, under limits that may have changed.
    pub fn unbounded() -> Self {
        Self {
            max_type_len: usize::MAX,
            max_source_len: usize::MAX,
            max_field_name_len: usize::MAX,
            max_string_len: usize::MAX,
            max_fields: usize::MAX,
            max_age_ms: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_type_len: 64,
            max_source_len: 128,
            max_field_name_len: 128,
            max_string_len: 1024,
            max_fields: 256,
            max_age_ms: None,
        }
    }
}

/// A valid event. Fields are sorted by name and unique.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub timestamp: Timestamp,
    pub source: Text,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(serialize_with = "serialize_fields")]
    pub values: Vec<(Text, Value)>,
}

fn serialize_fields<S: serde::Serializer>(
    fields: &[(Text, Value)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(fields.iter().map(|(k, v)| (k, v)))
}

impl Event {
    /// The JSON object of the event's values, as stored and served.
    pub fn values_json(&self) -> String {
        let mut out = String::with_capacity(16 * self.values.len() + 2);
        out.push('{');
        for (i, (name, value)) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, name);
            out.push(':');
            match value {
                Value::Measure(x) => out.push_str(&format_number(*x)),
                Value::Dimension(s) => push_json_str(&mut out, s),
            }
        }
        out.push('}');
        out
    }

    /// Iterates over the measures (numeric values).
    pub fn measures(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().filter_map(|(k, v)| match v {
            Value::Measure(x) => Some((&**k, *x)),
            Value::Dimension(_) => None,
        })
    }

    /// Iterates over the dimensions (text values).
    pub fn dimensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().filter_map(|(k, v)| match v {
            Value::Dimension(s) => Some((&**k, &**s)),
            Value::Measure(_) => None,
        })
    }
}

impl Event {
    /// Rebuilds an event from what a store kept of a valid one. Checks types
    /// but not size limits, which may have changed since it was accepted.
    pub fn from_stored(
        ts_ms: i64,
        kind: &str,
        source: &str,
        values_json: &str,
    ) -> Result<Self, String> {
        let timestamp = Timestamp::from_millis(ts_ms)
            .ok_or_else(|| format!("timestamp {ts_ms} out of range"))?;
        let unbounded = Limits::unbounded();
        let kind = EventType::parse(kind, &unbounded)?;
        let map: Map<String, Json> =
            serde_json::from_str(values_json).map_err(|e| e.to_string())?;
        let mut values = Vec::with_capacity(map.len());
        flatten_values(map, "", &unbounded, &mut values).map_err(|e| e.to_string())?;
        values.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            timestamp,
            source: source.into(),
            kind,
            values,
        })
    }
}

/// Formats a measure the way JSON would: integers without a fraction.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping is exact; a String cannot fail to serialize.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Why one event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("missing field `type` (a short name such as \"sales\")")]
    MissingType,
    #[error("unknown field `{0}`; an event has only `timestamp`, `source`, `type` and `values`")]
    UnknownField(String),
    #[error("field `{field}` {reason}")]
    Invalid { field: String, reason: String },
    #[error("`values` has more than {0} fields")]
    TooManyFields(usize),
    #[error(
        "timestamp {timestamp} is older than the server's retention ({retention}): it would be deleted at once"
    )]
    TooOld {
        timestamp: Timestamp,
        retention: String,
    },
}

impl EventError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses one event from its JSON text.
pub fn parse_event_str(text: &str, limits: &Limits, now: Timestamp) -> Result<Event, EventError> {
    parse_event_text(text, limits, now, &mut fast::Interner::default())
}

/// Parses JSON text: the fast path for the usual valid event, and the
/// precise one, which explains what is wrong, for everything else.
fn parse_event_text(
    text: &str,
    limits: &Limits,
    now: Timestamp,
    strings: &mut fast::Interner,
) -> Result<Event, EventError> {
    if let Some(event) = fast::parse(text, limits, now, strings) {
        return admit(event, limits, now);
    }
    let value: Json = serde_json::from_str(text).map_err(|e| EventError::Syntax(e.to_string()))?;
    parse_event(value, limits, now)
}

/// Refuses a valid event that retention would delete at once.
fn admit(event: Event, limits: &Limits, now: Timestamp) -> Result<Event, EventError> {
    match limits.max_age_ms {
        Some(age) if event.timestamp.millis() < now.millis().saturating_sub(age) => {
            Err(EventError::TooOld {
                timestamp: event.timestamp,
                retention: humantime::format_duration(std::time::Duration::from_millis(
                    u64::try_from(age).unwrap_or(0),
                ))
                .to_string(),
            })
        }
        _ => Ok(event),
    }
}

/// Turns one JSON value into an event. A missing timestamp becomes `now`.
pub fn parse_event(value: Json, limits: &Limits, now: Timestamp) -> Result<Event, EventError> {
    let Json::Object(object) = value else {
        return Err(EventError::NotAnObject(json_kind(&value)));
    };
    let mut timestamp = None;
    let mut source = None;
    let mut kind = None;
    let mut values = Vec::new();
    for (key, value) in object {
        match key.as_str() {
            "timestamp" => {
                if !value.is_null() {
                    timestamp = Some(
                        Timestamp::from_json(&value)
                            .map_err(|r| EventError::invalid("timestamp", r))?,
                    );
                }
            }
            "source" => source = Some(parse_source(value, limits)?),
            "type" => {
                let Json::String(s) = value else {
                    return Err(EventError::invalid(
                        "type",
                        format!("must be a string, got {}", json_kind(&value)),
                    ));
                };
                kind =
                    Some(EventType::parse(&s, limits).map_err(|r| EventError::invalid("type", r))?);
            }
            "values" => match value {
                Json::Object(map) => flatten_values(map, "", limits, &mut values)?,
                Json::Null => {}
                other => {
                    return Err(EventError::invalid(
                        "values",
                        format!("must be an object, got {}", json_kind(&other)),
                    ));
                }
            },
            _ => return Err(EventError::UnknownField(truncate(&key, 64).into())),
        }
    }
    let kind = kind.ok_or(EventError::MissingType)?;
    values.sort_by(|a: &(Text, Value), b| a.0.cmp(&b.0));
    if let Some(w) = values.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(EventError::invalid(
            format!("values.{}", w[0].0),
            "appears twice after flattening nested objects",
        ));
    }
    admit(
        Event {
            timestamp: timestamp.unwrap_or(now),
            source: source.unwrap_or_else(|| "unknown".into()),
            kind,
            values,
        },
        limits,
        now,
    )
}

fn parse_source(value: Json, limits: &Limits) -> Result<Text, EventError> {
    let s = match value {
        Json::String(s) => s,
        Json::Null => return Ok("unknown".into()),
        other => {
            return Err(EventError::invalid(
                "source",
                format!("must be a string, got {}", json_kind(&other)),
            ));
        }
    };
    if s.chars().count() > limits.max_source_len {
        return Err(EventError::invalid(
            "source",
            format!("is longer than {} characters", limits.max_source_len),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(EventError::invalid("source", "contains control characters"));
    }
    if s.is_empty() {
        return Ok("unknown".into());
    }
    Ok(s.into())
}

/// Flattens `values` into `out`; nested objects become dotted names.
fn flatten_values(
    map: Map<String, Json>,
    prefix: &str,
    limits: &Limits,
    out: &mut Vec<(Text, Value)>,
) -> Result<(), EventError> {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let field = || format!("values.{}", truncate(&name, 64));
        if name.is_empty() {
            return Err(EventError::invalid(
                "values",
                "has a field with an empty name",
            ));
        }
        if name.chars().count() > limits.max_field_name_len {
            return Err(EventError::invalid(
                field(),
                format!(
                    "has a name longer than {} characters",
                    limits.max_field_name_len
                ),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(EventError::invalid(
                field(),
                "has control characters in its name",
            ));
        }
        let value = match value {
            Json::Number(n) => match n.as_f64().filter(|x| x.is_finite()) {
                Some(x) => Value::Measure(x),
                None => return Err(EventError::invalid(field(), format!("{n} is out of range"))),
            },
            Json::String(s) => {
                if s.chars().count() > limits.max_string_len {
                    return Err(EventError::invalid(
                        field(),
                        format!("is longer than {} characters", limits.max_string_len),
                    ));
                }
                Value::Dimension(s.into())
            }
            Json::Bool(b) => Value::Dimension(if b { "true" } else { "false" }.into()),
            Json::Object(inner) => {
                flatten_values(inner, &name, limits, out)?;
                continue;
            }
            Json::Array(_) => {
                return Err(EventError::invalid(
                    field(),
                    "is an array; values must be numbers, strings or booleans (send one field per item)",
                ));
            }
            Json::Null => continue,
        };
        if out.len() == limits.max_fields {
            return Err(EventError::TooManyFields(limits.max_fields));
        }
        out.push((name.into(), value));
    }
    Ok(())
}

/// How a request body lists its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// One event of a body that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rejection {
    /// 0-based position of the event in the body.
    pub index: usize,
    /// 1-based line of the body, for NDJSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub error: String,
}

/// The events of one body: every valid one, and why each other one was not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    pub rejected: Vec<Rejection>,
}

/// A body that could not be read as events at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Splits a body into events, keeping every valid one.
pub fn parse_body(
    body: &[u8],
    format: BodyFormat,
    limits: &Limits,
    now: Timestamp,
) -> Result<Parsed, BodyError> {
    match format {
        BodyFormat::Json => parse_json_body(body, limits, now),
        BodyFormat::Ndjson => {
            let parsed = parse_ndjson_body(body, limits, now);
            if parsed.events.is_empty() && parsed.rejected.is_empty() {
                return Err(BodyError(
                    "the body holds no events; send one JSON event per line".into(),
                ));
            }
            Ok(parsed)
        }
    }
}

fn parse_json_body(body: &[u8], limits: &Limits, now: Timestamp) -> Result<Parsed, BodyError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let mut parsed = Parsed::default();
    match start.map(|i| body[i]) {
        None => Err(BodyError(
            "the body is empty; send a JSON event or an array of events".into(),
        )),
        Some(b'[') => {
            let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
                .map_err(|e| BodyError(format!("the body is not a JSON array of events: {e}")))?;
            if items.is_empty() {
                return Err(BodyError("the array holds no events".into()));
            }
            parsed.events.reserve(items.len());
            let mut strings = fast::Interner::default();
            for (index, item) in items.into_iter().enumerate() {
                match parse_event_text(item.get(), limits, now, &mut strings) {
                    Ok(event) => parsed.events.push(event),
                    Err(e) => parsed.rejected.push(Rejection {
                        index,
                        line: None,
                        error: e.to_string(),
                    }),
                }
            }
            Ok(parsed)
        }
        Some(_) => {
            let fast = std::str::from_utf8(body)
                .ok()
                .and_then(|text| fast::parse(text, limits, now, &mut fast::Interner::default()));
            if let Some(event) = fast {
                match admit(event, limits, now) {
                    Ok(event) => parsed.events.push(event),
                    Err(e) => parsed.rejected.push(Rejection {
                        index: 0,
                        line: None,
                        error: e.to_string(),
                    }),
                }
                return Ok(parsed);
            }
            let value: Json = serde_json::from_slice(body)
                .map_err(|e| BodyError(format!("the body is not valid JSON: {e}")))?;
            match parse_event(value, limits, now) {
                Ok(event) => parsed.events.push(event),
                Err(e) => parsed.rejected.push(Rejection {
                    index: 0,
                    line: None,
                    error: e.to_string(),
                }),
            }
            Ok(parsed)
        }
    }
}

/// Bytes per NDJSON line assumed when sizing the list of events up front.
const TYPICAL_LINE_BYTES: usize = 128;

fn parse_ndjson_body(body: &[u8], limits: &Limits, now: Timestamp) -> Parsed {
    let mut parsed = Parsed::default();
    parsed.events.reserve(body.len() / TYPICAL_LINE_BYTES);
    let mut index = 0;
    let mut strings = fast::Interner::default();
    let mut line = |i: usize, text: Option<&str>, bytes: &[u8]| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let result = match text {
            Some(text) => parse_event_text(text, limits, now, &mut strings),
            None => serde_json::from_slice::<Json>(bytes)
                .map_err(|e| EventError::Syntax(e.to_string()))
                .and_then(|v| parse_event(v, limits, now)),
        };
        match result {
            Ok(event) => parsed.events.push(event),
            Err(e) => parsed.rejected.push(Rejection {
                index,
                line: Some(i + 1),
                error: e.to_string(),
            }),
        }
        index += 1;
    };
    // Checked as UTF-8 once for the whole body; a body that is not is taken
    // line by line, so only its bad lines are rejected.
    match std::str::from_utf8(body) {
        Ok(text) => {
            for (i, l) in text.split('\n').enumerate() {
                line(i, Some(l), l.as_bytes());
            }
        }
        Err(_) => {
            for (i, l) in body.split(|b| *b == b'\n').enumerate() {
                line(i, std::str::from_utf8(l).ok(), l);
            }
        }
    }
    parsed
}

/// A short name for the kind of a JSON value, for messages.
pub fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Json) -> Result<Event, EventError> {
        parse_event(v, &Limits::default(), Timestamp(1_000))
    }

    #[test]
    fn events_of_one_body_share_their_repeated_strings() {
        let body = concat!(
            r#"{"type":"sales","source":"web","values":{"amount":1,"region":"EU","shop":{"id":"a"}}}"#,
            "\n",
            r#"{"type":"sales","source":"web","values":{"amount":2,"region":"EU","shop":{"id":"b"}}}"#,
            "\n",
            r#"{"type":"sales","source":"web","values":{"units":3,"region":"US"}}"#,
            "\n",
            r#"{"type":"users","source":"web","values":{"region":"EU","amount":5}}"#,
        );
        let parsed = parse_body(
            body.as_bytes(),
            BodyFormat::Ndjson,
            &Limits::default(),
            Timestamp(0),
        )
        .unwrap();
        let [a, b, c, d] = &parsed.events[..] else {
            panic!("four events expected, got {:?}", parsed);
        };
        assert!(Arc::ptr_eq(&a.source, &b.source) && Arc::ptr_eq(&b.source, &c.source));
        for i in 0..3 {
            assert_eq!(a.values[i].0, b.values[i].0);
            assert!(
                Arc::ptr_eq(&a.values[i].0, &b.values[i].0),
                "{}",
                a.values[i].0
            );
        }
        let text = |e: &Event, i: usize| match &e.values[i].1 {
            Value::Dimension(s) => s.clone(),
            Value::Measure(x) => panic!("a dimension expected, got {x}"),
        };
        assert!(Arc::ptr_eq(&text(a, 1), &text(b, 1)));
        assert_eq!((&*text(a, 2), &*text(b, 2)), ("a", "b"));
        // Other names at the same places are still told apart.
        assert_eq!(
            c.values.iter().map(|(n, _)| &**n).collect::<Vec<_>>(),
            ["region", "units"]
        );
        assert_eq!(&*text(c, 0), "US");
        // A name met at another place in an earlier event is shared too.
        let name = |e: &Event, n: &str| {
            e.values
                .iter()
                .find(|(k, _)| &**k == n)
                .map(|(k, _)| k.clone())
                .expect("the field is there")
        };
        for n in ["amount", "region"] {
            assert!(Arc::ptr_eq(&name(a, n), &name(d, n)), "{n}");
        }
    }

    #[test]
    fn parses_the_canonical_event() {
        let e = parse(
            json!({"timestamp": "2023-04-01T12:00:00Z", "source": "web-app", "type": "sales",
            "values": {"amount": 150, "units": 5, "region": "North America"}}),
        )
        .unwrap();
        assert_eq!(e.timestamp.millis(), 1_680_350_400_000);
        assert_eq!(&*e.source, "web-app");
        assert_eq!(e.kind.as_str(), "sales");
        assert_eq!(
            e.measures().collect::<Vec<_>>(),
            vec![("amount", 150.0), ("units", 5.0)]
        );
        assert_eq!(
            e.dimensions().collect::<Vec<_>>(),
            vec![("region", "North America")]
        );
        assert_eq!(
            e.values_json(),
            r#"{"amount":150,"region":"North America","units":5}"#
        );
    }

    #[test]
    fn usual_events_take_the_fast_path_and_unusual_ones_the_precise_one() {
        let fast = |text: &str| {
            fast::parse(
                text,
                &Limits::default(),
                Timestamp(0),
                &mut fast::Interner::default(),
            )
        };
        let canonical = r#"{"timestamp": "2023-04-01T12:00:00Z", "source": "web-app", "type": "sales",
            "values": {"amount": 150, "units": 5.5, "region": "North America", "ok": true, "n": {"x": null}}}"#;
        assert_eq!(
            fast(canonical),
            parse_event_str(canonical, &Limits::default(), Timestamp(0)).ok()
        );
        assert!(fast(canonical).is_some());
        // A key given twice: the precise path keeps the last, the fast path declines.
        for text in [
            r#"{"type":"a","values":{"x":{"b":1},"x":{"c":2}}}"#,
            r#"{"type":"a","values":{"x":1},"values":{"y":2}}"#,
            r#"{"type":"a","values":{"x":1,"x":{"c":2}}}"#,
            r#"{"type":"a\u0062"}"#,
            r#"{"type":"a","values":{"x":[1]}}"#,
        ] {
            assert_eq!(fast(text), None, "{text}");
        }
        let last_wins = parse_event_str(
            r#"{"type":"a","values":{"x":{"b":1},"x":{"c":2}}}"#,
            &Limits::default(),
            Timestamp(0),
        );
        assert_eq!(last_wins.unwrap().values_json(), r#"{"x.c":2}"#);
    }

    #[test]
    fn defaults_and_numeric_timestamps() {
        let e = parse(json!({"type": "x"})).unwrap();
        assert_eq!(e.timestamp.millis(), 1_000);
        assert_eq!(&*e.source, "unknown");
        assert_eq!(
            parse(json!({"type": "x", "timestamp": 1_680_350_400}))
                .unwrap()
                .timestamp
                .millis(),
            1_680_350_400_000
        );
        assert_eq!(
            parse(json!({"type": "x", "timestamp": 1_680_350_400_123_i64}))
                .unwrap()
                .timestamp
                .millis(),
            1_680_350_400_123
        );
    }

    #[test]
    fn flattens_nested_objects_and_keeps_booleans() {
        let e = parse(
            json!({"type": "x", "values": {"geo": {"country": "FR", "lat": 1.5}, "ok": true}}),
        )
        .unwrap();
        assert_eq!(
            e.values_json(),
            r#"{"geo.country":"FR","geo.lat":1.5,"ok":"true"}"#
        );
    }

    #[test]
    fn rejects_with_precise_messages() {
        let cases = [
            (json!([1]), "an event must be a JSON object, got an array"),
            (json!({"source": "a"}), "missing field `type`"),
            (
                json!({"type": 5}),
                "field `type` must be a string, got a number",
            ),
            (json!({"type": "a b"}), "field `type` `a b` contains ' '"),
            (json!({"type": "x", "extra": 1}), "unknown field `extra`"),
            (
                json!({"type": "x", "values": {"tags": [1]}}),
                "field `values.tags` is an array",
            ),
            (
                json!({"type": "x", "values": 3}),
                "field `values` must be an object",
            ),
            (
                json!({"type": "x", "timestamp": "yesterday"}),
                "field `timestamp` `yesterday` is not an RFC 3339",
            ),
            (
                json!({"type": "x", "timestamp": -5}),
                "field `timestamp` -5 is outside",
            ),
            (
                json!({"type": "x", "values": {"a": {"b": 1}, "a.b": 2}}),
                "field `values.a.b` appears twice",
            ),
        ];
        for (input, expected) in cases {
            let err = parse(input.clone()).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{input}: got {err:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_type_len: 3,
            max_fields: 2,
            max_string_len: 4,
            ..Limits::default()
        };
        let p = |v| {
            parse_event(v, &limits, Timestamp(0))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            p(json!({"type": "abcd"})),
            "field `type` is 4 characters long; the limit is 3"
        );
        assert_eq!(
            p(json!({"type": "a", "values": {"a": 1, "b": 2, "c": 3}})),
            "`values` has more than 2 fields"
        );
        assert_eq!(
            p(json!({"type": "a", "values": {"s": "hello"}})),
            "field `values.s` is longer than 4 characters"
        );
    }

    #[test]
    fn rejects_out_of_range_numbers_in_text() {
        let err = parse_event_str(
            r#"{"type":"x","values":{"a":1e400}}"#,
            &Limits::default(),
            Timestamp(0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("number out of range"), "{err}");
    }

    #[test]
    fn bodies_keep_every_valid_event() {
        let l = Limits::default();
        let p = parse_body(
            br#"[{"type":"a"}, {"type":5}, {"type":"b","values":{"x":1e400}}, {"type":"c"}]"#,
            BodyFormat::Json,
            &l,
            Timestamp(0),
        )
        .unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(
            p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let p = parse_body(
            b"{\"type\":\"a\"}\n\nnot json\n{\"type\":\"b\"}\n",
            BodyFormat::Ndjson,
            &l,
            Timestamp(0),
        )
        .unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.rejected[0].line, Some(3));
        assert_eq!(p.rejected[0].index, 1);
        let err = parse_body(b"[{\"type\":\"a\"}", BodyFormat::Json, &l, Timestamp(0)).unwrap_err();
        assert!(err.0.contains("line 1 column 13"), "{err}");
        assert!(parse_body(b"  ", BodyFormat::Json, &l, Timestamp(0)).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Json> {
            let leaf = prop_oneof![
                Just(Json::Null),
                any::<bool>().prop_map(Json::Bool),
                any::<f64>()
                    .prop_map(|x| serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)),
                any::<i64>().prop_map(|x| Json::Number(x.into())),
                ".{0,20}".prop_map(Json::String),
            ];
            leaf.prop_recursive(6, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("type".to_string()),
                            Just("values".to_string()),
                            Just("timestamp".to_string()),
                            Just("source".to_string()),
                            ".{0,8}"
                        ],
                        inner,
                        0..8
                    )
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
                ]
            })
        }

        #[test]
        fn quick_timestamps_know_leap_days() {
            for s in [
                "2024-02-29T00:00:00Z",
                "2000-02-29T23:59:59.999Z",
                "1970-01-01T00:00:00.1Z",
            ] {
                let chrono = DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis());
                assert_eq!(utc_millis(s), chrono.ok(), "{s}");
            }
            for s in [
                "2023-02-29T00:00:00Z",
                "1900-02-29T00:00:00Z",
                "2024-04-31T00:00:00Z",
            ] {
                assert_eq!(utc_millis(s), None, "{s}");
            }
        }

        proptest! {
            /// The quick reader of the usual shape agrees with chrono on
            /// every timestamp it accepts, and accepts every usual one.
            #[test]
            fn quick_timestamps_agree_with_chrono(
                (y, mo, d) in (0i64..10_000, 1i64..13, 1i64..32),
                (h, mi, sec) in (0i64..25, 0i64..61, 0i64..61),
                fraction in prop::option::of("[0-9]{1,10}"),
            ) {
                let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
                let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{fraction}Z");
                let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis());
                match utc_millis(&s) {
                    Some(ms) => prop_assert_eq!(Some(ms), chrono, "{}", s),
                    // Leap seconds and fractions beyond nanoseconds are chrono's.
                    None => prop_assert!(chrono.is_none() || sec == 60 || fraction.len() > 10, "{}", s),
                }
            }

            /// Near misses of the shape are never misread.
            #[test]
            fn quick_timestamps_refuse_what_chrono_refuses(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,4})?([Zz]|[+-][0-9]{2}:[0-9]{2})?") {
                let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis());
                if let Some(ms) = utc_millis(&s) {
                    prop_assert_eq!(Some(ms), chrono, "{}", s);
                }
                prop_assert_eq!(Timestamp::rfc3339_millis(&s), chrono, "{}", s);
            }
        }

        /// Objects that are often valid events, and often almost.
        fn event_like() -> impl Strategy<Value = Json> {
            let name = prop_oneof![
                Just("a".to_string()),
                Just("b".to_string()),
                "[a-c.]{0,8}",
                ".{0,3}"
            ];
            let values = prop::collection::btree_map(name, json_value(), 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect()))
                .boxed();
            (
                prop_oneof![
                    Just(json!("sales")),
                    Just(json!("a.b-c_1")),
                    Just(json!("bad type")),
                    Just(json!(5))
                ],
                prop_oneof![
                    Just(Json::Null),
                    values.clone(),
                    prop::collection::btree_map("[ab]", values, 0..3)
                        .prop_map(|m| Json::Object(m.into_iter().collect()))
                ],
                prop_oneof![
                    Just(Json::Null),
                    Just(json!("2023-04-01T12:00:00.5+02:00")),
                    Just(json!("2023-04-01")),
                    any::<i64>().prop_map(|x| json!(x)),
                    (-1e14f64..1e14).prop_map(|x| json!(x))
                ],
                prop_oneof![
                    Just(Json::Null),
                    Just(json!("")),
                    Just(json!("web")),
                    Just(json!("a\u{1}")),
                    Just(json!("long-source"))
                ],
                any::<u8>(),
            )
                .prop_map(|(kind, values, timestamp, source, mask)| {
                    let mut object = serde_json::Map::new();
                    for (bit, key, value) in [
                        (1, "type", kind),
                        (2, "values", values),
                        (4, "timestamp", timestamp),
                        (8, "source", source),
                    ] {
                        if mask & bit != 0 || key == "type" && mask & 16 != 0 {
                            object.insert(key.into(), value);
                        }
                    }
                    Json::Object(object)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let limits = Limits::default();
                let _ = parse_body(&bytes, BodyFormat::Json, &limits, Timestamp(0));
                let _ = parse_body(&bytes, BodyFormat::Ndjson, &limits, Timestamp(0));
            }

            #[test]
            fn the_fast_path_agrees_with_the_precise_one(value in prop_oneof![json_value(), event_like()]) {
                let limits = Limits { max_fields: 4, max_string_len: 6, max_field_name_len: 6, ..Limits::default() };
                let text = serde_json::to_string(&value).unwrap();
                let precise = parse_event(value, &limits, Timestamp(0));
                let fast = fast::parse(&text, &limits, Timestamp(0), &mut fast::Interner::default());
                if let Some(event) = fast {
                    prop_assert_eq!(Ok(event), precise);
                }
            }

            #[test]
            fn accepted_events_are_valid(value in json_value()) {
                let limits = Limits::default();
                if let Ok(event) = parse_event(value, &limits, Timestamp(0)) {
                    let kind = event.kind.as_str();
                    prop_assert!(!kind.is_empty() && kind.len() <= limits.max_type_len);
                    prop_assert!(kind.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)));
                    prop_assert!(event.values.len() <= limits.max_fields);
                    prop_assert!(event.values.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
                    prop_assert!(event.measures().all(|(_, x)| x.is_finite()));
                    // What is stored reads back as the same event.
                    let back = Event::from_stored(event.timestamp.millis(), kind, &event.source, &event.values_json());
                    prop_assert_eq!(back, Ok(event));
                }
            }
        }
    }
}
