//! `detector replay` (engine issue; in progress).

use std::process::ExitCode;

/// Arguments of `detector replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `detector replay`.
pub fn run(_args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("detector replay is not available yet")
}
