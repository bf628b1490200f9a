//! Reading the cluster's events: one snapshot per read (the table's rows up
//! to the loader's mark, then the stream's messages after it), as rows of
//! the `events` table over ClickHouse's HTTP interface.

use futures_util::StreamExt;

use super::http::quote;
use super::{CHUNK, ClickHouseStore, PAGE, TAIL_WAIT, loader, rows};
use crate::bus::{BusError, event_seq, stream_seq_of};
use crate::event::{Event, EventType};
use crate::query::TimeRange;
use crate::query::rollup::{Covered, HOUR_MS};
use crate::store::{Part, StoreError};

impl ClickHouseStore {
    /// Where this read's rows end and its stream tail begins: the mark as
    /// the bus has it now, and the last message this node has seen.
    pub(super) async fn snapshot(&self) -> Snapshot {
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
    pub(super) async fn tail(
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
    pub(super) async fn tail_newest(
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
    pub(super) fn select(
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
                .select_lines(
                    &select_sql(&self.http.table("events"), &rows, "ASC", limit),
                    |line| {
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
                    },
                )
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
    pub(super) fn select_runs(
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
    pub(super) async fn rows_newest(
        &self,
        filter: &Filter<'_>,
        mark: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let rows = Filter {
            max_stream_seq: Some(mark),
            ..*filter
        };
        // The newest rows are mostly in the last messages loaded (each holds
        // at least one event): those are asked first, so that ClickHouse
        // sorts a few rows rather than every sequence number in the table.
        let last = filter
            .before_seq
            .map_or(mark, |before| stream_seq_of(before).min(mark));
        let window = limit as u64 * 4;
        if last > window {
            let after = event_seq(last - window, 0) - 1;
            let recent = Filter {
                after_seq: Some(filter.after_seq.map_or(after, |a| a.max(after))),
                ..rows
            };
            let out = self.select_newest(&recent, limit).await?;
            if out.len() == limit {
                return Ok(out);
            }
        }
        self.select_newest(&rows, limit).await
    }

    async fn select_newest(
        &self,
        rows: &Filter<'_>,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let mut out: Vec<(u64, Event)> = Vec::new();
        let mut bad = None;
        let sql = select_sql(&self.http.table("events"), rows, "DESC", Some(limit));
        self.http
            .select_lines(&sql, |line| {
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
}

/// The statement reading the rows of `table` that `filter` wants, whole,
/// in `order` of `seq` ("ASC" or "DESC"), at most `limit`.
pub(super) fn select_sql(
    table: &str,
    filter: &Filter<'_>,
    order: &str,
    limit: Option<usize>,
) -> String {
    // PREWHERE: ClickHouse reads the few columns the filter asks about
    // first, and the arrays only for the rows it keeps (18.16 moves at
    // most one condition there by itself).
    let filter = filter.sql();
    let Some(n) = limit else {
        return format!(
            "SELECT {} FROM {table} PREWHERE {filter} ORDER BY seq {order} FORMAT JSONEachRow",
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
        "SELECT {} FROM {table} PREWHERE {filter} AND seq {bound} \
         (SELECT {edge}(seq) FROM (SELECT seq FROM {table} PREWHERE {filter} ORDER BY seq {order} LIMIT {n})) \
         ORDER BY seq {order} LIMIT {n} FORMAT JSONEachRow",
        rows::COLUMNS
    )
}

/// One read's view: the table's rows up to `mark`, the stream after it up
/// to `seen`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    pub(super) mark: u64,
    pub(super) seen: u64,
}

/// Which rows a read wants.
#[derive(Default, Clone, Copy)]
pub(super) struct Filter<'a> {
    pub(super) range: Option<TimeRange>,
    pub(super) types: Option<&'a [EventType]>,
    pub(super) part: Option<Part>,
    pub(super) after_seq: Option<u64>,
    pub(super) before_seq: Option<u64>,
    pub(super) max_stream_seq: Option<u64>,
    /// Events the hour summaries a query took hold.
    pub(super) covered: Option<&'a Covered>,
}

impl Filter<'_> {
    /// What [`Filter::sql`] asks of a row, asked of an event of the tail.
    pub(super) fn wants(&self, seq: u64, event: &Event) -> bool {
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

    pub(super) fn sql(&self) -> String {
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
