//! The cluster's store: events acknowledged by NATS JetStream ([`Bus`]),
//! kept and read in ClickHouse.
//!
//! `append` publishes to the stream and returns once JetStream has the
//! events and this node's feed has been given them. The
//! [`loader::Loader`] moves the stream into the `events` table exactly once
//! and marks how far it got (`loaded`). A read takes the mark once, reads
//! the table's rows up to it (rows after it may be an unfinished load) and
//! then the stream's messages after it, up to the last one this node has
//! seen: answers are exact and include this node's own ingests however far
//! the loader lags (ClickHouse down, say). Nodes keep nothing on disk.

pub mod http;
pub mod loader;
mod read;
mod retention;
mod rollup;
mod rows;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::{Bus, BusError, MAX_EVENTS_PER_MESSAGE, stream_seq_of};
use crate::event::{Event, EventRef, EventType, Timestamp, Value, ValueRef};
use crate::query::TimeRange;
use crate::query::rollup::Covered;
use crate::store::{
    Appended, IdempotencyKey, Part, ScanOrder, Store, StoreError, StoreMark, StoredEvent,
    TakeRollup,
};
pub use http::ClickHouseUrl;
use http::{ClickHouseError, Http};
use read::Filter;

/// How long an ingest waits for its events to come back from the stream
/// before answering anyway (they are durable once JetStream has them).
const FOLLOW_WAIT: Duration = Duration::from_secs(5);
/// How long a read waits for the stream to give the messages it knows of.
const TAIL_WAIT: Duration = Duration::from_secs(10);
/// Rows a page of `scan_events` reads.
const PAGE: usize = 1000;
/// Events handed to a sink at once.
const CHUNK: usize = 4096;

pub struct ClickHouseStore {
    http: Arc<Http>,
    bus: Arc<Bus>,
    runtime: tokio::runtime::Handle,
    loaded: watch::Sender<u64>,
    /// Whether this node's loader holds the lease (it also runs retention).
    leading: Arc<AtomicBool>,
    /// When retention last deleted inside a day (a mutation rewrites parts).
    last_cut: std::sync::Mutex<Option<std::time::Instant>>,
    /// How long the stream keeps events after they are loaded.
    keep_loaded: Duration,
    /// Requests published and not yet acknowledged by JetStream.
    publishing: Arc<AtomicUsize>,
}

/// Counts a request while it waits for JetStream, however its wait ends
/// (a client that goes away drops the future).
struct Publishing(Arc<AtomicUsize>);

impl Publishing {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl From<ClickHouseError> for StoreError {
    fn from(e: ClickHouseError) -> Self {
        StoreError::Read(e.to_string())
    }
}

impl ClickHouseStore {
    /// Connects, creating the database and tables when missing.
    pub async fn open(
        url: ClickHouseUrl,
        bus: Arc<Bus>,
        keep_loaded: Duration,
    ) -> Result<Self, StoreError> {
        let open_err = |e: ClickHouseError| StoreError::Read(e.to_string());
        let http = Http::new(url.clone())?;
        http.execute(&format!("CREATE DATABASE IF NOT EXISTS {}", url.database))
            .await
            .map_err(open_err)?;
        http.execute(&rows::create_table(&http.table("events")))
            .await
            .map_err(open_err)?;
        http.execute(&rollup::create_table(&url.database))
            .await
            .map_err(open_err)?;
        let (loaded, mark) = bus
            .progress(loader::LOADED)
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        loader::bus_matches(&http, &bus, mark.is_some())
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(Self {
            http: Arc::new(http),
            bus,
            runtime: tokio::runtime::Handle::current(),
            loaded: watch::channel(loaded).0,
            leading: Arc::default(),
            last_cut: Default::default(),
            keep_loaded,
            publishing: Default::default(),
        })
    }

    /// The loader this node runs (it loads while it holds the lease).
    pub fn loader(&self) -> loader::Loader {
        loader::Loader {
            bus: self.bus.clone(),
            http: self.http.clone(),
            loaded: self.loaded.clone(),
            leading: self.leading.clone(),
            keep_loaded: self.keep_loaded,
        }
    }

    /// The task building hour summaries (while this node loads).
    pub fn summaries(&self, stop: watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
        rollup::build(
            self.http.clone(),
            self.bus.clone(),
            self.leading.clone(),
            self.loaded.subscribe(),
            stop,
        )
    }

    /// How far the hour summaries reach (`None` when the bus cannot say).
    pub async fn summarised(&self) -> Option<u64> {
        self.bus
            .progress(rollup::SUMMARISED)
            .await
            .ok()
            .map(|(summarised, _)| summarised)
    }

    /// Whether this node loads events into ClickHouse now.
    pub fn is_loading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// The last stream message whose events are all in the table.
    pub fn loaded(&self) -> u64 {
        *self.loaded.borrow()
    }

    pub fn url(&self) -> &ClickHouseUrl {
        &self.http.url
    }
}
fn write_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Write(e.to_string())
}

#[async_trait]
impl Store for ClickHouseStore {
    async fn append(
        &self,
        events: Vec<Event>,
        key: Option<IdempotencyKey>,
    ) -> Result<Appended, StoreError> {
        if events.len() > MAX_EVENTS_PER_MESSAGE {
            return Err(StoreError::TooLarge(format!(
                "{} events in one request; a cluster takes at most {MAX_EVENTS_PER_MESSAGE} a request, so split it",
                events.len()
            )));
        }
        let publishing = Publishing::start(&self.publishing);
        let published = self.bus.publish(&events, key.as_ref()).await;
        drop(publishing);
        let appended = published.map_err(|e| match e {
            BusError::TooLarge { .. } => StoreError::TooLarge(e.to_string()),
            BusError::Unacknowledged(reason) => StoreError::Unsure(format!(
                "NATS JetStream did not acknowledge the events ({reason})"
            )),
            e => write_err(e),
        })?;
        let first_seq = match &appended {
            Appended::Stored { first_seq } | Appended::AlreadyStored { first_seq, .. } => {
                *first_seq
            }
        };
        // This node's reads include the events once they came back.
        if !self
            .bus
            .wait_followed(stream_seq_of(first_seq), FOLLOW_WAIT)
            .await
        {
            tracing::warn!("acknowledged events have not come back from the stream yet");
        }
        Ok(appended)
    }

    async fn forget_keys_before(&self, _cutoff: Timestamp) -> Result<u64, StoreError> {
        // The bucket forgets keys by itself after an hour.
        Ok(0)
    }

    async fn recent(
        &self,
        limit: usize,
        kind: Option<EventType>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let types = kind.map(|k| vec![k]);
        let filter = Filter {
            types: types.as_deref(),
            ..Default::default()
        };
        let snapshot = self.snapshot().await;
        let mut newest = self.tail_newest(snapshot, &filter, limit).await?;
        let left = limit - newest.len();
        if left > 0 {
            newest.extend(self.rows_newest(&filter, snapshot.mark, left).await?);
        }
        Ok(newest
            .into_iter()
            .map(|(seq, event)| StoredEvent { seq, event })
            .collect())
    }

    fn scan(&self, after_seq: u64, sink: &mut dyn FnMut(u64, &[Event])) -> Result<u64, StoreError> {
        // The rows up to the mark, then the stream up to what this node's
        // feed has had (nothing yet at start-up: the feed follows from the
        // mark on, and the engine skips what it has).
        let filter = Filter {
            after_seq: Some(after_seq),
            ..Default::default()
        };
        self.select_runs(&filter, sink)
    }

    fn scan_range(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        part: Part,
        sink: &mut dyn FnMut(u64, &[Event]),
    ) -> Result<(), StoreError> {
        let filter = Filter {
            range: Some(range),
            types,
            part: Some(part),
            ..Default::default()
        };
        self.select_runs(&filter, sink).map(|_| ())
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
        let filter = Filter {
            range: Some(range),
            types,
            part: Some(part),
            covered: Some(covered),
            ..Default::default()
        };
        self.select(&filter, None, &mut |seq, event| {
            let millis = event.timestamp.millis();
            let mut values: Vec<(&str, ValueRef<'_>)> = Vec::with_capacity(event.values.len());
            for (name, value) in &event.values {
                let value = match value {
                    Value::Measure(x) => ValueRef::Measure(*x),
                    Value::Dimension(s) => {
                        if dimensions.is_some_and(|wanted| !wanted.contains(&&**name)) {
                            continue;
                        }
                        ValueRef::Dimension(s)
                    }
                };
                values.push((name, value));
            }
            visit(
                seq,
                &EventRef {
                    millis,
                    kind: event.kind.as_str(),
                    source: &event.source,
                    values: &values,
                },
            );
            true
        })
    }

    fn rollups(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        take: &mut TakeRollup<'_>,
    ) -> Result<Covered, StoreError> {
        self.runtime.block_on(async {
            let summarised = match self.bus.progress(rollup::SUMMARISED).await {
                Ok((summarised, _)) => summarised,
                // Without the bus, every event is read.
                Err(_) => return Ok(Covered::new(0)),
            };
            rollup::read(&self.http, summarised, range, types, take).await
        })
    }

    fn scan_events(
        &self,
        range: TimeRange,
        types: Option<&[EventType]>,
        order: ScanOrder,
        cursor: Option<u64>,
        sink: &mut dyn FnMut(u64, &Event) -> bool,
    ) -> Result<(), StoreError> {
        let filter = Filter {
            range: Some(range),
            types,
            ..Default::default()
        };
        self.runtime.block_on(async {
            let snapshot = self.snapshot().await;
            let mut cursor = cursor;
            let mut page = |newest: Vec<(u64, Event)>, cursor: &mut Option<u64>| {
                let n = newest.len();
                for (seq, event) in newest {
                    *cursor = Some(seq);
                    if !sink(seq, &event) {
                        return None;
                    }
                }
                Some(n)
            };
            match order {
                ScanOrder::NewestFirst => {
                    // The tail is newer than every row.
                    loop {
                        let f = Filter {
                            before_seq: cursor,
                            ..filter
                        };
                        let newest = self.tail_newest(snapshot, &f, PAGE).await?;
                        match page(newest, &mut cursor) {
                            None => return Ok(()),
                            Some(n) if n < PAGE => break,
                            Some(_) => {}
                        }
                    }
                    loop {
                        let f = Filter {
                            before_seq: cursor,
                            ..filter
                        };
                        let newest = self.rows_newest(&f, snapshot.mark, PAGE).await?;
                        match page(newest, &mut cursor) {
                            Some(n) if n == PAGE => {}
                            _ => return Ok(()),
                        }
                    }
                }
                ScanOrder::OldestFirst => {
                    loop {
                        let f = Filter {
                            after_seq: cursor,
                            max_stream_seq: Some(snapshot.mark),
                            ..filter
                        };
                        let mut rows = Vec::new();
                        self.http
                            .select_lines(
                                &read::select_sql(
                                    &self.http.table("events"),
                                    &f,
                                    "ASC",
                                    Some(PAGE),
                                ),
                                |line| {
                                    if let Ok(row) = rows::read_row(line)
                                        && rows.last().is_none_or(|(s, _)| *s != row.0)
                                    {
                                        rows.push(row);
                                    }
                                    Ok(true)
                                },
                            )
                            .await?;
                        match page(rows, &mut cursor) {
                            None => return Ok(()),
                            Some(n) if n < PAGE => break,
                            Some(_) => {}
                        }
                    }
                    let f = Filter {
                        after_seq: cursor,
                        ..filter
                    };
                    self.tail(snapshot, &f, |seq, event| sink(seq, &event))
                        .await
                }
            }
        })
    }

    fn earliest(&self) -> Result<Option<i64>, StoreError> {
        let table = self.http.table("events");
        self.runtime.block_on(async {
            let text = self
                .http
                .execute(&format!(
                    "SELECT count(), min(time_ms) FROM {table} FORMAT TabSeparated"
                ))
                .await?;
            let mut fields = text.trim().split('\t');
            let count: u64 = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            Ok((count > 0)
                .then(|| fields.next().and_then(|m| m.parse().ok()))
                .flatten())
        })
    }

    fn mark(&self) -> Result<StoreMark, StoreError> {
        let table = self.http.table("events");
        let max_seq = self
            .runtime
            .block_on(self.http.number(&format!("SELECT max(seq) FROM {table}")))?;
        Ok(StoreMark {
            deleted: 0,
            max_seq,
        })
    }

    async fn delete_before(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        // One node deletes (the loader); every node's engine forgets.
        if !self.is_loading() {
            return Ok(0);
        }
        // Inside the cut day, old rows are deleted by a mutation, which in
        // ClickHouse 18.16 rewrites every part: at most every 1/60 of the
        // retention, and at most hourly. Reads never include rows older than
        // the cutoff meanwhile (queries clamp their range to it).
        let retention = Timestamp::now()
            .millis()
            .saturating_sub(cutoff.millis())
            .max(0);
        let every = Duration::from_millis((retention / 60) as u64)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let cut_inside = {
            let mut last = self.last_cut.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= every);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        retention::delete_before(&self.http, cutoff.millis(), cut_inside).await
    }

    fn queue_depth(&self) -> usize {
        self.publishing.load(Ordering::Relaxed)
    }

    async fn close(&self) {}
}
