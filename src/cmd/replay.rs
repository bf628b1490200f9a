//! `rta replay FILE`: push a JSONL or CSV file to a server, in batches,
//! reporting each bad line by its line number, in line order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::cli::ReplayArgs;
use crate::client::progress::{Progress, Tally, Unit};
use crate::client::reader::{EventReader, Format};
use crate::client::{Client, ClientError, IngestReport, Purpose};
use crate::event::Timestamp;

/// Requests in flight at once when not pacing by timestamps.
const CONCURRENCY: usize = 4;
/// Rejected lines printed one by one; beyond that only counted.
const SHOW_REJECTIONS: usize = 100;

/// A batch on its way: the body and the file line of each event in it.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    lines: Vec<usize>,
}

type Sent = (Vec<usize>, Result<IngestReport, ClientError>);

pub async fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    if let Some(speed) = args.speed
        && !(speed > 0.0 && speed.is_finite())
    {
        crate::usage!(
            "--speed must be a positive factor (1 = real time, 60 = an hour per minute), got {speed}"
        );
    }
    let format = args.format.unwrap_or_else(|| Format::from_path(&args.file));
    if args.shift_to_now && args.file == "-" {
        crate::usage!("--shift-to-now reads the file twice, so it needs a file, not stdin");
    }
    let client = Client::new(&args.client, Purpose::Write)?;
    let mut reader = open(&args.file, format)?;
    let shift_ms = if args.shift_to_now {
        let last = latest_timestamp(&args.file, format)?;
        last.map_or(0, |last| Timestamp::now().millis() - last)
    } else {
        0
    };
    let mut progress = Progress::new(reader.size, Unit::Bytes, args.quiet);
    let mut tally = Tally::new("read", "lines");
    let mut rejections = Rejections::default();
    let started = Instant::now();
    let concurrency = if args.speed.is_some() { 1 } else { CONCURRENCY };
    let mut in_flight: JoinSet<Sent> = JoinSet::new();
    let mut batch = Batch::default();
    let mut failure = None;
    let mut first_ts: Option<i64> = None;
    let ctrl_c = super::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut exhausted = false;
    let mut last_line = 0;

    loop {
        let record = tokio::task::block_in_place(|| reader.next_record())
            .with_context(|| format!("cannot read {}", args.file))?;
        let Some(record) = record else {
            exhausted = true;
            break;
        };
        tally.read += 1;
        last_line = record.line;
        let mut event = match record.event {
            Ok(event) => event,
            Err(reason) => {
                tally.unreadable += 1;
                rejections.add(record.line, reason);
                continue;
            }
        };
        let ts = shift(&mut event, shift_ms);
        if let (Some(speed), Some(ts)) = (args.speed, ts) {
            let first = *first_ts.get_or_insert(ts);
            let due =
                started + Duration::from_secs_f64(((ts - first).max(0) as f64 / 1000.0) / speed);
            if due > Instant::now() {
                dispatch(&client, &mut batch, &mut in_flight, &mut rejections);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = &mut ctrl_c => { interrupted = true; }
                }
                if interrupted {
                    tally.not_sent += 1;
                    break;
                }
            }
        }
        serde_json::to_writer(&mut batch.body, &Value::Object(event))?;
        batch.body.push(b'\n');
        batch.lines.push(record.line);
        if batch.lines.len() as u64 >= args.batch {
            dispatch(&client, &mut batch, &mut in_flight, &mut rejections);
        }
        while in_flight.len() >= concurrency {
            tokio::select! {
                Some(done) = in_flight.join_next() => collect(done, &mut tally, &mut failure, &mut rejections),
                _ = &mut ctrl_c => { interrupted = true; break; }
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            collect(done, &mut tally, &mut failure, &mut rejections);
        }
        rejections.show_settled(batch.lines.first().copied(), &progress);
        if interrupted || failure.is_some() {
            break;
        }
        let elapsed = started.elapsed();
        progress.update(reader.bytes_read(), || {
            format!("{} lines, {:.0} events/s", tally.read, tally.rate(elapsed))
        });
    }
    if interrupted || failure.is_some() {
        tally.not_sent += batch.lines.len() as u64;
    } else {
        dispatch(&client, &mut batch, &mut in_flight, &mut rejections);
    }
    while let Some(done) = in_flight.join_next().await {
        collect(done, &mut tally, &mut failure, &mut rejections);
    }
    rejections.show_settled(None, &progress);
    let hidden = tally.rejected().saturating_sub(rejections.shown as u64);
    if hidden > 0 {
        progress.println(format!(
            "({hidden} more rejected lines are counted but not shown)"
        ));
    }
    if !exhausted {
        progress.println(format!(
            "stopped after line {last_line}: the rest of the input was not read"
        ));
    }
    Ok(progress.conclude(&tally, started.elapsed(), failure, interrupted))
}

fn open(file: &str, format: Format) -> anyhow::Result<EventReader> {
    match EventReader::open(file, format) {
        Ok(reader) => Ok(reader),
        // A file that is not there is a mistake on the command line.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::usage!(
                "cannot read {file}: no such file (give a JSONL or CSV file, or - for stdin)"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {file}")),
    }
}

/// Rejected lines, shown in line order: a line is shown once every line
/// before it is settled (read, and its batch answered). Only the first
/// [`SHOW_REJECTIONS`] are kept and shown; the rest are counted.
#[derive(Default)]
struct Rejections {
    waiting: BTreeMap<usize, String>,
    /// The first line of each batch in flight.
    in_flight: BTreeSet<usize>,
    shown: usize,
}

impl Rejections {
    fn add(&mut self, line: usize, reason: String) {
        let room = SHOW_REJECTIONS.saturating_sub(self.shown);
        if room == 0 {
            return;
        }
        self.waiting.insert(line, reason);
        if self.waiting.len() > room {
            // The latest line could never be among the first shown.
            self.waiting.pop_last();
        }
    }

    /// Shows every waiting line before the first unsettled one: the first
    /// line of a batch in flight or of the batch being filled.
    fn show_settled(&mut self, filling: Option<usize>, progress: &Progress) {
        let settled_before = self
            .in_flight
            .first()
            .copied()
            .into_iter()
            .chain(filling)
            .min()
            .unwrap_or(usize::MAX);
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() >= settled_before {
                break;
            }
            let (line, reason) = entry.remove_entry();
            self.shown += 1;
            progress.println(format!("line {line}: {reason}"));
        }
    }
}

/// Sends the batch (if any) and starts a new one.
fn dispatch(
    client: &Client,
    batch: &mut Batch,
    in_flight: &mut JoinSet<Sent>,
    rejections: &mut Rejections,
) {
    if batch.lines.is_empty() {
        return;
    }
    let Batch { body, lines } = std::mem::take(batch);
    rejections.in_flight.insert(lines[0]);
    let client = client.clone();
    in_flight.spawn(async move {
        let result = client.ingest_ndjson(body).await;
        (lines, result)
    });
}

fn collect(
    done: Result<Sent, tokio::task::JoinError>,
    tally: &mut Tally,
    failure: &mut Option<ClientError>,
    rejections: &mut Rejections,
) {
    let Ok((lines, result)) = done else {
        // A request task that died leaves its events unsettled, which the
        // summary counts as not sent.
        return;
    };
    if let Some(first) = lines.first() {
        rejections.in_flight.remove(first);
    }
    match result {
        Ok(report) => {
            tally.settle(
                lines.len() as u64,
                report.accepted,
                report.rejected.len() as u64,
            );
            for r in &report.rejected {
                // The server numbers events in the body; map them back to file lines.
                let line = lines.get(r.index).copied().unwrap_or(0);
                rejections.add(line, r.error.clone());
            }
        }
        Err(e) => {
            tally.not_sent += lines.len() as u64;
            failure.get_or_insert(e);
        }
    }
}

/// Moves the event's timestamp by `shift_ms` (when non-zero) and returns it
/// in milliseconds, if it has a readable one.
fn shift(event: &mut Map<String, Value>, shift_ms: i64) -> Option<i64> {
    let ts = Timestamp::from_json(event.get("timestamp")?).ok()?.millis();
    if shift_ms == 0 {
        return Some(ts);
    }
    let moved = Timestamp::from_millis(ts + shift_ms)?;
    event.insert("timestamp".into(), Value::String(moved.to_rfc3339()));
    Some(moved.millis())
}

/// The latest timestamp in the file (a first pass for --shift-to-now).
fn latest_timestamp(file: &str, format: Format) -> anyhow::Result<Option<i64>> {
    let mut reader = open(file, format)?;
    let mut latest = None;
    while let Some(record) = reader
        .next_record()
        .with_context(|| format!("cannot read {file}"))?
    {
        if let Ok(mut event) = record.event
            && let Some(ts) = shift(&mut event, 0)
        {
            latest = latest.max(Some(ts));
        }
    }
    Ok(latest)
}
