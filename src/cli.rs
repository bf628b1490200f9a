//! The command line: every flag of every subcommand, in one place, so that
//! `--help`, shell completions and the README agree.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Real-time analytics in one binary: push events, watch live metrics.
#[derive(Debug, Parser)]
#[command(name = "rta", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Start a server with `rta serve`, feed it with `rta generate`, open http://127.0.0.1:8080/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: ingest API, metrics API, WebSocket and dashboard.
    Serve(ServeArgs),
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

    /// Directory holding the event database (created if missing).
    #[arg(
        long,
        env = "RTA_DATA_DIR",
        default_value = "./rta-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Delete events older than this, such as 7d or 12h (default: keep everything).
    #[arg(long, env = "RTA_RETENTION", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Option<Duration>,

    /// Require `Authorization: Bearer TOKEN` on ingest.
    #[arg(long, env = "RTA_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Largest request body accepted, after decompression, such as 16MiB.
    #[arg(long, env = "RTA_MAX_BODY", default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_body: usize,

    /// How often WebSocket clients get updates at most, such as 250ms.
    #[arg(long, default_value = "250ms", value_parser = parse_duration, value_name = "DURATION")]
    pub push_interval: Duration,

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
    }
}
