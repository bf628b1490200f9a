//! All-time aggregates that forget, for a server with a retention.
//!
//! Counts and sums could be taken back when old events are deleted, but
//! min, max, quantile sketches and top values cannot. So the all-time
//! aggregates are kept per epoch as well: [`EPOCHS`] spans of the retention
//! each, and the all-time summary of a type is the merge of its epochs. When
//! the cutoff moves, epochs wholly before it are dropped; the oldest epoch,
//! which the cutoff cuts, is read again from the store for the part after
//! the cutoff, once, split into [`PARTS`] parts; after that each pass drops
//! the parts before the cutoff and reads again only the part it cuts. A
//! pass thus reads about what it deletes, never what it keeps.
//!
//! Memory: with a retention, up to `EPOCHS + PARTS` summaries per type
//! beside the all-time one (each bounded as the all-time one is).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stats::{Names, SummaryLimits, TypeSummary};
use crate::event::{Event, EventType};
use crate::query::TimeRange;

/// Epochs per retention.
pub const EPOCHS: i64 = 16;
/// Parts the oldest epoch is split into once the cutoff reaches it.
pub const PARTS: i64 = 16;

/// Summaries per type over one span of event time.
type Summaries = BTreeMap<EventType, TypeSummary>;

/// Reads the stored events in a time range, with their sequence numbers:
/// `sink(first_seq, events)` per stored run.
pub type ReadRange<'a> = dyn FnMut(TimeRange, &mut dyn FnMut(u64, &[Event])) + 'a;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Epochs {
    /// The width of an epoch (ms), a multiple of [`PARTS`].
    width: i64,
    spans: BTreeMap<i64, Span>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Span {
    summaries: Summaries,
    /// Once the cutoff is inside this span: its parts after the cutoff.
    parts: Option<BTreeMap<i64, Summaries>>,
}

impl Epochs {
    pub fn new(retention_ms: i64) -> Self {
        let part = (retention_ms / (EPOCHS * PARTS)).max(1000);
        Self {
            width: part * PARTS,
            spans: BTreeMap::new(),
        }
    }

    /// Whether these epochs were made for this retention.
    pub fn fits(&self, retention_ms: i64) -> bool {
        self.width == Epochs::new(retention_ms).width
    }

    fn part_width(&self) -> i64 {
        self.width / PARTS
    }

    fn start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.width) * self.width
    }

    fn part_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.part_width()) * self.part_width()
    }

    pub fn add(&mut self, event: &Event, names: &mut Names, limits: SummaryLimits) {
        let ts = event.timestamp.millis();
        let part = self.part_start(ts);
        let span = self.spans.entry(self.start(ts)).or_default();
        span.summaries
            .entry(event.kind.clone())
            .or_default()
            .add(event, names, limits);
        if let Some(parts) = &mut span.parts {
            parts
                .entry(part)
                .or_default()
                .entry(event.kind.clone())
                .or_default()
                .add(event, names, limits);
        }
    }

    /// Merges a group's summary when all its events fall in one epoch (and
    /// one part); `false` asks for them one by one.
    pub fn merge(&mut self, kind: &EventType, delta: &TypeSummary, limits: SummaryLimits) -> bool {
        let (first, last) = (delta.first_ts, delta.last_ts);
        if self.part_start(first) != self.part_start(last) {
            return false;
        }
        let part = self.part_start(first);
        let span = self.spans.entry(self.start(first)).or_default();
        span.summaries
            .entry(kind.clone())
            .or_default()
            .merge(delta, limits);
        if let Some(parts) = &mut span.parts {
            parts
                .entry(part)
                .or_default()
                .entry(kind.clone())
                .or_default()
                .merge(delta, limits);
        }
        true
    }

    /// Forgets every event before `cutoff`, reading again from the store
    /// (events up to `last_seq`, those already applied) only the epoch or
    /// part the cutoff cuts.
    pub fn forget_before(
        &mut self,
        cutoff: i64,
        last_seq: u64,
        read: &mut ReadRange<'_>,
        names: &mut Names,
        limits: SummaryLimits,
    ) {
        let width = self.width;
        self.spans.retain(|start, _| start + width > cutoff);
        let part_width = self.part_width();
        let Some((&start, span)) = self.spans.iter_mut().next() else {
            return;
        };
        if start >= cutoff {
            return;
        }
        let first_part = cutoff.div_euclid(part_width) * part_width;
        // Read again: the whole rest of the epoch the first time the cutoff
        // is in it, else just the part the cutoff is in.
        let (reread, mut parts) = match span.parts.take() {
            None => (
                TimeRange {
                    from: cutoff,
                    to: start + width,
                },
                BTreeMap::new(),
            ),
            Some(mut parts) => {
                parts.retain(|p, _| *p > first_part);
                (
                    TimeRange {
                        from: cutoff,
                        to: first_part + part_width,
                    },
                    parts,
                )
            }
        };
        read(reread, &mut |first_seq, events| {
            for (i, event) in events.iter().enumerate() {
                let ts = event.timestamp.millis();
                if first_seq + i as u64 > last_seq || !reread.contains(ts) {
                    continue;
                }
                let part = ts.div_euclid(part_width) * part_width;
                parts
                    .entry(part)
                    .or_default()
                    .entry(event.kind.clone())
                    .or_default()
                    .add(event, names, limits);
            }
        });
        let mut summaries = Summaries::new();
        for part in parts.values() {
            for (kind, summary) in part {
                summaries
                    .entry(kind.clone())
                    .or_default()
                    .merge(summary, limits);
            }
        }
        span.summaries = summaries;
        span.parts = Some(parts);
    }

    /// The all-time summary of each type: the merge of its epochs.
    pub fn all_time(&self, limits: SummaryLimits) -> Summaries {
        let mut all = Summaries::new();
        for span in self.spans.values() {
            for (kind, summary) in &span.summaries {
                all.entry(kind.clone()).or_default().merge(summary, limits);
            }
        }
        all
    }
}
