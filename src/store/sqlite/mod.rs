//! The embedded store: one SQLite database in WAL mode, with one writer
//! thread that commits many requests in one transaction (group commit).
//!
//! `synchronous=FULL` makes every commit durable before it is acknowledged (the
//! bundled SQLite is built to sync with `fdatasync`, see `.cargo/config.toml`);
//! throughput comes from batching, not from weakening that. Events are kept
//! as segments (see [`segment`](super::segment)): one row per run of
//! consecutive events, encoded by the request's own task before it queues, so
//! the writer inserts one row per transaction rather than one per event.

mod rollup;
mod scan;
#[cfg(test)]
mod tests;

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::segment::{self, Chunk};
use super::{
    Appended, IdempotencyKey, Part, ScanOrder, Store, StoreError, StoreMark, StoredEvent,
    TakeRollup,
};
use crate::event::{Event, EventRef, EventType, Timestamp};
use crate::feed::{CommittedBatch, Feed};
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

enum Command {
    Append(PendingAppend),
    /// Removes events older than the cutoff (ms) from one chunk of segments;
    /// answers how many events and how many segments it handled.
    DeleteBefore {
        cutoff: i64,
        reply: oneshot::Sender<Result<(u64, usize), StoreError>>,
    },
    /// Stores hour summaries (from the builder thread).
    SaveRollups {
        rolled: rollup::Rolled,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Forgets idempotency keys older than the cutoff (ms).
    PruneKeys {
        cutoff: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Close,
}

struct PendingAppend {
    events: Vec<Event>,
    chunk: Chunk,
    key: Option<IdempotencyKey>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

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
        migrate_event_rows(&mut writer_conn).map_err(|e| open_err(describe(&e)))?;
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

/// Moves events from the one-row-per-event table of rta before 0.2 into
/// segments, keeping their sequence numbers, in one transaction.
fn migrate_event_rows(conn: &mut Connection) -> rusqlite::Result<()> {
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

struct Writer {
    conn: Connection,
    feed: Arc<Feed>,
    /// Commits handed to the publisher thread and not yet delivered.
    in_flight: Arc<AtomicUsize>,
    /// The sequence number the next stored event gets.
    next_seq: u64,
    /// Hands committed batches to the publisher thread, which feeds the
    /// engine and the hub and then acknowledges: the next transaction is
    /// written while the previous one is being applied.
    publish: Option<std::sync::mpsc::SyncSender<Committed>>,
    publisher: Option<JoinHandle<()>>,
}

/// A committed transaction on its way to the feed and to its requests.
struct Committed {
    batch: Option<Arc<CommittedBatch>>,
    replies: Vec<(oneshot::Sender<Result<Appended, StoreError>>, Appended)>,
}

impl Committed {
    fn deliver(self, feed: &Feed) {
        if let Some(batch) = &self.batch {
            feed.publish(batch);
        }
        for (reply, outcome) in self.replies {
            let _ = reply.send(Ok(outcome));
        }
    }
}

/// Commits of at most this many events are published by the writer itself
/// when the publisher is idle.
const INLINE_PUBLISH_EVENTS: usize = 256;

impl Drop for Writer {
    fn drop(&mut self) {
        // Everything committed is published and acknowledged before the writer is gone.
        drop(self.publish.take());
        if let Some(publisher) = self.publisher.take() {
            let _ = publisher.join();
        }
    }
}

impl Writer {
    fn new(conn: Connection, next_seq: u64, feed: Arc<Feed>) -> std::io::Result<Self> {
        let (publish, committed) = std::sync::mpsc::sync_channel::<Committed>(2);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (publisher_feed, publisher_in_flight) = (feed.clone(), in_flight.clone());
        let publisher = std::thread::Builder::new()
            .name("rta-publisher".into())
            .spawn(move || {
                for committed in committed {
                    committed.deliver(&publisher_feed);
                    publisher_in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(Self {
            conn,
            next_seq,
            feed,
            in_flight,
            publish: Some(publish),
            publisher: Some(publisher),
        })
    }

    /// Publishes and acknowledges a commit: a small one at once, here, when
    /// nothing is waiting for the publisher (which saves a thread hop per
    /// commit); otherwise on the publisher thread, in commit order.
    fn deliver(&self, committed: Committed) {
        let events = committed.batch.as_ref().map_or(0, |b| b.events.len());
        if events <= INLINE_PUBLISH_EVENTS && self.in_flight.load(Ordering::Acquire) == 0 {
            committed.deliver(&self.feed);
            return;
        }
        if let Some(publish) = &self.publish {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if let Err(unsent) = publish.send(committed) {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                unsent.0.deliver(&self.feed);
            }
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut next = None;
        loop {
            let command = match next.take() {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => return,
                },
            };
            match command {
                Command::Append(first) => {
                    let mut total = first.events.len();
                    let mut pending = vec![first];
                    // Group commit: take every request already waiting.
                    while total < MAX_GROUP_EVENTS {
                        match rx.try_recv() {
                            Ok(Command::Append(more)) => {
                                total += more.events.len();
                                pending.push(more);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(pending);
                }
                Command::DeleteBefore { cutoff, reply } => {
                    let _ = reply.send(self.delete_chunk(cutoff));
                }
                Command::SaveRollups { rolled, reply } => {
                    let saved = self
                        .conn
                        .transaction()
                        .and_then(|tx| rollup::save(&tx, &rolled).and_then(|()| tx.commit()))
                        .map_err(|e| StoreError::Write(describe(&e)));
                    let _ = reply.send(saved);
                }
                Command::PruneKeys { cutoff, reply } => {
                    let pruned = self
                        .conn
                        .execute("DELETE FROM batches WHERE created < ?1", params![cutoff])
                        .map(|n| n as u64)
                        .map_err(|e| StoreError::Write(describe(&e)));
                    let _ = reply.send(pruned);
                }
                Command::Close => return,
            }
        }
    }

    fn commit(&mut self, mut pending: Vec<PendingAppend>) {
        match self.insert(&mut pending) {
            Ok(outcomes) => {
                let first_seq = outcomes.iter().find_map(|o| match o {
                    Appended::Stored { first_seq } => Some(*first_seq),
                    Appended::AlreadyStored { .. } => None,
                });
                let mut events = Vec::new();
                let mut replies = Vec::with_capacity(pending.len());
                for (request, outcome) in pending.into_iter().zip(outcomes) {
                    if matches!(outcome, Appended::Stored { .. }) {
                        events.extend(request.events);
                    }
                    replies.push((request.reply, outcome));
                }
                let batch =
                    first_seq.map(|first_seq| Arc::new(CommittedBatch { first_seq, events }));
                self.deliver(Committed { batch, replies });
            }
            Err(e) => {
                let reason = describe(&e);
                tracing::error!(%reason, "a write failed; nothing of it was acknowledged");
                for request in pending {
                    let _ = request.reply.send(Err(StoreError::Write(reason.clone())));
                }
            }
        }
    }

    /// Inserts every pending request in one transaction, skipping those whose
    /// idempotency key was stored before; new events get contiguous seqs and
    /// share segment rows of up to [`SEGMENT_EVENTS`] events.
    fn insert(&mut self, pending: &mut [PendingAppend]) -> rusqlite::Result<Vec<Appended>> {
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(pending.len());
        let mut seq = self.next_seq;
        {
            let mut insert = tx.prepare_cached(INSERT_SEGMENT)?;
            let mut find_key =
                tx.prepare_cached("SELECT first_seq, accepted, note FROM batches WHERE key = ?1")?;
            let mut insert_key = tx.prepare_cached(
                "INSERT INTO batches (key, first_seq, accepted, note, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let now = Timestamp::now().millis();
            // The row being filled: it starts at `row_first`.
            let (mut row, mut row_first) = (Chunk::default(), seq);
            for request in pending.iter_mut() {
                if let Some(key) = &request.key {
                    let seen = find_key
                        .query_row(params![key.key], |r| {
                            Ok(Appended::AlreadyStored {
                                first_seq: r.get::<_, i64>(0)? as u64,
                                accepted: r.get::<_, i64>(1)? as u64,
                                note: r.get(2)?,
                            })
                        })
                        .optional()?;
                    if let Some(seen) = seen {
                        outcomes.push(seen);
                        continue;
                    }
                }
                let first_seq = seq;
                if row.count > 0 && row.count + request.chunk.count > SEGMENT_EVENTS {
                    insert_segment(&mut insert, row_first, &row)?;
                    (row, row_first) = (Chunk::default(), seq);
                }
                let count = request.chunk.count;
                if row.count == 0 {
                    // The first chunk of a row is taken, not copied.
                    row = std::mem::take(&mut request.chunk);
                } else {
                    row.extend(&request.chunk);
                }
                seq += count as u64;
                if let Some(key) = &request.key {
                    insert_key.execute(params![
                        key.key,
                        first_seq as i64,
                        request.events.len() as i64,
                        key.note,
                        now
                    ])?;
                }
                outcomes.push(Appended::Stored { first_seq });
            }
            if row.count > 0 {
                insert_segment(&mut insert, row_first, &row)?;
            }
        }
        tx.commit()?;
        self.next_seq = seq;
        Ok(outcomes)
    }

    /// Removes the events older than `cutoff` from one chunk of segments and
    /// counts them in `meta`, in one transaction. A segment entirely older
    /// goes; one that straddles the cutoff is rewritten as the runs of its
    /// events that stay, keeping their sequence numbers.
    fn delete_chunk(&mut self, cutoff: i64) -> Result<(u64, usize), StoreError> {
        let write = |e: rusqlite::Error| StoreError::Write(describe(&e));
        let tx = self.conn.transaction().map_err(write)?;
        let (mut deleted, mut deleted_seq, mut handled) = (0u64, 0u64, 0usize);
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT first_seq, last_seq, max_ts, data FROM segments WHERE min_ts < ?1 LIMIT ?2",
                )
                .map_err(write)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM segments WHERE first_seq = ?1")
                .map_err(write)?;
            let mut insert = tx.prepare_cached(INSERT_SEGMENT).map_err(write)?;
            let doomed: Vec<(i64, i64, i64, Vec<u8>)> = select
                .query_map(params![cutoff, DELETE_CHUNK as i64], |r| {
                    let max_ts: i64 = r.get(2)?;
                    // Only a straddling segment needs its events.
                    let data = if max_ts < cutoff {
                        Vec::new()
                    } else {
                        r.get(3)?
                    };
                    Ok((r.get(0)?, r.get(1)?, max_ts, data))
                })
                .map_err(write)?
                .collect::<rusqlite::Result<_>>()
                .map_err(write)?;
            for (first_seq, last_seq, max_ts, data) in doomed {
                handled += 1;
                remove.execute(params![first_seq]).map_err(write)?;
                if max_ts < cutoff {
                    deleted += (last_seq - first_seq + 1) as u64;
                    deleted_seq = deleted_seq.max(last_seq as u64);
                    continue;
                }
                let events = decode_row(first_seq, &data);
                let mut run_start = None;
                for (i, event) in events.iter().enumerate() {
                    let seq = first_seq as u64 + i as u64;
                    let keep = event.timestamp.millis() >= cutoff;
                    if keep {
                        run_start.get_or_insert(i);
                    } else {
                        deleted += 1;
                        deleted_seq = deleted_seq.max(seq);
                    }
                    let run_ends = !keep || i + 1 == events.len();
                    if let (true, Some(start)) = (run_ends, run_start) {
                        let end = if keep { i + 1 } else { i };
                        let run = segment::encode(&events[start..end]);
                        insert_segment(&mut insert, first_seq as u64 + start as u64, &run)
                            .map_err(write)?;
                        run_start = None;
                    }
                }
            }
        }
        rollup::forget_before(&tx, cutoff).map_err(write)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('deleted', ?1), ('deleted_seq', ?2)
             ON CONFLICT(key) DO UPDATE SET value =
                 CASE key WHEN 'deleted' THEN value + excluded.value ELSE max(value, excluded.value) END",
            params![deleted as i64, deleted_seq as i64],
        )
        .map_err(write)?;
        tx.commit().map_err(write)?;
        Ok((deleted, handled))
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
