//! The embedded store: one SQLite database in WAL mode, with one writer
//! thread that commits many requests in one transaction (group commit).
//!
//! `synchronous=FULL` makes every commit durable before it is acknowledged;
//! throughput comes from batching, not from weakening that.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{Appended, IdempotencyKey, Store, StoreError, StoreMark, StoredEvent};
use crate::event::{Event, EventType, Timestamp};
use crate::feed::{CommittedBatch, Feed};

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 100_000;
/// Requests waiting for the writer; senders wait when it is full (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// Rows deleted per retention transaction, so ingest is never held up long.
const DELETE_CHUNK: usize = 10_000;
/// Rows read per chunk when scanning.
const SCAN_CHUNK: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     INTEGER NOT NULL,
    type   TEXT NOT NULL,
    source TEXT NOT NULL,
    vals   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, seq);
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
    DeleteBefore {
        cutoff: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
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
    key: Option<IdempotencyKey>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

pub struct SqliteStore {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
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
        let writer_conn = open_connection(&path).map_err(|e| open_err(e.to_string()))?;
        writer_conn
            .execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        let reader = open_connection(&path).map_err(|e| open_err(e.to_string()))?;

        let (commands, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread_err =
            |e: std::io::Error| open_err(format!("cannot start the writer threads: {e}"));
        let state = Writer::new(writer_conn, feed).map_err(thread_err)?;
        let writer = std::thread::Builder::new()
            .name("rta-writer".into())
            .spawn(move || state.run(rx))
            .map_err(thread_err)?;
        Ok(Self {
            path,
            commands,
            reader: Arc::new(Mutex::new(reader)),
            writer: Mutex::new(Some(writer)),
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

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, Result<Event, String>)> {
    let seq: i64 = row.get(0)?;
    let ts: i64 = row.get(1)?;
    let kind: String = row.get(2)?;
    let source: String = row.get(3)?;
    let vals: String = row.get(4)?;
    Ok((seq as u64, Event::from_stored(ts, &kind, &source, &vals)))
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(
        &self,
        events: Vec<Event>,
        key: Option<IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append(PendingAppend { events, key, reply }))
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
            let mut push = |row: (u64, Result<Event, String>)| {
                if let (seq, Ok(event)) = row {
                    out.push(StoredEvent { seq, event });
                }
            };
            let columns = "SELECT seq, ts, type, source, vals FROM events";
            match kind {
                Some(kind) => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "{columns} WHERE type = ?1 ORDER BY seq DESC LIMIT ?2"
                    ))?;
                    for row in stmt.query_map(params![kind.as_str(), limit as i64], row_to_event)? {
                        push(row?);
                    }
                }
                None => {
                    let mut stmt =
                        conn.prepare_cached(&format!("{columns} ORDER BY seq DESC LIMIT ?1"))?;
                    for row in stmt.query_map(params![limit as i64], row_to_event)? {
                        push(row?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    fn scan(&self, after_seq: u64, sink: &mut dyn FnMut(u64, &[Event])) -> Result<u64, StoreError> {
        let conn = open_connection(&self.path).map_err(|e| StoreError::Read(e.to_string()))?;
        let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
        let mut stmt = conn
            .prepare("SELECT seq, ts, type, source, vals FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(read)?;
        let mut last = after_seq;
        let mut seen: u64 = 0;
        loop {
            let mut chunk = Vec::with_capacity(SCAN_CHUNK);
            let mut first = None;
            let rows = stmt
                .query_map(params![last as i64, SCAN_CHUNK as i64], row_to_event)
                .map_err(read)?;
            let mut rows_read = 0;
            for row in rows {
                let (seq, event) = row.map_err(read)?;
                rows_read += 1;
                // A gap in sequence numbers starts a new chunk, so every chunk
                // stays contiguous for the subscriber.
                if first.is_some_and(|f| f + chunk.len() as u64 != seq) {
                    sink(first.unwrap_or(seq), &chunk);
                    chunk.clear();
                    first = None;
                }
                match event {
                    Ok(event) => {
                        first.get_or_insert(seq);
                        chunk.push(event);
                    }
                    Err(reason) => {
                        tracing::warn!(seq, %reason, "skipping an unreadable stored event")
                    }
                }
                last = seq;
            }
            if let Some(f) = first {
                sink(f, &chunk);
            }
            seen += rows_read;
            if rows_read < SCAN_CHUNK as u64 {
                return Ok(seen);
            }
        }
    }

    fn mark(&self) -> Result<StoreMark, StoreError> {
        let conn = open_connection(&self.path).map_err(|e| StoreError::Read(e.to_string()))?;
        let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
        let deleted: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT value FROM meta WHERE key = 'deleted'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(read)?;
        // The AUTOINCREMENT counter survives deleting the newest rows, unlike max(seq).
        let max_seq: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(read)?;
        Ok(StoreMark {
            deleted: deleted as u64,
            max_seq: max_seq as u64,
        })
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
            let deleted = answer.await.map_err(|_| StoreError::Closed)??;
            total += deleted;
            if deleted < DELETE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

struct Writer {
    conn: Connection,
    /// Hands committed batches to the publisher thread, which feeds the
    /// engine and the hub and then acknowledges: the next transaction is
    /// written while the previous one is being applied.
    publish: Option<std::sync::mpsc::SyncSender<Committed>>,
    publisher: Option<JoinHandle<()>>,
}

/// A committed transaction on its way to the feed and to its requests.
struct Committed {
    batch: Option<CommittedBatch>,
    replies: Vec<(oneshot::Sender<Result<Appended, StoreError>>, Appended)>,
}

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
    fn new(conn: Connection, feed: Arc<Feed>) -> std::io::Result<Self> {
        let (publish, committed) = std::sync::mpsc::sync_channel::<Committed>(2);
        let publisher = std::thread::Builder::new()
            .name("rta-publisher".into())
            .spawn(move || {
                for Committed { batch, replies } in committed {
                    if let Some(batch) = batch {
                        feed.publish(&batch);
                    }
                    for (reply, outcome) in replies {
                        let _ = reply.send(Ok(outcome));
                    }
                }
            })?;
        Ok(Self {
            conn,
            publish: Some(publish),
            publisher: Some(publisher),
        })
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

    fn commit(&mut self, pending: Vec<PendingAppend>) {
        match self.insert(&pending) {
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
                let batch = first_seq.map(|first_seq| CommittedBatch { first_seq, events });
                if let Some(publish) = &self.publish {
                    let _ = publish.send(Committed { batch, replies });
                }
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
    /// idempotency key was stored before; new events get contiguous seqs.
    fn insert(&mut self, pending: &[PendingAppend]) -> rusqlite::Result<Vec<Appended>> {
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(pending.len());
        {
            let mut insert_event = tx.prepare_cached(
                "INSERT INTO events (ts, type, source, vals) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut find_key =
                tx.prepare_cached("SELECT first_seq, accepted, note FROM batches WHERE key = ?1")?;
            let mut insert_key = tx.prepare_cached(
                "INSERT INTO batches (key, first_seq, accepted, note, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let now = Timestamp::now().millis();
            for request in pending {
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
                let mut first = None;
                for event in &request.events {
                    insert_event.execute(params![
                        event.timestamp.millis(),
                        event.kind.as_str(),
                        &*event.source,
                        event.values_json()
                    ])?;
                    first.get_or_insert(tx.last_insert_rowid());
                }
                let first_seq = first.unwrap_or(0) as u64;
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
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Deletes one chunk and counts it in `meta`, in one transaction.
    fn delete_chunk(&mut self, cutoff: i64) -> Result<u64, StoreError> {
        let write = |e: rusqlite::Error| StoreError::Write(describe(&e));
        let tx = self.conn.transaction().map_err(write)?;
        let deleted = tx
            .execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < ?1 LIMIT ?2)",
                params![cutoff, DELETE_CHUNK as i64],
            )
            .map_err(write)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('deleted', ?1)
             ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            params![deleted as i64],
        )
        .map_err(write)?;
        tx.commit().map_err(write)?;
        Ok(deleted as u64)
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
