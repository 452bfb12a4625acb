//! `detector record -o FILE [--duration D]`: enriched events to an NDJSON file that
//! `detector replay` reads. The first line is a [`RecordingHeader`].

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use super::capture_opts::{hostname, shutdown_signal, CaptureArgs};
use crate::{
    capture::LiveCapture,
    event::{RecordingHeader, FORMAT_VERSION},
};

/// Arguments of `detector record`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordArgs {
    /// Output file (`-` for stdout).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Stop after this long (e.g. `30s`, `5m`); default: until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Capture flags.
    #[command(flatten)]
    pub(crate) capture: CaptureArgs,
}

/// Runs `detector record`.
pub(crate) fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let opts = args.capture.kernel_options()?;
    let out: Box<dyn std::io::Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::new(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cap = LiveCapture::start(&opts)?;
        let header = RecordingHeader {
            format: "detector-recording".into(),
            version: FORMAT_VERSION,
            host: hostname(),
            agent: env!("CARGO_PKG_VERSION").into(),
            started: cap.enricher.wall(crate::sources::kernel::boottime_ns()),
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        out.flush()?;
        tracing::info!(
            attached = cap.source.status.iter().filter(|s| s.attached).count(),
            watched = cap.source.watch_list().len(),
            "recording"
        );
        let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let mut events = Vec::new();
        let mut written = 0u64;
        loop {
            events.clear();
            tokio::select! {
                _ = &mut stop => break,
                r = cap.next_events(&mut events) => r?,
            }
            for ev in &events {
                serde_json::to_writer(&mut out, ev)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            if !events.is_empty() {
                out.flush()?;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
        }
        // Whatever is still in the ring buffer belongs to the recording.
        events.clear();
        let mut recs = Vec::new();
        cap.source.drain(&mut recs);
        cap.source.check_loss(&mut recs);
        for r in &recs {
            if let Some(ev) = cap.enricher.enrich(r, cap.source.watch_list()) {
                serde_json::to_writer(&mut out, &ev)?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
        out.flush()?;
        tracing::info!(
            events = written,
            lost = cap.source.stats.lost,
            "recording finished"
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
