//! `detector`: eBPF lateral-movement detector. Everything lives in the library; this only parses
//! the command line, sets up logging and maps errors to an exit status.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = detector::cli::Cli::parse();
    detector::cli::init_logging(cli.verbose);
    match detector::cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("detector: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
