//! Checks made before loading anything, each with an error that says what to do.

use std::path::{Path, PathBuf};

/// Why the agent cannot capture.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Not privileged enough.
    #[error("the agent needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN to load eBPF programs (running as uid {uid}); run it with sudo or grant the capabilities")]
    NotPrivileged {
        /// Effective uid.
        uid: u32,
    },
    /// No kernel BTF.
    #[error("no kernel BTF at {0}: the agent needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 5.4)")]
    NoBtf(PathBuf),
    /// tracefs absent and could not be mounted.
    #[error("tracefs is not mounted and mounting it failed ({0}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`")]
    NoTracefs(String),
    /// No cgroup v2 hierarchy.
    #[error("no cgroup v2 hierarchy found (looked at /sys/fs/cgroup and /sys/fs/cgroup/unified); mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`")]
    NoCgroup2,
}

/// What the environment offers.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Mounted tracefs.
    pub tracefs: PathBuf,
    /// Root of the cgroup v2 hierarchy.
    pub cgroup2: PathBuf,
    /// Kernel BTF.
    pub(crate) btf: PathBuf,
    /// What preflight had to do (mounted tracefs/bpffs), for the log.
    pub(crate) notes: Vec<String>,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// True when the process may load and attach our programs.
pub(crate) fn privileged() -> bool {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn magic_of(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path, `st` a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_type as i64)
}

const TRACEFS_MAGIC: i64 = 0x74726163;
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

fn mount(fstype: &str, target: &Path) -> Result<(), String> {
    let src = std::ffi::CString::new(fstype).map_err(|e| e.to_string())?;
    let tgt =
        std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: all pointers are valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Finds a mounted tracefs, mounting it at /sys/kernel/tracing when needed (a fresh machine
/// often has none; aya needs it to attach tracepoints).
pub(crate) fn ensure_tracefs(notes: &mut Vec<String>) -> Result<PathBuf, PreflightError> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let p = Path::new(p);
        if magic_of(p) == Some(TRACEFS_MAGIC) {
            return Ok(p.to_path_buf());
        }
    }
    let p = PathBuf::from("/sys/kernel/tracing");
    match mount("tracefs", &p) {
        Ok(()) => notes.push(format!("mounted tracefs at {}", p.display())),
        // Another process (a second agent, a test) mounted it between our look and our mount.
        Err(_) if magic_of(&p) == Some(TRACEFS_MAGIC) => {}
        Err(e) => return Err(PreflightError::NoTracefs(e)),
    }
    Ok(p)
}

/// Mounts bpffs at /sys/fs/bpf when absent. Nothing is pinned today, so a failure is only noted.
pub(crate) fn ensure_bpffs(notes: &mut Vec<String>) {
    let p = Path::new("/sys/fs/bpf");
    if magic_of(p) == Some(BPF_FS_MAGIC) {
        return;
    }
    match mount("bpf", p) {
        Ok(()) => notes.push("mounted bpffs at /sys/fs/bpf".into()),
        Err(_) if magic_of(p) == Some(BPF_FS_MAGIC) => {}
        Err(e) => notes.push(format!(
            "bpffs not mounted at /sys/fs/bpf ({e}); not needed for capture"
        )),
    }
}

/// Root of the cgroup v2 hierarchy (unified, or the hybrid layout's `unified` mount).
pub fn cgroup2_root() -> Result<PathBuf, PreflightError> {
    for p in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let p = Path::new(p);
        if magic_of(p) == Some(CGROUP2_SUPER_MAGIC) {
            return Ok(p.to_path_buf());
        }
    }
    Err(PreflightError::NoCgroup2)
}

/// This kernel's release (`uname -r`).
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs every check; `btf` defaults to /sys/kernel/btf/vmlinux.
pub fn check(btf: Option<&Path>) -> Result<Environment, PreflightError> {
    if !privileged() {
        // SAFETY: geteuid has no preconditions.
        return Err(PreflightError::NotPrivileged {
            uid: unsafe { libc::geteuid() },
        });
    }
    let btf = btf
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"));
    if !btf.exists() {
        return Err(PreflightError::NoBtf(btf));
    }
    let mut notes = Vec::new();
    let tracefs = ensure_tracefs(&mut notes)?;
    ensure_bpffs(&mut notes);
    let cgroup2 = cgroup2_root()?;
    Ok(Environment {
        tracefs,
        cgroup2,
        btf,
        notes,
    })
}
