//! Durable storage of events, behind the [`Store`] trait.
//!
//! The embedded default is SQLite ([`sqlite::SqliteStore`]); a cluster of
//! nodes shares ClickHouse behind NATS JetStream
//! ([`clickhouse::ClickHouseStore`]). A store owns durability: `append`
//! returns only once the events survive a crash, and once the
//! [`Feed`](crate::feed::Feed) has them.

pub mod alerts;
pub mod answer;
pub mod clickhouse;
pub mod segment;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

use crate::event::{Event, EventRef, EventType, Timestamp};
use crate::query::TimeRange;
use crate::query::rollup::Covered;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The events were not stored (disk full, read-only directory, I/O error).
    #[error("could not store events: {0}")]
    Write(String),
    /// The events were sent but their storing was not confirmed: they may
    /// be kept or not, and only a retry with the same key is safe.
    #[error("{0}; they may or may not be stored: retry with the same Idempotency-Key to be sure")]
    Unsure(String),
    #[error("could not read events: {0}")]
    Read(String),
    /// The request is more than the store takes at once; nothing was stored.
    #[error("{0}")]
    TooLarge(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("cannot open the data directory {path}: {reason}")]
    Open { path: String, reason: String },
}

/// Changes whenever stored events change other than by appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMark {
    /// Events ever deleted (by retention).
    pub deleted: u64,
    /// The largest sequence number stored, 0 when empty.
    pub max_seq: u64,
}

/// A client's name for one request, so a retry of it is stored once.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// Returned with a replayed answer (the API keeps the rejections here).
    pub note: String,
}

/// What `append` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The events are stored from `first_seq` on.
    Stored { first_seq: u64 },
    /// The key was seen before: nothing new was stored.
    AlreadyStored {
        first_seq: u64,
        accepted: u64,
        note: String,
    },
}

/// One of `of` disjoint shares of the stored events, by sequence number:
/// blocks of [`Part::BLOCK`] consecutive numbers are dealt out in turn.
/// Sequence numbers never change (retention keeps them), so the parts hold
/// every event exactly once, whatever is deleted while they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u64,
    pub of: u64,
}

impl Part {
    pub const ALL: Part = Part { index: 0, of: 1 };
    /// Sequence numbers per block: large beside a stored segment, so few
    /// segments straddle two parts (those are read by both, each taking
    /// its own events).
    pub const BLOCK: u64 = 1 << 18;

    /// Whether the event numbered `seq` is this part's.
    pub fn owns(&self, seq: u64) -> bool {
        self.of <= 1 || (seq / Self::BLOCK) % self.of == self.index
    }

    /// Whether any of the events `first..=last` is this part's.
    pub fn owns_any(&self, first: u64, last: u64) -> bool {
        let (a, b) = (first / Self::BLOCK, last / Self::BLOCK);
        self.of <= 1 || b - a + 1 >= self.of || (a..=b).any(|block| block % self.of == self.index)
    }

    /// The `of` parts that make up the whole.
    pub fn split(of: u64) -> impl Iterator<Item = Part> {
        let of = of.max(1);
        (0..of).map(move |index| Part { index, of })
    }

    /// Runs `work` on each of `of` parts at once, a thread each, and
    /// returns what each gave, in part order. Blocking.
    pub fn in_parallel<T: Send>(
        of: u64,
        work: impl Fn(Part) -> Result<T, StoreError> + Sync,
    ) -> Result<Vec<T>, StoreError> {
        std::thread::scope(|scope| {
            let work = &work;
            let workers: Vec<_> = Part::split(of)
                .map(|part| scope.spawn(move || work(part)))
                .collect();
            // Every thread joined before any result is looked at.
            let results: Vec<_> = workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(StoreError::Read("a reading thread failed".into())))
                })
                .collect();
            results.into_iter().collect()
        })
    }
}

/// Which end of the stored events a scan starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOrder {
    OldestFirst,
    NewestFirst,
}

/// An event as stored, with its sequence number.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Reads one part of an hour summary by name; `None` when it is not stored.
pub type RollupParts<'a> = dyn FnMut(&str) -> Option<Vec<u8>> + 'a;

/// Looks at one hour summary (hour, type, the block, its parts) and
/// answers whether it was used.
pub type TakeRollup<'a> = dyn FnMut(i64, &str, &[u8], &mut RollupParts<'_>) -> bool + 'a;

/// Where committed events come from and go to.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes `events` durable, publishes them to the feed, then returns the
    /// sequence number of the first. Concurrent calls are committed together.
    /// With a key already stored, nothing is written and the first answer is
    /// returned again, so a client may retry a request whose answer it lost.
    async fn append(
        &self,
        events: Vec<Event>,
        key: Option<IdempotencyKey>,
    ) -> Result<Appended, StoreError>;

    /// Forgets idempotency keys stored before `cutoff`; returns how many.
    async fn forget_keys_before(&self, cutoff: Timestamp) -> Result<u64, StoreError>;

    /// The most recent events, newest first.
    async fn recent(
        &self,
        limit: usize,
        kind: Option<EventType>,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Calls `sink` with every stored event after `after_seq`, in commit
    /// order, a chunk at a time. Blocking: meant for start-up and rebuilds.
    fn scan(&self, after_seq: u64, sink: &mut dyn FnMut(u64, &[Event])) -> Result<u64, StoreError>;

    /// Calls `sink(first_seq, events)` with the stored events that may lie
    /// in `range` and be of one of `types` (any type when `None`), a stored
    /// segment at a time, in commit order. Segments are skipped by their
    /// time span and types; the sink still sees events outside the range and
    /// filters them. With `part`, only that share of the segments
    /// ([`Part::ALL`] for every one), so that parts can be read in parallel.
    /// Blocking.
    fn scan_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        part: Part,
        sink: &mut dyn FnMut(u64, &[Event]),
    ) -> Result<(), StoreError>;

    /// As [`Store::scan_range`], but each event is read in place, without
    /// being copied (`visit(seq, event)`): the fast way to read many. With
    /// `dimensions`, events carry only those dimensions (and every measure).
    /// Events the `covered` hour summaries hold are skipped (with the
    /// segments holding only such events).
    #[allow(clippy::too_many_arguments)]
    fn visit_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        dimensions: Option<&[&str]>,
        part: Part,
        covered: &Covered,
        visit: &mut dyn FnMut(u64, &EventRef<'_>),
    ) -> Result<(), StoreError>;

    /// The hour summaries ([`crate::query::rollup`]) of `types` (every type
    /// when `None`) for the whole hours inside `range`: `take(hour, type,
    /// block, parts)` for each, which reads the parts it needs with
    /// `parts(name)` and answers whether it used the summary. Returns what
    /// the summaries used hold, for [`Store::visit_range`] to skip. The
    /// summaries trail ingest by a moment; what they do not hold yet is
    /// read from the events. Blocking.
    fn rollups(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        take: &mut TakeRollup<'_>,
    ) -> Result<Covered, StoreError>;

    /// Calls `sink(seq, event)` with stored events that may lie in `range`
    /// and be of one of `types`, one at a time, oldest or newest first (by
    /// sequence number), starting after `cursor` (a sequence number, in that
    /// order), until `sink` returns false. Blocking.
    fn scan_events(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        order: ScanOrder,
        cursor: Option<u64>,
        sink: &mut dyn FnMut(u64, &Event) -> bool,
    ) -> Result<(), StoreError>;

    /// The earliest event time stored (ms), `None` when nothing is.
    /// Blocking.
    fn earliest(&self) -> Result<Option<i64>, StoreError>;

    /// Where the store stands: lets a saved engine state tell whether it
    /// still describes what is stored. Blocking.
    fn mark(&self) -> Result<StoreMark, StoreError>;

    /// Deletes events whose timestamp is before `cutoff`; returns how many.
    /// Sequence numbers of the others do not change.
    async fn delete_before(&self, cutoff: Timestamp) -> Result<u64, StoreError>;

    /// Finishes pending writes and stops accepting new ones.
    async fn close(&self);

    /// Append requests waiting now: queued for the writer, or waiting for
    /// an acknowledgement. For rta's own metrics; cheap.
    fn queue_depth(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::Part;

    #[test]
    fn parts_own_every_event_once_and_read_only_segments_holding_theirs() {
        let b = Part::BLOCK;
        for of in 1..=4u64 {
            let parts: Vec<Part> = Part::split(of).collect();
            for seq in [0, 1, b - 1, b, b + 1, 2 * b, 7 * b + 3, u64::MAX / 2] {
                assert_eq!(
                    parts.iter().filter(|p| p.owns(seq)).count(),
                    1,
                    "seq {seq} among {of} parts"
                );
            }
            // A segment is read by a part exactly when it holds one of its events.
            for (first, last) in [(1, 10), (b - 5, b + 5), (b, 3 * b), (5 * b + 1, 5 * b + 2)] {
                for part in &parts {
                    let holds = (first..=last)
                        .step_by(1 + (last - first) as usize / 64)
                        .chain([last])
                        .any(|s| part.owns(s));
                    assert_eq!(
                        part.owns_any(first, last),
                        holds,
                        "{part:?} {first}..={last}"
                    );
                }
            }
        }
    }
}
