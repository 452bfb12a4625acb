//! User and group names that follow `/etc/passwd` and `/etc/group`: a user created after the
//! agent started (a package's system user, `useradd` by an operator) gets a name as soon as
//! its first process shows up, so identities read `…@alice`, never `…@1001`, and home
//! ownership holds for them.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

/// A known id is re-checked against the file at most this often (a renamed account).
const RECHECK: Duration = Duration::from_secs(2);
/// An unknown id re-checks the file at most this often: the account may be brand new.
const MISS_RECHECK: Duration = Duration::from_millis(20);

/// One `name:x:id:…` file (passwd or group), re-read when it changes.
#[derive(Debug)]
struct Table {
    path: PathBuf,
    names: HashMap<u32, String>,
    mtime: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
}

impl Table {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            names: HashMap::new(),
            mtime: None,
            checked: None,
        }
    }

    fn get(&mut self, id: u32, now: Instant) -> Option<&str> {
        let every = if self.names.contains_key(&id) {
            RECHECK
        } else {
            MISS_RECHECK
        };
        if self
            .checked
            .is_none_or(|t| now.saturating_duration_since(t) >= every)
        {
            self.checked = Some(now);
            self.reload_if_changed();
        }
        self.names.get(&id).map(String::as_str)
    }

    fn reload_if_changed(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.ino())));
        if stamp.is_some() && stamp == self.mtime {
            return;
        }
        self.mtime = stamp;
        self.names = std::fs::read_to_string(&self.path)
            .map(|t| parse(&t))
            .unwrap_or_default();
    }
}

/// Parses `name:password:id:…` lines into id → name (the first name of an id wins).
pub(crate) fn parse(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (false, Ok(id)) = (name.is_empty(), id.trim().parse::<u32>()) {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// User and group names.
#[derive(Debug)]
pub(crate) struct Accounts {
    users: Table,
    groups: Table,
}

impl Default for Accounts {
    fn default() -> Self {
        Self::new(PathBuf::from("/etc/passwd"), PathBuf::from("/etc/group"))
    }
}

impl Accounts {
    /// Names from `passwd` and `group` files.
    pub(crate) fn new(passwd: PathBuf, group: PathBuf) -> Self {
        Self {
            users: Table::new(passwd),
            groups: Table::new(group),
        }
    }

    /// The name of `uid`.
    pub(crate) fn user(&mut self, uid: u32, now: Instant) -> Option<String> {
        self.users.get(uid, now).map(str::to_string)
    }

    /// The name of `gid`.
    pub(crate) fn group(&mut self, gid: u32, now: Instant) -> Option<String> {
        self.groups.get(gid, now).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_added_after_start_is_named_at_once() {
        let dir = std::env::temp_dir().join(format!("accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pw, gr) = (dir.join("passwd"), dir.join("group"));
        std::fs::write(&pw, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(&gr, "root:x:0:\n").unwrap();
        let mut a = Accounts::new(pw.clone(), gr.clone());
        let t0 = Instant::now();
        assert_eq!(a.user(0, t0).as_deref(), Some("root"));
        assert_eq!(a.user(1001, t0), None);
        // useradd writes a new file and renames it over the old one.
        let tmp = dir.join("passwd+");
        std::fs::write(
            &tmp,
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::rename(&tmp, &pw).unwrap();
        std::fs::write(&gr, "root:x:0:\nalice:x:1001:\n").unwrap();
        let t1 = t0 + MISS_RECHECK;
        assert_eq!(a.user(1001, t1).as_deref(), Some("alice"));
        assert_eq!(a.group(1001, t1).as_deref(), Some("alice"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let m = parse("a:x:1:1\n:x:2:2\nb:x:notanumber\nc\nd:x:4\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&1], "a");
        assert_eq!(m[&4], "d");
    }
}
