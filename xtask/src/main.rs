//! Project chores: `cargo xtask setup | run | test | bench`.
//!
//! `setup` is idempotent and is run by `run`, `test` and `bench` first, so that one command
//! works on a fresh machine: rust-src for the nightly toolchain, bpf-linker built against the
//! nightly toolchain's own LLVM, cargo-fuzz, and the Debian packages the tests need.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

mod bench_hostile;
mod bench_latency;
mod bench_ledger;
mod bench_overhead;
mod bench_soak;
mod fuzz;
mod kernels;

#[derive(Parser)]
#[command(about = "detector project chores")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build (release) and run the agent as root; extra arguments go to `detector run`.
    Run {
        /// Arguments for `detector run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Unit tests, the rule pack's tests and the privileged integration tests.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Only the kernel matrix of `test`: the kernel tests and `detector probe` in both read
    /// modes on this machine's kernel and on each Debian kernel booted under QEMU.
    Kernels,
    /// rustfmt check and clippy (-D warnings) for the host crates and the bpf-target crate.
    Lint,
    /// Runs the fuzz targets (`fuzz/`, cargo-fuzz) for a bounded time each, as `test` does;
    /// fails on a crash, an out-of-memory or a timeout.
    Fuzz {
        /// Targets (default: all).
        targets: Vec<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::SECONDS)]
        seconds: u64,
    },
    /// Benchmarks (`kernel`: hook overhead, attached vs detached, interleaved; `latency`:
    /// syscall → alert line; `flood`: port sweep and open storm; `hostile`: the hostile-input
    /// reproducers, time and peak RSS, `--base DETECTOR` beside another build; `engine --vs
    /// rsigma`: our engine and rsigma-eval on the same stream and rules, as a ratio; `ledger`:
    /// the credential ledger at scale and the latency with and without it; `soak`: a benign
    /// workload with injected attacks under the real agent, `--minutes N`, default 30).
    Bench {
        /// Which benchmark.
        which: String,
        /// Extra arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// bpf-linker release line that builds against LLVM 22 (DEVELOPERS.md recipe).
const BPF_LINKER_VERSION: &str = "0.13";
/// Debian packages the tests use: `ip netns` for the namespace tests, `setpriv`/`unshare`
/// (util-linux) for the privilege and mount-namespace tests, rsyslog as the real syslog
/// receiver of the sink tests (started by the tests with a private config; never the
/// system's), python3 for the OCSF validator, make/gcc and a font for the overhead bench's
/// own tests (its generated C tree and PNG plot). An entry starting with `/` is a file
/// (Debian's own: a program of the same name elsewhere in PATH does not count).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("rsyslogd", "rsyslog"),
    ("python3", "python3"),
    ("systemd-analyze", "systemd"),
    ("make", "make"),
    ("gcc", "gcc"),
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "fonts-dejavu-core",
    ),
    // `cargo xtask bench kernel stats`: per-program run time from `bpf_stats`.
    ("bpftool", "bpftool"),
    // The real programs of the end-to-end rule tests (tests/tests/realworld.rs) and of the
    // soak (`cargo xtask bench soak`): OpenSSH's client and server (started by the tests in
    // their own network namespaces with their own config, never the system's), dnsmasq
    // (the binary only: `dnsmasq-base` runs no system resolver), curl, nmap, ps, the shadow
    // suite and git.
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/sbin/dnsmasq", "dnsmasq-base"),
    ("/usr/bin/curl", "curl"),
    ("/usr/bin/nmap", "nmap"),
    ("/usr/bin/ps", "procps"),
    ("/usr/sbin/useradd", "passwd"),
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/git", "git"),
    // The soak's periodic jobs run under the real cron daemon (started by the soak, with a
    // crontab of its own in /etc/cron.d, removed after).
    ("/usr/sbin/cron", "cron"),
    // The kernel matrix: Debian's kernels booted under QEMU (software emulation) from an
    // initramfs of static busybox with the kernel's own modules, and an ext4 test disk.
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/share/doc/busybox-static", "busybox-static"),
    ("cpio", "cpio"),
    ("modinfo", "kmod"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("xz", "xz-utils"),
    ("strip", "binutils"),
];
/// The OCSF validator of the sink tests: pydantic models generated from the OCSF schema that
/// the package ships (schema exports 1.0–1.7), from PyPI.
const PYPI_PACKAGES: &[(&str, &str)] = &[("ocsf.v1_5_0.events", "pydantic-ocsf==3.0.0")];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let st = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Where the libLLVM links for bpf-linker live. bpf-linker records this folder as its run
/// path, so it must stay.
fn llvm_prefix() -> PathBuf {
    home().join(".local/share/detector/llvm")
}

fn setup() -> Result<()> {
    // 1. The nightly toolchain (preinstalled on our machines; the registry cannot fetch one).
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("the nightly Rust toolchain is required to build the eBPF programs (rustup toolchain install nightly)")?;
    let llvm_major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("cannot read the LLVM version of rustc +nightly")?
        .to_string();

    // 2. rust-src for -Z build-std=core.
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    // 3. bpf-linker, linked against the nightly toolchain's own libLLVM.
    let lib = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("libLLVM.so.{llvm_major}")) && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.{llvm_major}*-rust-* in {}", lib.display()))?;
    let prefix = llvm_prefix();
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so".to_string(), libllvm.clone()] {
        let link = plib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&libllvm), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    // 3b. cargo-fuzz for the fuzz targets `test` runs (libFuzzer comes with libfuzzer-sys).
    let fuzz_ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .contains(&format!("cargo-fuzz {}", fuzz::CARGO_FUZZ_VERSION))
        })
        .unwrap_or(false);
    if !fuzz_ok {
        status(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            &format!("^{}", fuzz::CARGO_FUZZ_VERSION),
            "--locked",
        ]))?;
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
        })
        .unwrap_or(false);
    if !linker_ok {
        status(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    &format!("^{BPF_LINKER_VERSION}"),
                    "--locked",
                    "--force",
                ])
                .args([
                    "--no-default-features",
                    "--features",
                    &format!("llvm-{llvm_major}"),
                ])
                .env("LLVM_PREFIX", &prefix),
        )?;
    }

    // 4. Debian packages for the tests.
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(bin, _)| {
            Command::new("sh")
                .args([
                    "-c",
                    &if bin.starts_with('/') {
                        format!("test -e {bin}")
                    } else {
                        format!("command -v {bin}")
                    },
                ])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!("missing Debian packages {missing:?}: run `cargo xtask setup` as root");
        }
        status(Command::new("apt-get").args(["update", "-q"]))?;
        status(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    // 5. Python packages for the tests, only when their module does not import.
    for (module, pkg) in PYPI_PACKAGES {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !present {
            let pip = |extra: &[&str]| {
                Command::new("python3")
                    .args(["-m", "pip", "install", "-q"])
                    .args(extra)
                    .arg(pkg)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            };
            // Debian's own python refuses system-wide pip installs without the flag.
            if !pip(&[]) && !pip(&["--break-system-packages"]) {
                bail!("python3 -m pip install {pkg} failed");
            }
        }
    }
    eprintln!("xtask: setup complete (nightly LLVM {llvm_major}, bpf-linker {BPF_LINKER_VERSION}, rust-src)");
    Ok(())
}

fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(program);
        c
    }
}

fn run(args: &[String]) -> Result<()> {
    setup()?;
    let release = build_release(&workspace_root(), &[("detector-user", "detector")])?;
    status(as_root(&release.join("detector")).arg("run").args(args))
}

fn test(args: &[String]) -> Result<()> {
    setup()?;
    if !is_root() {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    let root = workspace_root();
    // The CLI tests drive the `detector` binary, which `cargo test` does not build for a
    // dependency: build it first.
    status(Command::new("cargo").current_dir(&root).args([
        "build",
        "-p",
        "detector-user",
        "--bins",
    ]))?;
    // The kernel crate builds only for the bpf target (through detector-user's build script).
    let host = status(
        Command::new("cargo")
            .current_dir(&root)
            .args(["test", "--workspace", "--exclude", "detector-ebpf"])
            // Every failing test binary at once, not only the first.
            .arg("--no-fail-fast")
            .args(args),
    );
    // Extra arguments select tests: the matrix runs only for the whole suite.
    if !args.is_empty() {
        return host;
    }
    host?;
    kernel_matrix(&root)?;
    // Every loader of untrusted input, fuzzed for a bounded time.
    fuzz::run(&root, &[], fuzz::SECONDS)
}

/// The kernel tests and `detector probe` in both read modes on this machine's kernel and on
/// every Debian kernel of the matrix (booted under QEMU); prints the table, fails on any
/// failed test.
fn kernel_matrix(root: &Path) -> Result<()> {
    let out = output(Command::new("cargo").current_dir(root).args([
        "test",
        "-p",
        "tests",
        "--test",
        "kernel",
        "--no-run",
        "--message-format=json",
    ]))?;
    let kernel_tests = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "kernel")
        .and_then(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the kernel test executable")?;
    let debug = target_dir(root).join("debug");
    let bins = kernels::Binaries {
        kernel_tests,
        actor: debug.join("actor"),
        detector: debug.join("detector"),
    };
    let work = target_dir(root).join("kernels");
    let mut cols = vec![host_column(&bins, &work.join("host"))?];
    cols.extend(kernels::run_debian(&bins, &work)?);
    println!("\n{}", kernels::table(&cols));
    let failures: Vec<String> = cols
        .iter()
        .flat_map(|c| c.failures.iter().map(move |f| format!("{}: {f}", c.kernel)))
        .collect();
    if !failures.is_empty() {
        bail!(
            "kernel tests failed:\n  {}\n(logs under {})",
            failures.join("\n  "),
            work.display()
        );
    }
    Ok(())
}

/// This machine's column: the same probes and suites as inside the emulated kernels.
fn host_column(bins: &kernels::Binaries, res: &Path) -> Result<kernels::Column> {
    let _ = std::fs::remove_dir_all(res);
    std::fs::create_dir_all(res)?;
    for m in ["auto", "direct", "helper"] {
        let out = Command::new(&bins.detector)
            .args(["probe", "--json", "--kernel-reads", m])
            .output()
            .context("running detector probe")?;
        std::fs::write(res.join(format!("probe-{m}.json")), &out.stdout)?;
        std::fs::write(res.join(format!("probe-{m}.err")), &out.stderr)?;
    }
    for m in kernels::MODES {
        eprintln!("xtask: kernel tests on this machine's kernel, {m} reads");
        let out = Command::new(&bins.kernel_tests)
            .arg("--test-threads=2")
            .env("DETECTOR_TEST_READS", m)
            .output()
            .context("running the kernel tests")?;
        let mut log = out.stdout;
        log.extend_from_slice(&out.stderr);
        std::fs::write(res.join(format!("tests-{m}.log")), &log)?;
        std::fs::write(
            res.join(format!("tests-{m}.exit")),
            format!("{}\n", out.status.code().unwrap_or(-1)),
        )?;
    }
    kernels::column(res)
}

fn lint() -> Result<()> {
    setup()?;
    let root = workspace_root();
    status(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    // The fuzz crate is a workspace of its own.
    status(Command::new("cargo").current_dir(&root).args([
        "fmt",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--",
        "--check",
    ]))?;
    status(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--exclude",
        "detector-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    status(
        Command::new("cargo")
            .current_dir(root.join("detector-ebpf"))
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]),
    )
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // `join` keeps an absolute path as it is.
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// Builds release binaries (`(package, binary)` pairs) in one cargo call and returns the
/// release directory that holds them.
fn build_release(root: &Path, bins: &[(&str, &str)]) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["build", "--release"]);
    for (pkg, bin) in bins {
        cmd.args(["-p", pkg, "--bin", bin]);
    }
    status(&mut cmd)?;
    Ok(target_dir(root).join("release"))
}

fn bench(which: &str, args: &[String]) -> Result<()> {
    setup()?;
    let root = workspace_root();
    match which {
        "kernel" => {
            let release = build_release(&root, &[("tests", "kbench"), ("tests", "workload")])?;
            status(as_root(&release.join("kbench")).args(args))
        }
        // `--vs rsigma`: the side-by-side bench against rsigma-eval (benches/vs_rsigma.rs).
        "engine" if args.first().map(String::as_str) == Some("--vs") => {
            match args.get(1).map(String::as_str) {
                Some("rsigma") => status(
                    Command::new("cargo")
                        .current_dir(&root)
                        .args(["bench", "-p", "detector-user", "--bench", "vs_rsigma"])
                        .args(&args[2..]),
                ),
                other => bail!(
                    "bench engine --vs: unknown peer {} (rsigma)",
                    other.unwrap_or("(none)")
                ),
            }
        }
        // Only the engine bench: `cargo bench -p detector-user` alone would run the delivery
        // bench too.
        "engine" => status(
            Command::new("cargo")
                .current_dir(&root)
                .args(["bench", "-p", "detector-user", "--bench", "engine"])
                .args(args),
        ),
        "overhead" => bench_overhead::run(args),
        "latency" | "flood" => bench_latency::run(which, &root, args),
        "soak" => bench_soak::run(&root, args),
        "hostile" => bench_hostile::run(&root, args),
        "ledger" => bench_ledger::run(&root, args),
        other => {
            bail!("unknown benchmark `{other}` (kernel, engine, overhead, latency, flood, hostile, ledger, soak)")
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup(),
        Cmd::Run { args } => run(&args),
        Cmd::Test { args } => test(&args),
        Cmd::Kernels => {
            setup()?;
            if !is_root() {
                bail!("the kernel matrix loads eBPF programs: run it as root");
            }
            let root = workspace_root();
            status(Command::new("cargo").current_dir(&root).args([
                "build",
                "-p",
                "detector-user",
                "-p",
                "tests",
                "--bins",
            ]))?;
            kernel_matrix(&root)
        }
        Cmd::Lint => lint(),
        Cmd::Fuzz { targets, seconds } => {
            setup()?;
            fuzz::run(&workspace_root(), &targets, seconds)
        }
        Cmd::Bench { which, args } => bench(&which, &args),
    }
}
