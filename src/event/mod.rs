//! The event model and the only way untrusted input becomes an [`Event`].
//!
//! An event is `{timestamp, source, type, values}`. Numbers in `values` are
//! measures, strings and booleans are dimensions. Parsing enforces the
//! [`Limits`] and reports precisely which field was wrong and why; once an
//! `Event` exists it is valid. This module knows nothing of HTTP or storage.

mod body;
mod fast;
mod parse;
mod timestamp;
mod view;
pub use body::{BodyError, BodyFormat, Parsed, Rejection, parse_body};
pub use parse::{EventError, json_kind, parse_event, parse_event_str};
use parse::{admit, flatten_values, parse_event_text, truncate};
pub use timestamp::Timestamp;
pub use view::{EventFields, EventRef, ValueRef};

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use thiserror::Error;

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
/// `fast::Interner`), so an event costs few allocations to build and free.
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

#[cfg(test)]
mod tests;
