//! `rta replay FILE`: push a JSONL or CSV file to a server, in batches,
//! reporting each bad line by its line number.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::cli::ReplayArgs;
use crate::client::progress::{Progress, Tally, Unit};
use crate::client::reader::{EventReader, Format};
use crate::client::{Client, ClientError, IngestReport};
use crate::event::Timestamp;

/// Requests in flight at once when not pacing by timestamps.
const CONCURRENCY: usize = 4;
/// Rejected lines printed one by one; beyond that only counted.
const SHOW_REJECTIONS: u64 = 100;

/// A batch on its way: the body and the file line of each event in it.
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
    let shift_ms = if args.shift_to_now {
        if args.file == "-" {
            crate::usage!("--shift-to-now reads the file twice, so it needs a file, not stdin");
        }
        let last = latest_timestamp(&args.file, format)?;
        last.map_or(0, |last| Timestamp::now().millis() - last)
    } else {
        0
    };
    let client = Client::new(&args.client)?;
    let mut reader = open(&args.file, format)?;
    let mut progress = Progress::new(reader.size, Unit::Bytes, args.quiet);
    let mut tally = Tally::default();
    let mut shown = 0;
    let started = Instant::now();
    let concurrency = if args.speed.is_some() { 1 } else { CONCURRENCY };
    let mut in_flight: JoinSet<Sent> = JoinSet::new();
    let mut batch = Batch {
        body: Vec::new(),
        lines: Vec::new(),
    };
    let mut failure = None;
    let mut first_ts: Option<i64> = None;
    let ctrl_c = super::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut lines_read: u64 = 0;

    let mut report_line = |line: usize, reason: &str, tally: &mut Tally, progress: &Progress| {
        tally.rejected += 1;
        shown += 1;
        if shown <= SHOW_REJECTIONS {
            progress.println(format!("line {line}: {reason}"));
        } else if shown == SHOW_REJECTIONS + 1 {
            progress.println("(more rejected lines are counted but not shown)");
        }
    };

    loop {
        let record = tokio::task::block_in_place(|| reader.next_record())
            .with_context(|| format!("cannot read {}", args.file))?;
        let Some(record) = record else { break };
        lines_read += 1;
        let mut event = match record.event {
            Ok(event) => event,
            Err(reason) => {
                report_line(record.line, &reason, &mut tally, &progress);
                continue;
            }
        };
        let ts = shift(&mut event, shift_ms);
        if let (Some(speed), Some(ts)) = (args.speed, ts) {
            let first = *first_ts.get_or_insert(ts);
            let due =
                started + Duration::from_secs_f64(((ts - first).max(0) as f64 / 1000.0) / speed);
            if due > Instant::now() {
                dispatch(&client, &mut batch, &mut in_flight, &mut tally);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = &mut ctrl_c => { interrupted = true; break; }
                }
            }
        }
        serde_json::to_writer(&mut batch.body, &Value::Object(event))?;
        batch.body.push(b'\n');
        batch.lines.push(record.line);
        if batch.lines.len() as u64 >= args.batch {
            dispatch(&client, &mut batch, &mut in_flight, &mut tally);
        }
        while in_flight.len() >= concurrency {
            tokio::select! {
                Some(done) = in_flight.join_next() => collect(done, &mut tally, &mut failure, &progress, &mut report_line),
                _ = &mut ctrl_c => { interrupted = true; break; }
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            collect(done, &mut tally, &mut failure, &progress, &mut report_line);
        }
        if interrupted || failure.is_some() {
            break;
        }
        let elapsed = started.elapsed();
        progress.update(reader.bytes_read(), || {
            format!("{lines_read} lines, {:.0} events/s", tally.rate(elapsed))
        });
    }
    if !interrupted && failure.is_none() {
        dispatch(&client, &mut batch, &mut in_flight, &mut tally);
    }
    while let Some(done) = in_flight.join_next().await {
        collect(done, &mut tally, &mut failure, &progress, &mut report_line);
    }
    Ok(progress.conclude(&tally, started.elapsed(), failure, interrupted))
}

fn open(file: &str, format: Format) -> anyhow::Result<EventReader> {
    EventReader::open(file, format).with_context(|| format!("cannot read {file}"))
}

/// Sends the batch (if any) and starts a new one.
fn dispatch(client: &Client, batch: &mut Batch, in_flight: &mut JoinSet<Sent>, tally: &mut Tally) {
    if batch.lines.is_empty() {
        return;
    }
    let Batch { body, lines } = std::mem::replace(
        batch,
        Batch {
            body: Vec::new(),
            lines: Vec::new(),
        },
    );
    tally.sent += lines.len() as u64;
    let client = client.clone();
    in_flight.spawn(async move { (lines, client.ingest_ndjson(body).await) });
}

fn collect(
    done: Result<Sent, tokio::task::JoinError>,
    tally: &mut Tally,
    failure: &mut Option<ClientError>,
    progress: &Progress,
    report_line: &mut impl FnMut(usize, &str, &mut Tally, &Progress),
) {
    match done {
        Ok((lines, Ok(report))) => {
            tally.accepted += report.accepted;
            for r in &report.rejected {
                // The server numbers events in the body; map them back to file lines.
                let line = lines.get(r.index).copied().unwrap_or(0);
                report_line(line, &r.error, tally, progress);
            }
        }
        Ok((lines, Err(e))) => {
            tally.failed += lines.len() as u64;
            failure.get_or_insert(e);
        }
        Err(e) => progress.println(format!("error: a request task failed: {e}")),
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
