//! Events as rows of the `events` table and back.
//!
//! One row per event: its sequence numbers, its time (`ts` in seconds for
//! partitions and ordering, `time_ms` exact), type, source, and its measures
//! and dimensions as parallel key/value arrays.

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, Limits, Text, Timestamp, Value};

/// The table's columns, in the order rows are read.
pub const COLUMNS: &str = "seq, time_ms, type, source, num_keys, num_vals, dim_keys, dim_vals";

/// The statement creating the table (`{table}` qualified).
pub fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
         seq UInt64, stream_seq UInt64, ts DateTime('UTC'), time_ms Int64, \
         type String, source String, \
         num_keys Array(String), num_vals Array(Float64), \
         dim_keys Array(String), dim_vals Array(String)\
         ) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (type, ts)"
    )
}

#[derive(Serialize)]
struct RowOut<'a> {
    seq: u64,
    stream_seq: u64,
    ts: u32,
    time_ms: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    source: &'a str,
    num_keys: Vec<&'a str>,
    num_vals: Vec<f64>,
    dim_keys: Vec<&'a str>,
    dim_vals: Vec<&'a str>,
}

/// Seconds for the `ts` column: DateTime holds 1970 to 2106; later events
/// keep their exact time in `time_ms` and sort as 2106. A bound before 1970
/// (a window of a century) is 1970.
pub fn ts_seconds(millis: i64) -> u32 {
    u32::try_from(millis.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

/// Appends `event` as one JSONEachRow line.
pub fn write_row(out: &mut Vec<u8>, seq: u64, stream_seq: u64, event: &Event) {
    let mut row = RowOut {
        seq,
        stream_seq,
        ts: ts_seconds(event.timestamp.millis()),
        time_ms: event.timestamp.millis(),
        kind: event.kind.as_str(),
        source: &event.source,
        num_keys: Vec::new(),
        num_vals: Vec::new(),
        dim_keys: Vec::new(),
        dim_vals: Vec::new(),
    };
    for (name, value) in &event.values {
        match value {
            Value::Measure(x) => {
                row.num_keys.push(name);
                row.num_vals.push(*x);
            }
            Value::Dimension(s) => {
                row.dim_keys.push(name);
                row.dim_vals.push(s);
            }
        }
    }
    // Writing into a Vec cannot fail, and every measure is finite.
    let _ = serde_json::to_writer(&mut *out, &row);
    out.push(b'\n');
}

#[derive(Deserialize)]
struct RowIn {
    seq: u64,
    time_ms: i64,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    num_keys: Vec<String>,
    num_vals: Vec<f64>,
    dim_keys: Vec<String>,
    dim_vals: Vec<String>,
}

/// Reads one row back into its sequence number and event.
pub fn read_row(line: &[u8]) -> Result<(u64, Event), String> {
    let row: RowIn = serde_json::from_slice(line).map_err(|e| format!("unreadable row: {e}"))?;
    if row.num_keys.len() != row.num_vals.len() || row.dim_keys.len() != row.dim_vals.len() {
        return Err(format!("row {}: keys and values differ in number", row.seq));
    }
    let timestamp = Timestamp::from_millis(row.time_ms)
        .ok_or_else(|| format!("row {}: time {} out of range", row.seq, row.time_ms))?;
    let kind = EventType::parse(&row.kind, &Limits::unbounded())
        .map_err(|e| format!("row {}: type {e}", row.seq))?;
    let mut values: Vec<(Text, Value)> = row
        .num_keys
        .into_iter()
        .zip(row.num_vals)
        .map(|(k, v)| (Text::from(k), Value::Measure(v)))
        .chain(
            row.dim_keys
                .into_iter()
                .zip(row.dim_vals)
                .map(|(k, v)| (Text::from(k), Value::Dimension(v.into()))),
        )
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values.dedup_by(|a, b| a.0 == b.0);
    Ok((
        row.seq,
        Event {
            timestamp,
            source: row.source.into(),
            kind,
            values,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_a_row() {
        let event = crate::event::parse_event_str(
            r#"{"timestamp":"2023-04-01T12:00:00.123Z","source":"web \"app\"","type":"sales",
                "values":{"amount":150.25,"units":5,"region":"North America","zone":"é\u0001"}}"#,
            &Limits::default(),
            Timestamp::now(),
        )
        .unwrap();
        let mut out = Vec::new();
        write_row(&mut out, 42, 7, &event);
        assert_eq!(out.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains(r#""ts":1680350400"#), "{text}");
        // ClickHouse answers with the same names for the columns it is asked.
        let (seq, back) = read_row(&out[..out.len() - 1]).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(back, event);
        assert_eq!(ts_seconds(Timestamp::MAX), u32::MAX);
        assert_eq!(ts_seconds(-3_000_000_000_000), 0);
        assert!(read_row(b"{\"seq\":1}").is_err());
    }
}
