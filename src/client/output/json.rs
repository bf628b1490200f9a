//! An array of objects keyed by column name; numbers stay numbers.

use std::io::{self, Write};

use serde_json::{Map, Value};

use super::{Cell, Render, Rows};

pub struct Json;

impl Render for Json {
    fn render(&self, rows: &Rows, out: &mut dyn Write) -> io::Result<()> {
        let array: Vec<Value> = rows
            .rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> =
                    rows.columns
                        .iter()
                        .zip(row)
                        .map(|(name, cell)| {
                            let value = match cell {
                                Cell::Text(s) => Value::String(s.clone()),
                                Cell::Int(n) => Value::from(*n),
                                Cell::Float(x) => serde_json::Number::from_f64(*x)
                                    .map_or(Value::Null, Value::Number),
                                Cell::Empty => Value::Null,
                            };
                            (name.clone(), value)
                        })
                        .collect();
                Value::Object(object)
            })
            .collect();
        serde_json::to_writer_pretty(&mut *out, &array)?;
        writeln!(out)
    }
}
