//! `detector run`.

use std::process::ExitCode;

/// Arguments of `detector run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs the agent.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
