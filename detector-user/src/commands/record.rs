//! `detector record`.

use std::process::ExitCode;

/// Arguments of `detector record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {}

/// Runs the agent.
pub fn run(_args: RecordArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
