//! The stored form of an hour summary: the block itself (keys, counts,
//! basics) and a part per field for its sketches, so a query reads only
//! the sketches it needs; and reading a block in place ([`BlockView`]).

use serde::{Deserialize, Serialize};

use super::{Cell, CellKey, HourBlock, KeyField};
use crate::engine::stats::{Basic, MeasureStats};
use crate::event::Text;
use crate::query::acc::{Distinct, MeasureAcc};

/// The first bytes of an encoded block and of each part.
pub(in crate::query) const MAGIC: &[u8; 3] = b"RU1";

/// A block as stored: its parts by name, the block itself being `""`.
pub type Parts = Vec<(String, Vec<u8>)>;

impl HourBlock {
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
pub(in crate::query) enum WireField<'a> {
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
pub(in crate::query) struct CellWire<'a> {
    pub(in crate::query) key: Vec<u16>,
    pub(in crate::query) events: u64,
    pub(in crate::query) span: (i64, i64),
    #[serde(borrow)]
    pub(in crate::query) measures: Vec<MeasureWire<'a>>,
}

#[derive(Serialize, Deserialize)]
pub(in crate::query) struct MeasureWire<'a> {
    pub(in crate::query) name: &'a str,
    pub(in crate::query) basic: Basic,
    /// The latest value: (time, sequence number, value).
    pub(in crate::query) last: (i64, u64, f64),
}

/// One part of a block: a sketch per cell (in the block's cell order),
/// each still encoded.
pub struct Sketches<'a> {
    pub(in crate::query) per_cell: Vec<Option<&'a [u8]>>,
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

    pub(in crate::query) fn no_distinct(&self) -> bool {
        self.flags & 1 != 0
    }

    pub(in crate::query) fn capped(&self) -> bool {
        self.flags & 2 != 0
    }

    pub(in crate::query) fn overflowed(&self) -> bool {
        self.flags & 4 != 0
    }

    /// Where a dimension is in the key.
    pub(in crate::query) fn key_of_dimension(&self, name: &str) -> Option<usize> {
        self.keyed
            .iter()
            .position(|(f, _)| matches!(f, WireField::Dimension(n) if *n == name))
    }

    pub(in crate::query) fn key_of_source(&self) -> Option<usize> {
        self.keyed
            .iter()
            .position(|(f, _)| matches!(f, WireField::Source))
    }

    pub(in crate::query) fn is_unkeyed(&self, name: &str) -> bool {
        self.unkeyed.contains(&name)
    }

    /// Names seen as measures.
    pub(in crate::query) fn measures(&self) -> &[&'a str] {
        &self.measures
    }

    pub(in crate::query) fn is_measure(&self, name: &str) -> bool {
        self.measures.contains(&name)
    }

    /// The text a cell's key holds for keyed field `i`.
    pub(in crate::query) fn key_text(&self, cell: &CellWire<'a>, i: usize) -> Option<&'a str> {
        let v = (cell.key[i] as usize).checked_sub(1)?;
        self.keyed[i].1.get(v).copied()
    }

    pub(in crate::query) fn cells(&self) -> &[CellWire<'a>] {
        &self.cells
    }
}
