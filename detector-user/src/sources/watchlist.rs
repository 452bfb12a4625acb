//! The credential watch list: patterns → the files that exist now → (dev, inode) keys in the
//! kernel's `WATCHED` map. Matching by inode is what makes symlinks, hardlinks, `..`, dirfds
//! and `/proc/self/fd/N` the same file; userspace's job is to keep the keys current when files
//! appear or are replaced (token rotation renames a new inode into place).

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use detector_common::WatchKey;

/// The embedded default list.
pub(crate) const DEFAULT_LIST: &str = include_str!("watchlist.default");

/// A watch-list syntax error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}:{line}: {msg}")]
pub struct WatchListError {
    /// File name (or `<embedded>`).
    pub(crate) source_name: String,
    /// 1-based line.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) msg: String,
}

/// One pattern line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Glob, `~/` for every home.
    pub(crate) glob: String,
    /// Category reported in events.
    pub(crate) category: String,
}

const CATEGORIES: &[&str] = &[
    "ssh_key",
    "cloud",
    "kube",
    "k8s_token",
    "token",
    "secret",
    "shadow",
    "environ",
    "other",
];

/// Parses `pattern category` lines; `#` starts a comment.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<Pattern>, WatchListError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |msg: String| WatchListError {
            source_name: source_name.into(),
            line: i + 1,
            msg,
        };
        let mut parts = line.split_whitespace();
        let glob = parts.next().unwrap_or_default().to_string();
        let category = parts.next().unwrap_or("other").to_string();
        if parts.next().is_some() {
            return Err(err("expected `pattern [category]`".into()));
        }
        if !(glob.starts_with('/') || glob.starts_with("~/")) {
            return Err(err(format!(
                "pattern `{glob}` must be absolute or start with ~/"
            )));
        }
        if !CATEGORIES.contains(&category.as_str()) {
            return Err(err(format!(
                "unknown category `{category}` (one of {})",
                CATEGORIES.join(", ")
            )));
        }
        if let Err(e) = glob::Pattern::new(&glob.replacen("~/", "/", 1)) {
            return Err(err(format!("bad glob `{glob}`: {e}")));
        }
        out.push(Pattern { glob, category });
    }
    Ok(out)
}

/// Home directories of every user (from /etc/passwd) plus /root.
pub(crate) fn homes(passwd: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_to_string(passwd)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(5))
        .filter(|h| h.starts_with('/') && *h != "/")
        .map(PathBuf::from)
        .collect();
    v.push(PathBuf::from("/root"));
    v.sort();
    v.dedup();
    v.retain(|h| h.is_dir());
    v
}

/// Most directories one pattern may add to the inotify set (a glob over thousands of pod
/// directories stops there; the periodic rescan still covers the rest).
const MAX_PATTERN_DIRS: usize = 4096;

/// Appends to `out` the existing directories along glob `g` (absolute): the deepest existing
/// ancestor of each literal step, and every directory matching each wildcard step.
fn pattern_dirs(g: &str, out: &mut Vec<PathBuf>) {
    let comps: Vec<&str> = g.split('/').filter(|c| !c.is_empty()).collect();
    let Some((_, parents)) = comps.split_last() else {
        return;
    };
    let mut level = vec![PathBuf::from("/")];
    let start = out.len();
    for comp in parents {
        out.extend(level.iter().cloned());
        if out.len() - start > MAX_PATTERN_DIRS {
            return;
        }
        let wild = comp.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for d in &level {
            if wild {
                let Ok(pat) = glob::Pattern::new(comp) else {
                    return;
                };
                let Ok(rd) = std::fs::read_dir(d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name();
                    if pat.matches(&name.to_string_lossy()) && e.path().is_dir() {
                        next.push(e.path());
                    }
                }
            } else {
                let p = d.join(comp);
                if p.is_dir() {
                    next.push(p);
                }
            }
        }
        if next.is_empty() {
            // The deepest existing directory is in `out`: its CREATE tells of the next one.
            return;
        }
        level = next;
    }
    out.extend(level);
}

/// Kernel encoding of a device number (`MAJOR << 20 | MINOR`), as `sb->s_dev` holds it.
pub(crate) fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

/// A watched file that exists now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    /// Path as found.
    pub(crate) path: PathBuf,
    /// Category.
    pub(crate) category: String,
    /// Kernel identity.
    pub(crate) key: WatchKey,
    /// Modification time (seconds since the epoch), for credential-age rules.
    pub(crate) mtime: i64,
    /// Birth time, where the file system keeps one: with the key, it names this file and not
    /// a later one given the same inode number after this one was deleted.
    pub(crate) born: Option<SystemTime>,
}

/// The file at `rel` under directory `dir`, looked up without leaving `dir`'s mount (`openat2`
/// with `RESOLVE_NO_XDEV`; `in_root`: `dir` is the root for absolute names and `..` too). The
/// name may be anything a process chose; a lookup that crossed into another mount could wait
/// forever on a FUSE daemon that never answers, or trigger an automount. None when it would,
/// or when there is no such file.
fn lookup_beneath(dir: &Path, rel: &Path, in_root: bool) -> Option<std::fs::Metadata> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let d = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut how = ResolveFlags::NO_XDEV | ResolveFlags::NO_MAGICLINKS;
    if in_root {
        how |= ResolveFlags::IN_ROOT;
    }
    let fd =
        rustix::fs::openat2(&d, rel, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), how).ok()?;
    // `O_PATH` descriptors can be stat'ed (statx with `AT_EMPTY_PATH`).
    std::fs::File::from(fd).metadata().ok()
}

impl Watched {
    /// Whether the file at `rel` under `dir` (see [`lookup_beneath`]) now has this file's
    /// (dev, inode) but another birth time: the number was given to a new file after this one
    /// was deleted (the shadow suite frees `/etc/shadow`'s inode and its next file,
    /// `/etc/group+`, gets the number on ext4). The kernel matched that file by a key that had
    /// not been retired yet. False whenever it cannot be told: no such file, another inode
    /// there, or no birth times.
    pub(crate) fn number_reused_at(&self, dir: &Path, rel: &Path, in_root: bool) -> bool {
        let Some(born) = self.born else {
            return false;
        };
        let Some(md) = lookup_beneath(dir, rel, in_root) else {
            return false;
        };
        let key = WatchKey {
            dev: kernel_dev(md.dev()),
            ino: md.ino(),
        };
        key == self.key && md.created().is_ok_and(|b| b != born)
    }

    /// Whether `path` (this file's) still holds this very file.
    pub(crate) fn still_at(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|md| {
            WatchKey {
                dev: kernel_dev(md.dev()),
                ino: md.ino(),
            } == self.key
                && (self.born.is_none() || md.created().ok() == self.born)
        })
    }
}

/// How many removed files [`WatchList::get`] still knows.
pub(crate) const RETIRED_KEPT: usize = 256;

/// The current set, with stable ids per (dev, inode).
#[derive(Debug, Default)]
pub struct WatchList {
    patterns: Vec<Pattern>,
    homes: Vec<PathBuf>,
    by_id: BTreeMap<u32, Watched>,
    /// Files removed from the list lately, newest last: an event the kernel matched just
    /// before a removal (a file replaced by rename, as the shadow suite and token refreshers
    /// do) still names its file.
    retired: std::collections::VecDeque<(u32, Watched)>,
    by_key: HashMap<WatchKey, u32>,
    next_id: u32,
    /// Bumped by every rescan that changed anything (the credential ledger re-reads the list
    /// only then).
    generation: u64,
}

/// What a rescan changed, to apply to the kernel map.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    /// New keys.
    pub(crate) added: Vec<(WatchKey, u32)>,
    /// Keys no longer watched.
    pub(crate) removed: Vec<WatchKey>,
}

impl WatchList {
    /// A list over `patterns` for `homes`.
    pub(crate) fn new(patterns: Vec<Pattern>, homes: Vec<PathBuf>) -> Self {
        Self {
            patterns,
            homes,
            next_id: 1,
            ..Default::default()
        }
    }

    /// The patterns in force.
    pub(crate) fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Replaces the patterns (config reload); the next [`WatchList::rescan`] applies them.
    /// Files still matched keep their ids.
    pub(crate) fn set_patterns(&mut self, patterns: Vec<Pattern>) {
        self.patterns = patterns;
    }

    /// Replaces the homes (users come and go).
    pub(crate) fn set_homes(&mut self, homes: Vec<PathBuf>) {
        self.homes = homes;
    }

    /// Concrete globs after `~` expansion.
    fn expanded(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for p in &self.patterns {
            if let Some(rest) = p.glob.strip_prefix("~/") {
                for h in &self.homes {
                    v.push((format!("{}/{}", h.display(), rest), p.category.clone()));
                }
            } else {
                v.push((p.glob.clone(), p.category.clone()));
            }
        }
        v
    }

    /// Directories whose changes can add or replace watched files (for inotify): along each
    /// pattern's path, every existing directory that a match could lie under, down to the
    /// deepest one that exists, so that a credential created later in directories that do not
    /// exist yet (a pod scheduled after start: `pods/<uid>/volumes/…/token`, a user's first
    /// `~/.ssh`) is seen from the moment each directory appears; plus the directory of every
    /// watched file (replacement by rename).
    pub(crate) fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (g, _) in self.expanded() {
            pattern_dirs(&g, &mut dirs);
        }
        for w in self.by_id.values() {
            if let Some(p) = w.path.parent() {
                dirs.push(p.to_path_buf());
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs.retain(|d| d.is_dir());
        dirs
    }

    /// Re-expands every pattern and stats the matches. Returns what changed.
    pub(crate) fn rescan(&mut self) -> Delta {
        let mut found: HashMap<WatchKey, Watched> = HashMap::new();
        for (g, category) in self.expanded() {
            let Ok(paths) = glob::glob(&g) else { continue };
            for path in paths.flatten() {
                // Follow symlinks: the kernel sees the target inode whatever name is used.
                let Ok(md) = std::fs::metadata(&path) else {
                    continue;
                };
                if !md.is_file() {
                    continue;
                }
                if path.extension().is_some_and(|e| e == "pub") {
                    continue;
                }
                let key = WatchKey {
                    dev: kernel_dev(md.dev()),
                    ino: md.ino(),
                };
                found.entry(key).or_insert(Watched {
                    path,
                    category: category.clone(),
                    key,
                    mtime: md.mtime(),
                    born: md.created().ok(),
                });
            }
        }
        let mut delta = Delta::default();
        // Gone, or its number now another file's (another birth time): a new id for that one.
        let stale: Vec<WatchKey> = self
            .by_key
            .iter()
            .filter(|(k, id)| match found.get(k) {
                None => true,
                Some(f) => self
                    .by_id
                    .get(id)
                    .is_some_and(|w| w.born.is_some() && f.born.is_some() && w.born != f.born),
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(id) = self.by_key.remove(&k) {
                if let Some(w) = self.by_id.remove(&id) {
                    if self.retired.len() == RETIRED_KEPT {
                        self.retired.pop_front();
                    }
                    self.retired.push_back((id, w));
                }
            }
            delta.removed.push(k);
        }
        let mut changed = !delta.removed.is_empty();
        for (k, w) in found {
            match self.by_key.get(&k) {
                Some(id) => {
                    // Same inode; refresh path/mtime (a rename or a rewrite in place).
                    if let Some(old) = self.by_id.insert(*id, w) {
                        changed |= self.by_id.get(id) != Some(&old);
                    }
                }
                None => {
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                    self.by_key.insert(k, id);
                    self.by_id.insert(id, w);
                    delta.added.push((k, id));
                }
            }
        }
        delta.added.sort_by_key(|(_, id)| *id);
        if changed || !delta.added.is_empty() {
            self.generation += 1;
        }
        delta
    }

    /// Changes whenever a rescan found something new, gone, renamed or modified.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Every watched file (as of the last rescan), in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Watched> {
        self.by_id.values()
    }

    /// Every watched key (as of the last rescan).
    pub fn keys(&self) -> impl Iterator<Item = &WatchKey> {
        self.by_key.keys()
    }

    /// Whether `path` is watched now.
    pub fn watches(&self, path: &Path) -> bool {
        self.by_id.values().any(|w| w.path == path)
    }

    /// Whether `id` is a file watched now (not a retired one).
    pub(crate) fn is_live(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The watched file with this id.
    /// A file removed from the list lately is still found (the last [`RETIRED_KEPT`]): ids
    /// are never reused, so it is the file the kernel matched.
    pub(crate) fn get(&self, id: u32) -> Option<&Watched> {
        self.by_id.get(&id).or_else(|| {
            self.retired
                .iter()
                .rev()
                .find(|(i, _)| *i == id)
                .map(|(_, w)| w)
        })
    }

    /// Number of files watched.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when nothing is watched.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_parses() {
        let p = parse(DEFAULT_LIST, "<embedded>").expect("default list");
        assert!(p
            .iter()
            .any(|p| p.glob == "/etc/shadow" && p.category == "shadow"));
        assert!(p.iter().any(|p| p.glob == "~/.ssh/id_*"));
    }

    #[test]
    fn errors_are_positioned() {
        let e = parse("/etc/shadow shadow\n\nrelative/path token\n", "w.list").expect_err("bad");
        assert_eq!(e.line, 3);
        assert_eq!(e.source_name, "w.list");
        let e = parse("/etc/x nonsense\n", "w").expect_err("bad category");
        assert!(e.msg.contains("unknown category"), "{e}");
        let e = parse("/etc/[x token\n", "w").expect_err("bad glob");
        assert!(e.msg.contains("bad glob"), "{e}");
    }

    #[test]
    fn rescan_tracks_creation_replacement_and_removal() {
        let dir = std::env::temp_dir().join(format!("wl-{}", std::process::id()));
        let home = dir.join("home/alice");
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
        let pats = parse("~/.ssh/id_*  ssh_key\n", "t").expect("parse");
        let mut wl = WatchList::new(pats, vec![home.clone()]);
        assert_eq!(wl.rescan(), Delta::default());
        assert_eq!(wl.generation(), 0, "nothing changed");

        let key = home.join(".ssh/id_ed25519");
        std::fs::write(&key, "k1").expect("write");
        std::fs::write(home.join(".ssh/id_ed25519.pub"), "pub").expect("write");
        let d = wl.rescan();
        assert_eq!(d.added.len(), 1, "{d:?}");
        assert!(d.removed.is_empty());
        let id = d.added[0].1;
        assert_eq!(wl.get(id).map(|w| w.path.clone()), Some(key.clone()));
        assert_eq!(wl.generation(), 1);
        assert_eq!(wl.iter().count(), 1);
        wl.rescan();
        assert_eq!(
            wl.generation(),
            1,
            "an unchanged rescan keeps the generation"
        );
        // Rewritten in place: same inode, new mtime.
        let f = std::fs::File::options()
            .write(true)
            .open(&key)
            .expect("open");
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400))
            .expect("set mtime");
        wl.rescan();
        assert_eq!(wl.generation(), 2, "a modification bumps it");

        // Atomic replacement: a new inode under the same name.
        let tmp = home.join(".ssh/.tmp");
        std::fs::write(&tmp, "k2").expect("write");
        std::fs::rename(&tmp, &key).expect("rename");
        let d = wl.rescan();
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.removed.len(), 1);
        // The replaced inode's id still names the file: the kernel may have matched it just
        // before the rename, and its event arrives after this rescan.
        assert_eq!(wl.get(id).map(|w| w.path.clone()), Some(key.clone()));
        assert_eq!(wl.iter().count(), 1, "but it is no longer watched");

        std::fs::remove_file(&key).expect("rm");
        let d = wl.rescan();
        assert_eq!(d.removed.len(), 1);
        assert!(wl.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_file_is_a_new_id_even_with_the_old_inode_number() {
        let dir = std::env::temp_dir().join(format!("wl-reuse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let cred = dir.join("cred");
        let pats = parse(&format!("{} token\n", cred.display()), "t").expect("parse");
        let mut wl = WatchList::new(pats, vec![]);
        std::fs::write(&cred, "a").expect("write");
        let first = wl.rescan().added;
        // Deleted and written anew: ext4 hands the freed number straight back, and only the
        // birth time tells the files apart.
        std::fs::remove_file(&cred).expect("rm");
        std::fs::write(&cred, "b").expect("write");
        let d = wl.rescan();
        assert_eq!(d.removed, vec![first[0].0], "{d:?}");
        assert_eq!(d.added.len(), 1, "{d:?}");
        assert_ne!(
            d.added[0].1, first[0].1,
            "the new file kept the old one's id"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn directories_reach_down_the_pattern_to_the_deepest_existing_one() {
        let dir = std::env::temp_dir().join(format!("wl-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pods/uid1/volumes/proj")).expect("mkdir");
        std::fs::create_dir_all(dir.join("pods/uid2")).expect("mkdir");
        let pats = parse(
            &format!(
                "{}/pods/*/volumes/*/token k8s_token\n~/.ssh/id_* ssh_key\n",
                dir.display()
            ),
            "t",
        )
        .expect("parse");
        let home = dir.join("home/bob");
        std::fs::create_dir_all(&home).expect("mkdir");
        let wl = WatchList::new(pats, vec![home.clone()]);
        let d = wl.directories();
        for want in [
            dir.join("pods"),
            dir.join("pods/uid1"),
            dir.join("pods/uid1/volumes"),
            dir.join("pods/uid1/volumes/proj"),
            // No volumes yet: its pod directory tells when they come.
            dir.join("pods/uid2"),
            // No ~/.ssh yet: the home tells when it comes.
            home.clone(),
        ] {
            assert!(d.contains(&want), "{want:?} not in {d:?}");
        }
        assert!(!d.contains(&home.join(".ssh")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kernel_dev_encoding() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }
}
