//! The streaming engine: live aggregates over committed events.
//!
//! Generic over event types and fields: everything is discovered from the
//! data. All-time aggregates per type; time series in two rings (1 s slots
//! for 15 minutes, 1 min slots for 24 hours); windowed summaries with
//! quantile sketches and top values in minute slots (last hour) and hour
//! slots (last day). Memory is bounded by [`EngineConfig`], never by the
//! number of events or distinct values.
//!
//! Pure: no I/O, no clock (callers pass `now`), no locking.

mod answer_query;
pub mod overview;
pub mod retention;
mod ring;
pub mod stats;
pub use stats::Basic;
pub mod topk;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ring::Ring;
use stats::{GroupDelta, MeasureStats, Names, SummaryLimits, TypeSummary};

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, Timestamp};
use crate::feed::CommittedBatch;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The longest window a query may ask for.
pub const MAX_WINDOW_MS: i64 = 24 * HOUR;

/// Bounds on what the engine tracks.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Distinct event types tracked; events of further types count only in the total.
    pub max_types: usize,
    /// Fields (measures + dimensions) tracked per type.
    pub max_fields: usize,
    /// Distinct values tracked per dimension over all time.
    pub top_values: usize,
    /// Distinct values tracked per dimension in each time slot.
    pub slot_top_values: usize,
    /// Latest values kept per measure for `recentValues`.
    pub recent_values: usize,
    /// The server's retention (ms): all-time aggregates then forget what
    /// it deletes (see [`retention`]).
    pub retention_ms: Option<i64>,
}

/// Marks a snapshot of this engine's format; bump it when the layout changes.
const SNAPSHOT_MAGIC: &[u8; 8] = b"rta-eng3";

impl EngineConfig {
    fn all_time_limits(&self) -> SummaryLimits {
        SummaryLimits {
            max_fields: self.max_fields,
            top_values: self.top_values,
        }
    }

    fn slot_limits(&self) -> SummaryLimits {
        SummaryLimits {
            max_fields: self.max_fields,
            top_values: self.slot_top_values,
        }
    }
}

/// Groups of at least this many events of one type and minute are summed up
/// once and merged; smaller ones are added event by event.
const MERGE_GROUP_EVENTS: usize = 16;
/// Groups an event may join: the latest few (a missed one only costs a merge).
const GROUPS_SEARCHED: usize = 8;

/// Adds one event to its type's all-time summary and to its minute and hour
/// summaries.
fn add_event(
    event: &Event,
    kind: &EventType,
    state: &mut TypeState,
    names: &mut Names,
    config: &EngineConfig,
    rings: [&mut Ring<HashMap<EventType, TypeSummary>>; 2],
    now: i64,
) {
    state.all_time.add(event, names, config.all_time_limits());
    let ts = event.timestamp.millis();
    for ring in rings {
        if let Some(slot) = ring.slot_mut(ts, now) {
            slot.entry(kind.clone())
                .or_default()
                .add(event, names, config.slot_limits());
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_types: 100,
            max_fields: 64,
            top_values: 100,
            slot_top_values: 32,
            recent_values: 20,
            retention_ms: None,
        }
    }
}

/// One time-series slot: per type the count and per measure the basics.
type SeriesSlot = HashMap<EventType, SeriesPoint>;

/// Maps keyed by bounded sets (types, tracked values): a fast hash, seeded per process.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SeriesPoint {
    count: u64,
    measures: Vec<(Arc<str>, Basic)>,
}

impl SeriesPoint {
    fn add(&mut self, event: &Event, summary: &TypeSummary) {
        self.count += 1;
        for (name, x) in event.measures() {
            let Some((key, _)) = summary.measures.get_key_value(name) else {
                continue;
            };
            match self
                .measures
                .iter_mut()
                .find(|(n, _)| Arc::ptr_eq(n, key) || n == key)
            {
                Some((_, b)) => b.add(x),
                None => {
                    let mut b = Basic::default();
                    b.add(x);
                    self.measures.push((key.clone(), b));
                }
            }
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TypeState {
    all_time: TypeSummary,
    recent: BTreeMap<Arc<str>, VecDeque<f64>>,
}

/// Live aggregates. Feed it with [`Engine::apply`], read it with [`Engine::query`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Engine {
    #[serde(skip)]
    config: EngineConfig,
    total: u64,
    untracked: u64,
    types: BTreeMap<EventType, TypeState>,
    #[serde(skip)]
    names: Names,
    seconds: Ring<SeriesSlot>,
    minutes: Ring<SeriesSlot>,
    minute_summaries: Ring<HashMap<EventType, TypeSummary>>,
    hour_summaries: Ring<HashMap<EventType, TypeSummary>>,
    version: u64,
    last_seq: u64,
    /// With a retention: all-time summaries per epoch, to forget by.
    #[serde(default)]
    epochs: Option<retention::Epochs>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(EngineConfig::default())
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            total: 0,
            untracked: 0,
            types: BTreeMap::new(),
            names: Names::default(),
            // One slot more than the span, for the partial slot at the window's start.
            seconds: Ring::new(SECOND, 15 * 60 + 1),
            minutes: Ring::new(MINUTE, 24 * 60 + 1),
            minute_summaries: Ring::new(MINUTE, 61),
            hour_summaries: Ring::new(HOUR, 25),
            version: 0,
            last_seq: 0,
            epochs: config.retention_ms.map(retention::Epochs::new),
        }
    }

    /// Encodes the whole state, so a restart can skip re-reading every event.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        // Serializing plain in-memory data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// Restores a state written by [`Engine::to_snapshot`], with today's bounds.
    pub fn from_snapshot(bytes: &[u8], config: EngineConfig) -> Result<Self, String> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or("not an engine snapshot of this version")?;
        let mut engine: Engine = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        match (config.retention_ms, &engine.epochs) {
            (Some(r), Some(epochs)) if epochs.fits(r) => {}
            (None, None) => {}
            _ => return Err("saved under another retention".into()),
        }
        engine.config = config;
        Ok(engine)
    }

    /// The sequence number of the last committed event applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies a committed batch whose first event has sequence number
    /// `first_seq`, skipping events already applied, so a batch seen twice
    /// (during a rebuild) counts once.
    pub fn apply_committed(&mut self, first_seq: u64, events: &[Event], now: Timestamp) {
        let skip = (self.last_seq + 1).saturating_sub(first_seq) as usize;
        if skip >= events.len() {
            return;
        }
        self.apply(&events[skip..], now);
        self.last_seq = first_seq + events.len() as u64 - 1;
    }

    /// Applies several committed batches, in commit order, as one: their
    /// events are grouped together, so many small commits cost about as
    /// much as one large one. Events already applied are skipped.
    pub fn apply_batches(&mut self, batches: &[Arc<CommittedBatch>], now: Timestamp) {
        let mut events = Vec::new();
        for batch in batches {
            let skip = (self.last_seq + 1).saturating_sub(batch.first_seq) as usize;
            if skip < batch.events.len() {
                events.extend(&batch.events[skip..]);
                self.last_seq = batch.last_seq();
            }
        }
        if !events.is_empty() {
            self.apply_refs(&events, now);
        }
    }

    /// Changes on every applied batch; lets readers skip unchanged state.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The fields the engine has seen of each type it tracks, and whether
    /// that is all of them (a type with more fields than tracked, or events
    /// of untracked types, leave the catalog incomplete).
    pub fn fields(&self) -> crate::query::Catalog {
        crate::query::Catalog {
            types: self
                .types
                .iter()
                .map(|(kind, state)| {
                    let summary = &state.all_time;
                    let tracked = summary.measures.len() + summary.dimensions.len();
                    (
                        kind.clone(),
                        crate::query::KnownFields {
                            measures: summary.measures.keys().map(|k| k.to_string()).collect(),
                            dimensions: summary.dimensions.keys().map(|k| k.to_string()).collect(),
                            complete: tracked < self.config.max_fields,
                        },
                    )
                })
                .collect(),
            complete: self.untracked == 0,
        }
    }

    /// Adds committed events. `now` decides which windows they still fall in.
    ///
    /// Events are taken a group at a time, one group per type and minute. A
    /// large group is summed up once and merged into the all-time, minute and
    /// hour summaries, instead of adding each event to each of them; a small
    /// one is added event by event. Counts and sums come out the same. (Of a
    /// type with more fields than are tracked, the fields kept are the first
    /// met, group by group: within one call, minute by minute.)
    pub fn apply(&mut self, events: &[Event], now: Timestamp) {
        self.apply_refs(&events.iter().collect::<Vec<_>>(), now);
    }

    fn apply_refs(&mut self, events: &[&Event], now: Timestamp) {
        let now = now.millis();
        for (kind, group) in self.group(events) {
            let state = self.types.entry(kind.clone()).or_default();
            let summed = if group.len() >= MERGE_GROUP_EVENTS {
                let mut delta = GroupDelta::default();
                for &i in &group {
                    delta.add(events[i], &mut self.names, self.config.all_time_limits());
                }
                // Summing first gives what adding each event gives only when
                // no summary runs out of room for a field (which fields are
                // kept then depends on the order they come in).
                let max = self.config.max_fields;
                let ts = delta.first_ts();
                let fits = |summary: Option<&TypeSummary>| delta.fits_beside(summary, max);
                let fits_everywhere = fits(Some(&state.all_time))
                    && [&mut self.minute_summaries, &mut self.hour_summaries]
                        .into_iter()
                        .all(|ring| fits(ring.slot_mut(ts, now).and_then(|slot| slot.get(&kind))));
                fits_everywhere.then(|| delta.into_summary())
            } else {
                None
            };
            if let Some(epochs) = &mut self.epochs {
                let limits = self.config.all_time_limits();
                let merged = summed
                    .as_ref()
                    .is_some_and(|delta| epochs.merge(&kind, delta, now, limits));
                if !merged {
                    for &i in &group {
                        epochs.add(events[i], now, &mut self.names, limits);
                    }
                }
            }
            match summed {
                Some(delta) => {
                    state.all_time.merge(&delta, self.config.all_time_limits());
                    for ring in [&mut self.minute_summaries, &mut self.hour_summaries] {
                        if let Some(slot) = ring.slot_mut(delta.first_ts, now) {
                            let summary = slot.entry(kind.clone()).or_default();
                            summary.merge(&delta, self.config.slot_limits());
                        }
                    }
                }
                None => {
                    for &i in &group {
                        add_event(
                            events[i],
                            &kind,
                            state,
                            &mut self.names,
                            &self.config,
                            [&mut self.minute_summaries, &mut self.hour_summaries],
                            now,
                        );
                    }
                }
            }
            // The group's series, per second, then each second into both rings.
            let mut per_second: Vec<(i64, SeriesPoint)> = Vec::new();
            for &i in &group {
                let event = &events[i];
                let second = event.timestamp.millis().div_euclid(SECOND) * SECOND;
                let at = match per_second.iter().rposition(|(s, _)| *s == second) {
                    Some(at) => at,
                    None => {
                        per_second.push((second, SeriesPoint::default()));
                        per_second.len() - 1
                    }
                };
                per_second[at].1.add(event, &state.all_time);
            }
            for (second, point) in &per_second {
                for ring in [&mut self.seconds, &mut self.minutes] {
                    if let Some(slot) = ring.slot_mut(*second, now) {
                        merge_point(slot.entry(kind.clone()).or_default(), point);
                    }
                }
            }
            // Only the latest few values per measure are kept.
            let skip = group.len().saturating_sub(self.config.recent_values);
            for &i in &group[skip..] {
                for (name, x) in events[i].measures() {
                    if let Some((key, _)) = state.all_time.measures.get_key_value(name) {
                        let recent = state.recent.entry(key.clone()).or_default();
                        if recent.len() == self.config.recent_values {
                            recent.pop_front();
                        }
                        recent.push_back(x);
                    }
                }
            }
        }
        self.version += 1;
    }

    /// The first half of forgetting what retention deleted: what to read
    /// again from the store, outside the engine (see [`retention`]).
    pub fn forget_plan(&self, cutoff: Timestamp) -> Option<retention::Reread> {
        let tracked = self.types.keys().cloned().collect();
        self.epochs.as_ref()?.plan(
            cutoff.millis(),
            self.last_seq,
            tracked,
            self.config.all_time_limits(),
        )
    }

    /// Forgets every event before `cutoff` after the store deleted them
    /// (`deleted` of them): the all-time summaries become the merge of the
    /// epochs left, with the parts `reread` gathered (events applied since
    /// are read through `since`), and time slots wholly before the cutoff
    /// are emptied. Costs about what was deleted, not what is kept.
    pub fn forget_before(
        &mut self,
        cutoff: Timestamp,
        deleted: u64,
        reread: Option<retention::Reread>,
        since: &mut retention::ReadSince<'_>,
    ) {
        let Some(epochs) = &mut self.epochs else {
            return;
        };
        let cutoff = cutoff.millis();
        let limits = self.config.all_time_limits();
        epochs.forget_before(cutoff, reread, since, limits);
        let mut all_time = epochs.all_time(limits);
        self.types
            .retain(|kind, state| match all_time.remove(kind) {
                Some(summary) if summary.count > 0 => {
                    state.all_time = summary;
                    true
                }
                _ => false,
            });
        self.total = self.total.saturating_sub(deleted);
        let tracked: u64 = self.types.values().map(|s| s.all_time.count).sum();
        self.untracked = self.total.saturating_sub(tracked);
        self.total = self.total.max(tracked);
        self.seconds.clear_before(cutoff);
        self.minutes.clear_before(cutoff);
        self.minute_summaries.clear_before(cutoff);
        self.hour_summaries.clear_before(cutoff);
        self.version += 1;
    }

    /// Splits events into groups of one type and one minute (indices, in
    /// order), counting every event and setting aside those of types beyond
    /// the limit.
    fn group(&mut self, events: &[&Event]) -> Vec<(EventType, Vec<usize>)> {
        let mut groups: Vec<(EventType, i64, Vec<usize>)> = Vec::new();
        let mut new_types: Vec<&EventType> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            self.total += 1;
            let minute = event.timestamp.millis().div_euclid(MINUTE);
            // Consecutive events mostly share a group: look only at the latest few.
            let recent = groups.len().saturating_sub(GROUPS_SEARCHED);
            if let Some(group) = groups[recent..]
                .iter_mut()
                .rev()
                .find(|(kind, m, _)| *m == minute && *kind == event.kind)
            {
                group.2.push(i);
                continue;
            }
            if !self.types.contains_key(&event.kind) && !new_types.contains(&&event.kind) {
                if self.types.len() + new_types.len() >= self.config.max_types {
                    self.untracked += 1;
                    continue;
                }
                new_types.push(&event.kind);
            }
            groups.push((event.kind.clone(), minute, vec![i]));
        }
        groups.into_iter().map(|(k, _, g)| (k, g)).collect()
    }

    /// Answers a query as of `now`.
    pub fn query(&self, query: &Query, now: Timestamp) -> Snapshot {
        let now = now.millis();
        let window = query.window_ms.map(|w| w.clamp(SECOND, MAX_WINDOW_MS));
        let selected = |kind: &EventType| query.kind.as_ref().is_none_or(|k| k == kind);
        // A window reaching past the retention holds every event kept: the
        // all-time summaries answer it exactly, the slot the cutoff cuts
        // would not.
        let beyond_retention =
            window.is_some_and(|w| self.config.retention_ms.is_some_and(|r| w >= r));
        let sliced = window.filter(|_| !beyond_retention);

        let windowed = sliced.map(|w| self.window_summaries(w, now));
        let window_counts = sliced.map(|w| self.window_counts(w, now));
        let last_minute = self.window_counts(MINUTE, now);

        let mut types = Vec::new();
        for (kind, state) in self.types.iter().filter(|(k, _)| selected(k)) {
            let (summary, basics) = match (&windowed, &window_counts) {
                (Some(summaries), Some(counts)) => match summaries.get(kind) {
                    Some(s) => (s, counts.get(kind)),
                    None => continue,
                },
                _ => (&state.all_time, None),
            };
            let count = basics.map_or(summary.count, |b| b.count);
            let rate = match window {
                Some(w) => count as f64 * 1000.0 / w as f64,
                None => last_minute.get(kind).map_or(0, |p| p.count) as f64 / 60.0,
            };
            types.push(type_metrics(kind, summary, basics, count, rate, query.top));
        }

        let series_window = window.unwrap_or(15 * MINUTE);
        let step = choose_step(series_window, query.step_ms);
        let time_series = self.series(series_window, step, now, |k, _| selected(k));

        let recent_values = self
            .types
            .iter()
            .filter(|(k, _)| selected(k))
            .map(|(k, s)| {
                let fields = s
                    .recent
                    .iter()
                    .map(|(f, v)| (f.to_string(), v.iter().copied().collect()))
                    .collect();
                (k.to_string(), fields)
            })
            .collect();

        let groups = query.by.as_ref().and_then(|by| {
            let kind = query.kind.as_ref()?;
            let summary = match &windowed {
                Some(w) => w.get(kind)?,
                None => &self.types.get(kind)?.all_time,
            };
            Some(groups(summary, by, query.top))
        });

        let field_series = query.field.as_ref().and_then(|field| {
            let kind = query.kind.as_ref()?;
            let series = self.series(series_window, step, now, |k, _| k == kind);
            let points = series
                .points
                .get(kind.as_str())
                .cloned()
                .unwrap_or_default();
            Some(FieldSeries {
                field: field.clone(),
                step_ms: step,
                points: points
                    .into_iter()
                    .map(|p| {
                        (
                            p.ts_ms,
                            p.measures.get(field.as_str()).copied().unwrap_or_default(),
                        )
                    })
                    .collect(),
            })
        });

        Snapshot {
            version: self.version,
            generated_at: now,
            total_events: self.total,
            untracked_events: self.untracked,
            events_by_type: self
                .types
                .iter()
                .filter(|(k, _)| selected(k))
                .map(|(k, s)| (k.to_string(), s.all_time.count))
                .collect(),
            window_ms: window,
            window_events: match (&window_counts, beyond_retention) {
                (Some(c), _) => Some(
                    c.iter()
                        .filter(|(k, _)| selected(k))
                        .map(|(_, p)| p.count)
                        .sum(),
                ),
                (None, true) => Some(
                    self.types
                        .iter()
                        .filter(|(k, _)| selected(k))
                        .map(|(_, s)| s.all_time.count)
                        .sum(),
                ),
                (None, false) => None,
            },
            types,
            recent_values,
            time_series,
            groups,
            field_series,
        }
    }

    /// Merged summaries per type over the last `window` ms, at minute
    /// resolution up to an hour and hour resolution beyond.
    fn window_summaries(&self, window: i64, now: i64) -> HashMap<EventType, TypeSummary> {
        let ring = if window <= HOUR {
            &self.minute_summaries
        } else {
            &self.hour_summaries
        };
        // A window shows every field its slots tracked.
        let limits = SummaryLimits {
            max_fields: usize::MAX,
            top_values: self.config.top_values,
        };
        let mut merged: HashMap<EventType, TypeSummary> = HashMap::default();
        for (_, slot) in ring.range(ring.index_of(now - window + 1), ring.index_of(now)) {
            for (kind, summary) in slot {
                merged
                    .entry(kind.clone())
                    .or_default()
                    .merge(summary, limits);
            }
        }
        merged
    }

    /// Exact per-type counts and measure basics over the last `window` ms, from
    /// the finest series ring that covers it.
    fn window_counts(&self, window: i64, now: i64) -> HashMap<EventType, SeriesPoint> {
        let ring = if window <= self.seconds.span_ms() {
            &self.seconds
        } else {
            &self.minutes
        };
        let mut merged: HashMap<EventType, SeriesPoint> = HashMap::default();
        for (_, slot) in ring.range(ring.index_of(now - window + 1), ring.index_of(now)) {
            for (kind, point) in slot {
                merge_point(merged.entry(kind.clone()).or_default(), point);
            }
        }
        merged
    }

    fn series(
        &self,
        window: i64,
        step: i64,
        now: i64,
        keep: impl Fn(&EventType, &SeriesPoint) -> bool,
    ) -> TimeSeries {
        let ring = if step < MINUTE && window <= 15 * MINUTE {
            &self.seconds
        } else {
            &self.minutes
        };
        let end = now.div_euclid(step) * step;
        let start = end - (window / step - 1).max(0) * step;
        let mut per_type: BTreeMap<&EventType, BTreeMap<i64, SeriesPoint>> = BTreeMap::new();
        for (index, slot) in ring.range(ring.index_of(start), ring.index_of(now)) {
            let bucket = (index * ring.resolution_ms()).div_euclid(step) * step;
            for (kind, point) in slot.iter().filter(|(k, p)| keep(k, p)) {
                merge_point(
                    per_type.entry(kind).or_default().entry(bucket).or_default(),
                    point,
                );
            }
        }
        let points = per_type
            .into_iter()
            .map(|(kind, buckets)| {
                let dense = (0..=((end - start) / step))
                    .map(|i| {
                        let ts = start + i * step;
                        let p = buckets.get(&ts);
                        SeriesPointOut {
                            ts_ms: ts,
                            count: p.map_or(0, |p| p.count),
                            measures: p
                                .map(|p| {
                                    p.measures
                                        .iter()
                                        .map(|(n, b)| (n.to_string(), *b))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        }
                    })
                    .collect();
                (kind.to_string(), dense)
            })
            .collect();
        TimeSeries {
            step_ms: step,
            start_ms: start,
            points,
        }
    }
}

fn merge_point(into: &mut SeriesPoint, point: &SeriesPoint) {
    into.count += point.count;
    for (name, b) in &point.measures {
        match into.measures.iter_mut().find(|(n, _)| n == name) {
            Some((_, mine)) => mine.merge(b),
            None => into.measures.push((name.clone(), *b)),
        }
    }
}

/// The step for a series over `window`: as asked (at least 1 s), else about
/// 180 points, rounded to a readable step; never more than 1000 points.
pub fn choose_step(window: i64, asked: Option<i64>) -> i64 {
    const STEPS: [i64; 14] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    ];
    let floor = (window / 1000).max(SECOND);
    let step = match asked {
        Some(s) => s.max(SECOND),
        None => {
            let target = window / 180;
            STEPS
                .iter()
                .map(|s| s * SECOND)
                .find(|s| *s >= target)
                .unwrap_or(2 * HOUR)
        }
    };
    // Never longer than the window (a step asked beyond it is one point).
    let step = step.max(floor).min(window.max(SECOND));
    // Steps of a minute or more come from the minute ring.
    if step >= MINUTE || window > 15 * MINUTE {
        (step.saturating_add(MINUTE - 1) / MINUTE).max(1) * MINUTE
    } else {
        step
    }
}

fn type_metrics(
    kind: &EventType,
    summary: &TypeSummary,
    basics: Option<&SeriesPoint>,
    count: u64,
    rate: f64,
    top: usize,
) -> TypeMetrics {
    let measures = summary
        .measures
        .iter()
        .map(|(name, stats)| {
            let basic = basics
                .and_then(|b| b.measures.iter().find(|(n, _)| n == name).map(|(_, b)| *b))
                .unwrap_or(stats.basic);
            measure_metrics(name, stats, basic)
        })
        .collect();
    let dimensions = summary
        .dimensions
        .iter()
        .map(|(name, values)| {
            let top: Vec<_> = values
                .top(top)
                .into_iter()
                .map(|(v, e)| (v.to_string(), e.count))
                .collect();
            let shown: u64 = top.iter().map(|(_, c)| c).sum();
            DimensionMetrics {
                name: name.to_string(),
                others: values.total().saturating_sub(shown),
                top,
            }
        })
        .collect();
    TypeMetrics {
        name: kind.to_string(),
        count,
        rate,
        first_seen: summary.first_ts,
        last_seen: summary.last_ts,
        measures,
        dimensions,
    }
}

fn measure_metrics(name: &str, stats: &MeasureStats, basic: Basic) -> MeasureMetrics {
    MeasureMetrics {
        name: name.to_string(),
        count: basic.count,
        sum: basic.sum,
        min: basic.min,
        max: basic.max,
        mean: basic.mean().unwrap_or(0.0),
        last: stats.last,
        p50: quantile_within(stats, 0.5, basic),
        p90: quantile_within(stats, 0.9, basic),
        p95: quantile_within(stats, 0.95, basic),
        p99: quantile_within(stats, 0.99, basic),
    }
}

/// A quantile kept inside the answer's own [min, max], which is exact for a
/// window even where the sketch covers a slot a little wider.
fn quantile_within(stats: &MeasureStats, q: f64, basic: Basic) -> Option<f64> {
    let x = stats.quantile(q)?;
    Some(if basic.count > 0 {
        x.clamp(basic.min, basic.max)
    } else {
        x
    })
}

fn groups(summary: &TypeSummary, by: &str, top: usize) -> Groups {
    let Some(values) = summary.dimensions.get(by) else {
        return Groups {
            by: by.to_string(),
            groups: Vec::new(),
            others: summary.count,
        };
    };
    let groups: Vec<Group> = values
        .top(top)
        .into_iter()
        .map(|(value, entry)| Group {
            value: value.to_string(),
            count: entry.count,
            measures: entry
                .data
                .measures
                .iter()
                .map(|(n, b)| (n.to_string(), *b))
                .collect(),
        })
        .collect();
    let shown: u64 = groups.iter().map(|g| g.count).sum();
    Groups {
        by: by.to_string(),
        others: values.total().saturating_sub(shown),
        groups,
    }
}

/// What to compute. Every field narrows or extends the default snapshot.
#[derive(Debug, Clone)]
pub struct Query {
    /// Only this type.
    pub kind: Option<EventType>,
    /// Aggregates over the last `window_ms` instead of all time.
    pub window_ms: Option<i64>,
    /// Group the selected type by this dimension.
    pub by: Option<String>,
    /// A detailed series of this measure of the selected type.
    pub field: Option<String>,
    /// The step of every series.
    pub step_ms: Option<i64>,
    /// How many top values per dimension (and groups) to report.
    pub top: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            kind: None,
            window_ms: None,
            by: None,
            field: None,
            step_ms: None,
            top: 10,
        }
    }
}

/// A consistent view of the metrics at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub generated_at: i64,
    pub total_events: u64,
    pub untracked_events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub window_ms: Option<i64>,
    pub window_events: Option<u64>,
    pub types: Vec<TypeMetrics>,
    pub recent_values: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    pub time_series: TimeSeries,
    pub groups: Option<Groups>,
    pub field_series: Option<FieldSeries>,
}

#[derive(Debug, Clone)]
pub struct TypeMetrics {
    pub name: String,
    pub count: u64,
    pub rate: f64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub measures: Vec<MeasureMetrics>,
    pub dimensions: Vec<DimensionMetrics>,
}

#[derive(Debug, Clone)]
pub struct MeasureMetrics {
    pub name: String,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DimensionMetrics {
    pub name: String,
    pub top: Vec<(String, u64)>,
    /// Events whose value is not among `top`.
    pub others: u64,
}

#[derive(Debug, Clone)]
pub struct TimeSeries {
    pub step_ms: i64,
    pub start_ms: i64,
    pub points: BTreeMap<String, Vec<SeriesPointOut>>,
}

#[derive(Debug, Clone)]
pub struct SeriesPointOut {
    pub ts_ms: i64,
    pub count: u64,
    pub measures: BTreeMap<String, Basic>,
}

#[derive(Debug, Clone)]
pub struct Groups {
    pub by: String,
    pub groups: Vec<Group>,
    pub others: u64,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub value: String,
    pub count: u64,
    pub measures: BTreeMap<String, Basic>,
}

#[derive(Debug, Clone)]
pub struct FieldSeries {
    pub field: String,
    pub step_ms: i64,
    pub points: Vec<(i64, Basic)>,
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
