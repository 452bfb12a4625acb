//! `cargo xtask bench soak [--minutes N] [--seed S]`: builds the release `detector`, the
//! `soak` driver (tests/src/bin/soak.rs) and the test `actor`, and runs the driver as root: a
//! mixed benign workload with attacks injected at random times under the real agent (default
//! pack, no config), 30 minutes unless `--minutes` says otherwise. The report (false alerts
//! per host-hour by rule, recall of the attacks) is printed and kept under
//! `target/soak/<UTC time>/`.

use std::path::Path;

use anyhow::Result;

use super::{as_root, output, status};

/// Runs the soak; extra arguments go to the driver.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let target = crate::build_release(
        root,
        &[
            ("detector-user", "detector"),
            ("tests", "soak"),
            ("tests", "actor"),
        ],
    )?;
    let stamp = output(std::process::Command::new("date").args(["-u", "+%Y%m%dT%H%M%SZ"]))?;
    let out = crate::target_dir(root).join("soak").join(stamp.trim());
    status(
        as_root(&target.join("soak"))
            .arg("--detector")
            .arg(target.join("detector"))
            .arg("--actor")
            .arg(target.join("actor"))
            .arg("--out")
            .arg(&out)
            .args(args),
    )
}
