//! The classic layouts, from the live metrics (`GET /api/metrics`): one
//! row per type, one per measure of a type, one per value of a dimension.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::cli::QueryArgs;
use crate::client::Client;
use crate::client::output::{Cell, Rows};

use super::answer::OTHERS;
use super::encode;

/// Rows from the live metrics.
pub async fn rows(client: &Client, args: &QueryArgs) -> anyhow::Result<Rows> {
    let mut query = vec![format!("top={}", args.top.unwrap_or(10))];
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
    if let Some(kind) = &args.kind
        && the_type(&metrics, kind).is_err()
    {
        return Err(no_such_type(client, &metrics, kind).await);
    }
    Ok(match (&args.kind, &args.by) {
        (None, _) => overview(&metrics),
        (Some(kind), None) => fields(&metrics, kind)?,
        (Some(kind), Some(by)) => groups(&metrics, kind, by)?,
    })
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
    let columns = super::OVERVIEW_COLUMNS;
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
        .ok_or_else(|| anyhow::anyhow!("no events of type `{kind}`"))
}

/// Says which types there are when the one asked for has no events.
async fn no_such_type(client: &Client, metrics: &Value, kind: &str) -> anyhow::Error {
    let all = client
        .get_json("/api/metrics?top=1")
        .await
        .unwrap_or_default();
    let known: Vec<_> = all["eventsByType"]
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
