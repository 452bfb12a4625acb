//! Kernel matches by a watched key whose inode number another file has taken.
//!
//! The kernel matches credentials by (device, inode). When a watched file is deleted or
//! replaced by rename, its key stays in the kernel's map until the agent's next rescan, and a
//! file created in between can be given the freed number: the shadow suite replaces
//! `/etc/shadow` and its very next file, `/etc/group+` (renamed to `/etc/group`), gets the
//! number on ext4. Every reader of `/etc/group` then "read `/etc/shadow`". Such a match is
//! dropped here when it is proven: the file now at the name the process opened has the key and
//! a birth time other than the watched file's. Reads by the same process of that file go too.
//! Anything that cannot be proven (no birth times, the file gone or replaced again) is kept: a
//! credential renamed away or hard-linked elsewhere is the same file, with the same birth.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use detector_common::{kind, FileEvent};

use crate::sources::{decode::cstr, watchlist::Watched};

/// How many dropped (process, file) pairs are remembered before the old ones are forgotten.
const REMEMBERED: usize = 4096;
/// How long a dropped pair is remembered once that many are (ns of event time).
const REMEMBER_NS: u64 = 600_000_000_000;

/// Drops kernel matches of reused inode numbers (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct ReuseFilter {
    /// (tgid, dev, ino) of opens dropped → event time: that process's reads of that file go too.
    dropped: HashMap<(u32, u64, u64), u64>,
    /// Matches dropped so far.
    pub(crate) count: u64,
}

impl ReuseFilter {
    /// Whether file record `f`, matched to watched file `w`, is another file that has `w`'s
    /// inode number.
    pub(crate) fn drops(&mut self, f: &FileEvent, w: &Watched) -> bool {
        if (f.dev, f.ino) != (w.key.dev, w.key.ino) {
            // Matched by name in the kernel: the file at the watched file's own name.
            return false;
        }
        let pair = (f.hdr.tgid, f.dev, f.ino);
        if f.hdr.kind != kind::FILE_OPEN {
            return self.dropped.contains_key(&pair);
        }
        if w.born.is_none() || w.still_at(&w.path) {
            return false;
        }
        if !opened_at(f, w)
            .iter()
            .any(|(dir, rel, in_root)| w.number_reused_at(dir, rel, *in_root))
        {
            return false;
        }
        if self.dropped.len() >= REMEMBERED {
            let now = f.hdr.ts_ns;
            self.dropped
                .retain(|_, t| now.saturating_sub(*t) < REMEMBER_NS);
            if self.dropped.len() >= REMEMBERED {
                self.dropped.clear();
            }
        }
        self.dropped.insert(pair, f.hdr.ts_ns);
        self.count += 1;
        tracing::debug!(
            watched = %w.path.display(),
            opened = ?resolved_path(f),
            pid = f.hdr.tgid,
            "match by a reused inode number dropped"
        );
        true
    }
}

/// Where the file the process opened can be looked at now, as (directory, name under it,
/// whether the directory is a root): the name the process passed, under its own root (or
/// working directory, for a relative name) while it lives; the name the kernel walked from the
/// dentry, from `/` when the walk reached its file system's root (the root file system's own
/// names), else its tail under each directory of the watched file's path that has the tail's
/// first name (a file replaced in the watched file's own directory, or near it).
fn opened_at(f: &FileEvent, w: &Watched) -> Vec<(PathBuf, PathBuf, bool)> {
    let mut v = Vec::new();
    let tgid = f.hdr.tgid;
    if f.path_len > 0 {
        let p = cstr(&f.path);
        if let Some(rest) = p.strip_prefix('/') {
            v.push((format!("/proc/{tgid}/root").into(), rest.into(), true));
        } else if !p.is_empty() {
            v.push((format!("/proc/{tgid}/cwd").into(), p.into(), false));
        }
    }
    let (rooted, names) = walked(f);
    if rooted {
        v.push(("/".into(), names.join("/").into(), false));
    } else if let Some((first, rest)) = names.split_first() {
        let rel: PathBuf = rest.iter().collect();
        for d in w.path.ancestors().skip(1) {
            if d.file_name().is_some_and(|n| n == first.as_str()) {
                if let Some(parent) = d.parent() {
                    v.push((parent.to_path_buf(), Path::new(first).join(&rel), false));
                }
            }
        }
    }
    v
}

/// The names the kernel walked from the file's dentry, outermost first, and whether the walk
/// reached its file system's root (else it stopped at the kernel's depth bound and the names
/// are only the path's tail).
fn walked(f: &FileEvent) -> (bool, Vec<String>) {
    let depth = (f.depth as usize).min(f.dentry.len());
    let comps: Vec<String> = f.dentry[..depth].iter().rev().map(|c| cstr(c)).collect();
    // The walk reached the file system root when its last component is "/".
    let rooted = comps.first().is_some_and(|c| c == "/");
    let names = comps
        .into_iter()
        .filter(|c| !c.is_empty() && c != "/")
        .collect();
    (rooted, names)
}

/// The path the kernel walked from the file's dentry, within its file system: rooted
/// (`/etc/group`) when the walk reached the file system's root, else only its tail
/// (`…/x/y`).
pub(crate) fn resolved_path(f: &FileEvent) -> Option<String> {
    if f.depth == 0 {
        return None;
    }
    let (rooted, names) = walked(f);
    Some(if rooted {
        format!("/{}", names.join("/"))
    } else {
        format!("…/{}", names.join("/"))
    })
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::MetadataExt as _, path::Path, time::SystemTime};

    use detector_common::WatchKey;

    use super::*;
    use crate::sources::watchlist::kernel_dev;

    fn key_of(p: &Path) -> WatchKey {
        let md = std::fs::metadata(p).expect("stat");
        WatchKey {
            dev: kernel_dev(md.dev()),
            ino: md.ino(),
        }
    }

    /// A record of `tgid` opening (or reading) `key` by the name `passed`, whose dentry walk
    /// (bounded as the kernel's) went up from `opened`.
    fn record(
        k: u32,
        tgid: u32,
        key: WatchKey,
        passed: Option<&Path>,
        opened: Option<&Path>,
    ) -> FileEvent {
        // SAFETY: `FileEvent` is `repr(C)` and made only of integers and byte arrays: all zeroes
        // is a valid value.
        let mut f: FileEvent = unsafe { std::mem::zeroed() };
        f.hdr.kind = k;
        f.hdr.tgid = tgid;
        f.hdr.ts_ns = 1;
        f.dev = key.dev;
        f.ino = key.ino;
        if let Some(p) = passed {
            let name = p.to_string_lossy();
            f.path[..name.len()].copy_from_slice(name.as_bytes());
            f.path_len = name.len() as u32;
        }
        if let Some(o) = opened {
            // Leaf first, up to the root's "/" if the bound allows.
            let comps: Vec<String> = o
                .components()
                .rev()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .take(f.dentry.len())
                .collect();
            for (i, c) in comps.iter().enumerate() {
                f.dentry[i][..c.len()].copy_from_slice(c.as_bytes());
            }
            f.depth = comps.len() as u32;
        }
        f
    }

    #[test]
    fn a_file_with_the_key_and_another_birth_is_dropped_with_its_reads() {
        let dir = std::env::temp_dir().join(format!("reused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // The watched file was at `shadow`, now gone; `group` has its key.
        let group = dir.join("group");
        std::fs::write(&group, "root:x:0:\n").expect("write");
        let key = key_of(&group);
        let born = std::fs::metadata(&group).and_then(|m| m.created()).ok();
        let watched = |born| Watched {
            path: dir.join("shadow"),
            category: "shadow".into(),
            key,
            mtime: 0,
            born,
        };
        let old = watched(Some(SystemTime::UNIX_EPOCH));
        let me = std::process::id();
        let open = |tgid, passed, opened| record(kind::FILE_OPEN, tgid, key, passed, opened);
        let mut r = ReuseFilter::default();
        // By the name the process passed (it still lives), absolute and relative.
        assert!(r.drops(&open(me, Some(&group), None), &old));
        let cwd = std::env::current_dir().expect("cwd");
        let rel =
            Path::new("../../../../../../../../..").join(group.strip_prefix("/").expect("abs"));
        assert!(
            std::fs::metadata(cwd.join(&rel)).is_ok(),
            "{rel:?} from {cwd:?}"
        );
        assert!(r.drops(&open(me, Some(&rel), None), &old), "{rel:?}");
        // By the name the kernel walked, when the process is gone (no pid 2³¹): its tail under
        // a directory of the watched file's path.
        let gone = 1 << 31;
        assert!(r.drops(&open(gone, Some(&group), Some(&group)), &old));
        assert!(r.drops(&record(kind::FILE_READ, gone, key, None, None), &old));
        assert!(
            !r.drops(&record(kind::FILE_READ, gone - 1, key, None, None), &old),
            "another process's read is not explained by that open"
        );
        assert_eq!(r.count, 3);

        // The same birth: the credential itself, renamed or linked elsewhere.
        assert!(!r.drops(&open(me, Some(&group), Some(&group)), &watched(born)));
        // No birth time known: nothing can be proven.
        assert!(!r.drops(&open(me, Some(&group), Some(&group)), &watched(None)));
        // Nowhere to look.
        assert!(!r.drops(&open(gone, None, None), &old));
        // Matched by name (another inode than the watched key): the file at the watched name.
        let other = WatchKey {
            ino: key.ino + 1,
            ..key
        };
        let by_name = record(kind::FILE_OPEN, me, other, Some(&group), Some(&group));
        assert!(!r.drops(&by_name, &old));
        // The watched path still holds the watched file: kept without looking further.
        let here = Watched {
            path: group.clone(),
            ..watched(born)
        };
        assert!(!r.drops(&open(me, Some(&group), Some(&group)), &here));
        assert_eq!(r.count, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lookups_do_not_leave_the_mount() {
        let null = Path::new("/dev/null");
        let key = key_of(null);
        assert_ne!(key.dev, key_of(Path::new("/")).dev, "/dev is its own mount");
        let w = Watched {
            path: "/nonexistent/cred".into(),
            category: "token".into(),
            key,
            mtime: 0,
            born: Some(SystemTime::UNIX_EPOCH),
        };
        // It has the key and another birth, but the lookup refuses to cross into its mount.
        assert!(std::fs::metadata(null)
            .and_then(|m| m.created())
            .is_ok_and(|b| b != SystemTime::UNIX_EPOCH));
        assert!(!w.number_reused_at(Path::new("/"), Path::new("dev/null"), false));
        assert!(w.number_reused_at(Path::new("/dev"), Path::new("null"), false));
    }

    #[test]
    fn the_walked_name_is_rooted_or_a_tail() {
        // SAFETY: as above: all zeroes is a valid `FileEvent`.
        let mut f: FileEvent = unsafe { std::mem::zeroed() };
        assert_eq!(resolved_path(&f), None);
        for (i, c) in ["group", "etc", "/"].iter().enumerate() {
            f.dentry[i][..c.len()].copy_from_slice(c.as_bytes());
        }
        f.depth = 3;
        assert_eq!(resolved_path(&f).as_deref(), Some("/etc/group"));
        f.depth = 2;
        assert_eq!(resolved_path(&f).as_deref(), Some("…/etc/group"));
    }
}
