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
mod rollup;
mod rows;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::{Bus, BusError, MAX_EVENTS_PER_MESSAGE, event_seq, stream_seq_of};
use crate::event::{Event, EventRef, EventType, Timestamp, Value, ValueRef};
use crate::query::TimeRange;
use crate::query::rollup::{Covered, HOUR_MS};
use crate::store::{
    Appended, IdempotencyKey, Part, ScanOrder, Store, StoreError, StoreMark, StoredEvent,
    TakeRollup,
};
pub use http::ClickHouseUrl;
use http::{ClickHouseError, Http, quote};

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

    /// Where this read's rows end and its stream tail begins: the mark as
    /// the bus has it now, and the last message this node has seen.
    async fn snapshot(&self) -> Snapshot {
        let seen = self.bus.followed();
        if let Ok((loaded, _)) = self.bus.progress(loader::LOADED).await {
            self.loaded.send_replace(loaded);
        }
        Snapshot {
            mark: self.loaded(),
            seen,
        }
    }

    /// Calls `each(seq, event)` with the events of the stream messages after
    /// the mark, up to the last this node has seen, that `filter` wants, in
    /// order, until it answers false.
    async fn tail(
        &self,
        snapshot: Snapshot,
        filter: &Filter<'_>,
        mut each: impl FnMut(u64, Event) -> bool,
    ) -> Result<(), StoreError> {
        if snapshot.seen <= snapshot.mark {
            return Ok(());
        }
        if !self.bus.is_connected() {
            return Err(StoreError::Read(format!(
                "NATS is unreachable, and the newest events (stream messages {}..={}) are read from it until ClickHouse has them",
                snapshot.mark + 1,
                snapshot.seen
            )));
        }
        let messages = self
            .bus
            .read_from(snapshot.mark + 1)
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?;
        tokio::pin!(messages);
        loop {
            let message = tokio::time::timeout(TAIL_WAIT, messages.next())
                .await
                .map_err(|_| {
                    StoreError::Read(format!(
                        "the stream did not give messages {}..={} within {} s",
                        snapshot.mark + 1,
                        snapshot.seen,
                        TAIL_WAIT.as_secs()
                    ))
                })?;
            let Some(message) = message else {
                return Ok(());
            };
            let message = match message {
                Ok(m) => m,
                Err(BusError::Corrupt { seq, reason }) => {
                    tracing::warn!("skipping stream message {seq}: {reason}");
                    if seq >= snapshot.seen {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(StoreError::Read(e.to_string())),
            };
            if message.stream_seq > snapshot.seen {
                return Ok(());
            }
            let stream_seq = message.stream_seq;
            for (i, event) in message.events.into_iter().enumerate() {
                let seq = event_seq(stream_seq, i as u64);
                if filter.wants(seq, &event) && !each(seq, event) {
                    return Ok(());
                }
            }
            if stream_seq >= snapshot.seen {
                return Ok(());
            }
        }
    }

    /// The newest `n` events of the tail that `filter` wants, newest first.
    async fn tail_newest(
        &self,
        snapshot: Snapshot,
        filter: &Filter<'_>,
        n: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let mut newest = std::collections::VecDeque::with_capacity(n.min(PAGE));
        if n > 0 {
            self.tail(snapshot, filter, |seq, event| {
                if newest.len() == n {
                    newest.pop_front();
                }
                newest.push_back((seq, event));
                true
            })
            .await?;
        }
        Ok(newest.into_iter().rev().collect())
    }

    /// Calls `row(seq, event)` with the table's events up to the snapshot's
    /// mark that `filter` wants, in `order`, then (oldest first only) the
    /// tail's, until it answers false. Blocking.
    fn select(
        &self,
        filter: &Filter<'_>,
        limit: Option<usize>,
        row: &mut dyn FnMut(u64, Event) -> bool,
    ) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let snapshot = self.snapshot().await;
            let rows = Filter {
                max_stream_seq: Some(snapshot.mark),
                ..*filter
            };
            let mut more = true;
            let mut bad: Option<String> = None;
            let mut previous = None;
            self.http
                .select_lines(&self.sql(&rows, "ASC", limit), |line| {
                    match rows::read_row(line) {
                        // A row stored twice (see the loader) is read once.
                        Ok((seq, _)) if previous == Some(seq) => {}
                        Ok((seq, event)) => {
                            previous = Some(seq);
                            more = row(seq, event);
                        }
                        Err(reason) => {
                            bad.get_or_insert(reason);
                        }
                    }
                    Ok(more)
                })
                .await?;
            if let Some(reason) = bad {
                tracing::warn!("skipped unreadable rows in ClickHouse: {reason}");
            }
            if more {
                self.tail(snapshot, filter, row).await?;
            }
            Ok(())
        })
    }

    /// Calls `sink(first_seq, events)` with runs of events of consecutive
    /// sequence numbers, oldest first. Returns how many.
    fn select_runs(
        &self,
        filter: &Filter<'_>,
        sink: &mut dyn FnMut(u64, &[Event]),
    ) -> Result<u64, StoreError> {
        let mut run: Vec<Event> = Vec::new();
        let mut first = 0u64;
        let mut count = 0u64;
        self.select(filter, None, &mut |seq, event| {
            if !run.is_empty() && (seq != first + run.len() as u64 || run.len() >= CHUNK) {
                sink(first, &run);
                run.clear();
            }
            if run.is_empty() {
                first = seq;
            }
            run.push(event);
            count += 1;
            true
        })?;
        if !run.is_empty() {
            sink(first, &run);
        }
        Ok(count)
    }

    /// The table's events up to `mark` that `filter` wants, newest first,
    /// at most `limit`.
    async fn rows_newest(
        &self,
        filter: &Filter<'_>,
        mark: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let rows = Filter {
            max_stream_seq: Some(mark),
            ..*filter
        };
        let mut out: Vec<(u64, Event)> = Vec::new();
        let mut bad = None;
        self.http
            .select_lines(&self.sql(&rows, "DESC", Some(limit)), |line| {
                match rows::read_row(line) {
                    Ok((seq, _)) if out.last().is_some_and(|(s, _)| *s == seq) => {}
                    Ok(row) => out.push(row),
                    Err(reason) => bad = Some(reason),
                }
                Ok(true)
            })
            .await?;
        if let Some(reason) = bad {
            tracing::warn!("skipped unreadable rows in ClickHouse: {reason}");
        }
        Ok(out)
    }

    fn sql(&self, filter: &Filter<'_>, order: &str, limit: Option<usize>) -> String {
        let table = self.http.table("events");
        let filter = filter.sql();
        let Some(n) = limit else {
            return format!(
                "SELECT {} FROM {table} WHERE {filter} ORDER BY seq {order} FORMAT JSONEachRow",
                rows::COLUMNS
            );
        };
        // The first `n` sequence numbers are found from the `seq` column
        // alone; only their rows are then read whole (otherwise ClickHouse
        // reads every column of every row to sort them).
        let (bound, edge) = if order == "DESC" {
            (">=", "min")
        } else {
            ("<=", "max")
        };
        format!(
            "SELECT {} FROM {table} WHERE {filter} AND seq {bound} \
             (SELECT {edge}(seq) FROM (SELECT seq FROM {table} WHERE {filter} ORDER BY seq {order} LIMIT {n})) \
             ORDER BY seq {order} LIMIT {n} FORMAT JSONEachRow",
            rows::COLUMNS
        )
    }
}

/// One read's view: the table's rows up to `mark`, the stream after it up
/// to `seen`.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    mark: u64,
    seen: u64,
}

/// Which rows a read wants.
#[derive(Default, Clone, Copy)]
struct Filter<'a> {
    range: Option<TimeRange>,
    types: Option<&'a [EventType]>,
    part: Option<Part>,
    after_seq: Option<u64>,
    before_seq: Option<u64>,
    max_stream_seq: Option<u64>,
    /// Events the hour summaries a query took hold.
    covered: Option<&'a Covered>,
}

impl Filter<'_> {
    /// What [`Filter::sql`] asks of a row, asked of an event of the tail.
    fn wants(&self, seq: u64, event: &Event) -> bool {
        let ts = event.timestamp.millis();
        self.range.is_none_or(|r| r.contains(ts))
            && self.types.is_none_or(|types| types.contains(&event.kind))
            && self
                .part
                .is_none_or(|p| p.of <= 1 || stream_seq_of(seq) % p.of == p.index)
            && self.after_seq.is_none_or(|after| seq > after)
            && self.before_seq.is_none_or(|before| seq < before)
            && self
                .max_stream_seq
                .is_none_or(|max| stream_seq_of(seq) <= max)
            && self
                .covered
                .is_none_or(|c| !c.covers(seq, event.kind.as_str(), ts))
    }

    fn sql(&self) -> String {
        let mut terms = vec!["1".to_string()];
        if let Some(range) = self.range {
            if range.from != i64::MIN {
                terms.push(format!("time_ms >= {}", range.from));
                // The coarse bound lets ClickHouse skip partitions and granules.
                terms.push(format!("ts >= {}", rows::ts_seconds(range.from)));
            }
            if range.to != i64::MAX {
                terms.push(format!("time_ms < {}", range.to));
                terms.push(format!("ts <= {}", rows::ts_seconds(range.to)));
            }
        }
        if let Some(types) = self.types {
            let list: Vec<String> = types.iter().map(|t| quote(t.as_str())).collect();
            if list.is_empty() {
                terms.push("0".into());
            } else {
                terms.push(format!("type IN ({})", list.join(", ")));
            }
        }
        // Parts share the messages out (a message's events have sequence
        // numbers far apart from the next message's).
        if let Some(part) = self.part.filter(|p| p.of > 1) {
            terms.push(format!("stream_seq % {} = {}", part.of, part.index));
        }
        if let Some(after) = self.after_seq {
            terms.push(format!("seq > {after}"));
        }
        if let Some(before) = self.before_seq {
            terms.push(format!("seq < {before}"));
        }
        if let Some(max) = self.max_stream_seq {
            terms.push(format!("stream_seq <= {max}"));
        }
        if let Some(covered) = self.covered.filter(|c| !c.is_empty()) {
            // Each summary taken holds its hour's events up to its own mark:
            // (hour|type) -> that mark, 0 for hours not taken.
            let (mut keys, mut marks) = (Vec::new(), Vec::new());
            for (hour, kind, upto) in covered.taken() {
                keys.push(quote(&format!("{hour}|{kind}")));
                marks.push(upto.to_string());
            }
            terms.push(format!(
                "NOT (seq <= {} AND seq <= transform(concat(toString(intDiv(time_ms, {HOUR_MS}) * {HOUR_MS}), '|', type), \
                 [{}], CAST([{}] AS Array(UInt64)), toUInt64(0)))",
                covered.upto,
                keys.join(", "),
                marks.join(", ")
            ));
        }
        terms.join(" AND ")
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
        let appended = self
            .bus
            .publish(&events, key.as_ref())
            .await
            .map_err(|e| match e {
                BusError::TooLarge { .. } => StoreError::TooLarge(e.to_string()),
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
                            .select_lines(&self.sql(&f, "ASC", Some(PAGE)), |line| {
                                if let Ok(row) = rows::read_row(line)
                                    && rows.last().is_none_or(|(s, _)| *s != row.0)
                                {
                                    rows.push(row);
                                }
                                Ok(true)
                            })
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

    async fn close(&self) {}
}

mod retention {
    //! Retention in ClickHouse: whole days go by partition, the day the
    //! cutoff falls in by a DELETE mutation.

    use super::http::{Http, quote};
    use crate::store::StoreError;

    pub async fn delete_before(
        http: &Http,
        cutoff_ms: i64,
        cut_inside: bool,
    ) -> Result<u64, StoreError> {
        let table = http.table("events");
        let old = http
            .number(&format!(
                "SELECT count() FROM {table} WHERE time_ms < {cutoff_ms}"
            ))
            .await?;
        if old == 0 {
            return Ok(0);
        }
        // Partitions are named by their UTC day ('2023-04-01'); those before
        // the cutoff's day hold only older events. (system.parts' max_date
        // is not kept for a custom partition key in ClickHouse 18.16.)
        let Some(day) = chrono::DateTime::from_timestamp_millis(cutoff_ms)
            .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
        else {
            return Ok(0);
        };
        let parts = http
            .execute(&format!(
                "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = 'events' \
                 AND active AND partition < {} FORMAT TabSeparated",
                quote(&http.url.database),
                quote(&day)
            ))
            .await?;
        for partition in parts.lines().map(str::trim).filter(|p| !p.is_empty()) {
            // Another node may have dropped it a moment ago: that is fine.
            if let Err(e) = http
                .execute(&format!(
                    "ALTER TABLE {table} DROP PARTITION {}",
                    quote(partition)
                ))
                .await
            {
                tracing::debug!("dropping partition {partition}: {e}");
            }
        }
        let left = http
            .number(&format!(
                "SELECT count() FROM {table} WHERE time_ms < {cutoff_ms}"
            ))
            .await?;
        if left > 0 && cut_inside {
            http.execute(&format!(
                "ALTER TABLE {table} DELETE WHERE time_ms < {cutoff_ms}"
            ))
            .await?;
            // Summaries of hours before the cutoff are never taken (queries
            // begin at it); they go too.
            let floor = crate::query::rollup::hour_of(cutoff_ms);
            http.execute(&format!(
                "ALTER TABLE {} DELETE WHERE hour < {floor}",
                http.table(super::rollup::TABLE)
            ))
            .await?;
        }
        Ok(old)
    }
}
