//! `detector learn`: observes outbound connections — live for `--duration D`, or from a
//! recording with `--from FILE` — and writes the peers each workload identity contacted as a
//! baseline YAML a person can read and edit. With the baseline (`--baseline`), the
//! first-seen-peer rule flags peers outside it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::capture_opts::CaptureArgs;
use super::replay::read_recording;
use crate::enrich::identity::{Baseline, IdentityConfig, IdentityResolver};
use crate::event::{Direction, Event, Kind};

/// Arguments of `detector learn`.
#[derive(Debug, clap::Args)]
pub(crate) struct LearnArgs {
    /// Learn from a recording (`-` for stdin) instead of live capture.
    #[arg(long = "from", value_name = "FILE", conflicts_with = "duration")]
    pub(crate) from: Option<PathBuf>,
    /// Observe live for this long (e.g. `10m`, `24h`).
    #[arg(long, value_parser = humantime::parse_duration, required_unless_present = "from")]
    pub(crate) duration: Option<Duration>,
    /// Workload identities config, for events without identities.
    #[arg(long, value_name = "FILE")]
    pub(crate) identities: Option<PathBuf>,
    /// Existing baseline to extend.
    #[arg(long, value_name = "FILE")]
    pub(crate) merge: Option<PathBuf>,
    /// Output file (stdout when absent).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Capture flags (live learning).
    #[command(flatten)]
    pub(crate) capture: CaptureArgs,
}

/// Adds an outbound connection's peer (`addr:port`) to its identity's set.
pub(crate) fn observe(baseline: &mut Baseline, resolver: &IdentityResolver, mut ev: Event) {
    let (Some(p), Some(n)) = (ev.process.as_mut(), ev.net.as_ref()) else {
        return;
    };
    if ev.kind == Kind::Connect && n.direction == Direction::Outbound {
        let id = resolver.apply(p).to_string();
        // `[addr]:port` for IPv6: `fd00::1:443` would read back as another address.
        baseline
            .peers
            .entry(id)
            .or_default()
            .insert(crate::engine::fields::dst_string(&n.dst_addr, n.dst_port));
    }
}

/// Runs `detector learn`.
pub(crate) fn run(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let resolver = IdentityResolver::new(match &args.identities {
        Some(p) => crate::engine::load::load_identities(p)?,
        None => IdentityConfig::default(),
    });
    let mut baseline = match &args.merge {
        Some(p) => Baseline::parse(
            &p.display().to_string(),
            &crate::input::read_source(p, &crate::input::BASELINE)?,
        )?,
        None => Baseline::default(),
    };
    match (&args.from, args.duration) {
        (Some(from), _) => {
            read_recording(
                from,
                |_| {},
                |ev| {
                    observe(&mut baseline, &resolver, ev);
                    Ok(())
                },
            )?;
        }
        (None, Some(d)) => learn_live(&args.capture, d, &resolver, &mut baseline)?,
        (None, None) => anyhow::bail!("give --duration D (live) or --from FILE"),
    }
    let text = baseline.to_yaml();
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn learn_live(
    capture: &CaptureArgs,
    duration: Duration,
    resolver: &IdentityResolver,
    baseline: &mut Baseline,
) -> anyhow::Result<()> {
    let opts = capture.kernel_options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cap = crate::capture::LiveCapture::start(&opts)?;
        // Said once attached, so an operator (or a test) knows observation has begun.
        tracing::info!(duration = %humantime::format_duration(duration), "learning");
        let deadline = tokio::time::Instant::now() + duration;
        let stop = super::capture_opts::shutdown_signal();
        tokio::pin!(stop);
        let mut events = Vec::new();
        loop {
            events.clear();
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(deadline) => break,
                r = cap.next_events(&mut events) => r?,
            }
            for ev in events.drain(..) {
                observe(baseline, resolver, ev);
            }
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_outbound_peers_per_identity_from_a_recording() {
        let resolver = IdentityResolver::default();
        let mut b = Baseline::default();
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/engine/testdata/attack.ndjson"
        ));
        read_recording(
            &path,
            |_| {},
            |ev| {
                observe(&mut b, &resolver, ev);
                Ok(())
            },
        )
        .unwrap();
        let ssh = &b.peers["exe:/usr/bin/ssh@root"];
        assert_eq!(ssh.len(), 4);
        assert!(ssh.contains("10.0.0.10:22"));
        assert_eq!(b.peers["exe:/usr/bin/ssh@alice"].len(), 1);
        assert!(
            !b.peers.contains_key("exe:/usr/bin/python3@root"),
            "credential reads are not peers"
        );
        // What learn writes, replay reads back.
        assert_eq!(Baseline::parse("b.yaml", &b.to_yaml()).unwrap(), b);
    }
}
