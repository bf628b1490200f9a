//! Taking an hour's events from its summary (see [`crate::query::rollup`])
//! instead of one at a time: each cell stands for its events, which share
//! the type, the hour and the values of every keyed field, so filters and
//! breakdowns on those fields treat the cell as they would each event, and
//! its statistics merge into the group's as the events' would.

use super::Executor;
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

/// A cell's sketch of a field, `(is a measure, name)`, still encoded.
type SketchOf<'s> = dyn Fn((bool, &str)) -> Option<&'s [u8]> + 's;

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
        if block.overflowed() || block.capped() {
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
                Breakdown::Time(bucket) => bucket.ms() % crate::query::rollup::HOUR_MS == 0,
            })
            && self.query.stats.iter().all(|s| match s.stat {
                Stat::Top => false,
                Stat::Distinct => {
                    block.key_of_dimension(&s.field).is_some()
                        || !block.is_unkeyed(&s.field)
                        || !block.no_distinct()
                }
                _ => true,
            })
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
        // (is a measure's, field name, sketches)
        let mut sketches = Vec::with_capacity(parts.len());
        // The block's distinct values of a dimension, all cells together.
        let mut unions: Vec<(&str, Distinct)> = Vec::new();
        for (name, bytes) in parts {
            let field = match (name.strip_prefix("m:"), name.strip_prefix("d:")) {
                (Some(m), _) => (true, m),
                (None, Some(d)) => (false, d),
                (None, None) => {
                    if let Some(d) = name.strip_prefix("u:") {
                        unions.push((d, decode_union(bytes)?));
                    }
                    continue;
                }
            };
            sketches.push((field, Sketches::decode(bytes, cells.len())?));
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
                let sketch = |field: (bool, &str)| {
                    sketches
                        .iter()
                        .find(|(f, _)| *f == field)
                        .and_then(|(_, s)| s.per_cell[i])
                };
                self.take_cell(&view, &sketch);
                if whole_group.is_none() && !unions.is_empty() {
                    whole_group = Some(self.key(&view));
                }
            }
        }
        // Every cell went to this one group (see `whole_blocks`).
        if let Some(key) = whole_group
            && let Some(acc) = self.groups.get_mut(&key)
        {
            let before = acc.dimensions.len();
            for (name, union) in &unions {
                dim_acc(acc, name, &self.plan.asked).merge_distinct(union);
            }
            let added = acc.dimensions.len() - before;
            self.cells += added;
            self.sketches += added;
            self.check_limits();
        }
        Ok(())
    }

    /// Takes one cell; `sketch((is_measure, name))` is its sketch of a field.
    fn take_cell<'s>(&mut self, view: &CellView<'_, '_>, sketch: &SketchOf<'s>) {
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
                sketch((true, m.name)).and_then(|b| postcard::from_bytes(b).ok())
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
                Some(i) => {
                    if let Some(text) = view.block.key_text(cell, i) {
                        dim_acc(acc, name, &plan.asked).add(text);
                    }
                }
                None => {
                    let sketch = sketch((false, name)).and_then(|bytes| {
                        postcard::from_bytes::<crate::query::acc::Distinct>(bytes).ok()
                    });
                    if let Some(sketch) = sketch {
                        dim_acc(acc, name, &plan.asked).merge_distinct(&sketch);
                    }
                }
            }
        }
        let new_measures = &acc.measures[before.0..];
        self.cells += new_measures.len() + (acc.dimensions.len() - before.1);
        self.sketches += new_measures
            .iter()
            .filter(|(_, m)| m.full.is_some())
            .count()
            + (acc.dimensions.len() - before.1);
        self.check_limits();
    }
}
