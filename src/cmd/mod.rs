//! One module per subcommand: each turns parsed arguments into a run and
//! returns the exit code.

pub mod alerts;
pub mod completions;
pub mod generate;
pub mod query;
pub mod replay;
pub mod serve;

use std::io::{self, Write};

/// Writes to stdout; a closed pipe (`rta query | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Resolves when Ctrl-C is pressed.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
