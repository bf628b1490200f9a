//! The metrics of a chosen set of events (a time range and filters), built
//! from the events themselves instead of the live rings: what
//! `GET /api/metrics` and the WebSocket answer for a range the engine does
//! not hold, with filters, or for a type beyond the engine's caps. The
//! answer has the live engine's shape ([`Metrics`]), so clients read both
//! alike.
//!
//! Fed in any order (a store scan gives commit order); bounded as the
//! engine is: at most its `max_types` types (further ones count as
//! untracked), `max_fields` fields a type, `top_values` values a dimension
//! (Space-Saving), `recent_values` recent values a measure, and 1,001 series
//! points a type (the step grows to fit the span). With the default
//! configuration that is at most a few MiB a type.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::query::{dense, groups, type_metrics};
use super::stats::{Names, SummaryLimits, TypeSummary};
use super::{EngineConfig, FieldSeries, Metrics, SeriesPoint, TimeSeries};
use crate::event::{Event, EventFields, EventType, Limits};
use crate::query::{Query, TimeRange};

/// Series points per type at most.
const MAX_POINTS: i64 = 1000;

/// What to summarise, besides the events' selection.
#[derive(Debug, Clone)]
pub struct OverviewSpec {
    /// The events' time range, bounded: it sets the series' span and step
    /// and the rates.
    pub span: TimeRange,
    /// Only this type (the selection filters on it too).
    pub kind: Option<EventType>,
    /// Group the selected type by this dimension.
    pub by: Option<String>,
    /// A detailed series of this measure of the selected type.
    pub field: Option<String>,
    /// The series' step as asked (else about 180 points).
    pub step_ms: Option<i64>,
    /// Top values per dimension and groups listed.
    pub top: usize,
}

struct TypeAcc {
    summary: TypeSummary,
    /// Per series step (its start, ms).
    series: BTreeMap<i64, SeriesPoint>,
    /// Per measure, the latest values by sequence number.
    recent: BTreeMap<Arc<str>, VecDeque<(u64, f64)>>,
}

/// Summarises the events a query selects: feed it, then [`Overview::finish`].
pub struct Overview<'q> {
    selection: &'q Query,
    spec: OverviewSpec,
    step: i64,
    limits: SummaryLimits,
    max_types: usize,
    recent_values: usize,
    /// The first and last series steps (their starts, ms).
    start: i64,
    end: i64,
    types: BTreeMap<EventType, TypeAcc>,
    names: Names,
    matched: u64,
    untracked: u64,
}

impl<'q> Overview<'q> {
    /// `spec.span` must start at or after 1970 and be at least a second long.
    pub fn new(selection: &'q Query, spec: OverviewSpec, config: &EngineConfig) -> Self {
        let span = spec.span;
        let width = span.to.saturating_sub(span.from).max(1);
        let step = super::choose_step(width, spec.step_ms).max(width / MAX_POINTS + 1);
        Self {
            selection,
            step,
            start: span.from.div_euclid(step) * step,
            end: (span.to - 1).div_euclid(step) * step,
            spec,
            limits: SummaryLimits {
                max_fields: config.max_fields,
                top_values: config.top_values,
            },
            max_types: config.max_types,
            recent_values: config.recent_values,
            types: BTreeMap::new(),
            names: Names::default(),
            matched: 0,
            untracked: 0,
        }
    }

    /// Takes events in any order (the first is `first_seq`); those not
    /// selected are skipped.
    pub fn add(&mut self, first_seq: u64, events: &[Event]) {
        for (i, event) in events.iter().enumerate() {
            self.add_one(first_seq + i as u64, event);
        }
    }

    /// Takes one event, owned or read in place from the store, with its
    /// sequence number.
    pub fn add_one<E: EventFields + ?Sized>(&mut self, seq: u64, event: &E) {
        if !self.selection.matches(event)
            || self
                .spec
                .kind
                .as_ref()
                .is_some_and(|k| k.as_str() != event.kind())
        {
            return;
        }
        self.matched += 1;
        let tracked = self.types.len();
        let acc = match self.types.get_mut(event.kind()) {
            Some(acc) => acc,
            None if tracked >= self.max_types => {
                self.untracked += 1;
                return;
            }
            None => {
                let Ok(kind) = EventType::parse(event.kind(), &Limits::unbounded()) else {
                    self.untracked += 1;
                    return;
                };
                self.types.entry(kind).or_insert_with(|| TypeAcc {
                    summary: TypeSummary::default(),
                    series: BTreeMap::new(),
                    recent: BTreeMap::new(),
                })
            }
        };
        acc.summary.add(event, &mut self.names, self.limits);
        // Events beyond the series' span (ahead of now) are counted, not plotted.
        let bucket = event.millis().div_euclid(self.step) * self.step;
        if (self.start..=self.end).contains(&bucket) {
            acc.series
                .entry(bucket)
                .or_default()
                .add(event, &acc.summary);
        }
        for (name, x) in event.measures() {
            let Some((key, _)) = acc.summary.measures.get_key_value(name) else {
                continue;
            };
            let recent = acc.recent.entry(key.clone()).or_default();
            keep_latest(recent, (seq, x), self.recent_values);
        }
    }

    /// Whether it met more types, or a type more fields, than it keeps:
    /// then which it kept depends on the order events came in, and parts
    /// read in parallel may disagree (the caller reads again in one part).
    pub fn capped(&self) -> bool {
        self.untracked > 0
            || self.types.values().any(|a| {
                a.summary.measures.len() + a.summary.dimensions.len() >= self.limits.max_fields
            })
    }

    /// Joins what another overview of the same selection took (another
    /// part of the stored segments, read in parallel).
    pub fn merge(&mut self, other: Overview<'_>) {
        self.matched += other.matched;
        self.untracked += other.untracked;
        for (kind, theirs) in other.types {
            if !self.types.contains_key(&kind) && self.types.len() >= self.max_types {
                self.untracked += theirs.summary.count;
                continue;
            }
            let mine = self.types.entry(kind).or_insert_with(|| TypeAcc {
                summary: TypeSummary::default(),
                series: BTreeMap::new(),
                recent: BTreeMap::new(),
            });
            mine.summary.merge(&theirs.summary, self.limits);
            for (bucket, point) in &theirs.series {
                super::merge_point(mine.series.entry(*bucket).or_default(), point);
            }
            for (name, values) in theirs.recent {
                let recent = mine.recent.entry(name).or_default();
                for value in values {
                    keep_latest(recent, value, self.recent_values);
                }
            }
        }
    }

    /// The answer, in the live engine's shape. `total_events` is every
    /// stored event, whatever the selection.
    pub fn finish(self, total_events: u64, now: i64) -> Metrics {
        let span = self.spec.span;
        let width = span.to.saturating_sub(span.from).max(1);
        let seconds = width as f64 / 1000.0;
        let (start, end) = (self.start, self.end);
        let step = self.step;
        let dense = |series: &BTreeMap<i64, SeriesPoint>| dense(series, start, end, step);
        let top = self.spec.top;
        let types = self
            .types
            .iter()
            .map(|(kind, acc)| {
                let count = acc.summary.count;
                type_metrics(kind, &acc.summary, None, count, count as f64 / seconds, top)
            })
            .collect();
        let selected = self
            .spec
            .kind
            .as_ref()
            .and_then(|k| Some((k, self.types.get(k)?)));
        let groups = self
            .spec
            .by
            .as_ref()
            .zip(selected)
            .map(|(by, (_, acc))| groups(&acc.summary, by, top));
        let field_series = self
            .spec
            .field
            .as_ref()
            .zip(selected)
            .map(|(field, (_, acc))| FieldSeries {
                field: field.clone(),
                step_ms: self.step,
                points: dense(&acc.series)
                    .into_iter()
                    .map(|p| {
                        let basic = p.measures.get(field.as_str()).copied().unwrap_or_default();
                        (p.ts_ms, basic)
                    })
                    .collect(),
            });
        Metrics {
            version: 0,
            generated_at: now,
            total_events,
            untracked_events: self.untracked,
            events_by_type: self
                .types
                .iter()
                .map(|(k, acc)| (k.to_string(), acc.summary.count))
                .collect(),
            window_ms: Some(width),
            window_events: Some(self.matched),
            types,
            recent_values: self
                .types
                .iter()
                .map(|(k, acc)| {
                    let fields = acc
                        .recent
                        .iter()
                        .map(|(f, v)| (f.to_string(), v.iter().map(|(_, x)| *x).collect()))
                        .collect();
                    (k.to_string(), fields)
                })
                .collect(),
            time_series: TimeSeries {
                step_ms: self.step,
                start_ms: start,
                points: self
                    .types
                    .iter()
                    .map(|(k, acc)| (k.to_string(), dense(&acc.series)))
                    .collect(),
            },
            groups,
            field_series,
        }
    }
}

/// Keeps the `n` values with the highest sequence numbers, in their order.
fn keep_latest(recent: &mut VecDeque<(u64, f64)>, value: (u64, f64), n: usize) {
    let at = recent.partition_point(|(seq, _)| *seq < value.0);
    if recent.len() == n && at == 0 {
        return;
    }
    recent.insert(at, value);
    if recent.len() > n {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::keep_latest;
    use std::collections::VecDeque;

    #[test]
    fn recent_values_are_the_latest_by_sequence_whatever_the_order_fed() {
        let mut recent = VecDeque::new();
        // Two parts' values interleaved out of order.
        for seq in [5u64, 1, 9, 3, 7, 2, 8, 4, 6] {
            keep_latest(&mut recent, (seq, seq as f64 * 10.0), 4);
        }
        assert_eq!(
            recent.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![6, 7, 8, 9]
        );
        assert_eq!(recent.back(), Some(&(9, 90.0)));
    }
}
