//! Capture options shared by `run`, `record` and `learn`, and what those capture sessions
//! share: the host name, the stop signal.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::sources::{
    kernel::KernelOptions,
    loader::{Group, ReadMode},
    watchlist,
};

/// Host name for headers and alerts.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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

/// Capture flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CaptureArgs {
    /// Hook groups to attach: process, net, files (open-family syscall exits), reads (io_uring
    /// and page-cache reads). `--hooks process,net,reads` taxes no unrelated syscall.
    #[arg(long, value_delimiter = ',', default_value = "process,net,files,reads")]
    pub(crate) hooks: Vec<String>,
    /// Watch-list file (`pattern category` per line) replacing the embedded default.
    #[arg(long)]
    pub(crate) watch_list: Option<PathBuf>,
    /// Extra watch patterns (`PATTERN` or `PATTERN=CATEGORY`), added to the list.
    #[arg(long = "watch")]
    pub(crate) watch: Vec<String>,
    /// Ring buffer size in MiB (power of two).
    #[arg(long, default_value_t = 16)]
    pub(crate) ring_mib: u32,
    /// The kernel forces one consumer wakeup each time the pending ring-buffer bytes cross a
    /// multiple of this (0: never; the poll timer alone drains the ring).
    #[arg(long, default_value_t = 256 * 1024)]
    pub(crate) wakeup_bytes: u32,
    /// Kernel BTF file.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    pub(crate) btf: PathBuf,
    /// Longest a record waits before the consumer looks when idle (e.g. 1ms).
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub(crate) poll_interval: Duration,
    /// The same while records are flowing (they did in the last 50 ms; e.g. 500us).
    #[arg(long, default_value = "500us", value_parser = humantime::parse_duration)]
    pub(crate) active_poll_interval: Duration,
    /// How the kernel programs read kernel structures: `auto` (direct loads where this kernel
    /// allows them, else helper calls), `direct` or `helper` (to test or compare a kernel).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) kernel_reads: ReadMode,
}

impl CaptureArgs {
    /// Kernel options from the flags.
    pub(crate) fn kernel_options(&self) -> anyhow::Result<KernelOptions> {
        let mut o = KernelOptions::default();
        o.load.groups = self
            .hooks
            .iter()
            .map(|h| match h.as_str() {
                "process" => Ok(Group::Process),
                "net" => Ok(Group::Net),
                "files" => Ok(Group::Files),
                "reads" => Ok(Group::Reads),
                other => {
                    anyhow::bail!("--hooks: unknown group `{other}` (process, net, files, reads)")
                }
            })
            .collect::<anyhow::Result<_>>()?;
        if let Some(p) = &self.watch_list {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            o.watch_patterns = watchlist::parse(&text, &p.display().to_string())?;
        }
        for (i, w) in self.watch.iter().enumerate() {
            let line = match w.split_once('=') {
                Some((p, c)) => format!("{p} {c}"),
                None => format!("{w} other"),
            };
            o.watch_patterns
                .extend(watchlist::parse(&line, &format!("--watch #{}", i + 1))?);
        }
        if !self.ring_mib.is_power_of_two() {
            anyhow::bail!("--ring-mib must be a power of two, got {}", self.ring_mib);
        }
        o.load.ring_bytes = self.ring_mib * 1024 * 1024;
        o.poll_interval = self.poll_interval;
        o.active_poll_interval = self.active_poll_interval;
        o.load.wakeup_bytes = self.wakeup_bytes;
        o.load.reads = self.kernel_reads;
        o.btf = Some(self.btf.clone());
        Ok(o)
    }
}
