//! The process table: seeded from /proc at start, then kept by exec/fork/exit records.
//! Keyed by tgid but every entry remembers its start time, so that a reused pid is recognised
//! as a new process. Bounded: exited processes linger briefly (late records still attribute)
//! and the oldest are evicted past the cap.

use std::collections::{HashMap, VecDeque};

/// What the table knows of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    /// Process id.
    pub(crate) tgid: u32,
    /// Start (boot-time ns); from /proc only to 1/CLK_TCK precision.
    pub(crate) start_ns: u64,
    /// True when `start_ns` came from /proc (tick precision).
    pub(crate) start_coarse: bool,
    /// Parent pid.
    pub(crate) ppid: u32,
    /// Executable.
    pub(crate) exe: String,
    /// argv (bounded).
    pub(crate) argv: Vec<String>,
    /// cgroup id.
    pub(crate) cgroup_id: u64,
    /// Exit seen.
    pub(crate) exited: bool,
}

/// Bounded process table.
#[derive(Debug)]
pub(crate) struct ProcessTable {
    procs: HashMap<u32, ProcInfo>,
    exited: VecDeque<(u32, u64)>,
    cap: usize,
    linger: usize,
    /// Entries evicted to stay under the cap.
    pub(crate) evicted: u64,
    tick_ns: u64,
}

/// Nanoseconds per clock tick (/proc start times are in ticks).
pub(crate) fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// Maximum ancestors reported.
pub(crate) const MAX_ANCESTORS: usize = 8;

impl ProcessTable {
    /// An empty table holding at most `cap` processes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            procs: HashMap::new(),
            exited: VecDeque::new(),
            cap,
            linger: 4096,
            evicted: 0,
            tick_ns: tick_ns(),
        }
    }

    /// Number of processes known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }

    /// Reads every process from `/proc`.
    pub(crate) fn seed_from_proc(&mut self) {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(p) = read_proc(pid, self.tick_ns) {
                self.insert(p);
            }
        }
    }

    fn insert(&mut self, p: ProcInfo) {
        if self.procs.len() >= self.cap && !self.procs.contains_key(&p.tgid) {
            self.evict_one();
        }
        self.procs.insert(p.tgid, p);
    }

    fn evict_one(&mut self) {
        // Exited processes go first; otherwise an arbitrary one (bounded memory wins).
        while let Some((tgid, start)) = self.exited.pop_front() {
            if self
                .procs
                .get(&tgid)
                .is_some_and(|p| p.exited && p.start_ns == start)
            {
                self.procs.remove(&tgid);
                self.evicted += 1;
                return;
            }
        }
        if let Some(&k) = self.procs.keys().next() {
            self.procs.remove(&k);
            self.evicted += 1;
        }
    }

    /// True when `start_ns` (kernel, exact) is the same process as the entry.
    fn same(&self, p: &ProcInfo, start_ns: u64) -> bool {
        if start_ns == 0 || p.start_ns == 0 {
            return true;
        }
        if p.start_coarse {
            p.start_ns / self.tick_ns == start_ns / self.tick_ns
        } else {
            p.start_ns == start_ns
        }
    }

    /// The entry for (tgid, start), refreshing a coarse start with the exact one. An entry with
    /// another start is an older process that used the same pid: it is not returned.
    pub(crate) fn get(&mut self, tgid: u32, start_ns: u64) -> Option<&ProcInfo> {
        let same = self.procs.get(&tgid).map(|p| self.same(p, start_ns))?;
        if !same {
            return None;
        }
        let p = self.procs.get_mut(&tgid)?;
        if p.start_coarse && start_ns != 0 {
            p.start_ns = start_ns;
            p.start_coarse = false;
        }
        Some(p)
    }

    /// A process we have not seen (started before the agent and missed by the seed, or a
    /// reused pid): read it from /proc now if it still exists.
    pub(crate) fn get_or_load(&mut self, tgid: u32, start_ns: u64) -> Option<&ProcInfo> {
        if self.get(tgid, start_ns).is_none() {
            let p = read_proc(tgid, self.tick_ns)?;
            let coarse_ok = start_ns == 0 || p.start_ns / self.tick_ns == start_ns / self.tick_ns;
            if !coarse_ok {
                return None;
            }
            self.insert(p);
        }
        self.get(tgid, start_ns)
    }

    /// fork: the child inherits the parent's image.
    pub(crate) fn on_fork(
        &mut self,
        parent: u32,
        parent_start: u64,
        child: u32,
        child_start: u64,
        cgroup_id: u64,
    ) {
        let base = self.get(parent, parent_start).cloned().unwrap_or_default();
        self.insert(ProcInfo {
            tgid: child,
            start_ns: child_start,
            start_coarse: false,
            ppid: parent,
            exe: base.exe,
            argv: base.argv,
            cgroup_id,
            exited: false,
        });
    }

    /// exec: a new image for the same process.
    pub(crate) fn on_exec(
        &mut self,
        tgid: u32,
        start_ns: u64,
        ppid: u32,
        exe: String,
        argv: Vec<String>,
        cgroup_id: u64,
    ) {
        self.insert(ProcInfo {
            tgid,
            start_ns,
            start_coarse: false,
            ppid,
            exe,
            argv,
            cgroup_id,
            exited: false,
        });
    }

    /// exit: keep the entry a while for late records, then let it go.
    pub(crate) fn on_exit(&mut self, tgid: u32, start_ns: u64) {
        let same = self
            .procs
            .get(&tgid)
            .is_some_and(|p| self.same(p, start_ns));
        if let (true, Some(p)) = (same, self.procs.get_mut(&tgid)) {
            p.exited = true;
            self.exited.push_back((tgid, p.start_ns));
        }
        while self.exited.len() > self.linger {
            if let Some((t, s)) = self.exited.pop_front() {
                if self
                    .procs
                    .get(&t)
                    .is_some_and(|p| p.exited && p.start_ns == s)
                {
                    self.procs.remove(&t);
                }
            }
        }
    }

    /// Ancestor tgids, parent first, bounded and loop-safe.
    pub(crate) fn ancestors(&self, ppid: u32) -> Vec<u32> {
        let mut v = Vec::new();
        let mut cur = ppid;
        while cur > 1 && v.len() < MAX_ANCESTORS && !v.contains(&cur) {
            v.push(cur);
            cur = match self.procs.get(&cur) {
                Some(p) => p.ppid,
                None => break,
            };
        }
        v
    }

    /// Executable of a pid, if known.
    pub(crate) fn exe_of(&self, tgid: u32) -> Option<&str> {
        self.procs
            .get(&tgid)
            .map(|p| p.exe.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// Reads one process from /proc.
pub(crate) fn read_proc(pid: u32, tick_ns: u64) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let start_ticks: u64 = f.get(19)?.parse().ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| crate::sources::decode::argv(&b, b.len().min(detector_common::ARGS_LEN)))
        .unwrap_or_default();
    Some(ProcInfo {
        tgid: pid,
        start_ns: start_ticks * tick_ns,
        start_coarse: true,
        ppid,
        exe,
        argv,
        cgroup_id: 0,
        exited: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_reuse_is_a_different_process() {
        let mut t = ProcessTable::new(16);
        t.on_exec(100, 5_000, 1, "/bin/old".into(), vec![], 0);
        assert_eq!(t.get(100, 5_000).map(|p| p.exe.as_str()), Some("/bin/old"));
        // Same pid, other start: not the old process.
        assert!(t.get(100, 9_000).is_none());
        t.on_exit(100, 5_000);
        t.on_exec(100, 9_000, 1, "/bin/new".into(), vec![], 0);
        assert_eq!(t.get(100, 9_000).map(|p| p.exe.as_str()), Some("/bin/new"));
        assert!(t.get(100, 5_000).is_none());
    }

    #[test]
    fn fork_inherits_and_ancestors_walk_up() {
        let mut t = ProcessTable::new(16);
        t.on_exec(10, 1, 1, "/bin/sh".into(), vec!["sh".into()], 0);
        t.on_fork(10, 1, 11, 2, 0);
        t.on_fork(11, 2, 12, 3, 0);
        assert_eq!(t.get(12, 3).map(|p| p.exe.as_str()), Some("/bin/sh"));
        assert_eq!(t.ancestors(11), vec![11, 10]);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = ProcessTable::new(8);
        for i in 0..100u32 {
            t.on_exec(1000 + i, i as u64 + 1, 1, "/x".into(), vec![], 0);
            if i % 2 == 0 {
                t.on_exit(1000 + i, i as u64 + 1);
            }
        }
        assert!(t.len() <= 8);
        assert!(t.evicted >= 92);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let p = read_proc(std::process::id(), tick_ns()).expect("self");
        assert!(p.start_coarse);
        assert!(!p.exe.is_empty());
    }
}
