//! An array of objects keyed by column name; numbers stay numbers, named
//! numbers become objects. Unsafe characters in strings are written as
//! `\u` escapes: the same JSON, safe on a terminal.

use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::{Cell, Render, Rows, Target};
use crate::client::escape;

/// `lines`: one object a line (JSON Lines) instead of one array.
pub struct Json {
    pub lines: bool,
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Text(s) => Value::String(s.clone()),
        Cell::Int(n) => Value::from(*n),
        Cell::Float(x) => number(*x),
        Cell::Numbers(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(name, x)| (name.clone(), x.map_or(Value::Null, number)))
                .collect(),
        ),
        Cell::Empty => Value::Null,
    }
}

/// One row as an object whose keys keep the columns' order.
struct Row<'a> {
    columns: &'a [String],
    cells: &'a [Cell],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.columns.len()))?;
        for (name, cell) in self.columns.iter().zip(self.cells) {
            map.serialize_entry(name, &value(cell))?;
        }
        map.end()
    }
}

impl Render for Json {
    fn render(&self, rows: &Rows, _target: Target, out: &mut dyn Write) -> io::Result<()> {
        let array: Vec<Row> = rows
            .rows
            .iter()
            .map(|cells| Row {
                columns: &rows.columns,
                cells,
            })
            .collect();
        if self.lines {
            for row in &array {
                let text = serde_json::to_string(row)?;
                out.write_all(escape::json(&text).as_bytes())?;
                writeln!(out)?;
            }
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&array)?;
        out.write_all(escape::json(&text).as_bytes())?;
        writeln!(out)
    }
}
