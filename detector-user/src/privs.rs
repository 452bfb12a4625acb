//! Least privilege once attached: after the programs are loaded and attached, the maps, ring
//! buffer and state dir opened, the agent keeps only the capabilities its steady state uses
//! and drops the rest from every set, the bounding set included (so not even an exec could
//! regain them).
//!
//! What the running agent still does, and why each kept capability is needed (found by
//! running the privileged tests with less):
//! - `CAP_BPF`: updates of the watched-inode map on rescans and inotify events, and per-CPU
//!   loss counters read back: with `kernel.unprivileged_bpf_disabled` set (the default on
//!   most distributions) every `bpf()` command needs it, even on an already open map fd.
//! - `CAP_DAC_READ_SEARCH`: re-scanning the watch list stats, watches and fingerprints
//!   credential files of every user (`/home/*/.ssh` is 0700, keys 0600, pods' token dirs
//!   belong to other uids); root without it is just another uid.
//! - `CAP_SYS_PTRACE`: `/proc/<pid>/exe` and `/proc/<pid>/fd` of other users' processes are
//!   behind a ptrace access check.
//!
//! Capabilities are per thread: this must run while the agent has one thread, before the sink
//! runtime starts its workers (which then inherit the reduced sets).

use caps::{CapSet, Capability, CapsHashSet};

/// What the running agent keeps.
pub const KEPT: &[Capability] = &[
    Capability::CAP_BPF,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_SYS_PTRACE,
];

/// Why capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrivError {
    /// A capget/capset/prctl call failed.
    #[error("dropping capabilities ({what}): {source}")]
    Caps {
        /// Which step.
        what: &'static str,
        /// The error from the `caps` crate.
        source: caps::errors::CapsError,
    },
    /// Other threads exist and would keep their capabilities.
    #[error("dropping capabilities: {0} threads exist, capabilities are per thread; drop before starting threads")]
    Threads(usize),
}

fn step<T>(what: &'static str, r: Result<T, caps::errors::CapsError>) -> Result<T, PrivError> {
    r.map_err(|source| PrivError::Caps { what, source })
}

/// Number of threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Reduces effective, permitted, inheritable, ambient and (when allowed) bounding sets to
/// `keep` ∩ what the process has; returns the kept set.
pub(crate) fn drop_all_but(keep: &[Capability]) -> Result<CapsHashSet, PrivError> {
    let n = threads();
    if n > 1 {
        return Err(PrivError::Threads(n));
    }
    let permitted = step("read permitted", caps::read(None, CapSet::Permitted))?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // The bounding set can only shrink while CAP_SETPCAP is effective, so it goes first; a
    // launcher (systemd's CapabilityBoundingSet) may already have taken CAP_SETPCAP away, and
    // then its bounding set is the one that holds.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        step(
            "raise CAP_SETPCAP",
            caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP),
        )?;
        let bounding = step("read bounding", caps::read(None, CapSet::Bounding))?;
        for c in bounding.iter().filter(|c| !kept.contains(c)) {
            step("drop from bounding", caps::drop(None, CapSet::Bounding, *c))?;
        }
    }
    step("clear ambient", caps::clear(None, CapSet::Ambient))?;
    step("clear inheritable", caps::clear(None, CapSet::Inheritable))?;
    step("set effective", caps::set(None, CapSet::Effective, &kept))?;
    step("set permitted", caps::set(None, CapSet::Permitted, &kept))?;
    Ok(kept)
}

/// Names of `caps`, sorted (for the log line).
pub(crate) fn names(caps: &CapsHashSet) -> Vec<String> {
    let mut v: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_drop_while_other_threads_would_keep_theirs() {
        // The test harness runs tests on their own threads, so there are at least two.
        let t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        let r = drop_all_but(KEPT);
        let _ = t.join();
        assert!(matches!(r, Err(PrivError::Threads(n)) if n > 1), "{r:?}");
    }
}
