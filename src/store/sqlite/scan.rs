//! Reading stored events by time and by position: the segments that can
//! hold a time range (skipped by their span and types), and events one at a
//! time from a cursor, oldest or newest first.

use std::path::Path;

use rusqlite::params;

use super::{SCAN_BYTES, SCAN_CHUNK, decode_row, open_connection};
use crate::event::{Event, EventRef, EventType};
use crate::query::TimeRange;
use crate::query::rollup::Covered;
use crate::store::segment;
use crate::store::{Part, ScanOrder, StoreError};

pub(super) fn scan_range(
    path: &Path,
    range: TimeRange,
    types: Option<&[EventType]>,
    part: Part,
    sink: &mut dyn FnMut(u64, &[Event]),
) -> Result<(), StoreError> {
    let none = Covered::default();
    for_each_segment(path, range, types, part, &none, &mut |first_seq, data| {
        let events = decode_row(first_seq as i64, data);
        // The part's events: runs of consecutive ones.
        let mut start = 0;
        while start < events.len() {
            let owned = part.owns(first_seq + start as u64);
            let mut end = start + 1;
            while end < events.len() && part.owns(first_seq + end as u64) == owned {
                end += 1;
            }
            if owned {
                sink(first_seq + start as u64, &events[start..end]);
            }
            start = end;
        }
    })
}

pub(super) fn visit_range(
    path: &Path,
    range: TimeRange,
    types: Option<&[EventType]>,
    dimensions: Option<&[&str]>,
    part: Part,
    covered: &Covered,
    visit: &mut dyn FnMut(u64, &EventRef<'_>),
) -> Result<(), StoreError> {
    let kinds: Option<Vec<&str>> = types.map(|ts| ts.iter().map(EventType::as_str).collect());
    let mut owned = |seq: u64, event: &EventRef<'_>| {
        if part.owns(seq) && !covered.covers(seq, event.kind, event.millis) {
            visit(seq, event);
        }
    };
    for_each_segment(path, range, types, part, covered, &mut |first_seq, data| {
        if let Err(reason) =
            segment::visit(data, first_seq, kinds.as_deref(), dimensions, &mut owned)
        {
            tracing::warn!(first_seq, %reason, "skipping the rest of an unreadable segment");
        }
    })
}

/// Calls `each(first_seq, data)` for every segment that may hold events in
/// `range` of one of `types` and of this `part`, and not only events the
/// `covered` hour summaries hold, in commit order (the caller keeps only
/// the part's events).
fn for_each_segment(
    path: &Path,
    range: TimeRange,
    types: Option<&[EventType]>,
    part: Part,
    covered: &Covered,
    each: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), StoreError> {
    let conn = open_connection(path).map_err(|e| StoreError::Read(e.to_string()))?;
    let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
    // `min_ts < to` is what the index answers; old ranges touch few rows.
    // A segment's bytes are fetched only once it is known to be wanted:
    // a row's every column is read when it is stepped on.
    let mut stmt = conn
        .prepare(
            "SELECT first_seq, types, last_seq, min_ts, max_ts FROM segments
             WHERE first_seq > ?1 AND min_ts < ?2 AND max_ts >= ?3
             ORDER BY first_seq LIMIT ?4",
        )
        .map_err(read)?;
    let mut bytes = conn
        .prepare("SELECT data FROM segments WHERE first_seq = ?1")
        .map_err(read)?;
    let wanted: Option<Vec<String>> = types.map(|ts| ts.iter().map(|t| format!(",{t},")).collect());
    let mut after: i64 = 0;
    loop {
        let mut rows = stmt
            .query(params![after, range.to, range.from, SCAN_CHUNK as i64])
            .map_err(read)?;
        let mut rows_read = 0;
        while let Some(row) = rows.next().map_err(read)? {
            rows_read += 1;
            let first: i64 = row.get(0).map_err(read)?;
            let held: &str = row.get_ref(1).map_err(read)?.as_str().unwrap_or_default();
            if let Some(wanted) = &wanted
                && !wanted.iter().any(|t| held.contains(t.as_str()))
            {
                continue;
            }
            // Only segments holding some of the part's events are read.
            let last: i64 = row.get::<_, i64>(2).map_err(read)?.max(first);
            // Paged by the last event: a segment that retention rewrites
            // between two pages (its runs keep their numbers) is not read
            // again.
            after = last;
            if !part.owns_any(first as u64, last as u64) {
                continue;
            }
            if !covered.is_empty() {
                let span = (row.get(3).map_err(read)?, row.get(4).map_err(read)?);
                let kinds = held.split(',').filter(|k| {
                    !k.is_empty() && types.is_none_or(|ts| ts.iter().any(|t| t.as_str() == *k))
                });
                if covered.covers_segment(range, last as u64, span, kinds) {
                    continue;
                }
            }
            // In the same read transaction as the row: it is there.
            let mut found = bytes.query(params![first]).map_err(read)?;
            if let Some(found) = found.next().map_err(read)? {
                let data = found
                    .get_ref(0)
                    .map_err(read)?
                    .as_blob()
                    .unwrap_or_default();
                each(first as u64, data);
            }
        }
        if rows_read < SCAN_CHUNK {
            return Ok(());
        }
    }
}

pub(super) fn scan_events(
    path: &Path,
    range: TimeRange,
    types: Option<&[EventType]>,
    order: ScanOrder,
    cursor: Option<u64>,
    sink: &mut dyn FnMut(u64, &Event) -> bool,
) -> Result<(), StoreError> {
    let conn = open_connection(path).map_err(|e| StoreError::Read(e.to_string()))?;
    let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
    let newest = order == ScanOrder::NewestFirst;
    // Segments are taken by first_seq, a chunk at a time; the bound moves
    // past each one read. Oldest first starts at the segment holding the
    // event after the cursor.
    let mut bound: i64 = match (cursor, newest) {
        (Some(c), true) => i64::try_from(c).unwrap_or(i64::MAX),
        (None, true) => i64::MAX,
        (Some(c), false) => conn
            .query_row(
                "SELECT coalesce((SELECT first_seq FROM segments WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1), 0)",
                params![i64::try_from(c).unwrap_or(i64::MAX).saturating_add(1)],
                |r| r.get::<_, i64>(0),
            )
            .map_err(read)?
            - 1,
        (None, false) => 0,
    };
    let sql = if newest {
        "SELECT first_seq, types, data, last_seq FROM segments
         WHERE first_seq < ?1 AND min_ts < ?2 AND max_ts >= ?3
         ORDER BY first_seq DESC LIMIT ?4"
    } else {
        "SELECT first_seq, types, data, last_seq FROM segments
         WHERE first_seq > ?1 AND min_ts < ?2 AND max_ts >= ?3
         ORDER BY first_seq LIMIT ?4"
    };
    let mut stmt = conn.prepare(sql).map_err(read)?;
    let wanted: Option<Vec<String>> = types.map(|ts| ts.iter().map(|t| format!(",{t},")).collect());
    let past_cursor = |s: u64| cursor.is_none_or(|c| if newest { s < c } else { s > c });
    loop {
        // Rows are copied out, up to a byte budget, and the statement
        // reset before any event is handed on: a sink that waits (a slow
        // client) holds no read transaction, so the log can be
        // checkpointed meanwhile.
        let mut taken: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        let mut exhausted = true;
        {
            let mut rows = stmt
                .query(params![bound, range.to, range.from, SCAN_CHUNK as i64])
                .map_err(read)?;
            let mut rows_read = 0;
            while let Some(row) = rows.next().map_err(read)? {
                rows_read += 1;
                let first_seq: i64 = row.get(0).map_err(read)?;
                // Oldest first pages by the last event: a segment that
                // retention rewrites between two pages (its runs keep
                // their numbers) is not read again.
                bound = if newest {
                    first_seq
                } else {
                    row.get::<_, i64>(3).map_err(read)?.max(first_seq)
                };
                if let Some(wanted) = &wanted {
                    let held: &str = row.get_ref(1).map_err(read)?.as_str().unwrap_or_default();
                    if !wanted.iter().any(|t| held.contains(t.as_str())) {
                        continue;
                    }
                }
                let data = row.get_ref(2).map_err(read)?.as_blob().unwrap_or_default();
                bytes += data.len();
                taken.push((first_seq, data.to_vec()));
                if bytes >= SCAN_BYTES {
                    exhausted = false;
                    break;
                }
            }
            if rows_read == SCAN_CHUNK {
                exhausted = false;
            }
        }
        for (first_seq, data) in taken {
            let events = decode_row(first_seq, &data);
            let seq = |i: usize| first_seq as u64 + i as u64;
            let keep_going = if newest {
                events
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(i, _)| past_cursor(seq(*i)))
                    .all(|(i, e)| sink(seq(i), e))
            } else {
                events
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| past_cursor(seq(*i)))
                    .all(|(i, e)| sink(seq(i), e))
            };
            if !keep_going {
                return Ok(());
            }
        }
        if exhausted {
            return Ok(());
        }
    }
}
