//! The engine's read path: the metrics of a view (a type, a window, a
//! breakdown, a series) from the rings and the all-time summaries.

use std::collections::BTreeMap;

use super::stats::{MeasureStats, SummaryLimits, TypeSummary};
use super::{
    Basic, DimensionMetrics, Engine, FieldSeries, Group, Groups, HOUR, HashMap, MAX_WINDOW_MS,
    MINUTE, MeasureMetrics, Metrics, Query, SECOND, SeriesPoint, SeriesPointOut, TimeSeries,
    TypeMetrics, merge_point,
};
use crate::event::{EventType, Timestamp};

impl Engine {
    /// Answers a query as of `now`.
    pub fn query(&self, query: &Query, now: Timestamp) -> Metrics {
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

        Metrics {
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
            .map(|(kind, buckets)| (kind.to_string(), dense(&buckets, start, end, step)))
            .collect();
        TimeSeries {
            step_ms: step,
            start_ms: start,
            points,
        }
    }
}

/// One point per step from `start` to `end` (both step starts), empty
/// steps included.
pub(super) fn dense(
    buckets: &BTreeMap<i64, SeriesPoint>,
    start: i64,
    end: i64,
    step: i64,
) -> Vec<SeriesPointOut> {
    (0..=((end - start) / step))
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
        .collect()
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

pub(super) fn type_metrics(
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
        sum: basic.sum(),
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

pub(super) fn groups(summary: &TypeSummary, by: &str, top: usize) -> Groups {
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
