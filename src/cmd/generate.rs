//! `rta generate`: synthetic events to a server, or to a file.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::cli::GenerateArgs;
use crate::client::progress::{Eta, Progress, Tally, Unit};
use crate::client::synth::{Kind, Synth};
use crate::client::{Client, ClientError, IngestReport, Purpose, exit};

pub async fn run(args: GenerateArgs) -> anyhow::Result<u8> {
    let interval = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Duration::from_secs_f64(args.batch as f64 / rate)
        }
        Some(rate) => {
            crate::usage!("--rate must be a positive number of events per second, got {rate}")
        }
        None => args.interval,
    };
    let mut kinds = args.types.clone();
    kinds.dedup();
    if kinds.is_empty() {
        crate::usage!("--types needs at least one of sales, users, pageview");
    }
    let synth = Synth::new(args.seed, args.source.clone(), kinds.clone());
    match &args.output {
        Some(path) => write_file(&args, path, synth, &kinds, interval),
        None => send(&args, synth, interval).await,
    }
}

/// Where timestamps come from: the clock, or a simulated clock that moves
/// one interval per batch.
struct Clock {
    start: Option<DateTime<Utc>>,
    step: chrono::Duration,
}

impl Clock {
    fn at(&self, batch: u64) -> DateTime<Utc> {
        match self.start {
            Some(start) => start + self.step * batch as i32,
            None => Utc::now(),
        }
    }
}

fn step_of(interval: Duration) -> chrono::Duration {
    chrono::Duration::from_std(interval.max(Duration::from_millis(1)))
        .unwrap_or(chrono::Duration::seconds(1))
}

async fn send(args: &GenerateArgs, mut synth: Synth, interval: Duration) -> anyhow::Result<u8> {
    let client = Client::new(&args.client, Purpose::Write)?;
    let clock = Clock {
        start: args.start,
        step: step_of(interval),
    };
    let mut progress = Progress::new(args.count, Unit::Events, args.quiet);
    let mut tally = Tally::new("made", "events");
    let started = Instant::now();
    let mut in_flight: JoinSet<(u64, Result<IngestReport, ClientError>)> = JoinSet::new();
    let mut ticker = tokio::time::interval(interval.max(Duration::from_micros(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = super::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut failure: Option<ClientError> = None;
    let mut interrupted = false;
    let mut batch_no = 0;

    loop {
        let remaining = args
            .count
            .map_or(args.batch, |c| c.saturating_sub(tally.read).min(args.batch));
        if remaining == 0 || failure.is_some() {
            break;
        }
        // Wait for the next tick (unless unthrottled) and for room in flight.
        tokio::select! {
            _ = &mut ctrl_c => { interrupted = true; break; }
            _ = ticker.tick(), if !interval.is_zero() => {}
            _ = std::future::ready(()), if interval.is_zero() => {}
        }
        while in_flight.len() as u64 >= args.concurrency {
            tokio::select! {
                _ = &mut ctrl_c => { interrupted = true; break; }
                Some(done) = in_flight.join_next() => record(done, &mut tally, &mut failure, &progress),
            }
        }
        if interrupted {
            break;
        }
        let ts = clock.at(batch_no);
        batch_no += 1;
        let mut body = Vec::with_capacity(remaining as usize * 200);
        for _ in 0..remaining {
            serde_json::to_writer(&mut body, &synth.event(ts))?;
            body.push(b'\n');
        }
        tally.read += remaining;
        let client = client.clone();
        in_flight.spawn(async move { (remaining, client.ingest_ndjson(body).await) });
        while let Some(done) = in_flight.try_join_next() {
            record(done, &mut tally, &mut failure, &progress);
        }
        // A paced run knows when its last batch goes.
        if let Some(count) = args.count
            && !interval.is_zero()
        {
            let batches_left = count.saturating_sub(tally.read).div_ceil(args.batch);
            progress.set_eta(Eta::At(
                Instant::now() + interval.saturating_mul(batches_left as u32),
            ));
        }
        let elapsed = started.elapsed();
        progress.update(tally.read, || {
            format!(
                "{:.0} events/s, {} rejected",
                tally.rate(elapsed),
                tally.rejected()
            )
        });
    }
    while let Some(done) = in_flight.join_next().await {
        record(done, &mut tally, &mut failure, &progress);
    }
    Ok(progress.conclude(&tally, started.elapsed(), failure, interrupted))
}

fn record(
    done: Result<(u64, Result<IngestReport, ClientError>), tokio::task::JoinError>,
    tally: &mut Tally,
    failure: &mut Option<ClientError>,
    progress: &Progress,
) {
    match done {
        Ok((n, Ok(report))) => {
            tally.settle(n, report.accepted, report.rejected.len() as u64);
            for r in report.rejected.iter().take(5) {
                progress.println(format!("rejected: {}", r.error));
            }
        }
        Ok((n, Err(e))) => {
            tally.not_sent += n;
            failure.get_or_insert(e);
        }
        Err(e) => progress.println(format!("error: a request task failed: {e}")),
    }
}

fn write_file(
    args: &GenerateArgs,
    path: &str,
    mut synth: Synth,
    kinds: &[Kind],
    interval: Duration,
) -> anyhow::Result<u8> {
    let step = step_of(interval);
    let count = args.count;
    let batches = count.map(|c| c.div_ceil(args.batch));
    // Simulated time ends now unless --start says where to begin.
    let start = args
        .start
        .unwrap_or_else(|| Utc::now() - step * batches.unwrap_or(0).saturating_sub(1) as i32);
    let clock = Clock {
        start: Some(start),
        step,
    };
    let out: Box<dyn Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
    };
    let mut sink = if path.to_ascii_lowercase().ends_with(".csv") {
        Sink::csv(out, kinds)?
    } else {
        Sink::Jsonl(std::io::BufWriter::new(out))
    };
    let mut written = 0;
    let mut batch_no = 0;
    let result: std::io::Result<()> = (|| {
        while count.is_none_or(|c| written < c) {
            let ts = clock.at(batch_no);
            batch_no += 1;
            let n = count.map_or(args.batch, |c| (c - written).min(args.batch));
            for _ in 0..n {
                sink.write(&synth.event(ts))?;
            }
            written += n;
        }
        sink.flush()
    })();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(e).with_context(|| format!("cannot write {path}")),
        Ok(()) => {
            if path != "-" && !args.quiet {
                eprintln!("wrote {written} events to {path}");
            }
            Ok(exit::OK)
        }
    }
}

/// Where generated events are written: JSONL, or CSV with one column per field.
enum Sink {
    Jsonl(std::io::BufWriter<Box<dyn Write>>),
    Csv {
        writer: Box<csv::Writer<Box<dyn Write>>>,
        columns: Vec<&'static str>,
    },
}

impl Sink {
    fn csv(out: Box<dyn Write>, kinds: &[Kind]) -> std::io::Result<Self> {
        let mut columns = vec!["timestamp", "source", "type"];
        for field in kinds.iter().flat_map(|k| k.fields()) {
            if !columns.contains(field) {
                columns.push(field);
            }
        }
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(&columns)?;
        Ok(Sink::Csv {
            writer: Box::new(writer),
            columns,
        })
    }

    fn write(&mut self, event: &serde_json::Value) -> std::io::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, event)?;
                out.write_all(b"\n")
            }
            Sink::Csv { writer, columns } => {
                let cell = |column: &str| match column {
                    "timestamp" | "source" | "type" => {
                        event[column].as_str().unwrap_or("").to_string()
                    }
                    field => match &event["values"][field] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                };
                writer.write_record(columns.iter().map(|c| cell(c)))?;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Jsonl(out) => out.flush(),
            Sink::Csv { writer, .. } => writer.flush(),
        }
    }
}
