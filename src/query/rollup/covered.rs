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
    /// Hour start -> types taken.
    hours: HashMap<i64, Vec<Text>, foldhash::fast::RandomState>,
}

impl Covered {
    pub fn new(upto: u64) -> Self {
        Self {
            upto,
            hours: HashMap::default(),
        }
    }

    pub fn add(&mut self, hour: i64, kind: &str) {
        self.hours.entry(hour).or_default().push(kind.into());
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The (hour start, type)s taken.
    pub fn taken(&self) -> impl Iterator<Item = (i64, &str)> {
        self.hours
            .iter()
            .flat_map(|(hour, kinds)| kinds.iter().map(move |k| (*hour, &**k)))
    }

    /// Hours taken, over all types.
    pub fn len(&self) -> usize {
        self.hours.values().map(Vec::len).sum()
    }

    fn holds(&self, hour: i64, kind: &str) -> bool {
        self.hours
            .get(&hour)
            .is_some_and(|kinds| kinds.iter().any(|k| **k == *kind))
    }

    /// Whether the event numbered `seq` is in a summary taken.
    pub fn covers(&self, seq: u64, kind: &str, ts: i64) -> bool {
        seq <= self.upto && !self.hours.is_empty() && self.holds(hour_of(ts), kind)
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
                outside || self.holds(hour, kind)
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
