//! Durable storage of events, behind the [`Store`] trait.
//!
//! The embedded default is SQLite ([`sqlite::SqliteStore`]); a distributed
//! backend (ClickHouse) can implement the same trait later. A store owns
//! durability: `append` returns only once the events survive a crash, and
//! then publishes them to the [`Feed`](crate::feed::Feed).

pub mod segment;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

use crate::event::{Event, EventRef, EventType, Timestamp};
use crate::query::TimeRange;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The events were not stored (disk full, read-only directory, I/O error).
    #[error("could not store events: {0}")]
    Write(String),
    #[error("could not read events: {0}")]
    Read(String),
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

/// One of `of` disjoint shares of the stored segments; together they hold
/// every segment once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u64,
    pub of: u64,
}

impl Part {
    pub const ALL: Part = Part { index: 0, of: 1 };

    /// The `of` parts that make up the whole.
    pub fn split(of: u64) -> impl Iterator<Item = Part> {
        let of = of.max(1);
        (0..of).map(move |index| Part { index, of })
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
    fn visit_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        dimensions: Option<&[&str]>,
        part: Part,
        visit: &mut dyn FnMut(u64, &EventRef<'_>),
    ) -> Result<(), StoreError>;

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
}
