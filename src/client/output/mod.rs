//! Rows of metrics, written as a table for people or as JSON, CSV or TSV for
//! scripts. One trait, one file per format.
//!
//! Strings in cells come from events, so anyone who can ingest chooses them:
//! each format keeps them from acting on a terminal (see [`super::escape`]).
//! Tables always show control characters visibly; on a terminal every format
//! does; into a pipe or a file, CSV and JSON stay exact and TSV escapes them.

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
    /// Named numbers, such as a type's mean per measure: an object in JSON,
    /// `name=value name=value` in the other formats.
    Numbers(Vec<(String, Option<f64>)>),
    Empty,
}

impl Cell {
    pub fn opt_float(x: Option<f64>) -> Cell {
        x.map_or(Cell::Empty, Cell::Float)
    }

    /// The text form, as CSV and tables show it (before any escaping).
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Float(x) => format_float(*x),
            Cell::Numbers(pairs) => pairs
                .iter()
                .map(|(name, x)| format!("{name}={}", x.map(format_float).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" "),
            Cell::Empty => String::new(),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Float(_))
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
    /// An array of objects, one per row, keyed by the CSV's column names.
    Json,
    /// One JSON object a line (events as `rta replay` reads them).
    Jsonl,
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row; tabs, newlines and backslashes in values escaped.
    Tsv,
}

/// Where the output goes: a terminal gets box drawing, wrapping to its
/// width, and control characters shown in every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub terminal: bool,
}

/// Writes rows in one format.
pub trait Render {
    fn render(&self, rows: &Rows, target: Target, out: &mut dyn Write) -> io::Result<()>;
}

/// The renderer for a format.
pub fn renderer(format: OutputFormat) -> Box<dyn Render> {
    match format {
        OutputFormat::Table => Box::new(table::Table),
        OutputFormat::Json => Box::new(json::Json { lines: false }),
        OutputFormat::Jsonl => Box::new(json::Json { lines: true }),
        OutputFormat::Csv => Box::new(delimited::Delimited { delimiter: b',' }),
        OutputFormat::Tsv => Box::new(delimited::Delimited { delimiter: b'\t' }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPE: Target = Target { terminal: false };
    const TERMINAL: Target = Target { terminal: true };

    fn sample() -> Rows {
        Rows {
            columns: vec!["type".into(), "events".into(), "mean".into()],
            rows: vec![
                vec![Cell::Text("sales".into()), Cell::Int(3), Cell::Float(1.5)],
                vec![Cell::Text("a,b".into()), Cell::Int(0), Cell::Empty],
            ],
        }
    }

    fn hostile() -> Rows {
        Rows {
            columns: vec!["value".into(), "events".into()],
            rows: vec![vec![
                Cell::Text("red\x1b[31m\ttab\nline\\".into()),
                Cell::Int(1),
            ]],
        }
    }

    fn render(format: OutputFormat, rows: &Rows, target: Target) -> String {
        let mut out = Vec::new();
        renderer(format).render(rows, target, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_format() {
        assert_eq!(
            render(OutputFormat::Csv, &sample(), PIPE),
            "type,events,mean\nsales,3,1.5\n\"a,b\",0,\n"
        );
        assert_eq!(
            render(OutputFormat::Tsv, &sample(), PIPE),
            "type\tevents\tmean\nsales\t3\t1.5\na,b\t0\t\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &sample(), PIPE)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"type": "sales", "events": 3, "mean": 1.5}, {"type": "a,b", "events": 0, "mean": null}])
        );
        let plain = render(OutputFormat::Table, &sample(), PIPE);
        assert!(plain.lines().next().unwrap().starts_with("type"), "{plain}");
        assert!(
            !plain.contains('│') && !plain.contains('\u{1b}'),
            "no box drawing or colour off a terminal"
        );
        assert!(render(OutputFormat::Table, &sample(), TERMINAL).contains('│'));
    }

    #[test]
    fn numbers_cells_are_objects_in_json() {
        let rows = Rows {
            columns: vec!["type".into(), "measures".into()],
            rows: vec![vec![
                Cell::Text("sales".into()),
                Cell::Numbers(vec![("amount".into(), Some(2.5)), ("units".into(), None)]),
            ]],
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &rows, PIPE)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"type": "sales", "measures": {"amount": 2.5, "units": null}}])
        );
        assert_eq!(
            render(OutputFormat::Csv, &rows, PIPE),
            "type,measures\nsales,amount=2.5 units=\n"
        );
    }

    #[test]
    fn control_characters_never_reach_a_terminal() {
        for format in [
            OutputFormat::Table,
            OutputFormat::Json,
            OutputFormat::Csv,
            OutputFormat::Tsv,
        ] {
            let text = render(format, &hostile(), TERMINAL);
            assert!(!text.contains('\x1b'), "{format:?}: {text:?}");
            assert!(
                !text.contains('\t') || format == OutputFormat::Tsv,
                "{format:?}"
            );
            assert!(
                text.lines()
                    .any(|l| l.contains("red") && l.contains("line")),
                "{format:?}: the value stays on one line: {text:?}"
            );
        }
        // Tables show them even into a pipe (`rta query | head` reaches a screen).
        assert!(
            render(OutputFormat::Table, &hostile(), PIPE).contains("red\\x1b[31m\\ttab\\nline")
        );
        // Into a pipe CSV and JSON stay exact; TSV escapes, reversibly.
        let csv = render(OutputFormat::Csv, &hostile(), PIPE);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "red\x1b[31m\ttab\nline\\");
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &hostile(), PIPE)).unwrap();
        assert_eq!(json[0]["value"], "red\x1b[31m\ttab\nline\\");
        assert_eq!(
            render(OutputFormat::Tsv, &hostile(), PIPE),
            "value\tevents\nred\\x1b[31m\\ttab\\nline\\\\\t1\n"
        );
    }

    #[test]
    fn floats_are_short() {
        assert_eq!(format_float(2.0), "2");
        assert_eq!(format_float(0.1250001), "0.125");
        assert_eq!(format_float(-0.0001), "0");
    }
}
