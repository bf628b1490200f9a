//! The engine's write path: committed events into the all-time, minute
//! and hour summaries and the series rings, a group (type and minute) at a
//! time.

use std::sync::Arc;

use super::ring::Ring;
use super::stats::{GroupDelta, Names, TypeSummary};
use super::{Engine, EngineConfig, HashMap, MINUTE, SECOND, SeriesPoint, TypeState, merge_point};
use crate::event::{Event, EventType, Timestamp};
use crate::feed::CommittedBatch;

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

impl Engine {
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
                per_second[at].1.add(*event, &state.all_time);
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
}
