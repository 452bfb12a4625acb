//! `detector rules check|test` (engine issue; in progress).

use std::process::ExitCode;

/// `detector rules …`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Load rules and report every problem with its position.
    Check {},
}

/// Runs `detector rules …`.
pub fn run(_cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("detector rules is not available yet")
}
