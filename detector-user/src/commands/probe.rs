//! `detector probe`: loads and attaches the kernel programs on this kernel, says for each
//! concern which hook covers it (and through which fallback) or why nothing does, and detaches.
//! Answers "what will the agent see on this node?" before deploying it, and is what the kernel
//! matrix of `cargo xtask test` runs inside every kernel it boots.

use std::process::ExitCode;

use serde::Serialize;

use super::capture_opts::CaptureArgs;
use crate::sources::{
    loader::{self, KernelReads, ProgramStatus},
    preflight,
};

/// Arguments of `detector probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// Capture flags (`--hooks`, `--kernel-reads`, …), as for `detector run`.
    #[command(flatten)]
    pub(crate) capture: CaptureArgs,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What `probe --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Probe {
    /// `uname -r`.
    pub(crate) kernel: String,
    /// How kernel structures are read.
    pub(crate) reads: KernelReads,
    /// Every concern, attached or not.
    pub(crate) programs: Vec<ProgramStatus>,
}

/// Runs `detector probe`: exit 0 when every enabled concern is covered, 1 when some coverage
/// is lost, 2 (an error) when nothing can attach.
pub(crate) fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let opts = args.capture.kernel_options()?;
    let env = preflight::check(opts.btf.as_deref())?;
    let loaded = loader::load(&env, &opts.load)?;
    let probe = Probe {
        kernel: preflight::kernel_release(),
        reads: loaded.reads.clone(),
        programs: loaded.status.clone(),
    };
    drop(loaded);
    let lost = probe
        .programs
        .iter()
        .any(|p| !p.attached && opts.load.groups.contains(&p.group));
    if args.json {
        println!("{}", serde_json::to_string(&probe)?);
    } else {
        print!("{}", table(&probe));
    }
    Ok(if lost {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The human form: one line per concern.
pub(crate) fn table(p: &Probe) -> String {
    let mut out = format!(
        "kernel {}: kernel structures read by {}{}\n",
        p.kernel,
        p.reads.mode,
        match (&p.reads.reason, p.reads.mode, p.reads.casts) {
            (Some(r), _, _) => format!(" ({r})"),
            (None, "direct", false) => " (no bpf_rdonly_cast: a few members by helper)".into(),
            _ => String::new(),
        }
    );
    for s in &p.programs {
        let state = match (s.attached, &s.fallback, s.reason.as_deref()) {
            (true, None, _) => "attached".to_string(),
            (true, Some(f), _) => format!("fallback: {f}"),
            (false, _, Some("disabled by configuration")) => "off".to_string(),
            (false, _, r) => format!("MISSING: {}", r.unwrap_or("unknown")),
        };
        out.push_str(&format!(
            "  {:<8} {:<27} {:<50} {state}\n",
            format!("{:?}", s.group).to_lowercase(),
            s.program,
            s.hook
        ));
    }
    out
}
