//! Converting a data directory of rta 0.1 (one row per event) to segments.

use rusqlite::Connection;

use super::segment;
use super::{INSERT_SEGMENT, SEGMENT_EVENTS, insert_segment};
use crate::event::Event;

/// Moves events from the one-row-per-event table of rta before 0.2 into
/// segments, keeping their sequence numbers, in one transaction.
pub(super) fn migrate_event_rows(conn: &mut Connection) -> rusqlite::Result<()> {
    let old: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    tracing::info!("moving stored events into the segment layout (once)");
    let tx = conn.transaction()?;
    let mut moved = 0u64;
    {
        let mut insert = tx.prepare(INSERT_SEGMENT)?;
        let mut flush = |first: u64, run: &mut Vec<Event>| -> rusqlite::Result<()> {
            if !run.is_empty() {
                insert_segment(&mut insert, first, &segment::encode(run))?;
                moved += run.len() as u64;
                run.clear();
            }
            Ok(())
        };
        let mut select =
            tx.prepare("SELECT seq, ts, type, source, vals FROM events ORDER BY seq")?;
        let mut rows = select.query([])?;
        let (mut first, mut run) = (0u64, Vec::new());
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let event = Event::from_stored(
                row.get(1)?,
                &row.get::<_, String>(2)?,
                &row.get::<_, String>(3)?,
                &row.get::<_, String>(4)?,
            );
            let event = match event {
                Ok(event) => event,
                Err(reason) => {
                    tracing::warn!(seq, %reason, "skipping an unreadable stored event");
                    continue;
                }
            };
            if first + run.len() as u64 != seq || run.len() == SEGMENT_EVENTS {
                flush(first, &mut run)?;
                first = seq;
            }
            run.push(event);
        }
        flush(first, &mut run)?;
    }
    // Sequence numbers continue after the highest ever handed out.
    tx.execute(
        "INSERT INTO meta (key, value)
         SELECT 'deleted_seq', seq FROM sqlite_sequence WHERE name = 'events'
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        [],
    )?;
    tx.execute("DROP TABLE events", [])?;
    tx.commit()?;
    tracing::info!(events = moved, "stored events moved into segments");
    Ok(())
}
