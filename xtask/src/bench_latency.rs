//! `cargo xtask bench latency|flood`: builds the release `detector` and the `detbench` driver
//! (tests/src/bin/detbench.rs) and runs the driver as root. Extra arguments go to the driver
//! (`cargo xtask bench latency -- --triggers 2000`; see `detbench latency --help`).

use std::{path::Path, process::Command};

use anyhow::Result;

use super::{as_root, status};

/// Runs benchmark `which` (`latency` or `flood`).
pub fn run(which: &str, root: &Path, args: &[String]) -> Result<()> {
    status(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "detector-user",
        "--bin",
        "detector",
        "-p",
        "tests",
        "--bin",
        "detbench",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
        .join("release");
    status(
        as_root(&target.join("detbench"))
            .arg(which)
            .arg("--detector")
            .arg(target.join("detector"))
            .args(args),
    )
}
