//! Aligned columns; box drawing only when writing to a terminal.

use std::io::{self, Write};

use comfy_table::presets::{NOTHING, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, ContentArrangement};

use super::{Cell, Render, Rows};

pub struct Table {
    pub styled: bool,
}

impl Render for Table {
    fn render(&self, rows: &Rows, out: &mut dyn Write) -> io::Result<()> {
        let mut table = comfy_table::Table::new();
        table.load_preset(if self.styled {
            UTF8_FULL_CONDENSED
        } else {
            NOTHING
        });
        table.set_content_arrangement(if self.styled {
            ContentArrangement::Dynamic
        } else {
            ContentArrangement::Disabled
        });
        table.set_header(rows.columns.iter().map(comfy_table::Cell::new));
        for row in &rows.rows {
            table.add_row(row.iter().map(|cell| {
                let c = comfy_table::Cell::new(cell.text());
                match cell {
                    Cell::Int(_) | Cell::Float(_) => c.set_alignment(CellAlignment::Right),
                    _ => c,
                }
            }));
        }
        let text = table.to_string();
        for line in text.lines() {
            writeln!(
                out,
                "{}",
                if self.styled { line } else { line.trim_end() }.trim_start_matches(' ')
            )?;
        }
        Ok(())
    }
}
