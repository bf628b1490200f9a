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

use super::acc::{Distinct, MAX_FIELDS, MeasureAcc};
use crate::engine::stats::{Basic, MeasureStats};
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
/// The first bytes of an encoded block.
pub(super) const MAGIC: &[u8; 3] = b"RU1";

/// A block as stored: its parts by name, the block itself being `""`.
pub type Parts = Vec<(String, Vec<u8>)>;

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

    /// The bytes kept in the store: the block itself (keys, counts,
    /// basics; part `""`), then per measure its cells' quantile sketches
    /// (part `m:NAME`) and per dimension out of the key its cells'
    /// distinct sketches (part `d:NAME`) and their union (part `u:NAME`),
    /// so a query reads only the parts it needs.
    pub fn encode(&self) -> Parts {
        let cells: Vec<(&CellKey, &Cell)> = self.cells.iter().collect();
        let base = BlockWire {
            flags: u8::from(self.no_distinct)
                | u8::from(self.capped) << 1
                | u8::from(self.overflowed) << 2,
            keyed: self
                .keyed
                .iter()
                .map(|(f, values)| {
                    let field = match f {
                        KeyField::Source => WireField::Source,
                        KeyField::Dimension(n) => WireField::Dimension(n),
                    };
                    (field, values.iter().map(|v| &**v).collect())
                })
                .collect(),
            unkeyed: self.unkeyed.iter().map(|n| &**n).collect(),
            measures: self.measures.iter().map(|n| &**n).collect(),
            cells: cells
                .iter()
                .map(|(key, cell)| CellWire {
                    key: key.to_vec(),
                    events: cell.events,
                    span: cell.span,
                    measures: cell
                        .measures
                        .iter()
                        .map(|(name, m)| MeasureWire {
                            name,
                            basic: m.basic,
                            last: m.last.unwrap_or((cell.span.1, 0, 0.0)),
                        })
                        .collect(),
                })
                .collect(),
        };
        let mut out = vec![(String::new(), with_magic(&base))];
        for name in &self.measures {
            let sketches: Vec<Option<Vec<u8>>> = cells
                .iter()
                .map(|(_, c)| {
                    let m = c.measures.iter().find(|(n, _)| n == name)?;
                    postcard::to_stdvec(m.1.full.as_ref()?).ok()
                })
                .collect();
            if sketches.iter().any(Option::is_some) {
                out.push((format!("m:{name}"), with_magic(&sketches)));
            }
        }
        for name in &self.unkeyed {
            let sketches: Vec<Option<Vec<u8>>> = cells
                .iter()
                .map(|(_, c)| {
                    let d = c.distinct.iter().find(|(n, _)| n == name)?;
                    postcard::to_stdvec(&d.1).ok()
                })
                .collect();
            if sketches.iter().any(Option::is_some) {
                out.push((format!("d:{name}"), with_magic(&sketches)));
                // All cells together, for queries that take the block as one.
                let mut union = Distinct::new();
                for (_, cell) in &cells {
                    if let Some((_, d)) = cell.distinct.iter().find(|(n, _)| n == name) {
                        union.merge(d);
                    }
                }
                out.push((format!("u:{name}"), with_magic(&union)));
            }
        }
        out
    }

    /// A block as [`HourBlock::encode`] wrote it, whole (to merge more
    /// in): the block (part `""`) and its parts.
    pub fn decode(base: &[u8], parts: &[(String, Vec<u8>)]) -> Result<HourBlock, String> {
        let view = BlockView::decode(base)?;
        let mut block = HourBlock {
            keyed: view
                .keyed
                .iter()
                .map(|(f, values)| (f.owned(), values.iter().map(|v| Text::from(*v)).collect()))
                .collect(),
            unkeyed: view.unkeyed.iter().map(|n| Text::from(*n)).collect(),
            measures: view.measures.iter().map(|n| Text::from(*n)).collect(),
            no_distinct: view.no_distinct(),
            capped: view.capped(),
            overflowed: view.overflowed(),
            ..HourBlock::default()
        };
        let mut cells: Vec<Cell> = view
            .cells
            .iter()
            .map(|cell| Cell {
                events: cell.events,
                span: cell.span,
                measures: cell
                    .measures
                    .iter()
                    .map(|m| {
                        let acc = MeasureAcc {
                            basic: m.basic,
                            last: Some(m.last),
                            full: None,
                        };
                        (Text::from(m.name), acc)
                    })
                    .collect(),
                distinct: Vec::new(),
            })
            .collect();
        for (part, bytes) in parts {
            // Unions (`u:`) are made again from the cells when encoding.
            if !part.starts_with("m:") && !part.starts_with("d:") {
                continue;
            }
            let sketches = Sketches::decode(bytes, cells.len())?;
            if let Some(name) = part.strip_prefix("m:") {
                for (cell, sketch) in cells.iter_mut().zip(sketches.per_cell) {
                    let Some(sketch) = sketch else { continue };
                    let stats: MeasureStats =
                        postcard::from_bytes(sketch).map_err(|e| e.to_string())?;
                    if let Some((_, m)) = cell.measures.iter_mut().find(|(n, _)| **n == *name) {
                        m.full = Some(stats);
                    }
                }
            } else if let Some(name) = part.strip_prefix("d:") {
                let name = Text::from(name);
                for (cell, sketch) in cells.iter_mut().zip(sketches.per_cell) {
                    let Some(sketch) = sketch else { continue };
                    let d: Distinct = postcard::from_bytes(sketch).map_err(|e| e.to_string())?;
                    cell.distinct.push((name.clone(), d));
                }
            }
        }
        for (wire, cell) in view.cells.iter().zip(cells) {
            // Every measure of a cell has its sketch stored.
            if cell.measures.iter().any(|(_, m)| m.full.is_none()) {
                return Err("a measure's quantile sketch is missing".into());
            }
            block.cells.insert(wire.key.iter().copied().collect(), cell);
        }
        Ok(block)
    }
}

fn with_magic<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    // Serializing plain in-memory data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn without_magic(bytes: &[u8]) -> Result<&[u8], String> {
    bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "not an hour summary of this version".to_string())
}

#[derive(Serialize, Deserialize)]
pub(super) enum WireField<'a> {
    Source,
    Dimension(&'a str),
}

impl WireField<'_> {
    fn owned(&self) -> KeyField {
        match self {
            WireField::Source => KeyField::Source,
            WireField::Dimension(n) => KeyField::Dimension(Text::from(*n)),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct BlockWire<'a> {
    flags: u8,
    #[serde(borrow)]
    keyed: Vec<(WireField<'a>, Vec<&'a str>)>,
    #[serde(borrow)]
    unkeyed: Vec<&'a str>,
    #[serde(borrow)]
    measures: Vec<&'a str>,
    #[serde(borrow)]
    cells: Vec<CellWire<'a>>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct CellWire<'a> {
    pub(super) key: Vec<u16>,
    pub(super) events: u64,
    pub(super) span: (i64, i64),
    #[serde(borrow)]
    pub(super) measures: Vec<MeasureWire<'a>>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct MeasureWire<'a> {
    pub(super) name: &'a str,
    pub(super) basic: Basic,
    /// The latest value: (time, sequence number, value).
    pub(super) last: (i64, u64, f64),
}

/// One part of a block: a sketch per cell (in the block's cell order),
/// each still encoded.
pub struct Sketches<'a> {
    pub(super) per_cell: Vec<Option<&'a [u8]>>,
}

impl<'a> Sketches<'a> {
    pub fn decode(bytes: &'a [u8], cells: usize) -> Result<Sketches<'a>, String> {
        let per_cell: Vec<Option<&'a [u8]>> =
            postcard::from_bytes(without_magic(bytes)?).map_err(|e| e.to_string())?;
        if per_cell.len() != cells {
            return Err("a part does not match its block's cells".into());
        }
        Ok(Sketches { per_cell })
    }
}

/// A stored block read in place, for answering: its sketches are parts of
/// their own, read when a query needs them.
pub struct BlockView<'a> {
    wire: BlockWire<'a>,
}

impl<'a> std::ops::Deref for BlockView<'a> {
    type Target = BlockWire<'a>;
    fn deref(&self) -> &BlockWire<'a> {
        &self.wire
    }
}

impl<'a> BlockView<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<BlockView<'a>, String> {
        let wire: BlockWire<'a> =
            postcard::from_bytes(without_magic(bytes)?).map_err(|e| e.to_string())?;
        let view = BlockView { wire };
        for cell in &view.cells {
            let fits = cell.key.len() == view.keyed.len()
                && cell
                    .key
                    .iter()
                    .zip(&view.keyed)
                    .all(|(v, (_, values))| (*v as usize) <= values.len());
            if !fits {
                return Err("a cell's key does not match its block".into());
            }
        }
        Ok(view)
    }

    pub(super) fn no_distinct(&self) -> bool {
        self.flags & 1 != 0
    }

    pub(super) fn capped(&self) -> bool {
        self.flags & 2 != 0
    }

    pub(super) fn overflowed(&self) -> bool {
        self.flags & 4 != 0
    }

    /// Where a dimension is in the key.
    pub(super) fn key_of_dimension(&self, name: &str) -> Option<usize> {
        self.keyed
            .iter()
            .position(|(f, _)| matches!(f, WireField::Dimension(n) if *n == name))
    }

    pub(super) fn key_of_source(&self) -> Option<usize> {
        self.keyed
            .iter()
            .position(|(f, _)| matches!(f, WireField::Source))
    }

    pub(super) fn is_unkeyed(&self, name: &str) -> bool {
        self.unkeyed.contains(&name)
    }

    /// Names seen as measures.
    pub(super) fn measures(&self) -> &[&'a str] {
        &self.measures
    }

    pub(super) fn is_measure(&self, name: &str) -> bool {
        self.measures.contains(&name)
    }

    /// The text a cell's key holds for keyed field `i`.
    pub(super) fn key_text(&self, cell: &CellWire<'a>, i: usize) -> Option<&'a str> {
        let v = (cell.key[i] as usize).checked_sub(1)?;
        self.keyed[i].1.get(v).copied()
    }

    pub(super) fn cells(&self) -> &[CellWire<'a>] {
        &self.cells
    }
}

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
        range: super::TimeRange,
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
pub fn whole_hours(range: super::TimeRange) -> (i64, i64) {
    let first = range
        .from
        .div_euclid(HOUR_MS)
        .saturating_add(i64::from(range.from.rem_euclid(HOUR_MS) != 0))
        .saturating_mul(HOUR_MS);
    let end = range.to.div_euclid(HOUR_MS).saturating_mul(HOUR_MS);
    (first, end)
}

#[cfg(test)]
mod tests;
