//! The `rta` binary: parse the command line, set up logging, dispatch.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rta::cli::{Cli, Command, LogFormat};
use rta::client::{ClientError, UsageError, exit};
use rta::cmd;

/// mimalloc: the server allocates many short-lived buffers per request,
/// which glibc's allocator serves markedly slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await.map(|()| exit::OK),
            Command::Generate(args) => cmd::generate::run(args).await,
            Command::Replay(args) => cmd::replay::run(args).await,
            Command::Query(args) => cmd::query::run(args).await,
            Command::Alerts(args) => cmd::alerts::run(args).await,
            Command::Completions(args) => cmd::completions::run(args),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = match (
                e.downcast_ref::<ClientError>(),
                e.downcast_ref::<UsageError>(),
            ) {
                (Some(client), _) => client.exit_code(),
                (None, Some(_)) => exit::UNREACHABLE,
                (None, None) => exit::FAILED,
            };
            ExitCode::from(code)
        }
    }
}

fn init_logging(format: LogFormat) {
    // Libraries speak only of trouble unless RTA_LOG names them
    // (RTA_LOG=debug,async_nats=debug).
    let quiet = "poem=warn,async_nats=warn";
    let filter = match std::env::var("RTA_LOG") {
        Ok(spec) if !spec.is_empty() => format!("{quiet},{spec}"),
        _ => format!("info,{quiet}"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{quiet}")));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // tracing's own JSON lines: timestamp, level, target and fields.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}
