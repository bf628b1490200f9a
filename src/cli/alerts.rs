//! The flags of alerts: `rta serve`'s evaluation settings and the
//! `rta alerts` subcommands.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{ClientArgs, parse_duration};

/// Alert rules (managed with `rta alerts` or /api/alerts).
#[derive(Debug, Args)]
#[command(next_help_heading = "Alerts")]
pub struct AlertArgs {
    /// How often every alert rule is evaluated.
    #[arg(long, env = "RTA_ALERT_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub alert_interval: Duration,

    /// Let webhooks point at loopback, link-local and private addresses (refused by default,
    /// so that a rule cannot reach the services next to rta).
    #[arg(long, env = "RTA_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,

    /// The dashboard's address as its users reach it (`https://rta.example.com`), for the link
    /// in each notification.
    #[arg(long, env = "RTA_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// How long a notification whose webhook fails is retried (with growing pauses) before
    /// it is given up.
    #[arg(long, env = "RTA_WEBHOOK_RETRY_FOR", default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub webhook_retry_for: Duration,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Add a rule: a statistic over a window, a condition, and the webhook told when it
    /// fires and when it resolves.
    Add(AlertAddArgs),
    /// List the rules and where each stands (ok, pending, firing).
    List(AlertListArgs),
    /// Remove a rule.
    Rm(AlertRmArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rta alerts add --name slow-mobile --type pageview --where device=mobile --stat p95:latency_ms \\
                 --window 5m --above 500 --for 1m --webhook https://hooks.example/rta
  rta alerts add --name no-sales --type sales --window 10m --absent --webhook https://hooks.example/rta
  rta alerts add --name busy --stat rate --window 1m --above 1000 --webhook https://hooks.example/rta

The webhook gets a POST with a JSON body when the rule fires and when it resolves:
{\"id\": \"slow-mobile/1-5f2c9a01\", \"rule\": \"slow-mobile\", \"state\": \"firing\", \"value\": 612.5,
 \"condition\": \"above\", \"threshold\": 500, \"stat\": \"p95:latency_ms\", \"window\": \"5m\",
 \"time\": \"2026-12-02T12:00:00.000Z\", \"link\": \"https://rta.example.com/?window=5m&...\"}")]
pub struct AlertAddArgs {
    /// The rule's name: 1-64 letters, digits, `-`, `_` or `.`, starting and ending with a
    /// letter or digit.
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// Only events of this type.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub kind: Option<String>,

    /// A filter that must hold (repeatable), as in `rta query --where`: device=mobile, amount>100.
    #[arg(long = "where", short = 'w', value_name = "FILTER")]
    pub filters: Vec<String>,

    /// What to watch: count (events in the window), rate (events per second) or STAT:FIELD
    /// (p95:latency_ms, mean:amount, max:amount, distinct:user).
    #[arg(long, default_value = "count", value_name = "STAT")]
    pub stat: String,

    /// The window the statistic is computed over, up to now: 10s and up.
    #[arg(long, value_name = "DURATION")]
    pub window: String,

    /// Fire while the value is above this.
    #[arg(long, value_name = "NUMBER", allow_negative_numbers = true, conflicts_with_all = ["below", "absent"])]
    pub above: Option<f64>,

    /// Fire while the value is below this.
    #[arg(
        long,
        value_name = "NUMBER",
        allow_negative_numbers = true,
        conflicts_with = "absent"
    )]
    pub below: Option<f64>,

    /// Fire while the window holds no matching event at all.
    #[arg(long)]
    pub absent: bool,

    /// How long the condition must hold before the rule fires.
    #[arg(long = "for", value_name = "DURATION")]
    pub hold: Option<String>,

    /// The http(s) URL told of each change.
    #[arg(long, value_name = "URL")]
    pub webhook: String,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct AlertListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::client::output::OutputFormat::Table)]
    pub format: crate::client::output::OutputFormat,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct AlertRmArgs {
    /// The rule to remove.
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub client: ClientArgs,
}
