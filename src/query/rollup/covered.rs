//! What the hour summaries a query took hold, so that a scan reads only
//! the other events.

use std::collections::HashMap;

use super::{HOUR_MS, hour_of};
use crate::event::Text;
use crate::query::TimeRange;

/// Which stored events the hour summaries a query took already hold: those
/// up to sequence number `upto` in the (type, hour)s taken. A scan skips
/// them (and whole segments of them) to read the rest.
#[derive(Debug, Clone, Default)]
pub struct Covered {
    pub upto: u64,
    /// Hour start -> types taken, each with the last sequence number its
    /// summary holds (at most `upto`).
    hours: HashMap<i64, Vec<(Text, u64)>, foldhash::fast::RandomState>,
}

impl Covered {
    pub fn new(upto: u64) -> Self {
        Self {
            upto,
            hours: HashMap::default(),
        }
    }

    /// A summary taken that holds the events up to `upto`.
    pub fn add(&mut self, hour: i64, kind: &str) {
        self.add_upto(hour, kind, self.upto);
    }

    /// A summary taken that holds its hour's events up to `upto` only (the
    /// events after it are read, whatever the summaries in general reach).
    pub fn add_upto(&mut self, hour: i64, kind: &str, upto: u64) {
        let upto = upto.min(self.upto);
        self.hours
            .entry(hour)
            .or_default()
            .push((kind.into(), upto));
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The (hour start, type, last sequence number held)s taken.
    pub fn taken(&self) -> impl Iterator<Item = (i64, &str, u64)> {
        self.hours
            .iter()
            .flat_map(|(hour, kinds)| kinds.iter().map(move |(k, u)| (*hour, &**k, *u)))
    }

    /// Hours taken, over all types.
    pub fn len(&self) -> usize {
        self.hours.values().map(Vec::len).sum()
    }

    /// How far the summary taken of (`hour`, `kind`) reaches, if one was.
    fn holds(&self, hour: i64, kind: &str) -> Option<u64> {
        self.hours
            .get(&hour)?
            .iter()
            .find(|(k, _)| **k == *kind)
            .map(|(_, upto)| *upto)
    }

    /// Whether the event numbered `seq` is in a summary taken.
    pub fn covers(&self, seq: u64, kind: &str, ts: i64) -> bool {
        seq <= self.upto
            && !self.hours.is_empty()
            && self
                .holds(hour_of(ts), kind)
                .is_some_and(|upto| seq <= upto)
    }

    /// Whether every event of a stored segment that a query over `range`
    /// wants is in a summary taken: the segment holds events up to
    /// `last_seq`, of times `min_ts..=max_ts` and of these `kinds` (those
    /// the query may want).
    pub fn covers_segment<'k>(
        &self,
        range: TimeRange,
        last_seq: u64,
        (min_ts, max_ts): (i64, i64),
        mut kinds: impl Iterator<Item = &'k str>,
    ) -> bool {
        if last_seq > self.upto || self.hours.is_empty() {
            return false;
        }
        let (first, last) = (hour_of(min_ts), hour_of(max_ts));
        // Segments of many hours are read (they are rare, and few hours are wanted).
        if (last - first) / HOUR_MS > 48 {
            return false;
        }
        kinds.all(|kind| {
            (0..=(last - first) / HOUR_MS).all(|i| {
                let hour = first + i * HOUR_MS;
                let outside = hour.saturating_add(HOUR_MS) <= range.from || hour >= range.to;
                outside || self.holds(hour, kind).is_some_and(|upto| last_seq <= upto)
            })
        })
    }
}

/// The whole hours within a range, as hour starts `first..end`.
pub fn whole_hours(range: TimeRange) -> (i64, i64) {
    let first = range
        .from
        .div_euclid(HOUR_MS)
        .saturating_add(i64::from(range.from.rem_euclid(HOUR_MS) != 0))
        .saturating_mul(HOUR_MS);
    let end = range.to.div_euclid(HOUR_MS).saturating_mul(HOUR_MS);
    (first, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_covers_its_hour_only_up_to_its_own_mark() {
        let mut covered = Covered::new(100);
        covered.add(0, "a");
        covered.add_upto(HOUR_MS, "a", 40);
        assert!(covered.covers(100, "a", 10));
        assert!(!covered.covers(101, "a", 10));
        assert!(covered.covers(40, "a", HOUR_MS + 1));
        assert!(
            !covered.covers(41, "a", HOUR_MS + 1),
            "read: after the summary's own mark"
        );
        assert!(!covered.covers(1, "b", 10), "another type");
        let range = TimeRange {
            from: 0,
            to: 2 * HOUR_MS,
        };
        assert!(covered.covers_segment(range, 40, (0, HOUR_MS + 5), ["a"].into_iter()));
        assert!(!covered.covers_segment(range, 41, (0, HOUR_MS + 5), ["a"].into_iter()));
        assert_eq!(covered.taken().count(), 2);
    }
}
