//! `rta serve`.

use crate::cli::ServeArgs;
use crate::event::Limits;
use crate::server::{self, ServeConfig};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(args.data_dir);
    config.retention = args.retention;
    config.token = args.token.filter(|t| !t.is_empty());
    config.max_body_bytes = args.max_body;
    config.read_token = args.read_token.filter(|t| !t.is_empty());
    config.cors_origins = args.cors_origins;
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
    };
    let acceptor = server::bind(&args.addr).await?;
    server::run(acceptor, config, shutdown_signal()).await
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
