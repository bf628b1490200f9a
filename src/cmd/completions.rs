//! `rta completions SHELL`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "rta", &mut out);
    super::write_stdout(&out)?;
    Ok(crate::client::exit::OK)
}
