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
//! The reading happens without holding the engine ([`Epochs::plan`], then
//! [`Reread::take`] per stored run, then [`Epochs::forget_before`]), so
//! ingest and reads go on meanwhile; events applied in between are added
//! from the store by sequence number ([`Reread::catch_up`]), once without
//! the engine and then, holding it, only those applied during that read.
//!
//! Memory: with a retention, up to `EPOCHS + PARTS + 1` summaries per type
//! beside the all-time one (each bounded as the all-time one is); events
//! more than an epoch ahead of the clock share one span.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Engine;
use super::stats::{Names, SummaryLimits, TypeSummary};
use crate::event::{Event, EventType, Timestamp};
use crate::query::TimeRange;

/// Epochs per retention.
pub const EPOCHS: i64 = 16;
/// Parts the oldest epoch is split into once the cutoff reaches it.
pub const PARTS: i64 = 16;

/// Summaries per type over one span of event time.
type Summaries = BTreeMap<EventType, TypeSummary>;

/// Reads stored events committed after a sequence number, in commit
/// order: `sink(first_seq, events)` per stored run.
pub type ReadSince<'a> = dyn FnMut(u64, &mut dyn FnMut(u64, &[Event])) + 'a;

/// The key of the span holding events more than an epoch in the future:
/// one span for them all, so odd timestamps cannot multiply spans.
const FUTURE: i64 = i64::MAX;

/// How far the engine had applied events when asked, and the types it
/// tracked then: a type first seen while a pass reads is tracked from its
/// first event, so what the pass puts back must hold it too.
pub struct Applied {
    seq: u64,
    tracked: Vec<EventType>,
}

impl Applied {
    /// The sequence number of the last event applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// What a retention pass reads again from the store, gathered without the
/// engine (so ingest and reads go on meanwhile): the parts after the
/// cutoff of the epoch the cutoff cuts, from events up to `last_seq`, then
/// those committed after it up to `read_to`.
pub struct Reread {
    pub range: TimeRange,
    last_seq: u64,
    read_to: u64,
    /// The engine's types as of `read_to` (a catch-up takes them anew), so
    /// a type first seen during the pass is put back with the others.
    tracked: Vec<EventType>,
    part_width: i64,
    limits: SummaryLimits,
    names: Names,
    parts: BTreeMap<i64, Summaries>,
}

impl Reread {
    /// Takes the stored events of the range that the engine had applied
    /// when the pass began (later ones it adds itself).
    pub fn take(&mut self, first_seq: u64, events: &[Event]) {
        let last = self.last_seq;
        self.add(first_seq, events, |seq| seq <= last);
    }

    /// The last sequence number whose events were taken (or looked at).
    pub fn read_to(&self) -> u64 {
        self.read_to
    }

    /// Takes the stored events committed after those taken so far, up to
    /// what the engine had applied when asked (`upto`), read through
    /// `read`. Later ones the engine adds itself when it applies them.
    pub fn catch_up(&mut self, upto: Applied, read: &mut ReadSince<'_>) {
        let from = self.read_to;
        let Applied { seq: upto, tracked } = upto;
        if upto <= from {
            return;
        }
        // Types are only forgotten by a pass, so this holds every type
        // tracked when the pass began.
        self.tracked = tracked;
        read(from, &mut |first_seq, events| {
            self.add(first_seq, events, |seq| seq > from && seq <= upto)
        });
        self.read_to = upto;
    }

    fn add(&mut self, first_seq: u64, events: &[Event], wanted: impl Fn(u64) -> bool) {
        for (i, event) in events.iter().enumerate() {
            let ts = event.timestamp.millis();
            if !wanted(first_seq + i as u64)
                || !self.range.contains(ts)
                || !self.tracked.contains(&event.kind)
            {
                continue;
            }
            let part = ts.div_euclid(self.part_width) * self.part_width;
            self.parts
                .entry(part)
                .or_default()
                .entry(event.kind.clone())
                .or_default()
                .add(event, &mut self.names, self.limits);
        }
    }
}

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

    /// The span an event at `ts` goes to, as of `now`.
    fn start(&self, ts: i64, now: i64) -> i64 {
        let start = ts.div_euclid(self.width) * self.width;
        if start > now.saturating_add(self.width) {
            FUTURE
        } else {
            start
        }
    }

    fn part_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.part_width()) * self.part_width()
    }

    pub fn add(&mut self, event: &Event, now: i64, names: &mut Names, limits: SummaryLimits) {
        let ts = event.timestamp.millis();
        let part = self.part_start(ts);
        let span = self.spans.entry(self.start(ts, now)).or_default();
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
    pub fn merge(
        &mut self,
        kind: &EventType,
        delta: &TypeSummary,
        now: i64,
        limits: SummaryLimits,
    ) -> bool {
        let (first, last) = (delta.first_ts, delta.last_ts);
        if self.part_start(first) != self.part_start(last)
            || self.start(first, now) != self.start(last, now)
        {
            return false;
        }
        let part = self.part_start(first);
        let span = self.spans.entry(self.start(first, now)).or_default();
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

    /// What a pass at `cutoff` must read again: the rest of the epoch the
    /// cutoff cuts, the first time it cuts it; after that only the part it
    /// cuts. `None` when the cutoff cuts no epoch.
    pub fn plan(&self, cutoff: i64, applied: Applied, limits: SummaryLimits) -> Option<Reread> {
        let (&start, span) = self
            .spans
            .iter()
            .find(|(start, _)| **start != FUTURE && **start + self.width > cutoff)?;
        if start >= cutoff {
            return None;
        }
        let part_width = self.part_width();
        let first_part = cutoff.div_euclid(part_width) * part_width;
        let to = match span.parts {
            None => start + self.width,
            Some(_) => first_part + part_width,
        };
        let Applied { seq, tracked } = applied;
        Some(Reread {
            range: TimeRange { from: cutoff, to },
            last_seq: seq,
            read_to: seq,
            tracked,
            part_width,
            limits,
            names: Names::default(),
            parts: BTreeMap::new(),
        })
    }

    /// Forgets every event before `cutoff`: drops the epochs wholly before
    /// it and puts in the parts `reread` gathered, with the events the
    /// engine applied up to `upto` that it has not read (through `since`).
    pub fn forget_before(
        &mut self,
        cutoff: i64,
        reread: Option<Reread>,
        upto: Applied,
        since: &mut ReadSince<'_>,
        limits: SummaryLimits,
    ) {
        let width = self.width;
        self.spans
            .retain(|start, _| *start == FUTURE || start + width > cutoff);
        let Some(mut reread) = reread else {
            return;
        };
        let Some((_, span)) = self.spans.iter_mut().next().filter(|(s, _)| **s < cutoff) else {
            return;
        };
        reread.catch_up(upto, since);
        let mut parts = span.parts.take().unwrap_or_default();
        parts.retain(|p, _| *p + reread.part_width > reread.range.to);
        parts.append(&mut reread.parts);
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

impl Engine {
    /// How far this engine has applied events, for a pass's catch-up.
    pub fn applied(&self) -> Applied {
        Applied {
            seq: self.last_seq,
            tracked: self.types.keys().cloned().collect(),
        }
    }

    /// The first half of forgetting what retention deleted: what to read
    /// again from the store, outside the engine (see [the module](crate::engine::retention)).
    pub fn forget_plan(&self, cutoff: Timestamp) -> Option<Reread> {
        self.epochs.as_ref()?.plan(
            cutoff.millis(),
            self.applied(),
            self.config.all_time_limits(),
        )
    }

    /// Forgets every event before `cutoff` after the store deleted them
    /// (`deleted` of them; `None` when the store cannot say, as on a cluster
    /// where another node deleted them: then the events the engine forgot
    /// are counted): the all-time summaries become the merge of the
    /// epochs left, with the parts `reread` gathered (events applied since
    /// are read through `since`), and time slots wholly before the cutoff
    /// are emptied. Costs about what was deleted, not what is kept.
    pub fn forget_before(
        &mut self,
        cutoff: Timestamp,
        deleted: Option<u64>,
        reread: Option<Reread>,
        since: &mut ReadSince<'_>,
    ) {
        let upto = self.applied();
        let Some(epochs) = &mut self.epochs else {
            return;
        };
        let cutoff = cutoff.millis();
        let limits = self.config.all_time_limits();
        let tracked_before: u64 = self.types.values().map(|s| s.all_time.count).sum();
        epochs.forget_before(cutoff, reread, upto, since, limits);
        let mut all_time = epochs.all_time(limits);
        self.types
            .retain(|kind, state| match all_time.remove(kind) {
                Some(summary) if summary.count > 0 => {
                    state.all_time = summary;
                    true
                }
                _ => false,
            });
        let tracked: u64 = self.types.values().map(|s| s.all_time.count).sum();
        let deleted = deleted.unwrap_or(tracked_before.saturating_sub(tracked));
        self.total = self.total.saturating_sub(deleted);
        self.untracked = self.total.saturating_sub(tracked);
        self.total = self.total.max(tracked);
        self.seconds.clear_before(cutoff);
        self.minutes.clear_before(cutoff);
        self.minute_summaries.clear_before(cutoff);
        self.hour_summaries.clear_before(cutoff);
        self.version += 1;
    }
}
