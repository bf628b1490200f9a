//! Hour summaries ([`crate::query::rollup`]) of the events in ClickHouse,
//! so that a cluster answers queries over whole hours as the embedded store
//! does: from per-hour cells, the same sketches, the same answers.
//!
//! The loading node builds them (a task that acts while its loader holds
//! the lease): it reads the rows after the mark `summarised` (an event
//! sequence number, in the bus) up to the loader's mark, adds them to the
//! summaries of their (hour, type), merges those with the stored ones and
//! inserts each as a new row carrying `upto`, the sequence number it holds
//! every event through; then it moves `summarised` by compare-and-set.
//! A row holds a summary whole (its block and every part), so a reader never
//! sees half of one. A reader takes `summarised` once and, per (hour, type),
//! the newest row with `upto` at or below it: that row holds exactly the
//! events of its hour up to the mark (any later event of that hour would
//! have given a newer row before the mark moved past it); the scan still
//! reads that hour's events after the row's own `upto`. Rows are never
//! collapsed by ClickHouse (each version is its own row, so a row written by
//! a round whose mark never moved cannot replace a good one); the builder
//! deletes versions older than the newest at or below the mark now and then.
//! A reader that finds its row gone reads that hour's events instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::http::{ClickHouseError, Http, quote};
use super::read::{Filter, select_sql};
use super::rows;
use crate::bus::{Bus, event_seq};
use crate::event::{EventFields, EventType};
use crate::query::TimeRange;
use crate::query::rollup::{Covered, HourBlock, hour_of, whole_hours};
use crate::store::{StoreError, TakeRollup};

/// The progress mark: summaries hold every event through this sequence number.
pub const SUMMARISED: &str = "summarised";
/// The table, named by the layout of its rows: another layout is another table.
pub const TABLE: &str = "rollups_v2";

/// Events summarised before the summaries are stored.
const BUILD_EVENTS: usize = 250_000;
/// (hour, type) summaries held in memory before they are stored.
const BUILD_BLOCKS: usize = 16;
/// How often the builder looks for new events.
const BUILD_EVERY: Duration = Duration::from_millis(500);
/// How often versions no reader needs any more are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// New events worth storing summaries for at once, or the longest fewer wait.
const BUILD_MIN_EVENTS: u64 = 20_000;
const STORE_EVERY: Duration = Duration::from_secs(5);

pub fn create_table(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{TABLE} (\
         hour Int64, type String, upto UInt64, block String, \
         part_names Array(String), part_data Array(String)\
         ) ENGINE = MergeTree ORDER BY (type, hour, upto)"
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(format!("`{}` is not a hex digit", c as char)),
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    bytes
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[derive(Serialize)]
struct RowOut<'a> {
    hour: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    upto: u64,
    block: String,
    part_names: Vec<&'a str>,
    part_data: Vec<String>,
}

#[derive(Deserialize)]
struct Stored {
    hour: i64,
    #[serde(rename = "type")]
    kind: String,
    block: String,
    #[serde(default)]
    part_names: Vec<String>,
    #[serde(default)]
    part_data: Vec<String>,
}

/// Builds summaries while `leading` is set, until `stop` flips.
pub async fn build(
    http: Arc<Http>,
    bus: Arc<Bus>,
    leading: Arc<AtomicBool>,
    loaded: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_stored = Instant::now();
    let mut pruned = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(BUILD_EVERY) => {}
        }
        if *stop.borrow() {
            return;
        }
        if !leading.load(Ordering::Relaxed) {
            continue;
        }
        let loaded = *loaded.borrow();
        match catch_up(&http, &bus, loaded, &mut last_stored).await {
            Ok(()) => {}
            Err(e) => tracing::warn!("could not update the hour summaries: {e}"),
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            if let Err(e) = prune(&http, &bus).await {
                tracing::warn!("could not delete old versions of the hour summaries: {e}");
            }
        }
    }
}

/// Summarises the rows after `summarised` up to the loader's mark, a batch
/// at a time, each stored before the next is read.
async fn catch_up(
    http: &Http,
    bus: &Bus,
    loaded: u64,
    last_stored: &mut Instant,
) -> Result<(), StoreError> {
    let bus_err = |e: crate::bus::BusError| StoreError::Read(e.to_string());
    let (mut upto, mut mark) = bus.progress(SUMMARISED).await.map_err(bus_err)?;
    // Sequence numbers below the next message's first are all loaded.
    let through = event_seq(loaded + 1, 0) - 1;
    let waiting = http
        .number(&format!(
            "SELECT count() FROM {} PREWHERE seq > {upto} AND stream_seq <= {loaded}",
            http.table("events")
        ))
        .await?;
    if waiting == 0 || (waiting < BUILD_MIN_EVENTS && last_stored.elapsed() < STORE_EVERY) {
        return Ok(());
    }
    loop {
        let mut batch = Batch::default();
        let mut last = upto;
        let rows = Filter {
            after_seq: Some(upto),
            max_stream_seq: Some(loaded),
            ..Default::default()
        };
        let sql = select_sql(&http.table("events"), &rows, "ASC", Some(BUILD_EVENTS));
        let (mut full, mut read) = (false, 0usize);
        http.select_lines(&sql, |line| {
            let (seq, event) = match rows::read_row(line) {
                Ok(row) => row,
                Err(reason) => {
                    return Err(ClickHouseError::Refused(format!(
                        "an unreadable row: {reason}"
                    )));
                }
            };
            if read > 0 && seq == last {
                // A row stored twice is summarised once.
                return Ok(true);
            }
            if batch.blocks.len() >= BUILD_BLOCKS
                && !batch
                    .blocks
                    .contains_key(&(hour_of(event.millis()), event.kind.as_str().to_string()))
            {
                full = true;
                return Ok(false);
            }
            batch.add(seq, &event);
            last = seq;
            read += 1;
            Ok(true)
        })
        .await?;
        if batch.blocks.is_empty() {
            return Ok(());
        }
        // Every row through the last one read; when the batch was not cut
        // short, every row the loader's mark covers.
        let cut = full || read == BUILD_EVENTS;
        let reached = if cut { last } else { through.max(last) };
        let rolled = merge_stored(http, batch, upto, reached).await?;
        http.insert(&http.table(TABLE), rolled).await?;
        match bus
            .set_progress(SUMMARISED, reached, mark)
            .await
            .map_err(bus_err)?
        {
            Some(revision) => mark = Some(revision),
            // Another node builds now.
            None => return Ok(()),
        }
        *last_stored = Instant::now();
        upto = reached;
        if !cut {
            return Ok(());
        }
    }
}

/// Summaries being built, by (hour, type).
#[derive(Default)]
struct Batch {
    blocks: HashMap<(i64, String), HourBlock>,
}

impl Batch {
    fn add<E: EventFields>(&mut self, seq: u64, event: &E) {
        self.blocks
            .entry((hour_of(event.millis()), event.kind().to_string()))
            .or_default()
            .add(seq, event);
    }
}

/// The new summaries merged into the stored ones (the newest at or below
/// `upto`), as rows carrying the new `upto`: the body of one INSERT.
async fn merge_stored(
    http: &Http,
    batch: Batch,
    upto: u64,
    new_upto: u64,
) -> Result<Vec<u8>, StoreError> {
    let mut body = Vec::new();
    for ((hour, kind), mut block) in batch.blocks {
        let sql = format!(
            "SELECT hour, type, upto, block, part_names, part_data FROM {} \
             WHERE type = {} AND hour = {hour} AND upto <= {upto} \
             ORDER BY upto DESC LIMIT 1 FORMAT JSONEachRow",
            http.table(TABLE),
            quote(&kind)
        );
        let mut stored: Option<Stored> = None;
        http.select_lines(&sql, |line| {
            stored = serde_json::from_slice(line).ok();
            Ok(false)
        })
        .await?;
        if let Some(old) = stored {
            match decode(&old) {
                Ok(mut old) => {
                    old.merge(block);
                    block = old;
                }
                Err(reason) => {
                    tracing::warn!(hour, kind, %reason, "an unreadable hour summary is given up");
                    block.merge(HourBlock::unsummarised());
                }
            }
        }
        let parts = block.encode();
        let mut row = RowOut {
            hour,
            kind: &kind,
            upto: new_upto,
            block: String::new(),
            part_names: Vec::new(),
            part_data: Vec::new(),
        };
        for (name, data) in &parts {
            if name.is_empty() {
                row.block = hex(data);
            } else {
                row.part_names.push(name);
                row.part_data.push(hex(data));
            }
        }
        let _ = serde_json::to_writer(&mut body, &row);
        body.push(b'\n');
    }
    Ok(body)
}

impl Stored {
    /// Its parts by name (hex).
    fn parts(&self) -> HashMap<&str, &str> {
        self.part_names
            .iter()
            .map(String::as_str)
            .zip(self.part_data.iter().map(String::as_str))
            .collect()
    }
}

fn decode(stored: &Stored) -> Result<HourBlock, String> {
    let base = unhex(&stored.block)?;
    let parts = stored
        .part_names
        .iter()
        .zip(&stored.part_data)
        .map(|(name, data)| Ok((name.clone(), unhex(data)?)))
        .collect::<Result<Vec<_>, String>>()?;
    HourBlock::decode(&base, &parts)
}

/// See [`crate::store::Store::rollups`]: the newest summary at or below
/// `summarised` of each (hour, type) whole inside `range`. The first is read
/// with every part; the parts it asked for are then read for all the others
/// at once.
pub async fn read(
    http: &Http,
    summarised: u64,
    range: TimeRange,
    types: Option<&[EventType]>,
    take: &mut TakeRollup<'_>,
) -> Result<Covered, StoreError> {
    let mut covered = Covered::new(summarised);
    let (first, end) = whole_hours(range);
    if summarised == 0 || first >= end {
        return Ok(covered);
    }
    let type_filter = match types {
        Some([]) => return Ok(covered),
        Some(types) => format!(
            " AND type IN ({})",
            types
                .iter()
                .map(|t| quote(t.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let table = http.table(TABLE);
    let sql = format!(
        "SELECT hour, type, max(upto) AS newest FROM {table} \
         WHERE upto <= {summarised} AND hour >= {first} AND hour < {end}{type_filter} \
         GROUP BY hour, type ORDER BY hour FORMAT JSONEachRow"
    );
    #[derive(Deserialize)]
    struct Newest {
        hour: i64,
        #[serde(rename = "type")]
        kind: String,
        newest: u64,
    }
    let mut bases: Vec<Newest> = Vec::new();
    http.select_lines(&sql, |line| {
        if let Ok(row) = serde_json::from_slice(line) {
            bases.push(row);
        }
        Ok(true)
    })
    .await?;
    // The first summary of each type is read whole: what taking it asks for
    // says which parts the others of that type need, read for all at once.
    let mut asked: Vec<String> = Vec::new();
    let mut rest: Vec<&Newest> = Vec::new();
    let mut seen_types: Vec<&str> = Vec::new();
    for base in &bases {
        if seen_types.contains(&base.kind.as_str()) {
            rest.push(base);
            continue;
        }
        seen_types.push(&base.kind);
        let sql = format!(
            "SELECT hour, type, upto, block, part_names, part_data FROM {table} \
             WHERE type = {} AND hour = {} AND upto = {} LIMIT 1 FORMAT JSONEachRow",
            quote(&base.kind),
            base.hour,
            base.newest
        );
        let mut whole: Option<Stored> = None;
        http.select_lines(&sql, |line| {
            whole = serde_json::from_slice(line).ok();
            Ok(false)
        })
        .await?;
        // Collapsed into a newer one meanwhile: that hour is read event by event.
        let Some(whole) = whole else { continue };
        let Ok(block) = unhex(&whole.block) else {
            continue;
        };
        let parts = whole.parts();
        let mut parts_of = |name: &str| {
            asked.push(name.to_string());
            parts.get(name).and_then(|d| unhex(d).ok())
        };
        if take(whole.hour, &whole.kind, &block, &mut parts_of) {
            covered.add_upto(whole.hour, &whole.kind, base.newest);
        }
    }
    if rest.is_empty() {
        return Ok(covered);
    }
    asked.sort();
    asked.dedup();
    let names = if asked.is_empty() {
        "emptyArrayString()".to_string()
    } else {
        let list: Vec<String> = asked.iter().map(|n| quote(n)).collect();
        format!("[{}]", list.join(", "))
    };
    let versions = rest
        .iter()
        .map(|b| format!("({}, {}, {})", quote(&b.kind), b.hour, b.newest))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT hour, type, upto, block, \
         arrayFilter(n -> has({names}, n), part_names) AS asked_names, \
         arrayFilter((d, n) -> has({names}, n), part_data, part_names) AS asked_data \
         FROM {table} WHERE (type, hour, upto) IN ({versions}) FORMAT JSONEachRow"
    );
    let mut found: HashMap<(i64, String), Stored> = HashMap::new();
    http.select_lines(&sql, |line| {
        if let Ok(row) = serde_json::from_slice::<Prefetched>(line) {
            found.insert(
                (row.hour, row.kind.clone()),
                Stored {
                    hour: row.hour,
                    kind: row.kind,
                    block: row.block,
                    part_names: row.asked_names,
                    part_data: row.asked_data,
                },
            );
        }
        Ok(true)
    })
    .await?;
    for base in rest {
        let Some(row) = found.get(&(base.hour, base.kind.clone())) else {
            continue;
        };
        let Ok(block) = unhex(&row.block) else {
            continue;
        };
        let parts = row.parts();
        // A part not read makes taking the summary fail: its hour is then
        // read event by event.
        let mut parts_of = |name: &str| parts.get(name).and_then(|d| unhex(d).ok());
        if take(row.hour, &row.kind, &block, &mut parts_of) {
            covered.add_upto(row.hour, &row.kind, base.newest);
        }
    }
    Ok(covered)
}

/// Deletes the versions of each summary older than its newest at or below
/// the mark: no reader takes them any more (one that read the mark before
/// it moved reads those hours' events instead).
async fn prune(http: &Http, bus: &Bus) -> Result<(), StoreError> {
    let (summarised, _) = bus
        .progress(SUMMARISED)
        .await
        .map_err(|e| StoreError::Read(e.to_string()))?;
    let table = http.table(TABLE);
    let mut stale: Vec<String> = Vec::new();
    http.select_lines(
        &format!(
            "SELECT type, hour, max(upto) AS newest FROM {table} WHERE upto <= {summarised} \
             GROUP BY type, hour HAVING count() > 1 FORMAT JSONEachRow"
        ),
        |line| {
            #[derive(Deserialize)]
            struct Key {
                #[serde(rename = "type")]
                kind: String,
                hour: i64,
                newest: u64,
            }
            if let Ok(key) = serde_json::from_slice::<Key>(line) {
                stale.push(format!(
                    "(type = {} AND hour = {} AND upto < {})",
                    quote(&key.kind),
                    key.hour,
                    key.newest
                ));
            }
            Ok(true)
        },
    )
    .await?;
    for chunk in stale.chunks(500) {
        http.execute(&format!(
            "ALTER TABLE {table} DELETE WHERE {}",
            chunk.join(" OR ")
        ))
        .await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct Prefetched {
    hour: i64,
    #[serde(rename = "type")]
    kind: String,
    block: String,
    asked_names: Vec<String>,
    asked_data: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }
}
