//! The writer thread: the only connection that writes. It takes requests
//! from a bounded queue, commits every one waiting in one transaction
//! (group commit), then hands the committed batch to the publisher thread,
//! which feeds the engine and the hub and acknowledges the requests. It
//! also runs retention's deletions and stores the hour summaries, each in
//! a transaction of its own between two commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::segment::{self, Chunk};
use super::{
    DELETE_CHUNK, INSERT_SEGMENT, MAX_GROUP_EVENTS, SEGMENT_EVENTS, decode_row, describe,
    insert_segment, rollup,
};
use crate::event::{Event, Timestamp};
use crate::feed::{CommittedBatch, Feed};
use crate::store::{Appended, IdempotencyKey, StoreError};

pub(super) enum Command {
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

pub(super) struct PendingAppend {
    pub(super) events: Vec<Event>,
    pub(super) chunk: Chunk,
    pub(super) key: Option<IdempotencyKey>,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

pub(super) struct Writer {
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
    pub(super) fn new(conn: Connection, next_seq: u64, feed: Arc<Feed>) -> std::io::Result<Self> {
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

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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
