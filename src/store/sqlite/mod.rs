//! The embedded store: one SQLite database in WAL mode, with one writer
//! thread that commits many requests in one transaction (group commit).
//!
//! `synchronous=FULL` makes every commit durable before it is acknowledged (the
//! bundled SQLite is built to sync with `fdatasync`, see `.cargo/config.toml`);
//! throughput comes from batching, not from weakening that. Events are kept
//! as segments (see [`segment`]): one row per run of
//! consecutive events, encoded by the request's own task before it queues, so
//! the writer inserts one row per transaction rather than one per event.

mod migrate;
mod rollup;
mod scan;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};
use writer::{Command, PendingAppend, Writer};

use super::segment::{self, Chunk};
use super::{
    Appended, IdempotencyKey, Part, ScanOrder, Store, StoreError, StoreMark, StoredEvent,
    TakeRollup,
};
use crate::event::{Event, EventRef, EventType, Timestamp};
use crate::feed::Feed;
use crate::query::TimeRange;
use crate::query::rollup::Covered;

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 100_000;
/// Requests waiting for the writer; senders wait when it is full (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// Events per segment row, at most (requests larger than this get a row of their own).
const SEGMENT_EVENTS: usize = 4096;
/// Segments handled per retention transaction, so ingest is never held up long.
const DELETE_CHUNK: usize = 256;
/// Segments read per query when scanning.
const SCAN_CHUNK: usize = 64;
/// Stored bytes an event scan copies out before handing events on.
const SCAN_BYTES: usize = 4 << 20;

/// `segments` holds every event: the events `first_seq..=last_seq`, whose
/// timestamps lie within `min_ts..=max_ts`, of the types listed in `types`
/// (`,a,b,`), encoded in `data`. `meta` keeps `deleted` (events removed by
/// retention) and `deleted_seq` (the highest sequence number removed), so
/// sequence numbers never repeat.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segments (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    min_ts    INTEGER NOT NULL,
    max_ts    INTEGER NOT NULL,
    types     TEXT NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_min_ts ON segments(min_ts);
CREATE TABLE IF NOT EXISTS batches (
    key       TEXT PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    accepted  INTEGER NOT NULL,
    note      TEXT NOT NULL,
    created   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_age ON batches(created);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

pub struct SqliteStore {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    builder: Mutex<rollup::Builder>,
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir`. Committed batches
    /// are published to `feed`.
    pub fn open(dir: &Path, feed: Arc<Feed>) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let lock = File::create(dir.join("LOCK")).map_err(|e| open_err(e.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(open_err(
                    "another `rta serve` is using it; stop it or pick another --data-dir".into(),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(open_err(e.to_string())),
        }
        let path = dir.join("events.db");
        let mut writer_conn = open_connection(&path).map_err(|e| open_err(e.to_string()))?;
        writer_conn
            .execute_batch(SCHEMA)
            .and_then(|()| writer_conn.execute_batch(rollup::SCHEMA))
            .and_then(|()| rollup::check_version(&writer_conn))
            .map_err(|e| open_err(e.to_string()))?;
        migrate::migrate_event_rows(&mut writer_conn).map_err(|e| open_err(describe(&e)))?;
        let next_seq = read_mark(&writer_conn)
            .map_err(|e| open_err(e.to_string()))?
            .max_seq
            + 1;
        let reader = open_connection(&path).map_err(|e| open_err(e.to_string()))?;

        let (commands, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread_err =
            |e: std::io::Error| open_err(format!("cannot start the writer threads: {e}"));
        let state = Writer::new(writer_conn, next_seq, feed).map_err(thread_err)?;
        let writer = std::thread::Builder::new()
            .name("rta-writer".into())
            .spawn(move || state.run(rx))
            .map_err(thread_err)?;
        let builder = rollup::Builder::start(path.clone(), commands.clone()).map_err(thread_err)?;
        Ok(Self {
            path,
            commands,
            reader: Arc::new(Mutex::new(reader)),
            writer: Mutex::new(Some(writer)),
            builder: Mutex::new(builder),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(|e| StoreError::Read(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Read(e.to_string()))?
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Where the store stands, from the database.
fn read_mark(conn: &Connection) -> rusqlite::Result<StoreMark> {
    let meta = |key: &str| -> rusqlite::Result<i64> {
        conn.query_row(
            "SELECT coalesce((SELECT value FROM meta WHERE key = ?1), 0)",
            params![key],
            |r| r.get(0),
        )
    };
    // The newest row holds the highest seq; retention may have removed it.
    let newest: i64 = conn.query_row(
        "SELECT coalesce((SELECT last_seq FROM segments ORDER BY first_seq DESC LIMIT 1), 0)",
        [],
        |r| r.get(0),
    )?;
    Ok(StoreMark {
        deleted: meta("deleted")? as u64,
        max_seq: newest.max(meta("deleted_seq")?) as u64,
    })
}

const INSERT_SEGMENT: &str = "INSERT INTO segments (first_seq, last_seq, min_ts, max_ts, types, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn insert_segment(
    insert: &mut rusqlite::Statement<'_>,
    first_seq: u64,
    chunk: &Chunk,
) -> rusqlite::Result<()> {
    insert.execute(params![
        first_seq as i64,
        (first_seq + chunk.count as u64 - 1) as i64,
        chunk.min_ts,
        chunk.max_ts,
        chunk.types_column(),
        chunk.data,
    ])?;
    Ok(())
}

/// Decodes a segment row, logging (not failing on) an unreadable one.
fn decode_row(first_seq: i64, data: &[u8]) -> Vec<Event> {
    segment::decode(data).unwrap_or_else(|reason| {
        tracing::warn!(first_seq, %reason, "skipping an unreadable segment");
        Vec::new()
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(
        &self,
        events: Vec<Event>,
        key: Option<IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        // Encoded here, on the request's own task, so requests encode in parallel.
        let chunk = segment::encode(&events);
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append(PendingAppend {
                events,
                chunk,
                key,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn forget_keys_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::PruneKeys {
                cutoff: cutoff.millis(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn recent(
        &self,
        limit: usize,
        kind: Option<EventType>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| {
            let mut out = Vec::with_capacity(limit.min(1000));
            let newest_first = "SELECT first_seq, data FROM segments";
            let mut stmt;
            let mut rows = match &kind {
                Some(kind) => {
                    stmt = conn.prepare_cached(&format!(
                        "{newest_first} WHERE instr(types, ?1) > 0 ORDER BY first_seq DESC"
                    ))?;
                    stmt.query(params![format!(",{kind},")])?
                }
                None => {
                    stmt =
                        conn.prepare_cached(&format!("{newest_first} ORDER BY first_seq DESC"))?;
                    stmt.query([])?
                }
            };
            while out.len() < limit {
                let Some(row) = rows.next()? else { break };
                let first_seq: i64 = row.get(0)?;
                let data = row.get_ref(1)?.as_blob().unwrap_or_default();
                let events = decode_row(first_seq, data);
                for (i, event) in events.into_iter().enumerate().rev() {
                    if out.len() < limit && kind.as_ref().is_none_or(|k| *k == event.kind) {
                        let seq = first_seq as u64 + i as u64;
                        out.push(StoredEvent { seq, event });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    fn scan(&self, after_seq: u64, sink: &mut dyn FnMut(u64, &[Event])) -> Result<u64, StoreError> {
        let conn = open_connection(&self.path).map_err(|e| StoreError::Read(e.to_string()))?;
        let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
        let wanted = after_seq + 1;
        // Start with the segment holding `wanted`, if any.
        let start: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT first_seq FROM segments WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1), 0)",
                params![wanted as i64],
                |r| r.get(0),
            )
            .map_err(read)?;
        let mut stmt = conn
            .prepare("SELECT first_seq, data FROM segments WHERE first_seq >= ?1 ORDER BY first_seq LIMIT ?2")
            .map_err(read)?;
        let mut from = start;
        let mut seen: u64 = 0;
        loop {
            let mut rows = stmt.query(params![from, SCAN_CHUNK as i64]).map_err(read)?;
            let mut rows_read = 0;
            while let Some(row) = rows.next().map_err(read)? {
                rows_read += 1;
                let first_seq: i64 = row.get(0).map_err(read)?;
                let data = row.get_ref(1).map_err(read)?.as_blob().unwrap_or_default();
                let events = decode_row(first_seq, data);
                let skip = wanted.saturating_sub(first_seq as u64) as usize;
                if skip < events.len() {
                    sink(first_seq as u64 + skip as u64, &events[skip..]);
                    seen += (events.len() - skip) as u64;
                }
                from = first_seq + 1;
            }
            if rows_read < SCAN_CHUNK {
                return Ok(seen);
            }
        }
    }

    fn scan_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        part: Part,
        sink: &mut dyn FnMut(u64, &[Event]),
    ) -> Result<(), StoreError> {
        scan::scan_range(&self.path, range, types, part, sink)
    }

    fn visit_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        dimensions: Option<&[&str]>,
        part: Part,
        covered: &Covered,
        visit: &mut dyn FnMut(u64, &EventRef<'_>),
    ) -> Result<(), StoreError> {
        scan::visit_range(&self.path, range, types, dimensions, part, covered, visit)
    }

    fn scan_events(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        order: ScanOrder,
        cursor: Option<u64>,
        sink: &mut dyn FnMut(u64, &Event) -> bool,
    ) -> Result<(), StoreError> {
        scan::scan_events(&self.path, range, types, order, cursor, sink)
    }

    fn earliest(&self) -> Result<Option<i64>, StoreError> {
        let conn = open_connection(&self.path).map_err(|e| StoreError::Read(e.to_string()))?;
        conn.query_row("SELECT min(min_ts) FROM segments", [], |r| r.get(0))
            .map_err(|e| StoreError::Read(e.to_string()))
    }

    fn mark(&self) -> Result<StoreMark, StoreError> {
        let conn = open_connection(&self.path).map_err(|e| StoreError::Read(e.to_string()))?;
        read_mark(&conn).map_err(|e| StoreError::Read(e.to_string()))
    }

    async fn delete_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Command::DeleteBefore {
                    cutoff: cutoff.millis(),
                    reply,
                })
                .await
                .map_err(|_| StoreError::Closed)?;
            let (deleted, segments) = answer.await.map_err(|_| StoreError::Closed)??;
            total += deleted;
            if segments < DELETE_CHUNK {
                return Ok(total);
            }
        }
    }

    fn rollups(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        take: &mut TakeRollup<'_>,
    ) -> Result<Covered, StoreError> {
        rollup::read(&self.path, range, types, take)
    }

    fn queue_depth(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    async fn close(&self) {
        // The builder first: it may be waiting for the writer.
        let builder = std::mem::replace(
            &mut *self.builder.lock().unwrap_or_else(|p| p.into_inner()),
            rollup::Builder::stopped(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            let mut builder = builder;
            builder.stop();
        })
        .await;
        let _ = self.commands.send(Command::Close).await;
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// A message for people: what SQLite's error means for them.
fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DiskFull) => "the disk holding the data directory is full".into(),
        Some(ReadOnly) => "the data directory is read-only".into(),
        Some(CannotOpen) | Some(PermissionDenied) => {
            format!("the database cannot be opened for writing ({e})")
        }
        _ => e.to_string(),
    }
}
