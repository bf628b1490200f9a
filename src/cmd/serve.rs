//! `rta serve`.

use std::path::PathBuf;

use crate::bus::BusUrl;
use crate::cli::ServeArgs;
use crate::event::Limits;
use crate::server::{self, ClusterConfig, ServeConfig};
use crate::store::clickhouse::ClickHouseUrl;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let node_id = match args.node_id {
        Some(id) => check_node_id(id)?,
        None => default_node_id(),
    };
    let (data_dir, mut cluster) = choose_store(args.store, args.data_dir, args.bus, &node_id)?;
    if let Some(cluster) = &mut cluster {
        cluster.bus_keep = args.bus_keep.max(std::time::Duration::from_secs(1));
    }
    let mut config = ServeConfig::new(data_dir);
    config.node_id = node_id;
    config.cluster = cluster;
    if args.retention.is_some_and(|r| r.as_secs() < 1) {
        crate::usage!(
            "--retention must be at least one second (such as 12h or 30d); leave it out to keep every event"
        );
    }
    config.retention = args.retention;
    config.token = check_token("--token", "RTA_TOKEN", args.token)?;
    config.max_body_bytes = args.max_body;
    config.read_token = check_token("--read-token", "RTA_READ_TOKEN", args.read_token)?;
    for origin in &args.cors_origins {
        if let Err(message) = server::check_origin(origin) {
            crate::usage!("{message}");
        }
    }
    config.cors_origins = args.cors_origins;
    for host in &args.allowed_hosts {
        if let Err(message) = server::check_allowed_host(host) {
            crate::usage!("{message}");
        }
    }
    config.allowed_hosts = args.allowed_hosts;
    // Not a flag: only the test that compares both ways of ingest sets it.
    config.direct_ingest = std::env::var_os("RTA_INGEST_VIA_ROUTER").is_none_or(|v| v != "1");
    config.max_connections = args.max_connections.max(1);
    config.request_timeout = args
        .request_timeout
        .max(std::time::Duration::from_millis(100));
    config.idle_timeout = args.idle_timeout.max(std::time::Duration::from_millis(100));
    config.push_interval = args.push_interval.max(std::time::Duration::from_millis(10));
    if let Some(url) = &args.alerts.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        crate::usage!(
            "--public-url `{url}` must be the dashboard's http(s) address, such as https://rta.example.com"
        );
    }
    config.alerts = server::AlertConfig {
        interval: args
            .alerts
            .alert_interval
            .max(std::time::Duration::from_millis(100)),
        allow_private: args.alerts.allow_private_webhooks,
        public_url: args.alerts.public_url,
        retry_for: args.alerts.webhook_retry_for,
    };
    config.limits = Limits {
        max_type_len: args.limits.max_type_len,
        max_source_len: args.limits.max_source_len,
        max_field_name_len: args.limits.max_field_name_len,
        max_string_len: args.limits.max_string_len,
        max_fields: args.limits.max_fields,
        max_age_ms: config
            .retention
            .map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX)),
    };
    let acceptor = server::bind(&args.addr).await?;
    server::run(acceptor, config, shutdown_signal()).await
}

/// Where events go: the SQLite directory, or ClickHouse and the bus.
fn choose_store(
    store: Option<String>,
    data_dir: Option<PathBuf>,
    bus: Option<String>,
    node_id: &str,
) -> anyhow::Result<(PathBuf, Option<ClusterConfig>)> {
    const DEFAULT_DIR: &str = "./rta-data";
    let store = store.filter(|s| !s.is_empty());
    match store.as_deref() {
        None => {
            if bus.is_some() {
                crate::usage!(
                    "--bus is for a cluster on ClickHouse; the SQLite store takes none. \
                     Pass --store clickhouse://HOST:8123/DATABASE with it, or leave --bus out"
                );
            }
            Ok((data_dir.unwrap_or_else(|| DEFAULT_DIR.into()), None))
        }
        Some(text) if text.starts_with("sqlite:") => {
            let dir = PathBuf::from(&text["sqlite:".len()..]);
            if dir.as_os_str().is_empty() {
                crate::usage!("--store sqlite:DIR needs a directory, such as sqlite:./rta-data");
            }
            if let Some(other) = data_dir.filter(|d| *d != dir) {
                crate::usage!(
                    "--store {text} and --data-dir {} (or RTA_DATA_DIR) name different directories; pass only one",
                    other.display()
                );
            }
            if bus.is_some() {
                crate::usage!(
                    "--bus is for a cluster on ClickHouse; the SQLite store takes none. Leave --bus (and RTA_BUS) out"
                );
            }
            Ok((dir, None))
        }
        Some(text) => {
            let url = ClickHouseUrl::parse(
                text,
                std::env::var("RTA_CLICKHOUSE_USER").ok(),
                std::env::var("RTA_CLICKHOUSE_PASSWORD").ok(),
            )
            .map_err(crate::client::UsageError)?;
            if let Some(dir) = data_dir {
                crate::usage!(
                    "--data-dir {} (or RTA_DATA_DIR) has no use with a ClickHouse store: nodes keep nothing on disk. Leave it out",
                    dir.display()
                );
            }
            let Some(bus) = bus.filter(|b| !b.is_empty()) else {
                crate::usage!(
                    "a ClickHouse store needs the bus that carries events between nodes: add --bus nats://HOST:4222 (NATS with JetStream)"
                );
            };
            let bus = BusUrl::parse(&bus).map_err(crate::client::UsageError)?;
            Ok((
                PathBuf::from(DEFAULT_DIR),
                Some(ClusterConfig {
                    store: url,
                    bus,
                    node_id: node_id.to_string(),
                    bus_keep: std::time::Duration::from_secs(600),
                }),
            ))
        }
    }
}

fn check_node_id(id: String) -> anyhow::Result<String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        crate::usage!(
            "--node-id `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`, such as web-1",
            crate::client::escape::visible(&id)
        );
    }
    Ok(id)
}

/// Unique per process: the host, the process id and a random suffix.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rta".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// A token must be something a client can send: an empty one (say, an empty
/// `RTA_TOKEN=` in a unit file) would otherwise turn authentication off.
fn check_token(flag: &str, env: &str, token: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(token) = token else {
        return Ok(None);
    };
    if token.is_empty() {
        crate::usage!(
            "{flag} is empty (is {env} set to an empty value?); give a token, or leave both out to run without one"
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        crate::usage!(
            "{flag} must be printable ASCII without spaces, so clients can send it in a header"
        );
    }
    Ok(Some(token))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
