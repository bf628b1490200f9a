//! Mergeable aggregates: the building blocks of every metric.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use smallvec::SmallVec;

use super::topk::TopK;
use crate::event::{Event, EventFields};

/// Count, sum, min and max of a set of numbers. The sum is compensated
/// (Neumaier): about as accurate as if summed exactly and rounded once, so
/// the order numbers were added or merged in rarely shows (a summary and a
/// scan of the same events agree but where large values cancel, and ten
/// times 0.1 reads as 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Basic {
    pub count: u64,
    /// The running sum; [`Basic::sum`] adds the compensation.
    running: f64,
    /// What rounding took off `running` so far.
    carry: f64,
    pub min: f64,
    pub max: f64,
}

impl Basic {
    pub fn add(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.accumulate(x);
    }

    fn accumulate(&mut self, x: f64) {
        let t = self.running + x;
        self.carry += if self.running.abs() >= x.abs() {
            (self.running - t) + x
        } else {
            (x - t) + self.running
        };
        self.running = t;
    }

    pub fn merge(&mut self, other: &Basic) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count += other.count;
        self.accumulate(other.running);
        self.carry += other.carry;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The sum of the numbers.
    pub fn sum(&self) -> f64 {
        // Past f64's range the carry means nothing (inf - inf).
        if self.running.is_finite() {
            self.running + self.carry
        } else {
            self.running
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum() / self.count as f64)
    }
}

/// Everything kept about one measure: basics, the latest value, and for
/// quantiles the values themselves while there are few, a sketch with 1%
/// relative accuracy always.
#[derive(Clone, Serialize, Deserialize)]
pub struct MeasureStats {
    pub basic: Basic,
    pub last: f64,
    pub last_ts: i64,
    sketch: DDSketch,
    /// Every value, while there are at most [`EXACT_VALUES`]; then `None`.
    exact: Option<Vec<f64>>,
}

/// Relative accuracy of every quantile the engine reports.
pub const QUANTILE_ACCURACY: f64 = 0.01;

/// Up to this many values a summary keeps them all, and its quantiles are
/// exact (nearest rank); beyond, they come from the sketch. 512 bytes a
/// measure at most, freed once the summary outgrows it.
pub const EXACT_VALUES: usize = 64;

impl Default for MeasureStats {
    fn default() -> Self {
        Self {
            basic: Basic::default(),
            last: 0.0,
            last_ts: i64::MIN,
            sketch: DDSketch::new(Config::new(QUANTILE_ACCURACY, 2048, 1e-9)),
            exact: Some(Vec::new()),
        }
    }
}

impl std::fmt::Debug for MeasureStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasureStats")
            .field("basic", &self.basic)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl MeasureStats {
    pub fn add(&mut self, x: f64, ts: i64) {
        self.basic.add(x);
        if ts >= self.last_ts {
            self.last = x;
            self.last_ts = ts;
        }
        self.sketch.add(x);
        if let Some(values) = &mut self.exact {
            if values.len() < EXACT_VALUES {
                values.push(x);
            } else {
                self.exact = None;
            }
        }
    }

    pub fn merge(&mut self, other: &MeasureStats) {
        self.basic.merge(&other.basic);
        if other.last_ts >= self.last_ts && other.basic.count > 0 {
            self.last = other.last;
            self.last_ts = other.last_ts;
        }
        // Both sketches share one configuration, the only way merge can fail.
        let _ = self.sketch.merge(&other.sketch);
        self.exact = match (self.exact.take(), &other.exact) {
            (Some(mut mine), Some(theirs)) if mine.len() + theirs.len() <= EXACT_VALUES => {
                mine.extend_from_slice(theirs);
                Some(mine)
            }
            _ => None,
        };
    }

    /// The `q`-quantile: with at most [`EXACT_VALUES`] values the smallest
    /// value with at least `q` of all values at or below it (nearest rank:
    /// p99 of {1, 1000} is 1000); beyond, the sketch's estimate (within 1%),
    /// never outside [min, max].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.basic.count == 0 {
            return None;
        }
        if let Some(values) = self.exact.as_ref().filter(|v| !v.is_empty()) {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = (q * sorted.len() as f64).ceil() as usize;
            return sorted.get(rank.clamp(1, sorted.len()) - 1).copied();
        }
        // The sketch ranks by floor(q * (n - 1)) from 0; ask it for the
        // nearest rank's position, so both answers mean the same value.
        let n = self.basic.count;
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n) - 1;
        let at = if n > 1 {
            ((rank as f64 + 0.5) / (n - 1) as f64).min(1.0)
        } else {
            0.0
        };
        let estimate = self.sketch.quantile(at).ok().flatten()?;
        // Not `clamp`, which panics on min > max: a saved state is read back as written.
        Some(estimate.max(self.basic.min).min(self.basic.max))
    }
}

/// Per dimension value: how its events' measures add up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupStats {
    pub measures: Vec<(Arc<str>, Basic)>,
}

impl GroupStats {
    fn add(&mut self, name: &Arc<str>, x: f64) {
        // Names are interned: the pointer check settles almost every lookup.
        match self
            .measures
            .iter_mut()
            .find(|(n, _)| Arc::ptr_eq(n, name) || n == name)
        {
            Some((_, b)) => b.add(x),
            None => {
                let mut b = Basic::default();
                b.add(x);
                self.measures.push((name.clone(), b));
            }
        }
    }

    pub fn merge(&mut self, other: &GroupStats) {
        for (name, b) in &other.measures {
            match self.measures.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => mine.merge(b),
                None => self.measures.push((name.clone(), *b)),
            }
        }
    }
}

/// Counts one more event at `ts` into a count and the span of timestamps.
fn count_event(count: &mut u64, first_ts: &mut i64, last_ts: &mut i64, ts: i64) {
    if *count == 0 {
        (*first_ts, *last_ts) = (ts, ts);
    }
    *count += 1;
    *first_ts = (*first_ts).min(ts);
    *last_ts = (*last_ts).max(ts);
}

/// Bounds that keep a summary's memory fixed.
#[derive(Debug, Clone, Copy)]
pub struct SummaryLimits {
    /// Measures and dimensions tracked per type; later new names are ignored.
    pub max_fields: usize,
    /// Distinct values tracked per dimension.
    pub top_values: usize,
}

/// All aggregates of one event type over some span of time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TypeSummary {
    pub count: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub measures: BTreeMap<Arc<str>, MeasureStats>,
    pub dimensions: BTreeMap<Arc<str>, TopK<GroupStats>>,
}

impl TypeSummary {
    pub fn add<E: EventFields + ?Sized>(
        &mut self,
        event: &E,
        names: &mut Names,
        limits: SummaryLimits,
    ) {
        let ts = event.millis();
        count_event(&mut self.count, &mut self.first_ts, &mut self.last_ts, ts);
        let tracked = self.measures.len() + self.dimensions.len();
        let mut room = limits.max_fields.saturating_sub(tracked);
        for (name, x) in event.measures() {
            if let Some(stats) = self.measures.get_mut(name) {
                stats.add(x, ts);
            } else if room > 0 {
                room -= 1;
                let mut stats = MeasureStats::default();
                stats.add(x, ts);
                self.measures.insert(names.intern(name), stats);
            }
        }
        let measures = &self.measures;
        // The event's tracked measures, looked up once for all its dimensions
        // (on the stack: events have few measures).
        let mut tracked: SmallVec<[(&Arc<str>, f64); 8]> = SmallVec::new();
        for (name, value) in event.dimensions() {
            if tracked.is_empty() {
                tracked.extend(
                    event
                        .measures()
                        .filter_map(|(n, x)| Some((measures.get_key_value(n)?.0, x))),
                );
            }
            let top = match self.dimensions.get_mut(name) {
                Some(top) => top,
                None if room > 0 => {
                    room -= 1;
                    self.dimensions
                        .entry(names.intern(name))
                        .or_insert_with(|| TopK::new(limits.top_values))
                }
                None => continue,
            };
            let group = top.observe(value);
            // Only measures tracked for the type, so groups stay bounded too.
            for (key, x) in &tracked {
                group.add(key, *x);
            }
        }
    }

    pub fn merge(&mut self, other: &TypeSummary, limits: SummaryLimits) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.first_ts = other.first_ts;
            self.last_ts = other.last_ts;
        }
        self.count += other.count;
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        let tracked = self.measures.len() + self.dimensions.len();
        let mut room = limits.max_fields.saturating_sub(tracked);
        for (name, stats) in &other.measures {
            if let Some(mine) = self.measures.get_mut(name) {
                mine.merge(stats);
            } else if room > 0 {
                room -= 1;
                self.measures.insert(name.clone(), stats.clone());
            }
        }
        for (name, top) in &other.dimensions {
            let mine = match self.dimensions.get_mut(name) {
                Some(mine) => mine,
                None if room > 0 => {
                    room -= 1;
                    self.dimensions
                        .entry(name.clone())
                        .or_insert_with(|| TopK::new(limits.top_values))
                }
                None => continue,
            };
            mine.merge(top, GroupStats::merge);
        }
    }
}

/// A group's events summed up before they are merged into summaries. Sums
/// the same way as [`TypeSummary::add`], but keeps its fields in the order
/// met and finds them by the address of the event's name first: the events
/// of one body share their names, so a large group is summed without a
/// tree lookup or a string comparison per value. Addresses are only
/// trusted within one [`GroupDelta`], whose events all stay borrowed.
#[derive(Default)]
pub struct GroupDelta<'e> {
    count: u64,
    first_ts: i64,
    last_ts: i64,
    measures: Vec<DeltaField<'e, MeasureStats>>,
    dimensions: Vec<DeltaField<'e, TopK<GroupStats>>>,
    /// A field was left out for want of room.
    overflowed: bool,
}

struct DeltaField<'e, T> {
    name: Arc<str>,
    /// The event's own text of the name, as last met.
    seen: &'e str,
    stats: T,
}

/// What one event may still add to a [`GroupDelta`]: fields while there is
/// room (noting when there is not), named through `names`.
struct Adding<'a> {
    room: usize,
    overflowed: &'a mut bool,
    names: &'a mut Names,
}

impl Adding<'_> {
    /// The index of the field named `name` in `fields`: found, or added
    /// (made by `new`) if there is room.
    fn field<'e, T>(
        &mut self,
        fields: &mut Vec<DeltaField<'e, T>>,
        name: &'e str,
        new: impl FnOnce() -> T,
    ) -> Option<usize> {
        if let Some(i) = fields.iter().position(|f| std::ptr::eq(f.seen, name)) {
            return Some(i);
        }
        if let Some(i) = fields.iter().position(|f| *f.name == *name) {
            fields[i].seen = name;
            return Some(i);
        }
        if self.room == 0 {
            *self.overflowed = true;
            return None;
        }
        self.room -= 1;
        fields.push(DeltaField {
            name: self.names.intern(name),
            seen: name,
            stats: new(),
        });
        Some(fields.len() - 1)
    }
}

impl<'e> GroupDelta<'e> {
    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    /// Whether every field met fits, with those of `summary`, within
    /// `max_fields`: then merging loses no field that adding each event
    /// would have kept.
    pub fn fits_beside(&self, summary: Option<&TypeSummary>, max_fields: usize) -> bool {
        let theirs = summary.map_or(0, |s| s.measures.len() + s.dimensions.len());
        !self.overflowed && theirs + self.measures.len() + self.dimensions.len() <= max_fields
    }

    pub fn add(&mut self, event: &'e Event, names: &mut Names, limits: SummaryLimits) {
        let ts = event.timestamp.millis();
        count_event(&mut self.count, &mut self.first_ts, &mut self.last_ts, ts);
        let tracked = self.measures.len() + self.dimensions.len();
        let mut adding = Adding {
            room: limits.max_fields.saturating_sub(tracked),
            overflowed: &mut self.overflowed,
            names,
        };
        // The event's tracked measures, by index, for its dimensions' groups.
        let mut tracked: SmallVec<[(usize, f64); 8]> = SmallVec::new();
        for (name, x) in event.measures() {
            let Some(at) = adding.field(&mut self.measures, name, MeasureStats::default) else {
                continue;
            };
            self.measures[at].stats.add(x, ts);
            tracked.push((at, x));
        }
        for (name, value) in event.dimensions() {
            let new = || TopK::new(limits.top_values);
            let Some(at) = adding.field(&mut self.dimensions, name, new) else {
                continue;
            };
            let group = self.dimensions[at].stats.observe(value);
            for &(measure, x) in &tracked {
                group.add(&self.measures[measure].name, x);
            }
        }
    }

    pub fn into_summary(self) -> TypeSummary {
        TypeSummary {
            count: self.count,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            measures: self
                .measures
                .into_iter()
                .map(|f| (f.name, f.stats))
                .collect(),
            dimensions: self
                .dimensions
                .into_iter()
                .map(|f| (f.name, f.stats))
                .collect(),
        }
    }
}

/// Field names shared between all aggregates, so each name is allocated once.
#[derive(Debug, Default)]
pub struct Names {
    names: std::collections::HashSet<Arc<str>>,
}

/// More distinct field names than this and new ones are no longer shared.
const MAX_INTERNED: usize = 65_536;

impl Names {
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        if self.names.len() < MAX_INTERNED {
            self.names.insert(n.clone());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn quantiles_stay_within_the_sketch_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut stats = MeasureStats::default();
        let mut values: Vec<f64> = (0..100_000)
            .map(|_| {
                // Log-normal-ish latencies between 1 ms and a few seconds.
                let u: f64 = rng.random_range(0.0..1.0);
                (u * 8.0).exp()
            })
            .collect();
        for (i, x) in values.iter().enumerate() {
            stats.add(*x, i as i64);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            // Nearest rank.
            let exact = values[(q * values.len() as f64).ceil() as usize - 1];
            let estimate = stats.quantile(q).unwrap();
            let relative = (estimate - exact).abs() / exact;
            assert!(
                relative <= QUANTILE_ACCURACY * 1.01,
                "p{q}: exact {exact}, estimate {estimate}, error {relative}"
            );
        }
    }

    #[test]
    fn merge_equals_adding_everything_once() {
        let mut a = MeasureStats::default();
        let mut b = MeasureStats::default();
        let mut all = MeasureStats::default();
        for i in 0..1000 {
            let x = (i % 97) as f64 - 10.0;
            if i % 3 == 0 {
                a.add(x, i)
            } else {
                b.add(x, i)
            }
            all.add(x, i);
        }
        a.merge(&b);
        assert_eq!(a.basic, all.basic);
        assert_eq!(a.last, all.last);
        assert_eq!(a.quantile(0.9), all.quantile(0.9));
    }

    fn stats_of(values: &[f64]) -> MeasureStats {
        let mut stats = MeasureStats::default();
        for (i, x) in values.iter().enumerate() {
            stats.add(*x, i as i64);
        }
        stats
    }

    #[test]
    fn few_values_give_nearest_rank_quantiles() {
        let two = stats_of(&[1.0, 1000.0]);
        assert_eq!(two.quantile(0.99), Some(1000.0));
        assert_eq!(two.quantile(0.5), Some(1.0));
        let pair = stats_of(&[4.0, 3.0]);
        assert_eq!(pair.quantile(0.5), Some(3.0));
        assert_eq!(pair.quantile(0.9), Some(4.0));
        let hundred: Vec<f64> = (1..=EXACT_VALUES).map(|i| i as f64).collect();
        let stats = stats_of(&hundred);
        assert_eq!(stats.quantile(0.5), Some((EXACT_VALUES / 2) as f64));
        assert_eq!(stats.quantile(1.0), Some(EXACT_VALUES as f64));
        // Merged halves stay exact while they fit.
        let (mut a, b) = (stats_of(&[5.0, 1.0]), stats_of(&[9.0]));
        a.merge(&b);
        assert_eq!(a.quantile(0.99), Some(9.0));
        assert_eq!(a.quantile(0.34), Some(5.0));
    }

    #[test]
    fn sketched_quantiles_stay_inside_the_data() {
        let mut values: Vec<f64> = (0..EXACT_VALUES * 4)
            .map(|i| 3.0 + (i % 2) as f64)
            .collect();
        values.push(1000.0);
        let stats = stats_of(&values);
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
            let p = stats.quantile(q).unwrap();
            assert!((3.0..=1000.0).contains(&p), "p{q} = {p} outside [3, 1000]");
        }
        assert!(stats_of(&[]).quantile(0.5).is_none());
    }
}
