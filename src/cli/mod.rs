//! The command line: every flag of every subcommand, in one place, so that
//! `--help`, shell completions and the README agree.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod alerts;

pub use alerts::{AlertAddArgs, AlertArgs, AlertListArgs, AlertRmArgs, AlertsArgs, AlertsCommand};

/// Real-time analytics in one binary: push events, watch live metrics.
#[derive(Debug, Parser)]
#[command(name = "rta", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Start a server with `rta serve`, feed it with `rta generate`, open http://127.0.0.1:8080/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// How log lines are written to stderr: `text` for people, `json` for
    /// log collectors (one JSON object a line).
    #[arg(
        long,
        global = true,
        env = "RTA_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: ingest API, metrics API, WebSocket and dashboard.
    Serve(ServeArgs),
    /// Stream synthetic events to a server (or to a file).
    Generate(GenerateArgs),
    /// Push the events of a JSONL or CSV file to a server.
    Replay(ReplayArgs),
    /// Print metrics as a table, JSON, CSV or TSV.
    Query(QueryArgs),
    /// Add, list and remove alert rules (webhooks told when a number goes wrong).
    Alerts(AlertsArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// How client commands reach the server.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "RTA_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub url: String,

    /// Bearer token, for a server started with --token.
    #[arg(long, env = "RTA_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Keep retrying a refused connection, 429 or 503 this long before giving up.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_for: Duration,

    /// Give up on one request after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rta generate --count 100 --interval 3 --batch 5    100 events, 5 every 3 seconds
  rta generate --rate 200                            an endless stream of 200 events/s
  rta generate --interval 0 --batch 1000 --count 1000000   as fast as the server takes them
  rta generate --count 3000 --seed 1 --output events.jsonl   a file instead of a server")]
pub struct GenerateArgs {
    /// How many events in all (default: endless, until Ctrl-C).
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Time between batches: seconds (3, 0.5) or a duration (250ms); 0 sends as fast as possible.
    #[arg(long, short = 'i', default_value = "1", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Events per second, instead of --interval.
    #[arg(long, conflicts_with = "interval", value_name = "EVENTS_PER_SEC")]
    pub rate: Option<f64>,

    /// Events per request.
    #[arg(long, short = 'b', default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,

    /// Which kinds of events to make.
    #[arg(long, value_delimiter = ',', default_value = "sales,users,pageview")]
    pub types: Vec<crate::client::synth::Kind>,

    /// Seed for reproducible data.
    #[arg(long)]
    pub seed: Option<u64>,

    /// The events' source.
    #[arg(long, default_value = "rta-generate")]
    pub source: String,

    /// Write JSONL (or CSV, for a .csv name) to this file, `-` for stdout, instead of sending.
    /// Timestamps are then simulated, ending now, one --interval apart per batch.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<String>,

    /// Timestamp of the first event (RFC 3339, or a date for its midnight UTC); later batches
    /// are one --interval apart.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start: Option<chrono::DateTime<chrono::Utc>>,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub concurrency: u64,

    /// No progress output, only the summary and errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rta replay fixtures/events.jsonl
  rta replay fixtures/events.csv --shift-to-now
  rta replay events.jsonl.gz --speed 60        one hour of events in one minute
  zcat old.jsonl.gz | rta replay - --batch 5000")]
pub struct ReplayArgs {
    /// The file: JSONL or CSV, optionally .gz; `-` reads stdin.
    pub file: String,

    /// The file's format (default: from the extension, JSONL unless .csv).
    #[arg(long, value_enum)]
    pub format: Option<crate::client::reader::Format>,

    /// Events per request.
    #[arg(long, short = 'b', default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,

    /// Keep the original spacing between timestamps, sped up by this factor (1 = real time).
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,

    /// Move every timestamp so the file's latest event happens now.
    #[arg(long)]
    pub shift_to_now: bool,

    /// No progress output, only the summary and errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rta query                                          one row per event type
  rta query --type sales --window 1h                 one row per field of sales in the last hour
  rta query --from 2023-04-01T09:00:00Z --to 2023-04-01T10:00:00Z   totals per type in that hour
  rta query --type sales --window 30d --where region=Europe --where 'amount>100' --by channel,device
  rta query --type pageview --window 7d --stat p95:latency_ms --stat distinct:user --by device
  rta query --type pageview --by time:hour --window 24h
  rta query --events --type sales --from 2023-04-01 --where region=Europe --format jsonl > europe.jsonl
  rta query --format csv | sort                      for scripts
  rta query --watch 2                                refresh every 2 seconds

Filters (--where, repeatable, all must hold): dim=value, dim=a,b (one of; \\, for a comma in a
value), dim!=value or dim!=a,b (none of; events without dim count as not equal), dim~text
(contains), measure>N (>=, <, <=; = and != compare numbers). `type` and `source` are the event's
own; a value named so is values.type.")]
pub struct QueryArgs {
    /// Only this event type; without --by, one row per field.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub kind: Option<String>,

    /// Break down by up to three dimensions (comma-separated; `type` and `source` too) and/or
    /// a time bucket: time:minute, time:hour, time:day.
    #[arg(long, value_name = "DIMENSIONS")]
    pub by: Option<String>,

    /// Only events of the last 10s, 5m, 24h, 30d... (by event time), or `all`.
    #[arg(long, short = 'w', value_name = "DURATION", conflicts_with_all = ["from", "to"])]
    pub window: Option<String>,

    /// Only events from this time on (RFC 3339, or a date for 00:00 UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,

    /// Only events before this time (default: now).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,

    /// A filter; repeat for several (all must hold). See below.
    #[arg(long = "where", value_name = "FILTER")]
    pub filters: Vec<String>,

    /// Add a statistic column, stat:field: count, sum, min, max, mean, last, p50, p90, p95,
    /// p99 of a measure; distinct, top of a dimension. Repeatable.
    #[arg(long = "stat", value_name = "STAT:FIELD")]
    pub stats: Vec<String>,

    /// Order rows by a column, then asc or desc (default: events, most first; time, oldest
    /// first); with --events, newest (default) or oldest.
    #[arg(long, value_name = "COLUMN")]
    pub order: Option<String>,

    /// Print the matching events themselves instead of aggregates; `--format jsonl` is
    /// read back unchanged by `rta replay -`.
    #[arg(long, conflicts_with_all = ["by", "stats", "watch"])]
    pub events: bool,

    /// With --events: at most this many (default: all for jsonl, csv and tsv; 1000 otherwise).
    #[arg(long, requires = "events", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Output format (default: a table).
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: crate::client::output::OutputFormat,

    /// With --by: how many rows (default 10, or every time bucket); the rest are summed in one
    /// `(others)` row.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: Option<u32>,

    /// Refresh every SECONDS until Ctrl-C.
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration)]
    pub watch: Option<Duration>,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  rta completions bash > /etc/bash_completion.d/rta
  rta completions zsh > \"${fpath[1]}/_rta\"
  rta completions fish > ~/.config/fish/completions/rta.fish")]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rta serve\n  rta serve --addr 0.0.0.0:8080 --data-dir /var/lib/rta --retention 30d --token s3cret"
)]
pub struct ServeArgs {
    /// Address to listen on. Use 0.0.0.0:PORT to accept connections from other machines.
    #[arg(
        long,
        env = "RTA_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    pub addr: String,

    /// Directory holding the event database (created if missing) [default: ./rta-data].
    #[arg(long, env = "RTA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where events are kept: sqlite:DIR (the default, the same as --data-dir DIR) or,
    /// for several nodes behind a load balancer, clickhouse://HOST:PORT/DATABASE (its HTTP
    /// port, 8123 by default; needs --bus). ClickHouse's user and password go in the URL
    /// or in RTA_CLICKHOUSE_USER and RTA_CLICKHOUSE_PASSWORD; ?timeout=30s (the default) is
    /// how long ClickHouse may stay silent before rta gives up on a statement.
    #[arg(long, env = "RTA_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,

    /// NATS JetStream between the nodes of a cluster, such as nats://127.0.0.1:4222: takes
    /// every acknowledged event and feeds every node's live view. Needed with a ClickHouse
    /// store; the SQLite store takes none.
    #[arg(long, env = "RTA_BUS", value_name = "URL", hide_env_values = true)]
    pub bus: Option<String>,

    /// This node's name in logs and in /api/status [default: host name, process id and a
    /// random suffix].
    #[arg(long, env = "RTA_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,

    /// How long the bus keeps events after ClickHouse has them, for nodes whose live view
    /// lags (a cluster only).
    #[arg(long, env = "RTA_BUS_KEEP", value_parser = parse_duration, default_value = "10m", value_name = "DURATION")]
    pub bus_keep: Duration,

    /// Delete events older than this, such as 7d or 12h (default: keep everything).
    #[arg(long, env = "RTA_RETENTION", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Option<Duration>,

    /// Require `Authorization: Bearer TOKEN` on ingest.
    #[arg(long, env = "RTA_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Require this token (or the --token one) to read metrics, events and the WebSocket.
    /// The dashboard asks for it and keeps it in the browser.
    #[arg(
        long,
        env = "RTA_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_token: Option<String>,

    /// Let pages from this origin call the API (CORS) and open the WebSocket, such as
    /// `https://intranet.example.com`, or `*` for any. Repeat for several. Off by default.
    #[arg(
        long = "cors-origin",
        env = "RTA_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,

    /// Also answer requests whose Host is this name (IP addresses, localhost and *.localhost
    /// always work). Repeat for several; `*.example.com` for a domain, `*` for any (behind a
    /// proxy that sets Host itself). Guards against DNS rebinding.
    #[arg(
        long = "allowed-host",
        env = "RTA_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub allowed_hosts: Vec<String>,

    /// Open connections at most; further ones wait until one closes.
    #[arg(
        long,
        env = "RTA_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Close a connection whose request does not arrive in full this long after its first byte.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// Close connections with no traffic for this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Largest request body accepted, after decompression, such as 16MiB.
    #[arg(long, env = "RTA_MAX_BODY", default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_body: usize,

    /// How often WebSocket clients get updates at most, such as 200ms.
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DURATION")]
    pub push_interval: Duration,

    #[command(flatten)]
    pub alerts: AlertArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Limits on each event; an event over a limit is rejected with a message saying which.
#[derive(Debug, Args)]
#[command(next_help_heading = "Event limits")]
pub struct LimitArgs {
    /// Longest event type name.
    #[arg(long, default_value_t = 64, value_name = "CHARS")]
    pub max_type_len: usize,
    /// Longest source.
    #[arg(long, default_value_t = 128, value_name = "CHARS")]
    pub max_source_len: usize,
    /// Longest field name (after flattening nested objects).
    #[arg(long, default_value_t = 128, value_name = "CHARS")]
    pub max_field_name_len: usize,
    /// Longest string value.
    #[arg(long, default_value_t = 1024, value_name = "CHARS")]
    pub max_string_len: usize,
    /// Most fields in one event's values.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_fields: usize,
}

/// Parses `250ms`, `3s`, `5m`, `7d`; a bare number means seconds (`0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is not a non-negative number of seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 250ms, 3s, 5m, 7d"))
}

/// Parses an RFC 3339 time (`2023-04-01T08:00:00Z`) or a date
/// (`2023-04-01`, meaning 00:00 UTC that day).
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    Err(format!(
        "`{s}` is not a time; use RFC 3339 such as 2023-04-01T08:00:00Z, or a date such as 2023-04-01"
    ))
}

/// Parses `16MiB`, `512KB`, `1G` or a number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 16MiB or 1048576"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}`; use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("0").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(
            parse_time("2023-04-01").unwrap().to_rfc3339(),
            "2023-04-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2023-04-01T08:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2023-04-01T06:00:00+00:00"
        );
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .contains("2023-04-01T08:00:00Z")
        );
    }
}
