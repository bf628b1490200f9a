//! Layouts from the query model (`POST /api/query`). With `--by`: the
//! breakdowns, `events`, then `<field>_<stat>` columns. Without: one row per
//! measure of a `--type` (and per dimension asked about), or one row per
//! type, as the classic layouts are, with the `--stat` columns added.

use serde_json::{Value, json};

use crate::cli::QueryArgs;
use crate::client::Client;
use crate::client::output::{Cell, Rows};
use crate::query::parse::QueryText;
use crate::query::{Stat, parse};

/// The value shown for the events beyond `--top` in a breakdown.
pub const OTHERS: &str = "(others)";

/// The query as the flags give it.
pub fn text(args: &QueryArgs) -> QueryText {
    let mut by: Vec<String> = args
        .by
        .iter()
        .flat_map(|b| b.split(','))
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if by.is_empty() && args.kind.is_none() {
        by.push("type".into());
    }
    QueryText {
        window: args.window.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        kind: args.kind.clone(),
        filters: args.filters.clone(),
        by,
        stats: args.stats.clone(),
        order: args.order.clone(),
        top: args.top.map(|t| t as usize),
        defaults: None,
    }
}

fn body(text: &QueryText) -> Value {
    json!({
        "window": text.window, "from": text.from, "to": text.to, "type": text.kind,
        "where": text.filters, "by": text.by, "stats": text.stats,
        "order": text.order, "top": text.top,
    })
}

pub async fn rows(client: &Client, args: &QueryArgs) -> anyhow::Result<Rows> {
    let text = text(args);
    let answer = client.post_json("/api/query", &body(&text)).await?;
    Ok(if args.by.is_some() {
        breakdown(&answer)
    } else if args.kind.is_some() {
        per_field(&answer, &text)
    } else {
        per_type(&answer, &text)
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn rows_of(answer: &Value) -> Vec<&Value> {
    answer["rows"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default()
}

/// A statistic's value: a number, a count, or `top`'s values.
fn stat_cell(v: &Value) -> Cell {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(i) if n.is_u64() => Cell::Int(i),
            _ => Cell::opt_float(n.as_f64()),
        },
        Value::Array(values) => Cell::Numbers(
            values
                .iter()
                .map(|e| {
                    (
                        e["value"].as_str().unwrap_or_default().to_string(),
                        e["count"].as_f64(),
                    )
                })
                .collect(),
        ),
        _ => Cell::Empty,
    }
}

fn key_cell(v: &Value) -> Cell {
    v.as_str()
        .map_or(Cell::Empty, |s| Cell::Text(s.to_string()))
}

/// The breakdowns, `events`, then every statistic column.
fn breakdown(answer: &Value) -> Rows {
    let keys = strings(&answer["keys"]);
    let stats = strings(&answer["columns"]);
    let mut columns = keys.clone();
    columns.push("events".into());
    columns.extend(stats.iter().cloned());
    let row = |r: &Value, first: Option<&str>| {
        let mut cells: Vec<Cell> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| match (i, first) {
                (0, Some(label)) => Cell::Text(label.into()),
                (_, Some(_)) => Cell::Empty,
                _ => key_cell(&r["key"][k]),
            })
            .collect();
        cells.push(r["events"].as_u64().map_or(Cell::Empty, Cell::Int));
        cells.extend(stats.iter().map(|s| stat_cell(&r["stats"][s])));
        cells
    };
    let mut rows: Vec<Vec<Cell>> = rows_of(answer).into_iter().map(|r| row(r, None)).collect();
    if answer["others"].is_object() {
        rows.push(row(&answer["others"], Some(OTHERS)));
    }
    Rows { columns, rows }
}

/// One row per measure of the type (the classic layout, with any other
/// statistic asked of a measure as a column), and one per dimension asked
/// about.
fn per_field(answer: &Value, text: &QueryText) -> Rows {
    let classic = [
        Stat::Count,
        Stat::Sum,
        Stat::Min,
        Stat::Mean,
        Stat::Max,
        Stat::P50,
        Stat::P90,
        Stat::P99,
    ];
    let asked: Vec<_> = text
        .stats
        .iter()
        .filter_map(|s| parse::parse_stat(s).ok())
        .collect();
    let mut stats: Vec<Stat> = classic.to_vec();
    for s in &asked {
        if !stats.contains(&s.stat) {
            stats.push(s.stat);
        }
    }
    let mut columns = vec!["field".to_string()];
    columns.extend(stats.iter().map(|s| s.name().to_string()));
    let Some(row) = rows_of(answer).into_iter().next() else {
        return Rows {
            columns,
            rows: Vec::new(),
        };
    };
    let all = strings(&answer["columns"]);
    let mut fields: Vec<String> = Vec::new();
    for column in &all {
        if let Some((field, _)) = column.rsplit_once('_')
            && !fields.iter().any(|f| f == field)
        {
            fields.push(field.to_string());
        }
    }
    let rows = fields
        .iter()
        .map(|field| {
            let mut cells = vec![Cell::Text(field.clone())];
            cells.extend(
                stats
                    .iter()
                    .map(|s| stat_cell(&row["stats"][format!("{field}_{}", s.name())])),
            );
            cells
        })
        .collect();
    Rows { columns, rows }
}

/// One row per type: the classic overview, with the `--stat` columns.
fn per_type(answer: &Value, text: &QueryText) -> Rows {
    let asked: Vec<String> = text
        .stats
        .iter()
        .filter_map(|s| parse::parse_stat(s).ok())
        .map(|s| s.column())
        .collect();
    let mut columns: Vec<String> = super::OVERVIEW_COLUMNS.map(String::from).to_vec();
    columns.extend(asked.iter().cloned());
    let all = strings(&answer["columns"]);
    let range_seconds = match (answer["from"].as_str(), answer["to"].as_str()) {
        (Some(from), Some(to)) => seconds_between(from, to),
        _ => None,
    };
    let rows = rows_of(answer)
        .into_iter()
        .map(|r| {
            let events = r["events"].as_u64().unwrap_or(0);
            let seconds = range_seconds
                .or_else(|| seconds_between(r["firstSeen"].as_str()?, r["lastSeen"].as_str()?));
            let rate = seconds.map(|s| events as f64 / s.max(1.0));
            let means = all
                .iter()
                .filter_map(|c| c.strip_suffix("_mean"))
                .filter_map(|m| {
                    let x = r["stats"][format!("{m}_mean")].as_f64()?;
                    Some((m.to_string(), Some(x)))
                })
                .collect();
            let mut cells = vec![
                key_cell(&r["key"]["type"]),
                Cell::Int(events),
                Cell::opt_float(rate),
                key_cell(&r["firstSeen"]),
                key_cell(&r["lastSeen"]),
                Cell::Numbers(means),
            ];
            cells.extend(asked.iter().map(|c| stat_cell(&r["stats"][c])));
            cells
        })
        .collect();
    Rows { columns, rows }
}

fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let from = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let to = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((to - from).num_milliseconds() as f64 / 1000.0)
}
