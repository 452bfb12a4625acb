//! `detector learn --from FILE`: replays a recording and writes the peers each workload
//! identity contacted as a baseline YAML a person can read and edit; with the baseline, the
//! first-seen-peer rule flags peers outside it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::replay::read_recording;
use crate::enrich::identity::{Baseline, IdentityConfig, IdentityResolver};
use crate::event::{Direction, Kind};

/// Arguments of `detector learn`.
#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// Recording to learn from (`-` for stdin).
    #[arg(long = "from", value_name = "FILE")]
    pub from: PathBuf,
    /// Workload identities config, for events recorded without identities.
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Existing baseline to extend.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// Output file (stdout when absent).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `detector learn`.
pub fn run(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let resolver = IdentityResolver::new(match &args.identities {
        Some(p) => IdentityConfig::parse(&p.display().to_string(), &std::fs::read_to_string(p)?)?,
        None => IdentityConfig::default(),
    });
    let mut baseline = match &args.merge {
        Some(p) => Baseline::parse(&p.display().to_string(), &std::fs::read_to_string(p)?)?,
        None => Baseline::default(),
    };
    read_recording(
        &args.from,
        |_| {},
        |mut ev| {
            let (Some(p), Some(n)) = (ev.process.as_mut(), ev.net.as_ref()) else {
                return Ok(());
            };
            if ev.kind == Kind::Connect && n.direction == Direction::Outbound {
                let id = resolver.apply(p).to_string();
                baseline
                    .peers
                    .entry(id)
                    .or_default()
                    .insert(format!("{}:{}", n.dst_addr, n.dst_port));
            }
            Ok(())
        },
    )?;
    let text = baseline.to_yaml();
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
