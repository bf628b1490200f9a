//! `rta alerts add|list|rm`: alert rules, through `/api/alerts`.

use std::io::IsTerminal;

use serde_json::{Value, json};

use crate::alert::RuleSpec;
use crate::cli::{AlertAddArgs, AlertListArgs, AlertRmArgs, AlertsArgs, AlertsCommand};
use crate::client::output::{Cell, Rows, Target, renderer};
use crate::client::{Client, ClientError, Purpose, exit};

pub async fn run(args: AlertsArgs) -> anyhow::Result<u8> {
    match args.command {
        AlertsCommand::Add(args) => add(args).await,
        AlertsCommand::List(args) => list(args).await,
        AlertsCommand::Rm(args) => remove(args).await,
    }
}

async fn add(args: AlertAddArgs) -> anyhow::Result<u8> {
    let spec = RuleSpec {
        name: args.name,
        kind: args.kind,
        filters: args.filters,
        stat: args.stat,
        window: args.window,
        above: args.above,
        below: args.below,
        absent: args.absent,
        hold: args.hold,
        webhook: args.webhook,
    };
    // Malformed rules are told here, before anything is sent; only the
    // server knows whether it takes private webhooks.
    if let Err(e) = spec.clone().validate(true) {
        crate::usage!("the rule is not valid: {e}");
    }
    let client = Client::new(&args.client, Purpose::Write)?;
    let body = serde_json::to_value(&spec)?;
    match client.post_json("/api/alerts", &body).await {
        Ok(_) => {
            eprintln!("added alert rule {}", spec.name);
            Ok(exit::OK)
        }
        // The server's refusal of the rule itself is a usage error too.
        Err(ClientError::Server {
            status: 400 | 409,
            message,
            ..
        }) => crate::usage!("{message}"),
        Err(e) => Err(e.into()),
    }
}

async fn list(args: AlertListArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.client, Purpose::Read)?;
    let answer = client.get_json("/api/alerts").await?;
    let rules = answer.as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().map_or(Cell::Empty, |s| Cell::Text(s.into()));
    let rows = Rows {
        columns: [
            "name",
            "state",
            "since",
            "value",
            "condition",
            "stat",
            "type",
            "where",
            "window",
            "for",
            "webhook",
        ]
        .map(String::from)
        .to_vec(),
        rows: rules
            .iter()
            .map(|r| {
                vec![
                    text(&r["name"]),
                    text(&r["state"]),
                    text(&r["since"]),
                    Cell::opt_float(r["value"].as_f64()),
                    Cell::Text(condition(r)),
                    text(&r["stat"]),
                    text(&r["type"]),
                    Cell::Text(
                        r["where"]
                            .as_array()
                            .map(|f| {
                                f.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default(),
                    ),
                    text(&r["window"]),
                    text(&r["for"]),
                    text(&r["webhook"]),
                ]
            })
            .collect(),
    };
    let terminal = std::io::stdout().is_terminal();
    let mut out = Vec::new();
    renderer(args.format).render(&rows, Target { terminal }, &mut out)?;
    super::write_stdout(&out)?;
    Ok(exit::OK)
}

/// `> 500`, `< 10` or `absent`.
fn condition(rule: &Value) -> String {
    match (rule["above"].as_f64(), rule["below"].as_f64()) {
        (Some(x), _) => format!("> {}", Cell::Float(x).text()),
        (_, Some(x)) => format!("< {}", Cell::Float(x).text()),
        _ if rule["absent"] == json!(true) => "absent".into(),
        _ => String::new(),
    }
}

async fn remove(args: AlertRmArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.client, Purpose::Write)?;
    let path = format!("/api/alerts/{}", super::query::encode(&args.name));
    if client.delete(&path).await? {
        eprintln!("removed alert rule {}", args.name);
        Ok(exit::OK)
    } else {
        eprintln!("error: no alert rule is named `{}`", args.name);
        Ok(exit::FAILED)
    }
}
