//! `detector run`: capture from the kernel, enrich, attribute to identities, correlate, and
//! write alerts as NDJSON on stdout (and, with `--events`, every enriched event too).

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use super::{capture_opts::CaptureArgs, detect_opts::DetectArgs, record::hostname};
use crate::{
    capture::LiveCapture,
    engine::IdMode,
    enrich::fingerprint::{load_or_create_key, Fingerprinter},
    event::{Event, Kind},
    sources::kernel::boottime_ns,
};

/// Arguments of `detector run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Also stream every enriched event (NDJSON) on stdout, interleaved with alerts.
    #[arg(long)]
    pub events: bool,
    /// Where the agent keeps its state (the fingerprint key, 0600).
    #[arg(long, default_value = "/var/lib/detector")]
    pub state_dir: PathBuf,
    /// Detection flags.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Capture flags.
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Keyed fingerprints of credential contents; the key lives in the state dir, 0600.
fn fingerprinter(state_dir: &std::path::Path) -> Option<Fingerprinter> {
    let key = std::fs::create_dir_all(state_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            load_or_create_key(&state_dir.join("fingerprint.key")).map_err(|e| e.to_string())
        });
    match key {
        Ok(k) => Some(Fingerprinter::new(k, 4096)),
        Err(e) => {
            tracing::warn!("credential fingerprints disabled: {e}");
            None
        }
    }
}

/// Adds the content fingerprint to a credential event (never the content itself).
fn fingerprint(fp: &mut Option<Fingerprinter>, ev: &mut Event) {
    let (Some(fp), Some(f)) = (fp.as_mut(), ev.file.as_mut()) else {
        return;
    };
    if f.category == "environ" || f.fingerprint.is_some() {
        return;
    }
    match fp.of_file(std::path::Path::new(&f.watched)) {
        Ok(s) => f.fingerprint = Some(s),
        Err(e) => tracing::debug!("no fingerprint for {}: {e}", f.watched),
    }
}

/// Runs the agent.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = args.capture.kernel_options()?;
    // Rules and identities first: a broken rule set fails before anything is attached.
    let (mut engine, resolver) = args.detect.build(IdMode::Random, &hostname())?;
    let mut fp = fingerprinter(&args.state_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cap = LiveCapture::start(&opts)?;
        tracing::info!(
            attached = cap.source.status.iter().filter(|s| s.attached).count(),
            watched = cap.source.watch_list().len(),
            rules = engine.rules().rules.len(),
            "capturing"
        );
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let (mut events, mut alerts) = (Vec::new(), Vec::new());
        loop {
            events.clear();
            tokio::select! {
                _ = &mut stop => break,
                r = cap.next_events(&mut events) => r?,
            }
            for ev in events.iter_mut() {
                if let Some(p) = ev.process.as_mut() {
                    resolver.apply(p);
                }
                if matches!(ev.kind, Kind::CredOpen | Kind::CredRead) {
                    fingerprint(&mut fp, ev);
                }
                if args.events {
                    serde_json::to_writer(&mut out, &*ev)?;
                    out.write_all(b"\n")?;
                }
                engine.process(ev, &mut alerts);
            }
            // Windows close on time as well as on events.
            engine.flush(cap.enricher.wall(boottime_ns()), &mut alerts);
            for a in alerts.drain(..) {
                serde_json::to_writer(&mut out, &a)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        engine.finish(&mut alerts);
        for a in alerts.drain(..) {
            serde_json::to_writer(&mut out, &a)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        tracing::info!(
            records = cap.source.stats.records,
            lost = cap.source.stats.lost,
            "stopped"
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
