//! Hour summaries of the stored events (see [`crate::query::rollup`]),
//! kept in the `rollups` table beside the segments they summarise.
//!
//! A builder thread reads the segments committed after `rollup_seq`, adds
//! their events to the summaries of their (hour, type), merges those into
//! the stored ones and hands the bytes to the writer thread, which stores
//! them and the new `rollup_seq` in one transaction: after a crash the
//! summaries hold exactly the events up to `rollup_seq`, and the builder
//! goes on from there. Only the builder writes summaries, so reading one
//! and writing it back later loses nothing.
//!
//! Retention: a summary is kept only for hours wholly after every cutoff
//! applied (`rollup_floor`, raised in the transaction that deletes
//! events), so a summary never holds a deleted event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::{Command, open_connection};
use crate::event::EventType;
use crate::query::TimeRange;
use crate::query::rollup::{Covered, HOUR_MS, HourBlock, Parts, hour_of, whole_hours};
use crate::store::{StoreError, TakeRollup, segment};

/// `rollups` holds each (hour, type)'s block; `rollup_parts` its sketches,
/// a part per field (see [`HourBlock::encode`]), read only when a query
/// needs them.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rollups (
    hour  INTEGER NOT NULL,
    type  TEXT NOT NULL,
    block BLOB NOT NULL,
    PRIMARY KEY (hour, type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_parts (
    hour  INTEGER NOT NULL,
    type  TEXT NOT NULL,
    part  TEXT NOT NULL,
    data  BLOB NOT NULL,
    PRIMARY KEY (hour, type, part)
) WITHOUT ROWID;
";

/// The layout of the stored summaries; those of another are built again.
const VERSION: i64 = 1;

/// Drops summaries of another layout (from another version of rta), so the
/// builder makes them again from the events, in the background.
pub(super) fn check_version(conn: &Connection) -> rusqlite::Result<()> {
    if meta(conn, "rollup_version")? == Some(VERSION) {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN;
         DELETE FROM rollups;
         DELETE FROM rollup_parts;
         DELETE FROM meta WHERE key = 'rollup_seq';
         INSERT INTO meta (key, value) VALUES ('rollup_version', {VERSION})
             ON CONFLICT(key) DO UPDATE SET value = excluded.value;
         COMMIT;"
    ))
}

/// Events summarised before the summaries are stored.
const BUILD_EVENTS: u64 = 250_000;
/// (hour, type) summaries held in memory before they are stored.
const BUILD_BLOCKS: usize = 16;
/// How often the builder looks for new events.
const BUILD_EVERY: Duration = Duration::from_millis(500);
/// New events worth storing summaries for at once...
const BUILD_MIN_EVENTS: u64 = 20_000;
/// ...or the longest fewer wait: each store rewrites the summaries of the
/// hours it touches (the current one, mostly).
const STORE_EVERY: Duration = Duration::from_secs(5);
/// Ingest faster than this (events/s) is a burst: building waits...
const BURST_RATE: f64 = 20_000.0;
/// ...while fewer events than this wait to be summarised...
const MAX_BACKLOG: u64 = 10_000_000;
/// ...for this long at most.
const MAX_DEFER: Duration = Duration::from_secs(60);

/// Summaries to store, up to the event numbered `upto`: (hour, type,
/// parts), the block itself being part `""`.
pub(super) struct Rolled {
    pub(super) blocks: Vec<(i64, String, Parts)>,
    pub(super) upto: u64,
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

/// The builder: a thread that keeps the summaries up with the segments
/// until `stop` is set.
pub(super) struct Builder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Builder {
    pub(super) fn start(path: PathBuf, commands: mpsc::Sender<Command>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rta-rollup".into())
            .spawn(move || run(&path, &commands, &stopping))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// No thread (one that was stopped).
    pub(super) fn stopped() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
        }
    }

    /// Stops the thread (between two batches) and waits for it. Blocking.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // Two builders on one directory would each rewrite what the other
        // stored: this one is gone before the store can be opened again.
        self.stop();
    }
}

/// The builder gives way to everything else (ingest above all): with the
/// cores busy it gets little time, and the summaries catch up later
/// (queries read the events they do not hold yet meanwhile).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no
        // memory of ours; on Linux a thread id names one thread here.
        let lowered = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
        };
        if lowered != 0 {
            tracing::debug!("the hour summaries run at normal priority");
        }
    }
}

fn run(path: &Path, commands: &mpsc::Sender<Command>, stop: &AtomicBool) {
    lower_priority();
    let conn = match open_connection(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(reason = %e, "hour summaries are off: cannot open the database");
            return;
        }
    };
    let mut pace = Pace::new();
    while !stop.load(Ordering::Acquire) {
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            catch_up(&conn, commands, stop, &mut pace)
        }));
        match round {
            Ok(Ok(())) => {}
            // Queries read the events meanwhile; the next round tries again.
            Ok(Err(e)) => tracing::warn!(reason = %e, "could not update the hour summaries"),
            Err(_) => {
                tracing::error!(
                    "hour summaries stopped (a stored summary could not be read); queries read the events instead"
                );
                return;
            }
        }
        let mut slept = Duration::ZERO;
        while slept < BUILD_EVERY && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}

/// When to build: when enough events are new (or enough time passed), and
/// not while ingest runs flat out (within limits).
struct Pace {
    last_stored: Instant,
    /// The newest event seen at the previous look, and when.
    seen: (u64, Instant),
    /// Since when building has given way to a burst of ingest.
    deferred: Option<Instant>,
}

impl Pace {
    fn new() -> Self {
        Self {
            last_stored: Instant::now(),
            seen: (0, Instant::now()),
            deferred: None,
        }
    }

    /// Whether to build now, with `newest` stored and `upto` summarised.
    fn now(&mut self, newest: u64, upto: u64) -> bool {
        let waiting = newest.saturating_sub(upto);
        let (before, at) = std::mem::replace(&mut self.seen, (newest, Instant::now()));
        let rate = newest.saturating_sub(before) as f64 / at.elapsed().as_secs_f64().max(1e-3);
        // A burst: ingest gets both cores while the backlog is small and
        // young; the summaries catch up after it (queries read the events
        // they do not hold yet meanwhile).
        if rate > BURST_RATE && waiting < MAX_BACKLOG {
            let since = *self.deferred.get_or_insert_with(Instant::now);
            if since.elapsed() < MAX_DEFER {
                return false;
            }
        }
        self.deferred = None;
        waiting > 0 && (waiting >= BUILD_MIN_EVENTS || self.last_stored.elapsed() >= STORE_EVERY)
    }

    fn stored(&mut self) {
        self.last_stored = Instant::now();
    }
}

/// Summaries being built: hour start -> (type, summary).
#[derive(Default)]
struct Batch {
    hours: HashMap<i64, Vec<(EventType, HourBlock)>>,
    blocks: usize,
    events: u64,
    /// The last event added (events come in sequence order).
    through: u64,
}

impl Batch {
    fn block(&mut self, hour: i64, kind: &str) -> Option<&mut HourBlock> {
        let kinds = self.hours.entry(hour).or_default();
        let at = match kinds.iter().position(|(k, _)| k.as_str() == kind) {
            Some(at) => at,
            None => {
                let kind = EventType::parse(kind, &crate::event::Limits::unbounded()).ok()?;
                kinds.push((kind, HourBlock::default()));
                self.blocks += 1;
                kinds.len() - 1
            }
        };
        Some(&mut kinds[at].1)
    }

    fn full(&self) -> bool {
        self.events >= BUILD_EVENTS || self.blocks >= BUILD_BLOCKS
    }
}

/// Summarises the events after `rollup_seq`, a batch at a time, each
/// stored before the next is read. Waits for more events (or for
/// [`STORE_EVERY`]) when few are new: each store rewrites the summaries of
/// the hours it touches.
fn catch_up(
    conn: &Connection,
    commands: &mpsc::Sender<Command>,
    stop: &AtomicBool,
    pace: &mut Pace,
) -> Result<(), StoreError> {
    let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
    let mut upto = meta(conn, "rollup_seq").map_err(read)?.unwrap_or(0) as u64;
    let newest: i64 = conn
        .query_row(
            "SELECT coalesce((SELECT last_seq FROM segments ORDER BY first_seq DESC LIMIT 1), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(read)?;
    if !pace.now(newest as u64, upto) {
        return Ok(());
    }
    let (started, mut summarised) = (std::time::Instant::now(), 0u64);
    let mut select = conn
        .prepare(
            "SELECT first_seq, last_seq, min_ts, max_ts, types, data FROM segments
             WHERE first_seq > ?1 ORDER BY first_seq LIMIT 16",
        )
        .map_err(read)?;
    while !stop.load(Ordering::Acquire) {
        let mut batch = Batch {
            through: upto,
            ..Batch::default()
        };
        // Resume inside the segment holding the next event, if it is
        // stored with the last ones summarised.
        let mut cursor: i64 = conn
            .query_row(
                "SELECT first_seq, last_seq FROM segments WHERE first_seq <= ?1
                 ORDER BY first_seq DESC LIMIT 1",
                params![upto as i64],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(read)?
            .map_or(upto as i64, |(first, last)| {
                if last as u64 > upto {
                    first - 1
                } else {
                    upto as i64
                }
            });
        'batch: loop {
            let mut rows = select.query(params![cursor]).map_err(read)?;
            let mut any = false;
            while let Some(row) = rows.next().map_err(read)? {
                any = true;
                let first: i64 = row.get(0).map_err(read)?;
                // Paged by the last event, so a segment that retention
                // rewrites meanwhile is not read again.
                cursor = row.get::<_, i64>(1).map_err(read)?.max(first);
                let data = row.get_ref(5).map_err(read)?.as_blob().unwrap_or_default();
                let visited = segment::visit(data, first as u64, None, None, &mut |seq, e| {
                    if seq <= batch.through || batch.full() {
                        return;
                    }
                    if let Some(block) = batch.block(hour_of(e.millis), e.kind) {
                        block.add(seq, e);
                    }
                    batch.events += 1;
                    batch.through = seq;
                });
                if let Err(reason) = visited {
                    // Queries may read further into it than this did (they
                    // skip what they do not need unchecked): every hour it
                    // may hold is read event by event from now on.
                    tracing::warn!(first_seq = first, %reason, "an unreadable segment's hours are left out of the hour summaries");
                    let span: (i64, i64) = (row.get(2).map_err(read)?, row.get(3).map_err(read)?);
                    let kinds: String = row.get(4).map_err(read)?;
                    give_up_hours(&mut batch, span, &kinds);
                    batch.through = batch.through.max(cursor as u64);
                }
                if batch.full() || stop.load(Ordering::Acquire) {
                    break 'batch;
                }
            }
            if !any {
                break;
            }
        }
        if batch.through == upto {
            // A backlog (after a burst, or the first start of a version
            // with summaries) is worth a line; keeping up is not.
            if summarised >= BUILD_EVENTS {
                tracing::info!(
                    events = summarised,
                    seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                    through_seq = upto,
                    "hour summaries caught up"
                );
            }
            return Ok(());
        }
        summarised += batch.events;
        let through = batch.through;
        let rolled = merge_stored(conn, batch.hours, through).map_err(read)?;
        let (reply, answer) = oneshot::channel();
        commands
            .blocking_send(Command::SaveRollups { rolled, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)??;
        pace.stored();
        upto = through;
    }
    Ok(())
}

/// Marks every (hour, type) a segment's span and types may hold as not
/// summarised (an hour span of corrupt extent is capped at a year).
fn give_up_hours(batch: &mut Batch, (min_ts, max_ts): (i64, i64), kinds: &str) {
    let (first, last) = (hour_of(min_ts), hour_of(max_ts));
    let hours = ((last - first) / HOUR_MS).clamp(0, 24 * 366);
    for kind in kinds.split(',').filter(|k| !k.is_empty()) {
        for i in 0..=hours {
            if let Some(block) = batch.block(first + i * HOUR_MS, kind) {
                block.merge(HourBlock::unsummarised());
            }
        }
    }
}

/// The new summaries merged into the stored ones, encoded.
fn merge_stored(
    conn: &Connection,
    blocks: HashMap<i64, Vec<(EventType, HourBlock)>>,
    upto: u64,
) -> rusqlite::Result<Rolled> {
    let mut stored =
        conn.prepare_cached("SELECT block FROM rollups WHERE hour = ?1 AND type = ?2")?;
    let mut parts =
        conn.prepare_cached("SELECT part, data FROM rollup_parts WHERE hour = ?1 AND type = ?2")?;
    let mut out = Vec::new();
    for (hour, kinds) in blocks {
        for (kind, mut block) in kinds {
            let before: Option<Vec<u8>> = stored
                .query_row(params![hour, kind.as_str()], |r| r.get(0))
                .optional()?;
            if let Some(base) = before {
                let held: Vec<(String, Vec<u8>)> = parts
                    .query_map(params![hour, kind.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                match HourBlock::decode(&base, &held) {
                    Ok(mut old) => {
                        old.merge(block);
                        block = old;
                    }
                    Err(reason) => {
                        // What it held is unknown: the hour is read event by event from now on.
                        tracing::warn!(hour, kind = kind.as_str(), %reason, "an unreadable hour summary is given up");
                        block.merge(HourBlock::unsummarised());
                    }
                }
            }
            out.push((hour, kind.as_str().to_string(), block.encode()));
        }
    }
    Ok(Rolled { blocks: out, upto })
}

/// Stores summaries and how far they reach, on the writer's transaction.
pub(super) fn save(tx: &Transaction<'_>, rolled: &Rolled) -> rusqlite::Result<()> {
    let floor = meta(tx, "rollup_floor")?.unwrap_or(i64::MIN);
    let mut put = tx.prepare_cached(
        "INSERT INTO rollups (hour, type, block) VALUES (?1, ?2, ?3)
         ON CONFLICT (hour, type) DO UPDATE SET block = excluded.block",
    )?;
    let mut clear = tx.prepare_cached("DELETE FROM rollup_parts WHERE hour = ?1 AND type = ?2")?;
    let mut put_part = tx.prepare_cached(
        "INSERT INTO rollup_parts (hour, type, part, data) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (hour, kind, parts) in &rolled.blocks {
        // Retention has passed this hour since it was read.
        if *hour < floor {
            continue;
        }
        clear.execute(params![hour, kind])?;
        for (part, data) in parts {
            if part.is_empty() {
                put.execute(params![hour, kind, data])?;
            } else {
                put_part.execute(params![hour, kind, part, data])?;
            }
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('rollup_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        params![rolled.upto as i64],
    )?;
    Ok(())
}

/// Drops the summaries of hours not wholly after `cutoff`, in the
/// transaction deleting the events before it.
pub(super) fn forget_before(tx: &Transaction<'_>, cutoff: i64) -> rusqlite::Result<()> {
    let floor = hour_of(cutoff.saturating_add(HOUR_MS - 1));
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('rollup_floor', ?1)
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        params![floor],
    )?;
    tx.execute("DELETE FROM rollups WHERE hour < ?1", params![floor])?;
    tx.execute("DELETE FROM rollup_parts WHERE hour < ?1", params![floor])?;
    Ok(())
}

/// See [`crate::store::Store::rollups`].
pub(super) fn read(
    path: &Path,
    range: TimeRange,
    types: Option<&[EventType]>,
    take: &mut TakeRollup<'_>,
) -> Result<Covered, StoreError> {
    let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
    let mut conn = open_connection(path).map_err(read)?;
    // One snapshot: the summaries and how far they reach agree.
    let tx = conn.transaction().map_err(read)?;
    let upto = meta(&tx, "rollup_seq").map_err(read)?.unwrap_or(0);
    let mut covered = Covered::new(upto as u64);
    let (first, end) = whole_hours(range);
    if upto == 0 || first >= end {
        return Ok(covered);
    }
    // Types are picked out by SQLite: a row read is a block read.
    let kinds: Vec<&str> =
        types.map_or_else(Vec::new, |ts| ts.iter().map(EventType::as_str).collect());
    let sql = if types.is_some() {
        let marks = vec!["?"; kinds.len()].join(", ");
        format!(
            "SELECT hour, type, block FROM rollups WHERE hour >= ? AND hour < ? AND type IN ({marks})"
        )
    } else {
        "SELECT hour, type, block FROM rollups WHERE hour >= ? AND hour < ?".to_string()
    };
    let mut select = tx.prepare(&sql).map_err(read)?;
    let mut part = tx
        .prepare("SELECT data FROM rollup_parts WHERE hour = ?1 AND type = ?2 AND part = ?3")
        .map_err(read)?;
    let mut bounds: Vec<&dyn rusqlite::ToSql> = vec![&first, &end];
    bounds.extend(kinds.iter().map(|k| k as &dyn rusqlite::ToSql));
    let mut rows = select.query(bounds.as_slice()).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let hour: i64 = row.get(0).map_err(read)?;
        let kind = row.get_ref(1).map_err(read)?.as_str().unwrap_or_default();
        let block = row.get_ref(2).map_err(read)?.as_blob().unwrap_or_default();
        let mut parts = |name: &str| -> Option<Vec<u8>> {
            part.query_row(params![hour, kind, name], |r| r.get(0))
                .optional()
                .unwrap_or_else(|e| {
                    tracing::warn!(hour, kind, part = name, reason = %e, "cannot read a part of an hour summary");
                    None
                })
        };
        if take(hour, kind, block, &mut parts) {
            covered.add(hour, kind);
        }
    }
    Ok(covered)
}
