//! One module per subcommand: each turns parsed arguments into a run.

pub mod serve;
