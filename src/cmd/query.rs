//! `rta query`: metrics as rows, for people and for scripts.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::Value;

use crate::cli::QueryArgs;
use crate::client::output::{Cell, Rows, Target, renderer};
use crate::client::{Client, Purpose, exit};
use crate::event::{EventType, Limits};

pub async fn run(args: QueryArgs) -> anyhow::Result<u8> {
    check_args(&args)?;
    let client = Client::new(&args.client, Purpose::Read)?;
    let terminal = std::io::stdout().is_terminal();
    let Some(every) = args.watch else {
        let text = render(&client, &args, terminal).await?;
        super::write_stdout(text.as_bytes())?;
        return Ok(exit::OK);
    };
    let every = every.max(Duration::from_millis(200));
    let ctrl_c = super::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let text = render(&client, &args, terminal).await?;
        let screen = if terminal {
            // Clear and redraw in place.
            format!(
                "\x1b[2J\x1b[H{}  (every {:?}, Ctrl-C to stop)\n\n{text}",
                chrono::Local::now().format("%H:%M:%S"),
                every
            )
        } else {
            format!("{text}\n")
        };
        super::write_stdout(screen.as_bytes())?;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut ctrl_c => return Ok(exit::INTERRUPTED),
        }
    }
}

/// Checks what can be checked before asking the server, so a typo is a
/// usage error (exit 2) that says what a valid value looks like.
fn check_args(args: &QueryArgs) -> anyhow::Result<()> {
    if let Some(kind) = &args.kind
        && let Err(reason) = EventType::parse(kind, &Limits::default())
    {
        crate::usage!("--type {reason}");
    }
    if let Some(window) = &args.window {
        match humantime::parse_duration(window.trim()) {
            Err(e) => crate::usage!(
                "--window {window:?} is not a duration ({e}); use e.g. 30s, 5m, 1h or 24h"
            ),
            Ok(d) if d.as_secs() < 1 => {
                crate::usage!(
                    "--window {window:?} is shorter than one second; use e.g. 30s, 5m, 1h"
                )
            }
            Ok(d) if d.as_secs() > 24 * 3600 => {
                crate::usage!(
                    "--window {window:?} is longer than 24h, the longest window; use e.g. 1h or 24h"
                )
            }
            Ok(_) => {}
        }
    }
    if args.by.as_deref().is_some_and(|b| b.trim().is_empty()) {
        crate::usage!("--by needs a dimension name, such as --by region");
    }
    Ok(())
}

/// Fetches the metrics and renders them in the chosen format.
async fn render(client: &Client, args: &QueryArgs, terminal: bool) -> anyhow::Result<String> {
    let mut query = vec![format!("top={}", args.top)];
    if let Some(kind) = &args.kind {
        query.push(format!("type={}", encode(kind)));
    }
    if let Some(window) = &args.window {
        query.push(format!("window={}", encode(window)));
    }
    if let Some(by) = &args.by {
        query.push(format!("by={}", encode(by)));
    }
    let metrics = client
        .get_json(&format!("/api/metrics?{}", query.join("&")))
        .await?;
    let rows = match (&args.kind, &args.by) {
        (None, _) => overview(&metrics),
        (Some(kind), None) => fields(&metrics, kind)?,
        (Some(kind), Some(by)) => groups(&metrics, kind, by)?,
    };
    let mut out = Vec::new();
    renderer(args.format).render(&rows, Target { terminal }, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn types(metrics: &Value) -> &[Value] {
    metrics["types"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn text(v: &Value) -> Cell {
    v.as_str()
        .map_or(Cell::Empty, |s| Cell::Text(s.to_string()))
}

fn int(v: &Value) -> Cell {
    v.as_u64().map_or(Cell::Empty, Cell::Int)
}

fn float(v: &Value) -> Cell {
    Cell::opt_float(v.as_f64())
}

/// One row per event type.
fn overview(metrics: &Value) -> Rows {
    let columns = [
        "type",
        "events",
        "rate_per_s",
        "first_seen",
        "last_seen",
        "measures",
    ];
    let rows = types(metrics)
        .iter()
        .map(|t| {
            // The mean of each measure: an object in JSON.
            let measures = t["measures"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            (
                                m["name"].as_str().unwrap_or("?").to_string(),
                                m["mean"].as_f64(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                text(&t["name"]),
                int(&t["count"]),
                float(&t["rate"]),
                text(&t["firstSeen"]),
                text(&t["lastSeen"]),
                Cell::Numbers(measures),
            ]
        })
        .collect();
    Rows {
        columns: columns.map(String::from).to_vec(),
        rows,
    }
}

fn the_type<'a>(metrics: &'a Value, kind: &str) -> anyhow::Result<&'a Value> {
    types(metrics)
        .iter()
        .find(|t| t["name"] == kind)
        .ok_or_else(|| {
            let known: Vec<_> = metrics["eventsByType"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            anyhow::anyhow!(
                "no events of type `{kind}`{}; known types: {}",
                if metrics["windowSeconds"].is_null() {
                    ""
                } else {
                    " in this window"
                },
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
}

/// One row per measure of a type.
fn fields(metrics: &Value, kind: &str) -> anyhow::Result<Rows> {
    let t = the_type(metrics, kind)?;
    let columns = [
        "field", "count", "sum", "min", "mean", "max", "p50", "p90", "p99",
    ];
    let rows = t["measures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|m| {
            vec![
                text(&m["name"]),
                int(&m["count"]),
                float(&m["sum"]),
                float(&m["min"]),
                float(&m["mean"]),
                float(&m["max"]),
                float(&m["p50"]),
                float(&m["p90"]),
                float(&m["p99"]),
            ]
        })
        .collect();
    Ok(Rows {
        columns: columns.map(String::from).to_vec(),
        rows,
    })
}

/// The value shown for the events beyond `--top` in a breakdown.
const OTHERS: &str = "(others)";

/// One row per value of a dimension of a type.
fn groups(metrics: &Value, kind: &str, by: &str) -> anyhow::Result<Rows> {
    let t = the_type(metrics, kind)?;
    let groups = metrics["groups"]["groups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if groups.is_empty() {
        let dims: Vec<_> = t["dimensions"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        anyhow::bail!(
            "`{kind}` has no dimension `{by}`; its dimensions: {}",
            dims.join(", ")
        );
    }
    let measures: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g["measures"].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    let mut columns = vec![by.to_string(), "events".to_string()];
    for m in &measures {
        columns.push(format!("{m}_sum"));
        columns.push(format!("{m}_mean"));
    }
    let mut rows: Vec<Vec<Cell>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![text(&g["value"]), int(&g["count"])];
            for m in &measures {
                row.push(float(&g["measures"][m]["sum"]));
                row.push(float(&g["measures"][m]["mean"]));
            }
            row
        })
        .collect();
    // The events beyond --top, in one row, so the counts add up to the total.
    if let Some(others) = metrics["groups"]["others"].as_u64().filter(|n| *n > 0) {
        let mut row = vec![Cell::Text(OTHERS.into()), Cell::Int(others)];
        row.resize(columns.len(), Cell::Empty);
        rows.push(row);
    }
    Ok(Rows { columns, rows })
}
