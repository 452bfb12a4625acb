//! `detector learn` (engine issue; in progress).

use std::process::ExitCode;

/// Arguments of `detector learn`.
#[derive(Debug, clap::Args)]
pub struct LearnArgs {}

/// Runs `detector learn`.
pub fn run(_args: LearnArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("detector learn is not available yet")
}
