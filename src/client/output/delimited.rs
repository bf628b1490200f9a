//! CSV and TSV with a header row. CSV quotes where needed and stays exact
//! (off a terminal); TSV, which has no quoting, escapes tabs, newlines,
//! backslashes and other control characters.

use std::io::{self, Write};

use super::{Render, Rows, Target};
use crate::client::escape;

pub struct Delimited {
    pub delimiter: u8,
}

impl Render for Delimited {
    fn render(&self, rows: &Rows, target: Target, out: &mut dyn Write) -> io::Result<()> {
        let tsv = self.delimiter == b'\t';
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .quote_style(if tsv {
                csv::QuoteStyle::Never
            } else {
                csv::QuoteStyle::Necessary
            })
            .from_writer(out);
        let cell = |text: &str| -> String {
            if tsv {
                escape::tsv(text).into_owned()
            } else if target.terminal {
                escape::visible(text).into_owned()
            } else {
                text.to_string()
            }
        };
        writer.write_record(rows.columns.iter().map(|c| cell(c)))?;
        for row in &rows.rows {
            writer.write_record(row.iter().map(|c| cell(&c.text())))?;
        }
        writer.flush()
    }
}
