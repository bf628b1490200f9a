//! What one group of a query's answer keeps: per measure its basics, its
//! latest value and (when quantiles are asked) a quantile sketch; per
//! dimension asked about a distinct-count sketch and top values. All of it
//! merges, so the groups beyond `top` sum into one row.

use std::sync::Arc;

use cardinality_estimator::CardinalityEstimator;

use super::exec::StatValue;
use super::{Stat, StatRequest};
use crate::engine::stats::{Basic, MeasureStats};
use crate::engine::topk::TopK;
use crate::event::Text;

/// Fields tracked per group when every measure is shown.
pub(super) const MAX_FIELDS: usize = 256;
/// Values tracked per dimension for `top`.
const TOP_TRACKED: usize = 100;
/// Values listed per dimension for `top`.
pub const TOP_LISTED: usize = 10;

/// Distinct values of a dimension: HyperLogLog++ with 4,096 registers
/// (about 3 KiB at most), hashing with a fixed seed so answers repeat.
pub(super) type Distinct = CardinalityEstimator<str>;

#[derive(Debug, Clone, Default)]
pub(super) struct MeasureAcc {
    pub(super) basic: Basic,
    /// The latest value: by time, then by sequence number (the later
    /// stored of two at the same millisecond).
    pub(super) last: Option<(i64, u64, f64)>,
    pub(super) full: Option<MeasureStats>,
}

impl MeasureAcc {
    /// A measure already summed (the live engine's), kept whole when
    /// quantiles are wanted.
    pub(super) fn from_stats(stats: &MeasureStats, quantiles: bool) -> Self {
        Self {
            basic: stats.basic,
            // The engine kept the later stored of equal times; its number is not kept.
            last: (stats.basic.count > 0).then_some((stats.last_ts, 0, stats.last)),
            full: quantiles.then(|| stats.clone()),
        }
    }

    pub(super) fn add(&mut self, x: f64, ts: i64, seq: u64) {
        self.basic.add(x);
        if self.last.is_none_or(|(at, n, _)| (ts, seq) >= (at, n)) {
            self.last = Some((ts, seq, x));
        }
        if let Some(full) = &mut self.full {
            full.add(x, ts);
        }
    }

    pub(super) fn merge(&mut self, other: &MeasureAcc) {
        self.basic.merge(&other.basic);
        if let Some((ts, seq, x)) = other.last
            && self.last.is_none_or(|(at, n, _)| (ts, seq) >= (at, n))
        {
            self.last = Some((ts, seq, x));
        }
        match (&mut self.full, &other.full) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.full = Some(theirs.clone()),
            _ => {}
        }
    }

    fn value(&self, stat: Stat) -> Option<f64> {
        let b = &self.basic;
        if b.count == 0 {
            return None;
        }
        match stat {
            Stat::Count => Some(b.count as f64),
            Stat::Sum => Some(b.sum()),
            Stat::Min => Some(b.min),
            Stat::Max => Some(b.max),
            Stat::Mean => b.mean(),
            Stat::Last => self.last.map(|(_, _, x)| x),
            other => {
                let q = other.quantile()?;
                self.full
                    .as_ref()?
                    .quantile(q)
                    .map(|x| x.clamp(b.min, b.max))
            }
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct DimAcc {
    pub(super) distinct: Option<Distinct>,
    top: Option<TopK<()>>,
}

impl DimAcc {
    pub(super) fn add(&mut self, value: &str) {
        if let Some(d) = &mut self.distinct {
            d.insert(value);
        }
        if let Some(t) = &mut self.top {
            t.observe(value);
        }
    }

    /// Adds the distinct values of other events (a summary's).
    pub(super) fn merge_distinct(&mut self, other: &Distinct) {
        if let Some(d) = &mut self.distinct {
            d.merge(other);
        }
    }

    fn merge(&mut self, other: &DimAcc) {
        match (&mut self.distinct, &other.distinct) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.distinct = Some(theirs.clone()),
            _ => {}
        }
        match (&mut self.top, &other.top) {
            (Some(mine), Some(theirs)) => mine.merge(theirs, |_, _| {}),
            (None, Some(theirs)) => self.top = Some(theirs.clone()),
            _ => {}
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct Acc {
    pub(super) events: u64,
    /// The earliest and latest event times.
    pub(super) span: Option<(i64, i64)>,
    pub(super) measures: Vec<(Text, MeasureAcc)>,
    pub(super) dimensions: Vec<(Text, DimAcc)>,
}

impl Acc {
    pub(super) fn merge(&mut self, other: &Acc) {
        self.events += other.events;
        if let Some((first, last)) = other.span {
            self.see(first);
            self.see(last);
        }
        for (name, m) in &other.measures {
            match self.measures.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => mine.merge(m),
                None => self.measures.push((name.clone(), m.clone())),
            }
        }
        for (name, d) in &other.dimensions {
            match self.dimensions.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => mine.merge(d),
                None => self.dimensions.push((name.clone(), d.clone())),
            }
        }
    }

    /// Statistics and sketches kept beyond the `(measures, dimensions)`
    /// the group had before.
    pub(super) fn kept_since(&self, (measures, dimensions): (usize, usize)) -> (usize, usize) {
        let new_measures = &self.measures[measures..];
        let new_dimensions = self.dimensions.len() - dimensions;
        let sketched = new_measures
            .iter()
            .filter(|(_, m)| m.full.is_some())
            .count();
        (
            new_measures.len() + new_dimensions,
            sketched + new_dimensions,
        )
    }

    pub(super) fn see(&mut self, ts: i64) {
        self.span = Some(match self.span {
            None => (ts, ts),
            Some((first, last)) => (first.min(ts), last.max(ts)),
        });
    }

    fn measure(&self, name: &str) -> Option<&MeasureAcc> {
        self.measures
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, m)| m)
    }

    fn dimension(&self, name: &str) -> Option<&DimAcc> {
        self.dimensions
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, d)| d)
    }
}

pub(super) fn measure_acc<'a>(
    acc: &'a mut Acc,
    name: &str,
    quantiles: bool,
) -> Option<&'a mut MeasureAcc> {
    if let Some(at) = acc.measures.iter().position(|(n, _)| &**n == name) {
        return Some(&mut acc.measures[at].1);
    }
    if acc.measures.len() >= MAX_FIELDS {
        return None;
    }
    acc.measures.push((
        Arc::from(name),
        MeasureAcc {
            full: quantiles.then(MeasureStats::default),
            ..MeasureAcc::default()
        },
    ));
    acc.measures.last_mut().map(|(_, m)| m)
}

pub(super) fn dim_acc<'a>(acc: &'a mut Acc, name: &str, stats: &[StatRequest]) -> &'a mut DimAcc {
    if let Some(at) = acc.dimensions.iter().position(|(n, _)| &**n == name) {
        return &mut acc.dimensions[at].1;
    }
    let wants = |stat: Stat| stats.iter().any(|s| s.field == name && s.stat == stat);
    acc.dimensions.push((
        Arc::from(name),
        DimAcc {
            distinct: wants(Stat::Distinct).then(Distinct::new),
            top: wants(Stat::Top).then(|| TopK::new(TOP_TRACKED)),
        },
    ));
    let last = acc.dimensions.len() - 1;
    &mut acc.dimensions[last].1
}

pub(super) fn stat_value(acc: &Acc, request: &StatRequest) -> StatValue {
    match request.stat {
        Stat::Distinct => StatValue::Count(
            acc.dimension(&request.field)
                .and_then(|d| d.distinct.as_ref())
                .map_or(0, |d| d.estimate() as u64),
        ),
        Stat::Top => StatValue::Top(
            acc.dimension(&request.field)
                .and_then(|d| d.top.as_ref())
                .map(|t| {
                    t.top(TOP_LISTED)
                        .into_iter()
                        .map(|(v, e)| (v.to_string(), e.count))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        stat => StatValue::Number(acc.measure(&request.field).and_then(|m| m.value(stat))),
    }
}
