//! Rows of metrics, written as a table for people or as JSON, CSV or TSV for
//! scripts. One trait, one file per format.

mod delimited;
mod json;
mod table;

use std::io::{self, Write};

use clap::ValueEnum;

/// A value in a cell: numbers stay numbers in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(u64),
    Float(f64),
    Empty,
}

impl Cell {
    pub fn opt_float(x: Option<f64>) -> Cell {
        x.map_or(Cell::Empty, Cell::Float)
    }

    /// The text form, as CSV and tables show it.
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Float(x) => format_float(*x),
            Cell::Empty => String::new(),
        }
    }
}

/// Up to 3 decimals, trailing zeros dropped: 1.5, 2, 0.125.
fn format_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Named columns and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people (boxes only on a terminal).
    Table,
    /// An array of objects, one per row.
    Json,
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row.
    Tsv,
}

/// Writes rows in one format.
pub trait Render {
    fn render(&self, rows: &Rows, out: &mut dyn Write) -> io::Result<()>;
}

/// The renderer for a format; `styled` allows box drawing (a terminal).
pub fn renderer(format: OutputFormat, styled: bool) -> Box<dyn Render> {
    match format {
        OutputFormat::Table => Box::new(table::Table { styled }),
        OutputFormat::Json => Box::new(json::Json),
        OutputFormat::Csv => Box::new(delimited::Delimited { delimiter: b',' }),
        OutputFormat::Tsv => Box::new(delimited::Delimited { delimiter: b'\t' }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        Rows {
            columns: vec!["type".into(), "events".into(), "mean".into()],
            rows: vec![
                vec![Cell::Text("sales".into()), Cell::Int(3), Cell::Float(1.5)],
                vec![Cell::Text("a,b".into()), Cell::Int(0), Cell::Empty],
            ],
        }
    }

    fn render(format: OutputFormat, styled: bool) -> String {
        let mut out = Vec::new();
        renderer(format, styled)
            .render(&sample(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_format() {
        assert_eq!(
            render(OutputFormat::Csv, false),
            "type,events,mean\nsales,3,1.5\n\"a,b\",0,\n"
        );
        assert_eq!(
            render(OutputFormat::Tsv, false),
            "type\tevents\tmean\nsales\t3\t1.5\na,b\t0\t\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, false)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"type": "sales", "events": 3, "mean": 1.5}, {"type": "a,b", "events": 0, "mean": null}])
        );
        let plain = render(OutputFormat::Table, false);
        assert!(plain.lines().next().unwrap().starts_with("type"), "{plain}");
        assert!(
            !plain.contains('│') && !plain.contains('\u{1b}'),
            "no box drawing or colour off a terminal"
        );
        assert!(render(OutputFormat::Table, true).contains('│'));
    }

    #[test]
    fn floats_are_short() {
        assert_eq!(format_float(2.0), "2");
        assert_eq!(format_float(0.1250001), "0.125");
        assert_eq!(format_float(-0.0001), "0");
    }
}
