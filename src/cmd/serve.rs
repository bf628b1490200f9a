//! `rta serve`.

use crate::cli::ServeArgs;
use crate::event::Limits;
use crate::server::{self, ServeConfig};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(args.data_dir);
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
    config.max_connections = args.max_connections.max(1);
    config.request_timeout = args
        .request_timeout
        .max(std::time::Duration::from_millis(100));
    config.idle_timeout = args.idle_timeout.max(std::time::Duration::from_millis(100));
    config.push_interval = args.push_interval.max(std::time::Duration::from_millis(10));
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
