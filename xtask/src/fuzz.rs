//! Fuzzing in CI: every target of `fuzz/` (cargo-fuzz, libFuzzer) runs for a bounded time
//! from the committed seed corpus (`fuzz/corpus/<target>/`, which holds the reproducers of the
//! hostile-input issue) plus what earlier local runs found (`fuzz/corpus-run/<target>/`,
//! ignored by git). A crash (panic, sanitizer report), an input using more memory than
//! [`RSS_LIMIT_MB`] or running longer than [`TIMEOUT_S`] fails the run; libFuzzer leaves the
//! input in `fuzz/artifacts/<target>/` and the command to reproduce it is printed.
//!
//! The targets build with `AYA_BUILD_SKIP=1` (they need no kernel programs), with the nightly
//! toolchain cargo-fuzz requires.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// cargo-fuzz release line `setup` installs.
pub const CARGO_FUZZ_VERSION: &str = "0.13";
/// Every target, in the order they run.
pub const TARGETS: &[&str] = &[
    "rules",
    "config",
    "identities",
    "baseline",
    "replay",
    "kernel_record",
    "dns",
];
/// Seconds each target runs in `cargo xtask test`.
pub const SECONDS: u64 = 60;
/// Peak RSS of the fuzzing process above which libFuzzer reports an out-of-memory (also the
/// largest single allocation). The loaders' own limits keep any input far below it.
pub const RSS_LIMIT_MB: u64 = 2048;
/// Seconds one input may take.
pub const TIMEOUT_S: u64 = 10;
/// Longest generated input (the seeds may be longer; they are read whole).
pub const MAX_LEN: usize = 64 << 10;

/// What libFuzzer said about one run.
#[derive(Debug, Default)]
struct Summary {
    runs: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    exec_s: u64,
    rss_mb: u64,
}

/// Reads the last status line (`#N DONE cov: C ft: F corp: K/… exec/s: E rss: R Mb`).
fn summary(log: &str) -> Summary {
    let mut s = Summary::default();
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"));
    let Some(line) = last else { return s };
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |after: &str| -> u64 {
        words
            .iter()
            .position(|w| *w == after)
            .and_then(|i| words.get(i + 1))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim_end_matches("Mb").parse().ok())
            .unwrap_or(0)
    };
    s.runs = words
        .first()
        .and_then(|w| w.trim_start_matches('#').parse().ok())
        .unwrap_or(0);
    s.cov = num("cov:");
    s.ft = num("ft:");
    s.corpus = num("corp:");
    s.exec_s = num("exec/s:");
    s.rss_mb = num("rss:");
    s
}

fn fuzz_cmd(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir)
        .args(["+nightly", "fuzz"])
        .env("AYA_BUILD_SKIP", "1");
    c
}

/// Builds and runs `targets` (all when empty) for `seconds` each; prints a table of
/// executions and coverage and writes it to `target/fuzz-summary.md`.
pub fn run(root: &Path, targets: &[String], seconds: u64) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    let targets: Vec<String> = if targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        targets.to_vec()
    };
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!("unknown fuzz target `{t}` ({})", TARGETS.join(", "));
        }
    }
    super::status(fuzz_cmd(&fuzz_dir).arg("build"))?;
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let mut table = vec![
        format!(
            "fuzzing, {seconds} s per target (rss limit {RSS_LIMIT_MB} MB, timeout {TIMEOUT_S} s)"
        ),
        "| target | runs | exec/s | cov | ft | corpus | peak rss MB |".to_string(),
        "|---|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    let mut failed = Vec::new();
    for t in &targets {
        let seeds = fuzz_dir.join("corpus").join(t);
        let grown = fuzz_dir.join("corpus-run").join(t);
        let artifacts: PathBuf = fuzz_dir.join("artifacts").join(t);
        std::fs::create_dir_all(&grown)?;
        std::fs::create_dir_all(&artifacts)?;
        let log = logs.join(format!("{t}.log"));
        eprintln!(
            "xtask: fuzzing {t} for {seconds} s (log: {})",
            log.display()
        );
        let out = fuzz_cmd(&fuzz_dir)
            .args(["run", t])
            .arg(&grown)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg(format!("-timeout={TIMEOUT_S}"))
            .arg(format!("-max_len={MAX_LEN}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .output()
            .with_context(|| format!("starting cargo fuzz run {t}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&log, &text)?;
        let s = summary(&text);
        table.push(format!(
            "| {t} | {} | {} | {} | {} | {} | {} |",
            s.runs, s.exec_s, s.cov, s.ft, s.corpus, s.rss_mb
        ));
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            eprintln!(
                "xtask: fuzz target {t} failed ({}); the input is in {}; reproduce with: cd fuzz && AYA_BUILD_SKIP=1 cargo +nightly fuzz run {t} {}/<file>",
                out.status,
                artifacts.display(),
                artifacts.display()
            );
            failed.push(t.clone());
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    std::fs::write(root.join("target/fuzz-summary.md"), format!("{table}\n"))?;
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_status() {
        let log = "#1024\tpulse  cov: 10 ft: 11 corp: 3/40b exec/s: 512 rss: 40Mb\n\
                   #1187012\tDONE   cov: 3571 ft: 14200 corp: 1204/301Kb lim: 4096 exec/s: 19458 rss: 512Mb\n\
                   Done 1187012 runs in 61 second(s)\n";
        let s = summary(log);
        assert_eq!(
            (s.runs, s.cov, s.ft, s.corpus, s.exec_s, s.rss_mb),
            (1_187_012, 3571, 14200, 1204, 19458, 512)
        );
    }
}
