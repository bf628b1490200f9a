//! A request body (a JSON event, a JSON array, NDJSON) split into its
//! events, every valid one kept.

use super::*;

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
