//! One module per subcommand.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod capture_opts;
pub mod detect_opts;
pub mod inventory;
pub mod learn;
pub mod probe;
pub mod record;
pub mod replay;
pub mod rules;
pub mod run;
pub mod status;

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Record(args) => record::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Learn(args) => learn::run(args),
        Command::Status(args) => status::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Inventory(args) => inventory::run(args),
    }
}
