//! CSV and TSV with a header row; quoting only where needed.

use std::io::{self, Write};

use super::{Render, Rows};

pub struct Delimited {
    pub delimiter: u8,
}

impl Render for Delimited {
    fn render(&self, rows: &Rows, out: &mut dyn Write) -> io::Result<()> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .quote_style(if self.delimiter == b'\t' {
                csv::QuoteStyle::Never
            } else {
                csv::QuoteStyle::Necessary
            })
            .from_writer(out);
        writer.write_record(&rows.columns)?;
        for row in &rows.rows {
            writer.write_record(row.iter().map(|c| c.text()))?;
        }
        writer.flush()
    }
}
