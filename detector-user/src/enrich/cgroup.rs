//! cgroup id → cgroup path → workload (systemd unit, container id, k8s pod uid).
//! On cgroup v2 a cgroup's id is the inode number of its directory, so the map is built by
//! walking the hierarchy, and rebuilt (rate-limited) when an unknown id shows up.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::event::Workload;

/// Resolves cgroup ids.
#[derive(Debug)]
pub(crate) struct CgroupResolver {
    root: PathBuf,
    by_id: HashMap<u64, String>,
    last_walk: Option<Instant>,
    min_rewalk: Duration,
}

impl CgroupResolver {
    /// Resolver over the cgroup v2 hierarchy mounted at `root`.
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            by_id: HashMap::new(),
            last_walk: None,
            min_rewalk: Duration::from_secs(1),
        }
    }

    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let mut stack = vec![(self.root.clone(), 0u32)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            if let Ok(md) = std::fs::metadata(&dir) {
                let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
                self.by_id.insert(md.ino(), format!("/{}", rel.display()));
            }
            seen += 1;
            // Bounded: a pathological hierarchy cannot stall the agent.
            if depth >= 16 || seen > 100_000 {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
    }

    /// The path of cgroup `id` relative to the root, if it can be found.
    pub(crate) fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.by_id.get(&id) {
            return Some(p.clone());
        }
        if self
            .last_walk
            .is_none_or(|t| t.elapsed() >= self.min_rewalk)
        {
            self.walk();
        }
        self.by_id.get(&id).cloned()
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Workload attribution from a cgroup path.
pub(crate) fn workload(path: &str) -> Workload {
    let mut w = Workload::default();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        // Container runtimes: docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
        // libpod-<id>.scope, or a bare <id> directory (cgroupfs driver).
        let stem = comp.strip_suffix(".scope").unwrap_or(comp);
        let id = stem.rsplit('-').next().unwrap_or(stem);
        if is_hex64(id) {
            w.container_id = Some(id.to_string());
            continue;
        }
        // k8s: kubepods-besteffort-pod<uid_with_underscores>.slice, or kubepods/burstable/pod<uid>
        if let Some(i) = comp.rfind("pod") {
            let uid = comp[i + 3..]
                .strip_suffix(".slice")
                .unwrap_or(&comp[i + 3..]);
            if uid.len() == 36
                && uid
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_')
            {
                w.pod_uid = Some(uid.replace('_', "-"));
                continue;
            }
        }
        if comp.ends_with(".service") || (comp.ends_with(".scope") && w.container_id.is_none()) {
            w.unit = Some(comp.to_string());
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unit() {
        let w = workload("/system.slice/sshd.service");
        assert_eq!(w.unit.as_deref(), Some("sshd.service"));
        assert!(w.container_id.is_none());
    }

    #[test]
    fn docker_and_k8s() {
        let id = "a".repeat(64);
        let w = workload(&format!("/system.slice/docker-{id}.scope"));
        assert_eq!(w.container_id.as_deref(), Some(id.as_str()));
        let w = workload(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234abcd_12ab_34cd_56ef_1234567890ab.slice/cri-containerd-{id}.scope"
        ));
        assert_eq!(
            w.pod_uid.as_deref(),
            Some("1234abcd-12ab-34cd-56ef-1234567890ab")
        );
        assert_eq!(w.container_id.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn resolves_this_process_cgroup() {
        let Ok(root) = crate::sources::preflight::cgroup2_root() else {
            return;
        };
        let mut r = CgroupResolver::new(root.clone());
        let md = std::fs::metadata(&root).expect("root");
        assert_eq!(r.path(md.ino()).as_deref(), Some("/"));
        assert_eq!(r.path(0), None);
    }
}
