//! `detector run`: capture from the kernel, enrich, and stream.

use std::{
    io::{BufWriter, Write as _},
    process::ExitCode,
};

use super::capture_opts::CaptureArgs;
use crate::capture::LiveCapture;

/// Arguments of `detector run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Also stream every enriched event (NDJSON) on stdout.
    #[arg(long)]
    pub events: bool,
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

/// Runs the agent.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = args.capture.kernel_options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cap = LiveCapture::start(&opts)?;
        tracing::info!(
            attached = cap.source.status.iter().filter(|s| s.attached).count(),
            watched = cap.source.watch_list().len(),
            "capturing"
        );
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let mut events = Vec::new();
        loop {
            events.clear();
            tokio::select! {
                _ = &mut stop => break,
                r = cap.next_events(&mut events) => r?,
            }
            for ev in &events {
                if args.events {
                    serde_json::to_writer(&mut out, ev)?;
                    out.write_all(b"\n")?;
                }
            }
            if !events.is_empty() {
                out.flush()?;
            }
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
