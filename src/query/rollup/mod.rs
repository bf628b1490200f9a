//! Hour summaries ("rollups"): the events of one type in one UTC hour,
//! grouped into cells by their values of the few-valued dimensions and the
//! source. A cell holds what a query needs of its events: their count and
//! time span, per measure its basics, latest value and quantile sketch, and
//! per other dimension a distinct-count sketch. A query whose filters and
//! breakdowns look only at what cells are keyed by takes a whole hour from
//! its cells instead of its events (see `exec::cells`); anything else reads
//! the events, as before.
//!
//! Exact: merging the summaries of two sets of events gives the summary of
//! both, whatever the order, so a summary can be built a batch at a time
//! and the answers from cells equal the answers from the events (the sketches
//! are the same ones a scan builds).
//!
//! Bounded: a field stays in the key while it has at most
//! [`MAX_KEY_VALUES`] values in the hour, and a block keeps at most
//! [`MAX_BLOCK_CELLS`] cells (the field with the most values leaves the
//! key first; its cells merge). A block estimated above [`MAX_BLOCK_BYTES`]
//! gives up its distinct sketches, then summarising that hour at all: such
//! hours are always read event by event.
//!
//! Pure: the store decides when to build and where to keep the bytes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

mod covered;
mod stored;

pub use covered::{Covered, whole_hours};
pub use stored::{BlockView, BlockWire, Parts, Sketches};
pub(super) use stored::{CellWire, MAGIC};

use super::acc::{Distinct, MAX_FIELDS, MeasureAcc};
use crate::engine::stats::MeasureStats;
use crate::event::{EventFields, Text, ValueRef};

pub const HOUR_MS: i64 = 3_600_000;
/// Values a field may take in one hour and stay in the key.
pub const MAX_KEY_VALUES: usize = 32;
/// Cells a block keeps at most.
pub const MAX_BLOCK_CELLS: usize = 512;
/// Estimated bytes a block may take (in memory, about as much stored).
pub const MAX_BLOCK_BYTES: usize = 2 << 20;
/// Events added between two estimates of a block's size.
const SIZE_CHECK_EVENTS: u32 = 4096;
/// The start of the UTC hour holding `ms`.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// What cells are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyField {
    Source,
    Dimension(Text),
}

impl KeyField {
    fn text<'e, E: EventFields + ?Sized>(&self, event: &'e E) -> Option<&'e str> {
        match self {
            KeyField::Source => Some(event.source()),
            KeyField::Dimension(name) => match event.value(name)? {
                ValueRef::Dimension(s) => Some(s),
                ValueRef::Measure(_) => None,
            },
        }
    }
}

/// Per keyed field: 0 when the event has no such text, else 1 + the
/// index of its value.
type CellKey = SmallVec<[u16; 6]>;

/// The events of one cell.
#[derive(Clone, Default)]
pub(super) struct Cell {
    pub(super) events: u64,
    /// The earliest and latest event times.
    pub(super) span: (i64, i64),
    /// Every measure, with quantile sketches.
    pub(super) measures: Vec<(Text, MeasureAcc)>,
    /// The dimensions not in the key: their distinct values.
    pub(super) distinct: Vec<(Text, Distinct)>,
}

impl Cell {
    /// Adds an event; false when it had a measure beyond the cell's limit.
    fn add<E: EventFields + ?Sized>(
        &mut self,
        seq: u64,
        event: &E,
        unkeyed: &[Text],
        distinct: bool,
    ) -> bool {
        let ts = event.millis();
        self.span = if self.events == 0 {
            (ts, ts)
        } else {
            (self.span.0.min(ts), self.span.1.max(ts))
        };
        self.events += 1;
        let mut kept = true;
        event.for_each_value(|name, value| match value {
            ValueRef::Measure(x) => match self.measures.iter().position(|(n, _)| **n == *name) {
                Some(at) => self.measures[at].1.add(x, ts, seq),
                None if self.measures.len() >= MAX_FIELDS => kept = false,
                None => {
                    let mut m = MeasureAcc {
                        full: Some(MeasureStats::default()),
                        ..MeasureAcc::default()
                    };
                    m.add(x, ts, seq);
                    self.measures.push((name.into(), m));
                }
            },
            ValueRef::Dimension(s) => {
                if distinct && let Some(n) = unkeyed.iter().find(|n| ***n == *name) {
                    self.distinct_of(n).insert(s);
                }
            }
        });
        kept
    }

    fn distinct_of(&mut self, name: &Text) -> &mut Distinct {
        let at = match self.distinct.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.distinct.push((name.clone(), Distinct::new()));
                self.distinct.len() - 1
            }
        };
        &mut self.distinct[at].1
    }

    /// Adds another cell's events; false when measures went beyond the limit.
    fn merge(&mut self, other: &Cell) -> bool {
        if other.events == 0 {
            return true;
        }
        self.span = if self.events == 0 {
            other.span
        } else {
            (self.span.0.min(other.span.0), self.span.1.max(other.span.1))
        };
        self.events += other.events;
        let mut kept = true;
        for (name, m) in &other.measures {
            match self.measures.iter().position(|(n, _)| n == name) {
                Some(at) => self.measures[at].1.merge(m),
                None if self.measures.len() >= MAX_FIELDS => kept = false,
                None => self.measures.push((name.clone(), m.clone())),
            }
        }
        for (name, d) in &other.distinct {
            self.distinct_of(name).merge(d);
        }
        kept
    }

    fn approx_bytes(&self) -> usize {
        let measures: usize = self
            .measures
            .iter()
            .map(|(_, m)| 96 + 8 * (m.basic.count as usize).min(2048))
            .sum();
        let distinct: usize = self.distinct.iter().map(|(_, d)| 32 + d.size_of()).sum();
        64 + measures + distinct
    }
}

/// The summary of one type's events in one hour, as it is built and merged.
#[derive(Clone)]
pub struct HourBlock {
    /// The fields cells are keyed by, each with the values it took.
    keyed: Vec<(KeyField, Vec<Text>)>,
    /// Dimensions seen that are not in the key.
    unkeyed: Vec<Text>,
    /// Names seen as measures.
    measures: Vec<Text>,
    cells: HashMap<CellKey, Cell, foldhash::fast::RandomState>,
    /// The cells' distinct sketches were given up (too large).
    no_distinct: bool,
    /// Some cell met more measures than it keeps.
    capped: bool,
    /// The hour is not summarised (too large): always read event by event.
    overflowed: bool,
    added: u32,
}

impl Default for HourBlock {
    fn default() -> Self {
        Self {
            keyed: vec![(KeyField::Source, Vec::new())],
            unkeyed: Vec::new(),
            measures: Vec::new(),
            cells: HashMap::default(),
            no_distinct: false,
            capped: false,
            overflowed: false,
            added: 0,
        }
    }
}

impl std::fmt::Debug for HourBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HourBlock")
            .field("keyed", &self.keyed)
            .field("unkeyed", &self.unkeyed)
            .field("cells", &self.cells.len())
            .field("overflowed", &self.overflowed)
            .finish_non_exhaustive()
    }
}

impl HourBlock {
    /// Adds an event (of the block's type and hour: the caller picks the block).
    pub fn add<E: EventFields + ?Sized>(&mut self, seq: u64, event: &E) {
        if self.overflowed {
            return;
        }
        self.learn_fields(event);
        let key = self.key_of(event);
        let distinct = !self.no_distinct;
        let cell = self.cells.entry(key).or_default();
        if !cell.add(seq, event, &self.unkeyed, distinct) {
            self.capped = true;
        }
        if self.cells.len() > MAX_BLOCK_CELLS {
            self.enforce_limits();
        }
        self.added += 1;
        if self.added.is_multiple_of(SIZE_CHECK_EVENTS) {
            self.check_size();
        }
    }

    /// Events summarised.
    pub fn events(&self) -> u64 {
        self.cells.values().map(|c| c.events).sum()
    }

    pub fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    /// New dimensions join the key (earlier events lack them); new
    /// measures are noted.
    fn learn_fields<E: EventFields + ?Sized>(&mut self, event: &E) {
        event.for_each_value(|name, value| match value {
            ValueRef::Dimension(_) => {
                let known = self.unkeyed.iter().any(|n| **n == *name)
                    || self
                        .keyed
                        .iter()
                        .any(|(f, _)| matches!(f, KeyField::Dimension(n) if **n == *name));
                if !known {
                    self.keyed
                        .push((KeyField::Dimension(name.into()), Vec::new()));
                    if !self.cells.is_empty() {
                        self.cells = std::mem::take(&mut self.cells)
                            .into_iter()
                            .map(|(mut k, c)| {
                                k.push(0);
                                (k, c)
                            })
                            .collect();
                    }
                }
            }
            ValueRef::Measure(_) => {
                if !self.measures.iter().any(|n| **n == *name) {
                    self.measures.push(name.into());
                }
            }
        });
    }

    fn key_of<E: EventFields + ?Sized>(&mut self, event: &E) -> CellKey {
        loop {
            let mut crowded = None;
            let key: CellKey = self
                .keyed
                .iter_mut()
                .enumerate()
                .map(|(i, (field, values))| match field.text(event) {
                    None => 0,
                    Some(s) => match values.iter().position(|v| **v == *s) {
                        Some(at) => at as u16 + 1,
                        None => {
                            values.push(s.into());
                            if values.len() > MAX_KEY_VALUES {
                                crowded = Some(i);
                            }
                            values.len() as u16
                        }
                    },
                })
                .collect();
            match crowded {
                None => return key,
                Some(i) => self.drop_field(i),
            }
        }
    }

    /// Takes a field out of the key: cells that differed only by it merge,
    /// its values going into their distinct sketches.
    fn drop_field(&mut self, i: usize) {
        let (field, values) = self.keyed.remove(i);
        let name = match field {
            KeyField::Dimension(name) => {
                self.unkeyed.push(name.clone());
                Some(name)
            }
            KeyField::Source => None,
        };
        let cells = std::mem::take(&mut self.cells);
        for (mut key, mut cell) in cells {
            let v = key.remove(i) as usize;
            if let (Some(name), Some(value), false) = (&name, v.checked_sub(1), self.no_distinct) {
                cell.distinct_of(name).insert(&values[value]);
            }
            self.put(key, cell);
        }
    }

    fn put(&mut self, key: CellKey, cell: Cell) {
        match self.cells.get_mut(&key) {
            Some(mine) => {
                if !mine.merge(&cell) {
                    self.capped = true;
                }
            }
            None => {
                self.cells.insert(key, cell);
            }
        }
    }

    /// Drops fields from the key until every one has few values and the
    /// cells are few, then checks the size.
    fn enforce_limits(&mut self) {
        while let Some(i) = self
            .keyed
            .iter()
            .position(|(_, values)| values.len() > MAX_KEY_VALUES)
        {
            self.drop_field(i);
        }
        while self.cells.len() > MAX_BLOCK_CELLS {
            let Some(widest) = (0..self.keyed.len()).max_by_key(|&i| self.keyed[i].1.len()) else {
                break;
            };
            self.drop_field(widest);
        }
        self.check_size();
    }

    fn check_size(&mut self) {
        let bytes = || -> usize { self.cells.values().map(Cell::approx_bytes).sum() };
        if bytes() <= MAX_BLOCK_BYTES {
            return;
        }
        if !self.no_distinct {
            self.no_distinct = true;
            for cell in self.cells.values_mut() {
                cell.distinct.clear();
            }
        }
        if self.cells.values().map(Cell::approx_bytes).sum::<usize>() > MAX_BLOCK_BYTES {
            self.overflow();
        }
    }

    /// A block for an hour that is not summarised: merged into another, it
    /// gives that one up too.
    pub fn unsummarised() -> HourBlock {
        let mut block = HourBlock::default();
        block.overflow();
        block
    }

    fn overflow(&mut self) {
        *self = HourBlock {
            overflowed: true,
            keyed: Vec::new(),
            ..HourBlock::default()
        };
    }

    fn keys(&self, field: &KeyField) -> Option<usize> {
        self.keyed.iter().position(|(f, _)| f == field)
    }

    /// Whether events of this block ever had this field as a dimension.
    fn has_dimension(&self, field: &KeyField) -> bool {
        self.keys(field).is_some()
            || matches!(field, KeyField::Dimension(n) if self.unkeyed.contains(n))
    }

    /// Adds the summary of other events of the same type and hour.
    pub fn merge(&mut self, other: HourBlock) {
        if other.overflowed {
            self.overflow();
        }
        if self.overflowed {
            return;
        }
        let no_distinct = self.no_distinct || other.no_distinct;
        // A field stays in the key if neither block has it out of the key.
        let fits = |b: &HourBlock, f: &KeyField| {
            b.keys(f).is_some() || (*f != KeyField::Source && !b.has_dimension(f))
        };
        let mut target: Vec<KeyField> = Vec::new();
        for (f, _) in self.keyed.iter().chain(&other.keyed) {
            if !target.contains(f) && fits(self, f) && fits(&other, f) {
                target.push(f.clone());
            }
        }
        let mut merged = HourBlock {
            keyed: target.into_iter().map(|f| (f, Vec::new())).collect(),
            unkeyed: Vec::new(),
            measures: self.measures.clone(),
            no_distinct,
            capped: self.capped || other.capped,
            ..HourBlock::default()
        };
        for name in &other.measures {
            if !merged.measures.contains(name) {
                merged.measures.push(name.clone());
            }
        }
        for b in [&*self, &other] {
            for (field, _) in &b.keyed {
                if let KeyField::Dimension(n) = field
                    && merged.keys(field).is_none()
                    && !merged.unkeyed.contains(n)
                {
                    merged.unkeyed.push(n.clone());
                }
            }
            for n in &b.unkeyed {
                if !merged.unkeyed.contains(n) {
                    merged.unkeyed.push(n.clone());
                }
            }
        }
        let this = std::mem::take(self);
        for b in [this, other] {
            merged.take_cells(b);
        }
        merged.enforce_limits();
        *self = merged;
    }

    /// Moves another block's cells in, keyed by this block's fields.
    fn take_cells(&mut self, from: HourBlock) {
        // Where each of this block's fields is in the other's keys.
        let at: Vec<Option<usize>> = self.keyed.iter().map(|(f, _)| from.keys(f)).collect();
        for (key, mut cell) in from.cells {
            if self.no_distinct {
                cell.distinct.clear();
            }
            let mut mine = CellKey::new();
            for (i, at) in at.iter().enumerate() {
                let v = match at.and_then(|j| Some((j, (key[j] as usize).checked_sub(1)?))) {
                    None => 0,
                    Some((j, value)) => {
                        let text = &from.keyed[j].1[value];
                        let values = &mut self.keyed[i].1;
                        match values.iter().position(|v| v == text) {
                            Some(p) => p as u16 + 1,
                            None => {
                                values.push(text.clone());
                                values.len() as u16
                            }
                        }
                    }
                };
                mine.push(v);
            }
            // Fields out of this key: their values go to the distinct sketches.
            if !self.no_distinct {
                for (j, (field, values)) in from.keyed.iter().enumerate() {
                    if let KeyField::Dimension(name) = field
                        && self.keys(field).is_none()
                        && let Some(value) = (key[j] as usize).checked_sub(1)
                    {
                        cell.distinct_of(name).insert(&values[value]);
                    }
                }
            }
            self.put(mine, cell);
        }
    }
}

#[cfg(test)]
mod tests;
