//! The kernel matrix: the privileged kernel tests and `detector probe`, run on this machine's
//! kernel and inside every other kernel of the matrix, booted under QEMU.
//!
//! The matrix is the newest Debian cloud kernel of each series the package registry offers
//! (`linux-image-<version>-cloud-amd64`; a new series joins when Debian publishes one). Each
//! boots with software emulation (TCG: nested KVM fails on our machines) from a small
//! initramfs (static busybox, `ip`, the shared libraries of our binaries, the virtio and veth
//! modules of that kernel) with an ext4 disk holding the test binaries, a scratch directory
//! (the page-cache tests need a disk file system) and, after the run, the results, which are
//! read back from the image with `debugfs`: the serial console carries only the progress.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::{output, status};

/// The read modes every kernel runs the whole kernel test suite in (`auto` picks direct loads
/// on every kernel of the matrix; `helper` forces the fallback).
pub const MODES: &[&str] = &["auto", "helper"];

/// Longest one kernel's boot and test runs may take under emulation.
const VM_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The binaries a kernel run needs, built for the host.
pub struct Binaries {
    /// The `tests/kernel.rs` test executable.
    pub kernel_tests: PathBuf,
    /// `actor`, which the tests expect beside their `deps/` folder.
    pub actor: PathBuf,
    /// The agent.
    pub detector: PathBuf,
}

/// One column of the matrix table.
pub struct Column {
    /// `uname -r` of the kernel.
    pub kernel: String,
    /// `detector probe --json` per read mode (`auto`, `direct`, `helper`).
    pub probes: BTreeMap<String, Probe>,
    /// (passed, failed) of the kernel test suite per mode of [`MODES`].
    pub tests: BTreeMap<String, (u32, u32)>,
    /// Names of failed tests, with their mode.
    pub failures: Vec<String>,
}

/// The part of `detector probe --json` the table shows.
#[derive(Debug, Deserialize)]
pub struct Probe {
    /// Kernel release.
    pub kernel: String,
    /// Read mode.
    pub reads: Reads,
    /// Every concern.
    pub programs: Vec<ProgramState>,
}

/// How kernel structures were read.
#[derive(Debug, Deserialize)]
pub struct Reads {
    /// `direct` or `helper`.
    pub mode: String,
    /// Whether `bpf_rdonly_cast` was available.
    #[serde(default)]
    pub casts: bool,
}

/// One concern of a probe.
#[derive(Debug, Deserialize)]
pub struct ProgramState {
    /// Stable program name.
    pub program: String,
    /// Hook in use.
    pub hook: String,
    /// Attached?
    pub attached: bool,
    /// Which fallback.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Why not (or what was passed over).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The newest `linux-image-*-cloud-amd64` package of each kernel series in the registry,
/// oldest series first.
pub fn debian_kernels() -> Result<Vec<String>> {
    let lists = Path::new("/var/lib/apt/lists");
    let fresh = std::fs::read_dir(lists)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("InRelease"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .any(|t| {
            t.elapsed()
                .is_ok_and(|age| age < Duration::from_secs(6 * 3600))
        });
    if !fresh {
        status(Command::new("apt-get").args(["update", "-q"]))?;
    }
    let found = output(Command::new("apt-cache").args([
        "search",
        "--names-only",
        "^linux-image-[0-9].*-cloud-amd64$",
    ]))?;
    let mut newest: BTreeMap<(u32, u32), (Vec<u32>, String)> = BTreeMap::new();
    for line in found.lines() {
        let Some(pkg) = line.split_whitespace().next() else {
            continue;
        };
        let Some(version) = pkg
            .strip_prefix("linux-image-")
            .and_then(|v| v.strip_suffix("-cloud-amd64"))
        else {
            continue;
        };
        let numbers = numbers(version);
        let [major, minor, ..] = numbers[..] else {
            continue;
        };
        let e = newest
            .entry((major, minor))
            .or_insert_with(|| (Vec::new(), String::new()));
        if numbers > e.0 {
            *e = (numbers, pkg.to_string());
        }
    }
    if newest.is_empty() {
        bail!("no linux-image-*-cloud-amd64 package in the registry (apt-cache search found none)");
    }
    Ok(newest.into_values().map(|(_, p)| p).collect())
}

/// The numbers of a kernel version, in order (`6.1.0-57` → 6, 1, 0, 57).
fn numbers(version: &str) -> Vec<u32> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Downloads and unpacks `pkg` under `cache` (once); returns the unpacked tree.
fn fetch(pkg: &str, cache: &Path) -> Result<PathBuf> {
    let tree = cache.join(pkg);
    if tree.join("boot").is_dir() {
        return Ok(tree);
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    status(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-q", pkg]),
    )?;
    let deb = std::fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
        })
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let tmp = cache.join(format!("{pkg}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    std::fs::rename(&tmp, &tree)?;
    Ok(tree)
}

/// The guest's `/init`: mounts, modules, the disk, then the run script; powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/opt/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run /var/tmp /mnt /sys/fs/cgroup
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 none /sys/fs/cgroup
for m in $(cat /modules.order); do insmod /modules/$m || echo "@@ insmod $m failed"; done
# virtio_blk probes asynchronously.
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.5; done
mount -t ext4 /dev/vda /mnt || echo "@@ cannot mount the test disk"
mount --bind /mnt/scratch /var/tmp
ip link set lo up
echo "@@ kernel $(uname -r)"
sh /mnt/run.sh
echo "@@ done $?"
sync
umount /var/tmp /mnt
poweroff -f
"#;

/// The run script on the disk: probes in every read mode, then the test suite per mode.
fn run_script() -> String {
    let mut s = String::from("cd /mnt/t\nmkdir -p /mnt/results\n");
    for m in ["auto", "direct", "helper"] {
        s.push_str(&format!(
            "./detector probe --json --kernel-reads {m} > /mnt/results/probe-{m}.json 2> /mnt/results/probe-{m}.err\n"
        ));
    }
    for m in MODES {
        s.push_str(&format!(
            "echo \"@@ kernel tests, {m} reads\"\n\
             DETECTOR_TEST_READS={m} RUST_BACKTRACE=0 ./deps/kernel --test-threads=2 > /mnt/results/tests-{m}.log 2>&1\n\
             echo $? > /mnt/results/tests-{m}.exit\n\
             grep '^test result' /mnt/results/tests-{m}.log\n"
        ));
    }
    s
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
fn ldd(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = output(Command::new("ldd").arg(bin))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Module file of `name` in an unpacked kernel tree (`.ko`, `.ko.xz` or `.ko.zst`).
fn module_file(modules: &Path, name: &str) -> Option<PathBuf> {
    let want = name.replace('-', "_");
    let mut stack = vec![modules.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let f = e.file_name().to_string_lossy().into_owned();
            let stem = f.split(".ko").next().unwrap_or("").replace('-', "_");
            if f.contains(".ko") && stem == want {
                return Some(p);
            }
        }
    }
    None
}

/// The modules the guest needs (virtio disk, veth for network-namespace tests) with their
/// dependencies, in load order; built-in ones are left out.
fn modules_in_order(modules: &Path) -> Result<Vec<(String, PathBuf)>> {
    let builtin = std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |name: &str| {
        builtin
            .lines()
            .any(|l| l.rsplit('/').next() == Some(&format!("{name}.ko")))
    };
    let mut order: Vec<(String, PathBuf)> = Vec::new();
    fn visit(
        name: &str,
        modules: &Path,
        is_builtin: &dyn Fn(&str) -> bool,
        order: &mut Vec<(String, PathBuf)>,
        depth: u32,
    ) -> Result<()> {
        if depth > 16 || is_builtin(name) || order.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        let Some(file) = module_file(modules, name) else {
            bail!(
                "kernel module {name} is neither built in nor in {}",
                modules.display()
            );
        };
        let deps = output(Command::new("modinfo").args(["-F", "depends"]).arg(&file))?;
        for d in deps.trim().split(',').filter(|d| !d.is_empty()) {
            visit(d, modules, is_builtin, order, depth + 1)?;
        }
        order.push((name.to_string(), file));
        Ok(())
    }
    for m in ["virtio_pci", "virtio_blk", "veth"] {
        visit(m, modules, &is_builtin, &mut order, 0)?;
    }
    Ok(order)
}

/// Writes the initramfs (an uncompressed newc cpio archive) for the unpacked kernel `tree`.
fn initramfs(tree: &Path, bins: &Binaries, work: &Path) -> Result<PathBuf> {
    let root = work.join("initramfs");
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "opt/bin",
        "lib64",
        "lib/x86_64-linux-gnu",
        "modules",
        "etc",
        "proc",
        "sys",
        "dev",
        "root",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = Path::new("/bin/busybox");
    let file_type = output(
        Command::new("sh")
            .arg("-c")
            .arg("ldd /bin/busybox 2>&1 || true"),
    )?;
    if !file_type.contains("not a dynamic executable") {
        bail!("/bin/busybox is not static (install busybox-static)");
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    let init = root.join("init");
    std::fs::write(&init, INIT)?;
    chmod_x(&init)?;
    // iproute2's `ip` (busybox's has no `netns`), ahead of busybox's in PATH.
    let ip = which("ip")?;
    std::fs::copy(&ip, root.join("opt/bin/ip"))?;
    for bin in [
        ip.as_path(),
        &bins.kernel_tests,
        &bins.actor,
        &bins.detector,
    ] {
        for lib in ldd(bin)? {
            let dest = if lib.starts_with("/lib64") {
                root.join("lib64")
            } else {
                root.join("lib/x86_64-linux-gnu")
            };
            let name = lib.file_name().context("library without a name")?;
            std::fs::copy(&lib, dest.join(name))
                .with_context(|| format!("copying {}", lib.display()))?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    let modules = std::fs::read_dir(tree.join("lib/modules"))?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("no lib/modules in the kernel package")?;
    let mut order = String::new();
    for (name, file) in modules_in_order(&modules)? {
        let dest = root.join("modules").join(format!("{name}.ko"));
        let f = file.to_string_lossy();
        let decompress = if f.ends_with(".xz") {
            Some("xz")
        } else if f.ends_with(".zst") {
            Some("zstd")
        } else {
            None
        };
        match decompress {
            Some(tool) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(&file)
                    .output()
                    .with_context(|| format!("{tool} -dc {f}"))?;
                if !out.status.success() {
                    bail!("{tool} -dc {f} failed");
                }
                std::fs::write(&dest, out.stdout)?;
            }
            None => {
                std::fs::copy(&file, &dest)?;
            }
        }
        order.push_str(&format!("{name}.ko\n"));
    }
    std::fs::write(root.join("modules.order"), order)?;
    let image = work.join("initramfs.cpio");
    status(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "find . | cpio -o -H newc --quiet > {}",
        image.display()
    )))?;
    Ok(image)
}

fn chmod_x(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn which(name: &str) -> Result<PathBuf> {
    let p = output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}")),
    )?;
    let p = PathBuf::from(p.trim());
    Ok(std::fs::canonicalize(&p).unwrap_or(p))
}

/// The test disk: binaries (stripped: the debug builds are hundreds of MB), the run script and
/// an empty scratch directory, as an ext4 image.
fn disk(bins: &Binaries, work: &Path) -> Result<PathBuf> {
    let tree = work.join("disk");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("t/deps"))?;
    std::fs::create_dir_all(tree.join("scratch"))?;
    for (src, dest) in [
        (&bins.kernel_tests, "t/deps/kernel"),
        (&bins.actor, "t/actor"),
        (&bins.detector, "t/detector"),
    ] {
        status(
            Command::new("strip")
                .arg("-o")
                .arg(tree.join(dest))
                .arg(src),
        )?;
    }
    std::fs::write(tree.join("run.sh"), run_script())?;
    let image = work.join("disk.img");
    let _ = std::fs::remove_file(&image);
    status(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("1G"),
    )?;
    Ok(image)
}

/// Copies `/results` out of the disk image into `dest`.
fn results(image: &Path, dest: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest)?;
    status(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump /results {}", dest.display()))
            .arg(image),
    )
}

/// One kernel, ready to boot.
struct Prepared {
    pkg: String,
    vmlinuz: PathBuf,
    initrd: PathBuf,
    image: PathBuf,
    work: PathBuf,
}

/// Builds the initramfs and the test disk for `tree`'s kernel.
fn prepare(pkg: &str, tree: &Path, bins: &Binaries, work: &Path) -> Result<Prepared> {
    let vmlinuz = std::fs::read_dir(tree.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz in {pkg}"))?;
    Ok(Prepared {
        pkg: pkg.to_string(),
        vmlinuz,
        initrd: initramfs(tree, bins, work)?,
        image: disk(bins, work)?,
        work: work.to_path_buf(),
    })
}

/// Boots a prepared kernel and collects its column.
///
/// Each guest has two vCPUs emulated by one host thread (`thread=single`): with one host
/// thread per vCPU, QEMU's emulation of the kernel patching its own text while the other vCPU
/// runs it (static keys flipped when a syscall tracepoint is attached) let a guest hit a
/// stale `int3` and panic (seen once in 6.12 at `syscall_exit_to_user_mode_prepare`); the
/// kernels of the matrix boot side by side instead, one host core each.
fn boot(p: &Prepared) -> Result<Column> {
    let (pkg, work) = (&p.pkg, &p.work);
    let log = work.join("console.log");
    eprintln!(
        "xtask: booting {pkg} under QEMU (TCG); console in {}",
        log.display()
    );
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-m",
            "2048",
            "-smp",
            "2",
        ])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&p.vmlinuz)
        .arg("-initrd")
        .arg(&p.initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", p.image.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > VM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{pkg}: no result within {} min (console: {})",
                VM_TIMEOUT.as_secs() / 60,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "xtask: {pkg} ran for {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    if let Some(panic) = console
        .lines()
        .find(|l| l.contains("Kernel panic") || l.contains("Oops"))
    {
        bail!(
            "{pkg}: the guest kernel crashed: {panic} (console: {})",
            log.display()
        );
    }
    let res = work.join("results");
    results(&p.image, &work.join("out"))?;
    let _ = std::fs::remove_dir_all(&res);
    std::fs::rename(work.join("out/results"), &res).with_context(|| {
        format!(
            "{pkg}: the guest left no results (console: {})",
            log.display()
        )
    })?;
    column(&res).with_context(|| format!("{pkg} (console: {})", log.display()))
}

/// A column from a results folder (`probe-<mode>.json`, `tests-<mode>.log|exit`).
pub fn column(res: &Path) -> Result<Column> {
    let mut probes = BTreeMap::new();
    for m in ["auto", "direct", "helper"] {
        let p = res.join(format!("probe-{m}.json"));
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let probe: Probe = serde_json::from_str(text.trim()).with_context(|| {
            format!(
                "detector probe --kernel-reads {m} gave no document: {}",
                std::fs::read_to_string(res.join(format!("probe-{m}.err"))).unwrap_or_default()
            )
        })?;
        probes.insert(m.to_string(), probe);
    }
    let kernel = probes
        .get("auto")
        .map(|p| p.kernel.clone())
        .unwrap_or_default();
    let mut tests = BTreeMap::new();
    let mut failures = Vec::new();
    for m in MODES {
        let log = std::fs::read_to_string(res.join(format!("tests-{m}.log"))).unwrap_or_default();
        let (mut ok, mut failed) = (0, 0);
        for l in log.lines() {
            if let Some(rest) = l.strip_prefix("test ") {
                if rest.ends_with(" ... ok") {
                    ok += 1;
                } else if rest.ends_with(" ... FAILED") {
                    failed += 1;
                    failures.push(format!(
                        "{} ({m} reads)",
                        rest.trim_end_matches(" ... FAILED")
                    ));
                }
            }
        }
        let exit = std::fs::read_to_string(res.join(format!("tests-{m}.exit"))).unwrap_or_default();
        if exit.trim() != "0" && failed == 0 {
            failed += 1;
            failures.push(format!(
                "the {m}-reads suite exited {} without a failed test: {}",
                exit.trim(),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            ));
        }
        tests.insert(m.to_string(), (ok, failed));
    }
    Ok(Column {
        kernel,
        probes,
        tests,
        failures,
    })
}

/// Boots every Debian kernel of the matrix, side by side; `work` holds the downloads and each
/// run's files.
pub fn run_debian(bins: &Binaries, work: &Path) -> Result<Vec<Column>> {
    let mut prepared = Vec::new();
    for pkg in debian_kernels()? {
        let tree = fetch(&pkg, work)?;
        let dir = work.join("runs").join(&pkg);
        std::fs::create_dir_all(&dir)?;
        prepared.push(prepare(&pkg, &tree, bins, &dir)?);
    }
    Ok(std::thread::scope(|s| {
        let runs: Vec<_> = prepared.iter().map(|p| s.spawn(|| boot(p))).collect();
        runs.into_iter()
            .zip(&prepared)
            .map(|(h, p)| {
                let run = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the run panicked")));
                // A kernel that crashed or left nothing still gets its column, with the cause.
                run.unwrap_or_else(|e| Column {
                    kernel: p.pkg.clone(),
                    probes: BTreeMap::new(),
                    tests: BTreeMap::new(),
                    failures: vec![format!("{e:#}")],
                })
            })
            .collect()
    }))
}

/// The table: one row per concern, one column per kernel, the state in the `auto` read mode
/// (the fallback named), then the read modes and the test results.
pub fn table(cols: &[Column]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let width = 36;
    for (i, c) in cols.iter().enumerate() {
        let Some(p) = c.probes.get("auto") else {
            continue;
        };
        for s in &p.programs {
            let cell = match (s.attached, &s.fallback) {
                (true, None) => "attached".to_string(),
                (true, Some(_)) => format!("fallback: {}", s.hook),
                (false, _) => format!("MISSING: {}", s.reason.as_deref().unwrap_or("unknown")),
            };
            match rows.iter_mut().find(|(n, _)| *n == s.program) {
                Some((_, cells)) => {
                    cells.resize(i, String::new());
                    cells.push(cell);
                }
                None => {
                    let mut cells = vec![String::new(); i];
                    cells.push(cell);
                    rows.push((s.program.clone(), cells));
                }
            }
        }
    }
    let mut modes = Vec::new();
    for c in cols {
        let cell: Vec<String> = ["auto", "direct", "helper"]
            .iter()
            .filter_map(|m| {
                let p = c.probes.get(*m)?;
                let all = p.programs.iter().all(|s| s.attached);
                Some(format!(
                    "{m}→{}{}{}",
                    p.reads.mode,
                    if p.reads.mode == "direct" && !p.reads.casts {
                        "(no cast)"
                    } else {
                        ""
                    },
                    if all { "" } else { "(!)" }
                ))
            })
            .collect();
        modes.push(cell.join(" "));
    }
    rows.push(("read modes (all attached?)".into(), modes));
    rows.push((
        "kernel tests (passed/failed)".into(),
        cols.iter()
            .map(|c| {
                c.tests
                    .iter()
                    .map(|(m, (ok, bad))| format!("{m}: {ok}/{bad}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect(),
    ));
    let mut out = format!("{:<28}", "kernel matrix");
    for c in cols {
        out.push_str(&format!(" | {:<width$}", c.kernel));
    }
    out.push('\n');
    for (name, cells) in rows {
        out.push_str(&format!("{name:<28}"));
        for i in 0..cols.len() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            out.push_str(&format!(" | {cell:<width$}"));
        }
        out.push('\n');
    }
    let fallbacks: Vec<String> = cols
        .iter()
        .flat_map(|c| {
            c.probes.get("auto").into_iter().flat_map(move |p| {
                p.programs.iter().filter_map(move |s| {
                    s.fallback
                        .as_ref()
                        .map(|f| format!("  {}: {} on {} — {f}", c.kernel, s.program, s.hook))
                })
            })
        })
        .collect();
    if !fallbacks.is_empty() {
        out.push_str("fallbacks:\n");
        out.push_str(&fallbacks.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbers;

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(numbers("6.1.0-57"), vec![6, 1, 0, 57]);
        assert_eq!(numbers("6.12.118+deb12"), vec![6, 12, 118, 12]);
        assert!(numbers("6.1.0-57") > numbers("6.1.0-9"));
    }
}
