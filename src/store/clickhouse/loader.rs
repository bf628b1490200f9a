//! The loader: moves events from the stream into ClickHouse, exactly once.
//!
//! Every node runs one; the node holding the bus's `loader` lease loads and
//! the others wait to take over. ClickHouse 18.16 cannot drop a repeated
//! INSERT by itself (no deduplication on plain MergeTree), so exactly-once is
//! ours:
//!
//! - the progress mark `loaded` (in the bus, updated compare-and-set) names
//!   the last stream message whose events are all in ClickHouse, and every
//!   row carries the stream sequence of its message;
//! - the loader inserts the messages after `loaded` in batches, then moves
//!   the mark;
//! - an INSERT whose outcome is unknown (the loader died after it, or its
//!   answer was lost) is undone before anything else is inserted: rows after
//!   the mark are deleted (`ALTER TABLE ... DELETE`, waited for) and the
//!   messages inserted again.
//!
//! The mark moves only by compare-and-set, so a loader that lost its lease
//! (paused past it) cannot move the mark past the new loader's work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::http::{ClickHouseError, Http};
use super::rows;
use crate::bus::{Bus, BusError, Delivered, event_seq};

/// The lease and the progress mark's name.
pub const LEASE: &str = "loader";
pub const LOADED: &str = "loaded";
/// Rows per INSERT at most.
const MAX_ROWS: usize = 200_000;
/// JSON bytes per INSERT at most.
const MAX_BYTES: usize = 32 << 20;
/// How long a batch waits for more messages once it has one.
const GATHER: Duration = Duration::from_millis(50);
/// The lease is renewed this often (well inside the bus's `LEASE_TTL`).
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often the stream is trimmed at most (and more often when it keeps
/// loaded messages for less than this).
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Refuses a table that holds more than this bus could have given it: the
/// bus's JetStream store was reset (or its mark deleted) while ClickHouse
/// kept its data. Undoing "everything after the mark" would then delete the
/// history, and new sequence numbers would repeat old ones. Checked at start
/// and by each loader taking over.
pub async fn bus_matches(http: &Http, bus: &Bus, has_mark: bool) -> Result<(), LoadError> {
    let table = http.table("events");
    let stored = http
        .number(&format!("SELECT max(stream_seq) FROM {table}"))
        .await?;
    if stored == 0 {
        return Ok(());
    }
    let (first, last) = bus.seq_span().await?;
    // Without a mark, rows can only be an unfinished first load, from a
    // stream never trimmed (trimming follows a mark).
    let first_load = !has_mark && first <= 1;
    if stored > last || !(has_mark || first_load) {
        return Err(LoadError::Mismatch(format!(
            "ClickHouse holds events up to stream message {stored}, but the bus {} (was NATS's JetStream store reset?). \
             Nothing is loaded, so that nothing stored is deleted or numbered twice: point --store at an empty database, or restore NATS's store",
            if has_mark {
                format!("stream ends at message {last}")
            } else {
                "has no mark of what was loaded".to_string()
            }
        )));
    }
    Ok(())
}

/// A deliberate crash for the exactly-once test: `RTA_TEST_FAULT=exit-after-insert:N`
/// makes the process exit at once after its Nth INSERT, before moving the mark.
fn fault_after_insert() -> Option<u64> {
    std::env::var("RTA_TEST_FAULT")
        .ok()?
        .strip_prefix("exit-after-insert:")?
        .parse()
        .ok()
}

pub struct Loader {
    pub bus: Arc<Bus>,
    pub http: Arc<Http>,
    /// The mark as this node last saw it, for readers that wait for it.
    pub loaded: watch::Sender<u64>,
    /// Set while this node holds the lease.
    pub leading: Arc<AtomicBool>,
    /// Messages stay in the stream this long after ClickHouse has them, for
    /// nodes whose live view lags (`--bus-keep`); older ones are dropped, so
    /// the stream holds what is not loaded yet plus this.
    pub keep_loaded: Duration,
}

enum Stop {
    /// Another node holds the lease now.
    LostLease,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("{0}")]
    Mismatch(String),
}

impl Loader {
    /// Loads while this node holds the lease, until `stop` flips.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut waiting_logged = false;
        // The same failure again is logged once a minute, not every second.
        let mut last_failure: Option<(String, Instant)> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.bus.take_lease(LEASE, None).await {
                Ok(Some(revision)) => {
                    if last_failure.is_none() {
                        tracing::info!("this node loads events into ClickHouse");
                    }
                    waiting_logged = false;
                    let mut revision = revision;
                    self.leading.store(true, Ordering::Relaxed);
                    let outcome = self.lead(&mut revision, &mut stop).await;
                    self.leading.store(false, Ordering::Relaxed);
                    match outcome {
                        Ok(Stop::Shutdown) => {
                            self.bus.release_lease(LEASE, revision).await;
                            return;
                        }
                        Ok(Stop::LostLease) => {
                            last_failure = None;
                            tracing::info!("another node loads events into ClickHouse now");
                        }
                        Err(e) => {
                            let text = e.to_string();
                            let repeat = last_failure.as_ref().is_some_and(|(t, at)| {
                                *t == text && at.elapsed() < Duration::from_secs(60)
                            });
                            if !repeat {
                                tracing::warn!("loading into ClickHouse stopped: {text}; retrying");
                                last_failure = Some((text, Instant::now()));
                            }
                            self.bus.release_lease(LEASE, revision).await;
                            tokio::select! {
                                _ = stop.changed() => {}
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                            continue;
                        }
                    }
                }
                Ok(None) => {
                    if !waiting_logged {
                        tracing::info!("another node loads events into ClickHouse; standing by");
                        waiting_logged = true;
                    }
                    // Keeps this node's view of the mark fresh for its readers.
                    if let Ok((loaded, _)) = self.bus.progress(LOADED).await {
                        self.loaded.send_replace(loaded);
                    }
                }
                Err(e) => tracing::warn!("cannot reach the loader's lease: {e}"),
            }
            let pause = if waiting_logged {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn lead(
        &self,
        lease: &mut u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Stop, LoadError> {
        let (mut loaded, mut mark) = self.bus.progress(LOADED).await?;
        self.check_bus_matches(mark.is_some()).await?;
        self.undo_after(loaded).await?;
        self.loaded.send_replace(loaded);
        let messages = self.bus.read_from(loaded + 1).await?;
        tokio::pin!(messages);
        let mut renewed = Instant::now();
        let mut inserts = 0u64;
        let fault = fault_after_insert();
        // Marks set, a few seconds apart, to trim the stream by.
        let mut marks: std::collections::VecDeque<(Instant, u64)> = Default::default();
        let mut trimmed = Instant::now();
        let table = self.http.table("events");
        let keep = self.keep_loaded;
        loop {
            if trimmed.elapsed() >= TRIM_EVERY.min(keep) {
                trimmed = Instant::now();
                let mut upto = None;
                while let Some(&(at, mark)) = marks.front() {
                    if at.elapsed() < keep {
                        break;
                    }
                    upto = Some(mark);
                    marks.pop_front();
                }
                if let Some(mark) = upto {
                    match self.bus.purge_before(mark + 1).await {
                        Ok(n) => tracing::debug!("dropped {n} loaded messages from the stream"),
                        Err(e) => tracing::warn!("cannot trim the stream: {e}"),
                    }
                }
            }
            let mut batch: Vec<Delivered> = Vec::new();
            let mut rows_in = 0usize;
            // The first message is awaited at most until the lease is due.
            let first = tokio::select! {
                _ = stop.changed() => return Ok(Stop::Shutdown),
                m = tokio::time::timeout(RENEW_EVERY, messages.next()) => m,
            };
            match first {
                Ok(Some(m)) => {
                    let m = m?;
                    rows_in += m.events.len();
                    // Encoded events grow about threefold as JSON rows.
                    let mut bytes_in = m.bytes * 3;
                    batch.push(m);
                    let until = tokio::time::Instant::now() + GATHER;
                    while rows_in < MAX_ROWS && bytes_in < MAX_BYTES {
                        match tokio::time::timeout_at(until, messages.next()).await {
                            Ok(Some(m)) => {
                                let m = m?;
                                rows_in += m.events.len();
                                bytes_in += m.bytes * 3;
                                batch.push(m);
                            }
                            Ok(None) => break,
                            Err(_) => break,
                        }
                    }
                }
                Ok(None) => {
                    return Err(BusError::JetStream("the stream ended".into()).into());
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= RENEW_EVERY || batch.is_empty() {
                match self.bus.take_lease(LEASE, Some(*lease)).await? {
                    Some(revision) => {
                        *lease = revision;
                        renewed = Instant::now();
                    }
                    None => return Ok(Stop::LostLease),
                }
            }
            let Some(last) = batch.last().map(|m| m.stream_seq) else {
                continue;
            };
            let body = encode(&batch);
            let mut failures = 0u32;
            // After a failed INSERT, which ClickHouse may have stored all the
            // same, nothing is inserted until its rows are known to be gone.
            let mut unsure = false;
            loop {
                let mut failed = None;
                if unsure {
                    match self.undo_after(loaded).await {
                        Ok(()) => unsure = false,
                        Err(e) => failed = Some(e),
                    }
                }
                if !unsure {
                    // The lease is renewed while the INSERT runs, however long.
                    let insert = self.http.insert(&table, body.clone());
                    tokio::pin!(insert);
                    let inserted = loop {
                        tokio::select! {
                            result = &mut insert => break result,
                            _ = tokio::time::sleep(RENEW_EVERY) => {
                                match self.bus.take_lease(LEASE, Some(*lease)).await? {
                                    Some(revision) => *lease = revision,
                                    // The next loader waits for this INSERT to end
                                    // before it undoes anything (undo_after).
                                    None => return Ok(Stop::LostLease),
                                }
                                renewed = Instant::now();
                            }
                        }
                    };
                    match inserted {
                        Ok(()) => break,
                        Err(e) => {
                            unsure = true;
                            failed = Some(e);
                        }
                    }
                }
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    let reason = failed.map(|e| e.to_string()).unwrap_or_default();
                    tracing::warn!(
                        "cannot insert into ClickHouse ({reason}); events wait in the stream, retrying"
                    );
                }
                tokio::select! {
                    _ = stop.changed() => return Ok(Stop::Shutdown),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                match self.bus.take_lease(LEASE, Some(*lease)).await? {
                    Some(revision) => *lease = revision,
                    None => return Ok(Stop::LostLease),
                }
                renewed = Instant::now();
            }
            if failures > 0 {
                tracing::info!("ClickHouse takes events again");
            }
            inserts += 1;
            if fault == Some(inserts) {
                tracing::error!("RTA_TEST_FAULT: exiting after an INSERT, before its mark");
                std::process::exit(137);
            }
            match self.bus.set_progress(LOADED, last, mark).await? {
                Some(revision) => mark = Some(revision),
                None => return Ok(Stop::LostLease),
            }
            loaded = last;
            self.loaded.send_replace(loaded);
            if marks
                .back()
                .is_none_or(|(at, _)| at.elapsed() >= (keep / 10).min(Duration::from_secs(10)))
            {
                marks.push_back((Instant::now(), loaded));
            }
        }
    }

    async fn check_bus_matches(&self, has_mark: bool) -> Result<(), LoadError> {
        bus_matches(&self.http, &self.bus, has_mark).await
    }

    /// Deletes the rows of messages after `loaded` (an INSERT whose outcome
    /// was unknown) and waits until they are gone. An INSERT still running
    /// (from a loader that lost its lease, or one whose answer was lost) is
    /// waited for first: it could otherwise land after the deletion.
    async fn undo_after(&self, loaded: u64) -> Result<(), ClickHouseError> {
        let table = self.http.table("events");
        let running = format!(
            "SELECT count() FROM system.processes WHERE query LIKE {}",
            super::http::quote(&format!("INSERT INTO {table} %"))
        );
        let started = Instant::now();
        while self.http.number(&running).await? > 0 {
            if started.elapsed() > Duration::from_secs(600) {
                return Err(ClickHouseError::Refused(
                    "an INSERT into the events table has been running for 10 minutes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let strays = format!("SELECT count() FROM {table} WHERE stream_seq > {loaded}");
        let stray = self.http.number(&strays).await?;
        if stray == 0 {
            return Ok(());
        }
        tracing::info!(
            "removing {stray} rows that an unfinished load left after stream message {loaded}"
        );
        self.http
            .execute(&format!(
                "ALTER TABLE {table} DELETE WHERE stream_seq > {loaded}"
            ))
            .await?;
        let started = Instant::now();
        loop {
            let left = self.http.number(&strays).await?;
            if left == 0 {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(ClickHouseError::Refused(format!(
                    "{left} rows after stream message {loaded} are still there 5 minutes after deleting them"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The rows of a batch of messages, as one INSERT's body.
fn encode(batch: &[Delivered]) -> Vec<u8> {
    let bytes: usize = batch.iter().map(|m| m.bytes * 3 + 64).sum();
    let mut out = Vec::with_capacity(bytes.min(MAX_BYTES));
    for message in batch {
        for (i, event) in message.events.iter().enumerate() {
            rows::write_row(
                &mut out,
                event_seq(message.stream_seq, i as u64),
                message.stream_seq,
                event,
            );
        }
    }
    out
}
