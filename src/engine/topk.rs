//! Bounded heavy hitters (the Space-Saving algorithm).
//!
//! Keeps at most `capacity` values. A new value that finds the table full
//! replaces the value with the smallest count and inherits that count as its
//! error bound, so every value whose true count exceeds `total / capacity` is
//! guaranteed to be present, and reported counts overestimate by at most
//! `error`. Memory is bounded whatever the number of distinct values.

use super::HashMap;

use serde::{Deserialize, Serialize};

/// One tracked value with its count and what it carries (per-value aggregates).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry<T> {
    pub count: u64,
    /// The most this count may overstate the true one.
    pub error: u64,
    pub data: T,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopK<T> {
    capacity: usize,
    entries: HashMap<Box<str>, Entry<T>>,
    /// Number of observations, including those of evicted values.
    total: u64,
}

impl<T: Default> TopK<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::default(),
            total: 0,
        }
    }

    /// Counts one observation of `value` and returns its data to update.
    pub fn observe(&mut self, value: &str) -> &mut T {
        self.add(value, 1, 0)
    }

    fn add(&mut self, value: &str, count: u64, error: u64) -> &mut T {
        self.total += count;
        // Looked up before the entry API, which would allocate the key each time.
        if self.entries.contains_key(value) {
            let entry = self.entries.get_mut(value).expect("just found");
            entry.count += count;
            entry.error += error;
            return &mut entry.data;
        }
        // A full table gives its smallest count to the newcomer, which may then
        // overstate by that much. (A table read back from a saved state may be
        // "full" with capacity 0: then there is nothing to evict.)
        let floor = if self.entries.len() >= self.capacity {
            self.evict_smallest()
        } else {
            0
        };
        let entry = self.entries.entry(value.into()).or_insert(Entry {
            count: floor,
            error: floor,
            data: T::default(),
        });
        entry.count += count;
        entry.error += error;
        &mut entry.data
    }

    /// Removes the entry with the smallest count and returns that count.
    fn evict_smallest(&mut self) -> u64 {
        let smallest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.count)
            .map(|(k, e)| (k.clone(), e.count));
        smallest.map_or(0, |(victim, floor)| {
            self.entries.remove(&victim);
            floor
        })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The tracked values, largest count first (ties by value).
    pub fn top(&self, n: usize) -> Vec<(&str, &Entry<T>)> {
        let mut all: Vec<_> = self.entries.iter().map(|(k, e)| (&**k, e)).collect();
        all.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// Folds `other` into `self`, keeping the bound on size.
    pub fn merge(&mut self, other: &Self, mut merge_data: impl FnMut(&mut T, &T)) {
        for (value, entry) in &other.entries {
            let data = self.add(value, entry.count, entry.error);
            merge_data(data, &entry.data);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_table_of_no_capacity_still_counts() {
        let mut table = TopK::<u64>::new(3);
        table.capacity = 0;
        let bytes = postcard::to_stdvec(&table).expect("encodes");
        let mut table: TopK<u64> = postcard::from_bytes(&bytes).expect("decodes");
        for v in ["a", "b", "a"] {
            *table.observe(v) += 1;
        }
        assert_eq!(table.total(), 3);
        assert_eq!(table.top(5).len(), 1);
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut t: TopK<()> = TopK::new(4);
        for v in ["a", "b", "a", "c", "a", "b"] {
            t.observe(v);
        }
        let top: Vec<_> = t
            .top(10)
            .into_iter()
            .map(|(v, e)| (v, e.count, e.error))
            .collect();
        assert_eq!(top, vec![("a", 3, 0), ("b", 2, 0), ("c", 1, 0)]);
    }

    #[test]
    fn bounded_and_keeps_heavy_hitters_under_a_million_distinct_values() {
        let mut t: TopK<()> = TopK::new(50);
        for i in 0..1_000_000u32 {
            t.observe(&format!("rare-{i}"));
            if i % 10 == 0 {
                t.observe("heavy");
            }
        }
        assert_eq!(t.len(), 50);
        assert_eq!(t.total(), 1_100_000);
        let (value, entry) = t.top(1)[0];
        assert_eq!(value, "heavy");
        // Space-Saving bound: the overestimate is at most total / capacity.
        assert!(entry.count >= 100_000 && entry.count - entry.error <= 100_000);
        assert!(entry.error <= t.total() / 50);
    }

    #[test]
    fn merge_sums_counts_and_data() {
        let mut a: TopK<u64> = TopK::new(3);
        let mut b: TopK<u64> = TopK::new(3);
        *a.observe("x") += 5;
        *b.observe("x") += 7;
        *b.observe("y") += 1;
        a.merge(&b, |mine, theirs| *mine += theirs);
        let top: Vec<_> = a
            .top(3)
            .into_iter()
            .map(|(v, e)| (v, e.count, e.data))
            .collect();
        assert_eq!(top, vec![("x", 2, 12), ("y", 1, 1)]);
    }
}
