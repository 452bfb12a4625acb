//! Builds the kernel programs (`detector-ebpf`) for the bpf target with aya-build and leaves the
//! object in `OUT_DIR`, from where `src/sources/loader.rs` embeds it in the binary.

use std::process::Command;

use anyhow::{anyhow, Context as _};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_some() {
        // Host-only builds (engine work, docs): embed an empty object; the agent then refuses
        // to capture with a clear message instead of failing to compile.
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        std::fs::write(out.join("detector"), []).context("write empty eBPF object")?;
        return Ok(());
    }
    preflight()?;
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "detector-ebpf")
        .ok_or_else(|| anyhow!("detector-ebpf package not found in the workspace"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}

/// Fails with one sentence naming the fix when the eBPF toolchain is missing, instead of a page
/// of cargo output from deep inside the nested build.
fn preflight() -> anyhow::Result<()> {
    const FIX: &str = "run `cargo xtask setup` (installs rust-src for nightly and bpf-linker)";
    let rustc_ok = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !rustc_ok {
        return Err(anyhow!("the nightly Rust toolchain is missing: {FIX}"));
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let rust_src = std::path::Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !rust_src.exists() {
        return Err(anyhow!(
            "rust-src for the nightly toolchain is missing: {FIX}"
        ));
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !linker_ok {
        return Err(anyhow!(
            "bpf-linker is not installed or does not start: {FIX}"
        ));
    }
    Ok(())
}
