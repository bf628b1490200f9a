//! `rta query --events`: the stored events behind a query, streamed from
//! `GET /api/events?format=ndjson` and printed as they come, so an export of
//! a million events holds one chunk in memory, not the million. JSON Lines
//! are printed as the server sent them, which `rta replay -` reads back.

use std::io::Write;

use serde_json::Value;

use crate::cli::QueryArgs;
use crate::client::escape;
use crate::client::output::{Cell, OutputFormat, Rows, Target, renderer};
use crate::client::{Client, ClientError};

use super::encode;

/// The longest line taken from the stream (an event is far smaller).
const MAX_LINE: usize = 16 << 20;

/// Events shown in a table or a JSON array when no --limit is given.
const SHOWN_BY_DEFAULT: u64 = 1000;

pub async fn print(client: &Client, args: &QueryArgs, terminal: bool) -> anyhow::Result<()> {
    let streamed = matches!(
        args.format,
        OutputFormat::Jsonl | OutputFormat::Csv | OutputFormat::Tsv
    );
    let limit = args.limit.or((!streamed).then_some(SHOWN_BY_DEFAULT));
    let mut params = vec!["format=ndjson".to_string()];
    let mut add = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            params.push(format!("{name}={}", encode(v)));
        }
    };
    add("type", &args.kind);
    add("window", &args.window);
    add("from", &args.from);
    add("to", &args.to);
    add("order", &args.order);
    for filter in &args.filters {
        params.push(format!("where={}", encode(filter)));
    }
    if let Some(limit) = limit {
        params.push(format!("limit={limit}"));
    }
    let url = format!("/api/events?{}", params.join("&"));
    let mut response = client.get_streamed(&url).await?;
    let mut sink = Sink::new(args.format, terminal);
    if !sink.start()? {
        return Ok(());
    }
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            reason: format!("the stream of events broke off: {e}"),
        })?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        if pending.len() > MAX_LINE && !pending.contains(&b'\n') {
            anyhow::bail!("{url} sent a line of over {MAX_LINE} bytes; that is no event");
        }
        let complete = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        for line in pending[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            if !sink.line(line)? {
                return Ok(());
            }
        }
        pending.drain(..complete);
    }
    sink.finish()
}

/// Where events go, by format.
struct Sink {
    format: OutputFormat,
    terminal: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    /// The delimiter, for CSV and TSV.
    delimiter: Option<u8>,
    rows: Rows,
    events: Vec<Value>,
}

impl Sink {
    fn new(format: OutputFormat, terminal: bool) -> Self {
        let delimiter = match format {
            OutputFormat::Csv => Some(b','),
            OutputFormat::Tsv => Some(b'\t'),
            _ => None,
        };
        Self {
            format,
            terminal,
            out: std::io::BufWriter::new(std::io::stdout()),
            delimiter,
            rows: Rows {
                columns: ["timestamp", "source", "type", "values"]
                    .map(String::from)
                    .to_vec(),
                rows: Vec::new(),
            },
            events: Vec::new(),
        }
    }

    /// Takes one event line; false once stdout is closed (`| head`).
    fn line(&mut self, line: &[u8]) -> anyhow::Result<bool> {
        if self.format == OutputFormat::Jsonl {
            let text = String::from_utf8_lossy(line);
            let shown = if self.terminal {
                escape::json(&text)
            } else {
                text
            };
            return self.write(format!("{shown}\n").as_bytes());
        }
        let event: Value = serde_json::from_slice(line)?;
        let cells = [
            event["timestamp"].as_str().unwrap_or_default().to_string(),
            event["source"].as_str().unwrap_or_default().to_string(),
            event["type"].as_str().unwrap_or_default().to_string(),
            event["values"].to_string(),
        ];
        if self.delimiter.is_some() {
            let record = self.record(&cells)?;
            return self.write(&record);
        }
        match self.format {
            OutputFormat::Json => self.events.push(event),
            _ => self
                .rows
                .rows
                .push(cells.into_iter().map(Cell::Text).collect()),
        }
        Ok(true)
    }

    /// One CSV or TSV line: TSV escaped, CSV shown safely on a terminal
    /// and exact otherwise.
    fn record(&self, cells: &[String]) -> anyhow::Result<Vec<u8>> {
        let tsv = self.format == OutputFormat::Tsv;
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter.unwrap_or(b','))
            .quote_style(if tsv {
                csv::QuoteStyle::Never
            } else {
                csv::QuoteStyle::Necessary
            })
            .from_writer(Vec::new());
        writer.write_record(cells.iter().map(|c| {
            if tsv {
                escape::tsv(c).into_owned()
            } else if self.terminal {
                escape::visible(c).into_owned()
            } else {
                c.clone()
            }
        }))?;
        writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The header line, for CSV and TSV.
    fn start(&mut self) -> anyhow::Result<bool> {
        if self.delimiter.is_none() {
            return Ok(true);
        }
        let header = self.record(&self.rows.columns.clone())?;
        self.write(&header)
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<bool> {
        match self.out.write_all(bytes) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => {
                let text = serde_json::to_string_pretty(&self.events)?;
                self.write(format!("{}\n", escape::json(&text)).as_bytes())?;
            }
            OutputFormat::Table => {
                let mut out = Vec::new();
                renderer(OutputFormat::Table).render(
                    &self.rows,
                    Target {
                        terminal: self.terminal,
                    },
                    &mut out,
                )?;
                self.write(&out)?;
            }
            _ => {}
        }
        match self.out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        }
    }
}
