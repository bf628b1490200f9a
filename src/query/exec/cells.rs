//! Taking an hour's events from its summary (see [`crate::query::rollup`])
//! instead of one at a time: each cell stands for its events, which share
//! the type, the hour and the values of every keyed field, so filters and
//! breakdowns on those fields treat the cell as they would each event, and
//! its statistics merge into the group's as the events' would.

use super::Executor;
use crate::engine::stats::MeasureStats;
use crate::event::{EventFields, ValueRef};
use crate::query::acc::{Distinct, MeasureAcc, dim_acc, measure_acc};
use crate::query::rollup::{BlockView, CellWire, Sketches};
use crate::query::{Breakdown, Field, Stat};

fn decode_union(bytes: &[u8]) -> Result<Distinct, String> {
    let body = bytes
        .strip_prefix(crate::query::rollup::MAGIC.as_slice())
        .ok_or("not an hour summary of this version")?;
    postcard::from_bytes(body).map_err(|e| e.to_string())
}

/// A block's sketches, decoded: per measure its cells' quantile sketches,
/// per dimension out of the key its cells' distinct sketches, and the
/// unions of those over the whole block.
#[derive(Default)]
struct Decoded<'p> {
    quantiles: Vec<(&'p str, Vec<Option<MeasureStats>>)>,
    distinct: Vec<(&'p str, Vec<Option<Distinct>>)>,
    unions: Vec<(&'p str, Distinct)>,
}

/// Every cell's sketch in a part, decoded.
fn decode_each<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    cells: usize,
) -> Result<Vec<Option<T>>, String> {
    Sketches::decode(bytes, cells)?
        .per_cell
        .into_iter()
        .map(|b| {
            b.map(postcard::from_bytes)
                .transpose()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// A cell seen as one of its events, through the fields its key holds.
struct CellView<'b, 'a> {
    block: &'b BlockView<'a>,
    cell: &'b CellWire<'a>,
    hour: i64,
    kind: &'b str,
}

impl EventFields for CellView<'_, '_> {
    fn millis(&self) -> i64 {
        self.hour
    }

    fn kind(&self) -> &str {
        self.kind
    }

    fn source(&self) -> &str {
        // Only asked when the source is keyed (see `can_take`).
        self.block
            .key_of_source()
            .and_then(|i| self.block.key_text(self.cell, i))
            .unwrap_or_default()
    }

    fn value(&self, name: &str) -> Option<ValueRef<'_>> {
        let i = self.block.key_of_dimension(name)?;
        self.block.key_text(self.cell, i).map(ValueRef::Dimension)
    }

    fn for_each_value(&self, _: impl FnMut(&str, ValueRef<'_>)) {}

    fn measures(&self) -> impl Iterator<Item = (&str, f64)> {
        std::iter::empty()
    }

    fn dimensions(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::empty()
    }
}

impl Executor<'_> {
    /// Whether the query can take the events of this block (of one type
    /// and one whole hour inside its range) from the block's cells: every
    /// field it filters or breaks down by is keyed there (or absent from
    /// every event), time buckets are whole hours, and no statistic needs
    /// the events themselves.
    pub fn can_take(&self, block: &BlockView<'_>) -> bool {
        if !self.may_take_blocks() || block.overflowed() || block.capped() {
            return false;
        }
        // A name that is a measure in some event compares as a number.
        let readable = |f: &Field| match f {
            Field::Type => true,
            Field::Source => block.key_of_source().is_some(),
            Field::Value(name) => {
                !block.is_measure(name)
                    && (block.key_of_dimension(name).is_some() || !block.is_unkeyed(name))
            }
        };
        self.query.filters.iter().all(|f| readable(&f.field))
            && self.query.by.iter().all(|b| match b {
                Breakdown::Field(f) => readable(f),
                Breakdown::Time(_) => true,
            })
            && self.query.stats.iter().all(|s| match s.stat {
                Stat::Distinct => {
                    block.key_of_dimension(&s.field).is_some()
                        || !block.is_unkeyed(&s.field)
                        || !block.no_distinct()
                }
                _ => true,
            })
    }

    /// Whether any block could be taken: not with minute buckets, nor
    /// with top values (which cells do not keep).
    pub fn may_take_blocks(&self) -> bool {
        self.query.by.iter().all(|b| match b {
            Breakdown::Time(bucket) => bucket.ms() % crate::query::rollup::HOUR_MS == 0,
            Breakdown::Field(_) => true,
        }) && self.query.stats.iter().all(|s| s.stat != Stat::Top)
    }

    /// The parts of a block (see [`crate::query::rollup::HourBlock::encode`])
    /// that taking it needs: the sketches of the measures whose quantiles
    /// are shown, the distinct sketches of dimensions out of the key (one
    /// for the whole block when all its cells land in one group).
    pub fn parts_needed(&self, block: &BlockView<'_>) -> Vec<String> {
        let plan = &self.plan;
        let measures = block
            .measures()
            .iter()
            .filter(|m| plan.keeps(m) && plan.quantiles(m))
            .map(|m| format!("m:{m}"));
        let whole = if self.whole_blocks() { "u" } else { "d" };
        let dimensions = plan
            .dimensions
            .iter()
            .filter(|d| block.is_unkeyed(d))
            .map(move |d| format!("{whole}:{d}"));
        measures.chain(dimensions).collect()
    }

    /// Whether every cell of a block the query takes lands in one group:
    /// nothing filters or breaks down by what tells cells apart.
    fn whole_blocks(&self) -> bool {
        self.query.filters.iter().all(|f| f.field == Field::Type)
            && self
                .query
                .by
                .iter()
                .all(|b| matches!(b, Breakdown::Field(Field::Type) | Breakdown::Time(_)))
    }

    /// Takes the events of a block the query can take (see
    /// [`Executor::can_take`]): the block of type `kind` for the hour
    /// starting at `hour`, with the parts it needs (those stored).
    pub fn take_block(
        &mut self,
        block: &BlockView<'_>,
        hour: i64,
        kind: &str,
        parts: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        let cells = block.cells();
        // Every sketch decoded before any cell is taken: a block is taken
        // whole or not at all.
        let mut decoded = Decoded::default();
        for (name, bytes) in parts {
            if let Some(m) = name.strip_prefix("m:") {
                decoded
                    .quantiles
                    .push((m, decode_each(bytes, cells.len())?));
            } else if let Some(d) = name.strip_prefix("d:") {
                decoded.distinct.push((d, decode_each(bytes, cells.len())?));
            } else if let Some(d) = name.strip_prefix("u:") {
                decoded.unions.push((d, decode_union(bytes)?));
            }
        }
        let mut whole_group = None;
        for (i, cell) in cells.iter().enumerate() {
            if self.failed.is_some() {
                break;
            }
            let view = CellView {
                block,
                cell,
                hour,
                kind,
            };
            if self.query.matches(&view) {
                self.take_cell(&view, i, &mut decoded);
                if whole_group.is_none() && !decoded.unions.is_empty() {
                    whole_group = Some(self.key(&view));
                }
            }
        }
        // Every cell went to this one group (see `whole_blocks`).
        if let Some(key) = whole_group
            && let Some(acc) = self.groups.get_mut(&key)
        {
            let before = acc.dimensions.len();
            for (name, union) in &decoded.unions {
                dim_acc(acc, name, &self.plan.asked).merge_distinct(union);
            }
            let added = acc.dimensions.len() - before;
            self.cells += added;
            self.sketches += added;
            self.check_limits();
        }
        Ok(())
    }

    /// Takes cell `i`, with its sketches from `decoded` (each taken once).
    fn take_cell(&mut self, view: &CellView<'_, '_>, i: usize, decoded: &mut Decoded<'_>) {
        let cell = view.cell;
        let key = self.key(view);
        let groups = self.groups.len();
        let acc = match self.groups.get_mut(&key) {
            Some(acc) => acc,
            None if groups >= self.max_groups => {
                self.failed = Some(super::ExecError::TooManyGroups(self.max_groups));
                return;
            }
            None => self.groups.entry(key).or_default(),
        };
        self.matched += cell.events;
        acc.events += cell.events;
        acc.see(cell.span.0);
        acc.see(cell.span.1);
        let before = (acc.measures.len(), acc.dimensions.len());
        let plan = &self.plan;
        for m in &cell.measures {
            if !plan.keeps(m.name) {
                continue;
            }
            let Some(mine) = measure_acc(acc, m.name, plan.quantiles(m.name)) else {
                continue;
            };
            let full = if mine.full.is_some() {
                decoded
                    .quantiles
                    .iter_mut()
                    .find(|(n, _)| *n == m.name)
                    .and_then(|(_, each)| each[i].take())
            } else {
                None
            };
            mine.merge(&MeasureAcc {
                basic: m.basic,
                last: Some(m.last),
                full,
            });
        }
        for name in &plan.dimensions {
            match view.block.key_of_dimension(name) {
                Some(k) => {
                    if let Some(text) = view.block.key_text(cell, k) {
                        dim_acc(acc, name, &plan.asked).add(text);
                    }
                }
                None => {
                    let sketch = decoded
                        .distinct
                        .iter_mut()
                        .find(|(n, _)| **n == **name)
                        .and_then(|(_, each)| each[i].take());
                    if let Some(sketch) = sketch {
                        dim_acc(acc, name, &plan.asked).merge_distinct(&sketch);
                    }
                }
            }
        }
        let (cells, sketches) = acc.kept_since(before);
        self.cells += cells;
        self.sketches += sketches;
        self.check_limits();
    }
}
