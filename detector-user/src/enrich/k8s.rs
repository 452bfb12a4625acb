//! Kubernetes pod namespace and name for a container or pod uid, read from the node itself —
//! no API-server access, so a DaemonSet needs no RBAC and works when the API server is down.
//!
//! Sources, in order:
//! 1. the container's OCI bundle `config.json` kept by the runtime, whose annotations carry the
//!    pod's namespace, name and the container name (containerd:
//!    `io.kubernetes.cri.sandbox-namespace`/`-name`, `io.kubernetes.cri.container-name`;
//!    CRI-O: `io.kubernetes.pod.namespace`/`.name`, `io.kubernetes.container.name`);
//! 2. the kubelet's pod directory: the projected service-account volume holds a `namespace`
//!    file (`<kubelet>/pods/<uid>/volumes/kubernetes.io~projected/*/namespace`).
//!
//! Results are cached per pod uid and container id (namespace and name never change for a
//! uid); misses are retried at most once per `retry` interval, since a runtime writes the
//! bundle just before the container's first process runs.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::Workload;

/// Where the node keeps pod and container state.
#[derive(Clone, Debug)]
pub(crate) struct PodRoots {
    /// kubelet root (`/var/lib/kubelet`).
    pub(crate) kubelet: PathBuf,
    /// Directories holding one `<container id>/config.json` bundle per container
    /// (containerd's k8s.io task dir) or `<container id>/userdata/config.json` (CRI-O).
    pub(crate) bundles: Vec<PathBuf>,
}

impl Default for PodRoots {
    fn default() -> Self {
        Self {
            kubelet: PathBuf::from("/var/lib/kubelet"),
            bundles: vec![
                PathBuf::from("/run/containerd/io.containerd.runtime.v2.task/k8s.io"),
                PathBuf::from("/run/containers/storage/overlay-containers"),
            ],
        }
    }
}

/// What is known of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PodInfo {
    namespace: Option<String>,
    name: Option<String>,
    container: Option<String>,
}

/// Resolves pod namespace/name, cached.
#[derive(Debug)]
pub(crate) struct PodResolver {
    roots: PodRoots,
    by_container: HashMap<String, PodInfo>,
    by_pod: HashMap<String, PodInfo>,
    misses: HashMap<String, Instant>,
    retry: Duration,
}

/// A bundle's config.json is a few KiB; anything far larger is not one we should parse.
const MAX_BUNDLE: u64 = 4 << 20;
/// Bound on cached entries (each a few short strings).
const MAX_CACHE: usize = 65_536;

impl PodResolver {
    /// Resolver over the given roots.
    pub(crate) fn new(roots: PodRoots) -> Self {
        Self {
            roots,
            by_container: HashMap::new(),
            by_pod: HashMap::new(),
            misses: HashMap::new(),
            retry: Duration::from_secs(2),
        }
    }

    /// Fills `pod_namespace`, `pod_name` and `container_name` of a workload that has a pod uid.
    pub(crate) fn annotate(&mut self, w: &mut Workload) {
        let Some(uid) = w.pod_uid.clone() else {
            return;
        };
        let info = self.lookup(&uid, w.container_id.as_deref());
        w.pod_namespace = info.namespace;
        w.pod_name = info.name;
        w.container_name = info.container;
    }

    fn lookup(&mut self, uid: &str, container: Option<&str>) -> PodInfo {
        if let Some(c) = container {
            if let Some(i) = self.by_container.get(c) {
                return i.clone();
            }
        } else if let Some(i) = self.by_pod.get(uid) {
            return i.clone();
        }
        let key = format!("{uid}/{}", container.unwrap_or(""));
        if self
            .misses
            .get(&key)
            .is_some_and(|t| t.elapsed() < self.retry)
        {
            return self.by_pod.get(uid).cloned().unwrap_or_default();
        }
        let mut info = container
            .and_then(|c| self.read_bundle(c))
            .unwrap_or_default();
        if info.namespace.is_none() {
            info.namespace = self
                .by_pod
                .get(uid)
                .and_then(|i| i.namespace.clone())
                .or_else(|| self.read_kubelet(uid));
        }
        if info.name.is_none() {
            info.name = self.by_pod.get(uid).and_then(|i| i.name.clone());
        }
        if self.by_container.len() + self.by_pod.len() >= MAX_CACHE {
            self.by_container.clear();
            self.by_pod.clear();
        }
        let complete = info.namespace.is_some() && (container.is_none() || info.name.is_some());
        if complete {
            self.misses.remove(&key);
            self.by_pod
                .entry(uid.to_string())
                .and_modify(|p| {
                    p.namespace.clone_from(&info.namespace);
                    if info.name.is_some() {
                        p.name.clone_from(&info.name);
                    }
                })
                .or_insert_with(|| PodInfo {
                    container: None,
                    ..info.clone()
                });
            if let Some(c) = container {
                self.by_container.insert(c.to_string(), info.clone());
            }
        } else {
            if self.misses.len() >= MAX_CACHE {
                self.misses.clear();
            }
            self.misses.insert(key, Instant::now());
        }
        info
    }

    fn read_bundle(&self, container: &str) -> Option<PodInfo> {
        // The id comes from a cgroup path and is validated as 64 hex digits there; check again
        // so no path component can be smuggled in.
        if container.len() != 64 || !container.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.roots.bundles.iter().find_map(|root| {
            [
                root.join(container).join("config.json"),
                root.join(container).join("userdata").join("config.json"),
            ]
            .iter()
            .find_map(|p| parse_bundle(p))
        })
    }

    fn read_kubelet(&self, uid: &str) -> Option<String> {
        if uid.len() != 36 || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return None;
        }
        let vols = self
            .roots
            .kubelet
            .join("pods")
            .join(uid)
            .join("volumes")
            .join("kubernetes.io~projected");
        let rd = std::fs::read_dir(vols).ok()?;
        rd.flatten().find_map(|e| {
            let s = read_small(&e.path().join("namespace"), 256)?;
            let ns = s.trim();
            valid_name(ns).then(|| ns.to_string())
        })
    }
}

fn read_small(p: &Path, max: u64) -> Option<String> {
    let f = std::fs::File::open(p).ok()?;
    let mut s = String::new();
    f.take(max).read_to_string(&mut s).ok()?;
    Some(s)
}

/// DNS-1123 label/subdomain characters only: what Kubernetes allows in namespace, pod and
/// container names. Anything else is not trusted into alerts.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn parse_bundle(p: &Path) -> Option<PodInfo> {
    let md = std::fs::metadata(p).ok()?;
    if md.len() > MAX_BUNDLE {
        tracing::warn!(path = %p.display(), size = md.len(), "OCI bundle too large; not read");
        return None;
    }
    let text = read_small(p, MAX_BUNDLE)?;
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(path = %p.display(), error = %e, "unreadable OCI bundle");
            return None;
        }
    };
    let ann = v.get("annotations")?;
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            ann.get(*k)
                .and_then(|x| x.as_str())
                .filter(|s| valid_name(s))
                .map(str::to_string)
        })
    };
    Some(PodInfo {
        namespace: get(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ]),
        name: get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
        container: get(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn roots(dir: &Path) -> PodRoots {
        PodRoots {
            kubelet: dir.join("kubelet"),
            bundles: vec![dir.join("containerd"), dir.join("crio")],
        }
    }

    fn wl(container: Option<&str>) -> Workload {
        Workload {
            pod_uid: Some(UID.into()),
            container_id: container.map(str::to_string),
            ..Workload::default()
        }
    }

    #[test]
    fn containerd_bundle_annotations() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = "a".repeat(64);
        let b = dir.path().join("containerd").join(&id);
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(
            b.join("config.json"),
            r#"{"ociVersion":"1.1.0","annotations":{"io.kubernetes.cri.sandbox-namespace":"payments","io.kubernetes.cri.sandbox-name":"api-7c5d9f8b6-x2x9z","io.kubernetes.cri.container-name":"api"}}"#,
        )
        .expect("write");
        let mut r = PodResolver::new(roots(dir.path()));
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace.as_deref(), Some("payments"));
        assert_eq!(w.pod_name.as_deref(), Some("api-7c5d9f8b6-x2x9z"));
        assert_eq!(w.container_name.as_deref(), Some("api"));
        // Cached: still answered after the runtime removed the bundle.
        std::fs::remove_dir_all(&b).expect("rm");
        let mut w2 = wl(Some(&id));
        r.annotate(&mut w2);
        assert_eq!(w2.pod_namespace.as_deref(), Some("payments"));
    }

    #[test]
    fn crio_bundle_and_kubelet_fallback() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = "b".repeat(64);
        let b = dir.path().join("crio").join(&id).join("userdata");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(
            b.join("config.json"),
            r#"{"annotations":{"io.kubernetes.pod.namespace":"kube-system","io.kubernetes.pod.name":"coredns-1","io.kubernetes.container.name":"coredns"}}"#,
        )
        .expect("write");
        let mut r = PodResolver::new(roots(dir.path()));
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace.as_deref(), Some("kube-system"));
        assert_eq!(w.pod_name.as_deref(), Some("coredns-1"));

        // No bundle: the projected service-account volume names the namespace.
        let other = "c1c1c1c1-12ab-34cd-56ef-1234567890ab";
        let v = dir
            .path()
            .join("kubelet/pods")
            .join(other)
            .join("volumes/kubernetes.io~projected/kube-api-access-abcde");
        std::fs::create_dir_all(&v).expect("mkdir");
        std::fs::write(v.join("namespace"), "team-a\n").expect("write");
        let mut w = Workload {
            pod_uid: Some(other.into()),
            ..Workload::default()
        };
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(w.pod_name, None);
    }

    #[test]
    fn hostile_and_missing_inputs_yield_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = "d".repeat(64);
        let b = dir.path().join("containerd").join(&id);
        std::fs::create_dir_all(&b).expect("mkdir");
        // Not JSON; then JSON with names Kubernetes would never allow.
        std::fs::write(b.join("config.json"), "{truncated").expect("write");
        let mut r = PodResolver::new(roots(dir.path()));
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace, None);
        std::fs::write(
            b.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-namespace":"../../etc\n","io.kubernetes.cri.sandbox-name":"ok"}}"#,
        )
        .expect("write");
        r.retry = Duration::ZERO;
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace, None);
        assert_eq!(w.pod_name.as_deref(), Some("ok"));
        // A container id that is not 64 hex digits is never used as a path.
        let mut w = wl(Some("../../../../etc"));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace, None);
    }

    #[test]
    fn miss_is_retried_after_interval() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = "e".repeat(64);
        let mut r = PodResolver::new(roots(dir.path()));
        r.retry = Duration::from_secs(3600);
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace, None);
        let b = dir.path().join("containerd").join(&id);
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(
            b.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-namespace":"late","io.kubernetes.cri.sandbox-name":"p"}}"#,
        )
        .expect("write");
        // Within the retry interval the miss is remembered: no file system work per event.
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace, None);
        r.retry = Duration::ZERO;
        let mut w = wl(Some(&id));
        r.annotate(&mut w);
        assert_eq!(w.pod_namespace.as_deref(), Some("late"));
    }
}
