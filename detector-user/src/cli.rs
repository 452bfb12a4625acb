//! Command-line interface (clap). Each subcommand's arguments live beside its implementation in
//! `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

/// eBPF lateral-movement detector.
#[derive(Debug, Parser)]
#[command(name = "detector", version, about)]
pub struct Cli {
    /// More logging on stderr (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Capture from the kernel and detect (alerts as NDJSON on stdout).
    Run(commands::run::RunArgs),
    /// Capture enriched events to an NDJSON file for `detector replay`.
    Record(commands::record::RecordArgs),
    /// Run the rules over a recording (events NDJSON) and print alerts.
    Replay(commands::replay::ReplayArgs),
    /// Check or test rule files.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Learn a baseline of peers per identity.
    Learn(commands::learn::LearnArgs),
    /// Ask a running agent (its `--metrics-addr` endpoint) which programs are attached; exits
    /// 1 when health is red.
    Status(commands::status::StatusArgs),
    /// Load and attach the kernel programs on this kernel, print which hook covers each
    /// concern (or why none does), and detach; exits 1 when some coverage is lost.
    Probe(commands::probe::ProbeArgs),
    /// The credential ledger: every credential, its owner, who used it, what it reached,
    /// its rotations (read-only; works while the agent runs).
    Inventory(commands::inventory::InventoryArgs),
}

/// Logs go to stderr so that stdout stays a clean NDJSON stream.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Record(args) => commands::record::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Rules(cmd) => commands::rules::run(cmd),
        Command::Learn(args) => commands::learn::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Probe(args) => commands::probe::run(args),
        Command::Inventory(args) => commands::inventory::run(args),
    }
}
