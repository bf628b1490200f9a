//! A fixed number of time slots of one resolution, reused in a circle.
//!
//! Slot `i` covers `[i * resolution, (i + 1) * resolution)` in event time. A
//! slot is reset when a later period claims its position, so memory is fixed
//! by the capacity, never by the number of events.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RingState<T>")]
pub struct Ring<T> {
    resolution_ms: i64,
    slots: Vec<Option<(i64, T)>>,
}

/// A ring as a saved state holds it, checked before it becomes a [`Ring`]:
/// every index divides by the resolution and the number of slots.
#[derive(Deserialize)]
struct RingState<T> {
    resolution_ms: i64,
    slots: Vec<Option<(i64, T)>>,
}

impl<T> TryFrom<RingState<T>> for Ring<T> {
    type Error = &'static str;

    fn try_from(state: RingState<T>) -> Result<Self, Self::Error> {
        if state.resolution_ms <= 0 || state.slots.is_empty() {
            return Err("a time ring without resolution or slots");
        }
        Ok(Self {
            resolution_ms: state.resolution_ms,
            slots: state.slots,
        })
    }
}

/// How far ahead of the clock an event may be and still land in a slot.
const FUTURE_TOLERANCE_MS: i64 = 60_000;

impl<T: Default> Ring<T> {
    pub fn new(resolution_ms: i64, capacity: usize) -> Self {
        Self {
            resolution_ms,
            slots: (0..capacity.max(1)).map(|_| None).collect(),
        }
    }

    pub fn resolution_ms(&self) -> i64 {
        self.resolution_ms
    }

    /// How much time the ring covers.
    pub fn span_ms(&self) -> i64 {
        self.resolution_ms * self.slots.len() as i64
    }

    pub fn index_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.resolution_ms)
    }

    /// The slot for an event at `ts_ms`, or `None` when it is too old for the
    /// ring or too far in the future.
    pub fn slot_mut(&mut self, ts_ms: i64, now_ms: i64) -> Option<&mut T> {
        let index = self.index_of(ts_ms);
        let newest = self.index_of(now_ms + FUTURE_TOLERANCE_MS);
        let capacity = self.slots.len() as i64;
        if index > newest || index <= self.index_of(now_ms) - capacity {
            return None;
        }
        let slot = &mut self.slots[index.rem_euclid(capacity) as usize];
        match slot {
            Some((i, _)) if *i == index => {}
            _ => *slot = Some((index, T::default())),
        }
        slot.as_mut().map(|(_, value)| value)
    }

    /// Empties every slot that ends at or before `ts_ms`.
    pub fn clear_before(&mut self, ts_ms: i64) {
        let first_kept = self.index_of(ts_ms);
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|(i, _)| *i < first_kept) {
                *slot = None;
            }
        }
    }

    /// The slots whose index is in `first..=last`, oldest first, skipping empty ones.
    pub fn range(&self, first: i64, last: i64) -> impl Iterator<Item = (i64, &T)> {
        let capacity = self.slots.len() as i64;
        let first = first.max(last - capacity + 1);
        (first..=last).filter_map(move |index| {
            match &self.slots[index.rem_euclid(capacity) as usize] {
                Some((i, value)) if *i == index => Some((index, value)),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_ring_without_resolution_or_slots_is_refused() {
        let saved = |resolution_ms: i64, slots: usize| {
            let mut ring = Ring::<u64>::new(1_000, 4);
            ring.resolution_ms = resolution_ms;
            ring.slots.truncate(slots);
            postcard::to_stdvec(&ring).expect("encodes")
        };
        let back = |bytes: Vec<u8>| postcard::from_bytes::<Ring<u64>>(&bytes);
        assert!(back(saved(1_000, 4)).is_ok());
        assert!(back(saved(0, 4)).is_err());
        assert!(back(saved(-5, 4)).is_err());
        assert!(back(saved(1_000, 0)).is_err());
    }

    #[test]
    fn reuses_slots_and_drops_what_is_too_old() {
        let mut ring: Ring<u32> = Ring::new(1000, 3);
        let now = 10_500;
        *ring.slot_mut(10_000, now).unwrap() += 1;
        *ring.slot_mut(9_999, now).unwrap() += 1;
        *ring.slot_mut(8_000, now).unwrap() += 1;
        assert!(ring.slot_mut(7_999, now).is_none(), "older than the ring");
        assert!(ring.slot_mut(now + 61_000, now).is_none(), "too far ahead");
        let got: Vec<_> = ring.range(0, 10).map(|(i, v)| (i, *v)).collect();
        assert_eq!(got, vec![(8, 1), (9, 1), (10, 1)]);
        // Time moves on: slot 11 takes the place of slot 8.
        *ring.slot_mut(11_000, 11_000).unwrap() += 5;
        let got: Vec<_> = ring.range(8, 11).map(|(i, v)| (i, *v)).collect();
        assert_eq!(got, vec![(9, 1), (10, 1), (11, 5)]);
    }
}
