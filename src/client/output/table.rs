//! Aligned columns; box drawing only on a terminal. Cells always show
//! control characters visibly (a table reaches a screen even through
//! `| head`). On a terminal the table fits its width by wrapping text
//! between words; numbers, times and single words are never broken. When
//! even that cannot fit, each row is printed as a record, one `column value`
//! line per column (as `psql` does in its expanded mode).

use std::io::{self, Write};

use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Width};

use super::{Render, Rows, Target};
use crate::client::escape;

pub struct Table;

/// Below this many columns a terminal's width is not believed (a pty may
/// report 0): the table is then printed at its natural width.
const NARROWEST_TERMINAL: u16 = 20;

impl Render for Table {
    fn render(&self, rows: &Rows, target: Target, out: &mut dyn Write) -> io::Result<()> {
        let mut table = comfy_table::Table::new();
        table.load_preset(if target.terminal {
            UTF8_FULL_CONDENSED
        } else {
            NOTHING
        });
        let texts: Vec<Vec<String>> = rows
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| escape::visible(&c.text()).into_owned())
                    .collect()
            })
            .collect();
        let width = table
            .width()
            .filter(|w| target.terminal && *w >= NARROWEST_TERMINAL);
        let least: Vec<u16> = (0..rows.columns.len())
            .map(|i| longest_word(&rows.columns[i], &texts, i))
            .collect();
        // Each column has a border and a space either side.
        let least_total: usize = least.iter().map(|w| usize::from(*w) + 3).sum::<usize>() + 1;
        if let Some(width) = width
            && least_total > usize::from(width)
        {
            return records(&rows.columns, &texts, out);
        }
        match width {
            Some(width) => {
                table.set_width(width);
                table.set_content_arrangement(ContentArrangement::Dynamic);
            }
            None => {
                table.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        table.set_header(
            rows.columns
                .iter()
                .map(|c| comfy_table::Cell::new(escape::visible(c))),
        );
        for (row, text) in rows.rows.iter().zip(&texts) {
            table.add_row(row.iter().zip(text).map(|(cell, text)| {
                let c = comfy_table::Cell::new(text);
                if cell.is_number() {
                    c.set_alignment(CellAlignment::Right)
                } else {
                    c
                }
            }));
        }
        if width.is_some() {
            // comfy-table counts a column's padding (a space each side) in its width.
            for (column, least) in table.column_iter_mut().zip(&least) {
                column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                    least.saturating_add(2),
                )));
            }
        }
        let text = table.to_string();
        for line in text.lines() {
            writeln!(
                out,
                "{}",
                if target.terminal {
                    line
                } else {
                    line.trim_end()
                }
                .trim_start_matches(' ')
            )?;
        }
        Ok(())
    }
}

/// The narrowest a column may get: its longest word (or header), so a
/// value is wrapped between words, never inside one.
fn longest_word(header: &str, texts: &[Vec<String>], column: usize) -> u16 {
    let longest = texts
        .iter()
        .filter_map(|row| row.get(column))
        .map(String::as_str)
        .chain(std::iter::once(header))
        .flat_map(|text| text.split_whitespace().map(|w| w.chars().count()))
        .max()
        .unwrap_or(1);
    u16::try_from(longest).unwrap_or(u16::MAX)
}

/// Rows as records: `column  value` lines, a blank line between rows.
fn records(columns: &[String], texts: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
    let names: Vec<String> = columns
        .iter()
        .map(|c| escape::visible(c).into_owned())
        .collect();
    let pad = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (i, row) in texts.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        for (name, value) in names.iter().zip(row) {
            writeln!(out, "{name:<pad$}  {value}")?;
        }
    }
    Ok(())
}
