//! `cargo xtask bench ledger`: the credential ledger's cost.
//!
//! 1. `ledgerbench` (tests/src/bin/ledgerbench.rs): the agent's ledger code at scale (10 k
//!    credentials, 1 k identities, 10 M uses over 90 simulated days): writer CPU per credential
//!    use, RSS, disk, reopen time, the capture loop's cost per event. Its options go after the
//!    name (`cargo xtask bench ledger --uses 1000000`).
//! 2. The live pipeline's syscall → alert latency with and without the ledger, side by side:
//!    `detbench latency` (as `cargo xtask bench latency`) alternately with `--no-ledger` and
//!    with the ledger, `--latency-rounds` rounds (default 2) of `--latency-triggers` triggers
//!    (default 2000) each, then one table of both. `--latency-only` skips part 1.

use std::{path::Path, process::Stdio};

use anyhow::{bail, Context as _, Result};

use super::{as_root, status};

/// Runs the ledger benchmark.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let (mut rounds, mut triggers, mut scale) = (2u32, 2000u32, true);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u32> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: not a number"))
        };
        match a.as_str() {
            "--latency-rounds" => rounds = value(a)?,
            "--latency-triggers" => triggers = value(a)?,
            "--latency-only" => scale = false,
            _ => rest.push(a.clone()),
        }
    }
    let target = crate::build_release(
        root,
        &[
            ("detector-user", "detector"),
            ("tests", "detbench"),
            ("tests", "ledgerbench"),
        ],
    )?;
    if scale {
        status(as_root(&target.join("ledgerbench")).args(&rest))?;
        println!();
    }
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for ledger in [false, true] {
            let mut cmd = as_root(&target.join("detbench"));
            cmd.arg("latency")
                .arg("--detector")
                .arg(target.join("detector"))
                .args(["--triggers", &triggers.to_string()]);
            if !ledger {
                cmd.arg("--agent-arg=--no-ledger");
            }
            eprintln!("xtask: {cmd:?}");
            let out = cmd
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("starting {cmd:?}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            if !out.status.success() {
                bail!("detbench latency failed: {}", out.status);
            }
            let row = text
                .lines()
                .find_map(|l| l.strip_prefix("BENCHMARKS.md row: "))
                .unwrap_or("(no row)")
                .to_string();
            rows.push((round, ledger, row));
        }
    }
    println!("\n== syscall -> alert latency, side by side (round, ledger, then detbench's row: agent args | triggers (rate) | missing | p50 | p90 | p99 | p99.9 | max | load)");
    for (round, ledger, row) in rows {
        println!(
            "round {round} | ledger {} | {row}",
            if ledger { "on " } else { "off" }
        );
    }
    Ok(())
}
