//! `detector replay FILE`: runs the rules over a recording (events NDJSON, as written by
//! `detector record`) and prints alerts as NDJSON. Deterministic: alert ids derive from the
//! recording's header unless `--random-ids`. Malformed or truncated lines are reported with
//! their line number on stderr and skipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::load::{load_policy, load_rules};
use crate::engine::{Engine, EngineOptions, IdMode};
use crate::enrich::identity::{IdentityConfig, IdentityResolver};
use crate::event::{Event, RecordingHeader};

/// Arguments of `detector replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Recording to replay (`-` for stdin).
    pub file: PathBuf,
    /// Extra rule files or directories (added to the embedded default pack).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the embedded default pack.
    #[arg(long)]
    pub no_default_rules: bool,
    /// Workload identities config (identities.yaml).
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Learned baseline of peers (from `detector learn`).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Random (UUID v4) alert ids instead of ids derived from the recording.
    #[arg(long)]
    pub random_ids: bool,
    /// Out-of-order tolerance (e.g. `500ms`).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub tolerance: std::time::Duration,
    /// Print engine counters on stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

/// Reads a recording line by line: calls `on_header` for a header line, `on_event` for each
/// event; a line that does not parse is reported (with its number) on stderr and skipped.
/// Returns the number of skipped lines.
pub fn read_recording(
    path: &Path,
    mut on_header: impl FnMut(RecordingHeader),
    mut on_event: impl FnMut(Event) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let (reader, size): (Box<dyn Read>, u64) = if path == Path::new("-") {
        (Box::new(io::stdin()), 0)
    } else {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(f), size)
    };
    // A progress bar only for a person watching a large file.
    let bar = (io::stderr().is_terminal() && size > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(size);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}") {
            b.set_style(style);
        }
        b
    });
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::new();
    let (mut line_no, mut skipped) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(ev) => on_event(ev)?,
            Err(e) => {
                if line_no == 1 {
                    if let Ok(h) = serde_json::from_slice::<RecordingHeader>(line) {
                        if h.format == "detector-recording" {
                            on_header(h);
                            continue;
                        }
                    }
                }
                skipped += 1;
                eprintln!("{}:{line_no}: skipped: {e}", path.display());
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(skipped)
}

/// Runs `detector replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(&args.rules, args.no_default_rules)?;
    let policy = load_policy(args.identities.as_deref(), args.baseline.as_deref())?;
    let resolver = IdentityResolver::new(match &args.identities {
        Some(p) => IdentityConfig::parse(&p.display().to_string(), &std::fs::read_to_string(p)?)?,
        None => IdentityConfig::default(),
    });
    let opts = EngineOptions {
        reorder_tolerance: u64::try_from(args.tolerance.as_nanos()).unwrap_or(u64::MAX),
        ids: if args.random_ids { IdMode::Random } else { IdMode::Derived(0) },
        ..Default::default()
    };
    let mut engine = Engine::new(rules, policy, opts);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut alerts = Vec::new();
    let write = |alerts: &mut Vec<crate::engine::Alert>, out: &mut BufWriter<_>| -> anyhow::Result<()> {
        for a in alerts.drain(..) {
            serde_json::to_writer(&mut *out, &a)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    // Both callbacks need the header: the first line sets it, events read it.
    let header = std::cell::RefCell::new(None);
    let skipped = read_recording(
        &args.file,
        |h| *header.borrow_mut() = Some(h),
        |mut ev| {
            if let (Some(h), true) = (&*header.borrow(), engine.stats().events == 0) {
                engine.set_host(&h.host, h.started, args.random_ids);
            }
            if let Some(p) = ev.process.as_mut() {
                resolver.apply(p);
            }
            engine.process(&ev, &mut alerts);
            write(&mut alerts, &mut out)
        },
    )?;
    engine.finish(&mut alerts);
    write(&mut alerts, &mut out)?;
    out.flush()?;
    if args.stats {
        eprintln!("{}", serde_json::to_string(engine.stats())?);
    }
    if skipped > 0 {
        eprintln!("{}: {skipped} malformed line(s) skipped", args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}
