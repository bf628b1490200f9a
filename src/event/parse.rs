//! One event from JSON: the only way untrusted input becomes an [`Event`],
//! with a precise reason for each refusal.

use super::*;

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
pub(super) fn parse_event_text(
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
pub(super) fn admit(event: Event, limits: &Limits, now: Timestamp) -> Result<Event, EventError> {
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
pub(super) fn flatten_values(
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

pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
