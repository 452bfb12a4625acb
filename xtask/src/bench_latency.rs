//! `cargo xtask bench latency|flood`: builds the release `detector` and the `detbench` driver
//! (tests/src/bin/detbench.rs) and runs the driver as root. Extra arguments go to the driver
//! (`cargo xtask bench latency -- --triggers 2000`; see `detbench latency --help`).

use std::path::Path;

use anyhow::Result;

use super::{as_root, status};

/// Runs benchmark `which` (`latency` or `flood`).
pub fn run(which: &str, root: &Path, args: &[String]) -> Result<()> {
    let target = crate::build_release(
        root,
        &[("detector-user", "detector"), ("tests", "detbench")],
    )?;
    status(
        as_root(&target.join("detbench"))
            .arg(which)
            .arg("--detector")
            .arg(target.join("detector"))
            .args(args),
    )
}
