//! Reading events from JSONL and CSV files (or stdin, gzipped or not), one
//! record at a time with its line number, so a bad line is reported and the
//! rest still flow.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON event per line.
    Jsonl,
    /// A header row; `timestamp`, `source`, `type` columns, every other column a value
    /// (or one `values` column holding a JSON object).
    Csv,
}

impl Format {
    /// Guesses from the file name: `.csv` (or `.csv.gz`) is CSV, anything else JSONL.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
        if lower.ends_with(".csv") {
            Format::Csv
        } else {
            Format::Jsonl
        }
    }
}

/// One line (or CSV row) of input: the event as JSON, or why it is not one.
#[derive(Debug)]
pub struct Record {
    /// 1-based line where the record starts.
    pub line: usize,
    pub event: Result<Map<String, Value>, String>,
}

/// Counts the bytes read from the underlying file (compressed bytes for
/// `.gz`), for progress against the file size.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Inner {
    Jsonl {
        reader: Box<dyn BufRead>,
        line: usize,
        buf: Vec<u8>,
    },
    Csv {
        reader: csv::Reader<Box<dyn Read>>,
        headers: Vec<String>,
        record: csv::StringRecord,
    },
}

pub struct EventReader {
    inner: Inner,
    bytes: Arc<AtomicU64>,
    /// The file's size, when known (not for stdin).
    pub size: Option<u64>,
}

impl EventReader {
    /// Opens `path` (`-` for stdin). `.gz` is decompressed transparently.
    pub fn open(path: &str, format: Format) -> io::Result<Self> {
        let bytes = Arc::new(AtomicU64::new(0));
        let (raw, size): (Box<dyn Read>, Option<u64>) = if path == "-" {
            (Box::new(io::stdin()), None)
        } else {
            let file = File::open(Path::new(path))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        };
        // Small enough that progress by bytes read moves smoothly.
        let counted = BufReader::with_capacity(
            64 * 1024,
            Counting {
                inner: raw,
                count: bytes.clone(),
            },
        );
        let mut counted: Box<dyn BufRead> = Box::new(counted);
        let gzipped = path.to_ascii_lowercase().ends_with(".gz")
            || counted.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead> = if gzipped {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::bufread::MultiGzDecoder::new(counted),
            ))
        } else {
            counted
        };
        let inner = match format {
            Format::Jsonl => Inner::Jsonl {
                reader,
                line: 0,
                buf: Vec::new(),
            },
            Format::Csv => {
                let read: Box<dyn Read> = Box::new(reader);
                let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(read);
                let headers = reader
                    .headers()
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("cannot read the CSV header: {e}"),
                        )
                    })?
                    .iter()
                    .map(|h| h.trim().to_string())
                    .collect::<Vec<_>>();
                if !headers.iter().any(|h| h == "type") {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the CSV header has no `type` column (found: {})",
                            headers.join(", ")
                        ),
                    ));
                }
                Inner::Csv {
                    reader,
                    headers,
                    record: csv::StringRecord::new(),
                }
            }
        };
        Ok(Self { inner, bytes, size })
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The next record, `None` at the end. I/O errors end the read.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        match &mut self.inner {
            Inner::Jsonl { reader, line, buf } => loop {
                buf.clear();
                if reader.read_until(b'\n', buf)? == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = match serde_json::from_slice::<Value>(buf) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(other) => Err(format!(
                        "expected a JSON object, got {}",
                        crate::event::json_kind(&other)
                    )),
                    Err(e) => Err(format!("invalid JSON: {e}")),
                };
                return Ok(Some(Record { line: *line, event }));
            },
            Inner::Csv {
                reader,
                headers,
                record,
            } => match reader.read_record(record) {
                Ok(false) => Ok(None),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line() as usize);
                    Ok(Some(Record {
                        line,
                        event: csv_event(headers, record),
                    }))
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        return Err(io::Error::other(e.to_string()));
                    }
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("has {len} fields, the header has {expected_len}")
                        }
                        _ => e.to_string(),
                    };
                    Ok(Some(Record {
                        line,
                        event: Err(reason),
                    }))
                }
            },
        }
    }
}

/// Turns a CSV row into an event: numbers are measures, other text is a
/// dimension, empty cells are absent.
fn csv_event(headers: &[String], record: &csv::StringRecord) -> Result<Map<String, Value>, String> {
    let mut event = Map::new();
    let mut values = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        match name.as_str() {
            "timestamp" => {
                let ts = match cell.parse::<f64>() {
                    Ok(n) => serde_json::Number::from_f64(n)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    Err(_) => Value::String(cell.to_string()),
                };
                event.insert(name.clone(), ts);
            }
            "source" | "type" => {
                event.insert(name.clone(), Value::String(cell.to_string()));
            }
            "values" => match serde_json::from_str::<Value>(cell) {
                Ok(Value::Object(map)) => values.extend(map),
                Ok(_) | Err(_) => return Err("the `values` column must hold a JSON object".into()),
            },
            _ => {
                let value = match cell.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() => serde_json::Number::from_f64(n)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    _ => Value::String(cell.to_string()),
                };
                values.insert(name.clone(), value);
            }
        }
    }
    event.insert("values".into(), Value::Object(values));
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &str, format: Format) -> Vec<Record> {
        let mut reader = EventReader::open(path, format).unwrap();
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            out.push(r);
        }
        out
    }

    #[test]
    fn jsonl_with_bad_lines_keeps_line_numbers() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{{\"type\":\"a\"}}\n\nnot json\n[1]\n{{\"type\":\"b\"}}").unwrap();
        let records = read_all(f.path().to_str().unwrap(), Format::Jsonl);
        let lines: Vec<_> = records.iter().map(|r| (r.line, r.event.is_ok())).collect();
        assert_eq!(lines, vec![(1, true), (3, false), (4, false), (5, true)]);
    }

    #[test]
    fn csv_columns_become_values() {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        writeln!(f, "timestamp,source,type,amount,region\n2023-04-01T12:00:00Z,web,sales,150,North America\n,web,sales,,EU\nbad,row").unwrap();
        let path = f.path().to_str().unwrap().to_string();
        assert_eq!(Format::from_path(&path), Format::Csv);
        let records = read_all(&path, Format::Csv);
        assert_eq!(records.len(), 3);
        let first = records[0].event.as_ref().unwrap();
        assert_eq!(
            Value::Object(first.clone())["values"],
            serde_json::json!({"amount": 150.0, "region": "North America"})
        );
        assert_eq!(records[0].line, 2);
        let second = records[1].event.as_ref().unwrap();
        assert!(second.get("timestamp").is_none());
        assert_eq!(records[2].line, 4);
        assert!(
            records[2]
                .event
                .as_ref()
                .unwrap_err()
                .contains("has 2 fields, the header has 5")
        );
    }

    #[test]
    fn gzip_is_transparent() {
        let f = tempfile::Builder::new()
            .suffix(".jsonl.gz")
            .tempfile()
            .unwrap();
        let mut enc =
            flate2::write::GzEncoder::new(f.reopen().unwrap(), flate2::Compression::fast());
        writeln!(enc, "{{\"type\":\"a\"}}\n{{\"type\":\"b\"}}").unwrap();
        enc.finish().unwrap();
        let path = f.path().to_str().unwrap();
        assert_eq!(Format::from_path(path), Format::Jsonl);
        assert_eq!(read_all(path, Format::Jsonl).len(), 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_files_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024), csv_header in proptest::prelude::any::<bool>()) {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            if csv_header {
                f.write_all(b"timestamp,source,type,values,x\n").unwrap();
            }
            f.write_all(&bytes).unwrap();
            let path = f.path().to_str().unwrap();
            for format in [Format::Jsonl, Format::Csv] {
                if let Ok(mut reader) = EventReader::open(path, format) {
                    let mut last_line = 0;
                    while let Ok(Some(record)) = reader.next_record() {
                        proptest::prop_assert!(record.line >= last_line, "line numbers never go back");
                        last_line = record.line;
                    }
                }
            }
        }
    }
}
