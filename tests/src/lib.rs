//! Helpers shared by the privileged integration tests: an in-process agent built from the
//! real kernel programs, the `actor` process that performs the actions under test, and
//! scratch directories and network namespaces that clean up after themselves.
//!
//! These tests need root. They never skip: without privileges they fail, loudly.

pub mod bench;
pub mod real;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use detector::{
    capture::LiveCapture,
    event::{Event, Kind},
    sources::{kernel::KernelOptions, loader::ReadMode, watchlist},
};

/// A live agent inside the test process (whose own tgid the kernel programs exclude, which is
/// why every action runs in an `actor` child).
pub struct Agent {
    rt: tokio::runtime::Runtime,
    /// The capture under test.
    pub cap: LiveCapture,
    /// Every event received so far.
    pub events: Vec<Event>,
}

/// Options watching the default list plus `extra` patterns (`pattern category` lines), in
/// the read mode `DETECTOR_TEST_READS` names (`auto` when unset): the kernel matrix runs the
/// whole suite once per mode.
pub fn options(extra: &str) -> KernelOptions {
    let mut o = KernelOptions::default();
    o.watch_patterns
        .extend(watchlist::parse(extra, "<test>").expect("test watch patterns"));
    o.load.reads = read_mode();
    o
}

/// The read mode of this run of the suite (`DETECTOR_TEST_READS`: auto, direct or helper).
pub fn read_mode() -> ReadMode {
    match std::env::var("DETECTOR_TEST_READS").as_deref() {
        Err(_) | Ok("") | Ok("auto") => ReadMode::Auto,
        Ok("direct") => ReadMode::Direct,
        Ok("helper") => ReadMode::Helper,
        Ok(other) => panic!("DETECTOR_TEST_READS={other}: expected auto, direct or helper"),
    }
}

impl Agent {
    /// Loads and attaches the real programs. Panics (fails the test) when it cannot.
    pub fn start(opts: KernelOptions) -> Self {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the privileged integration tests must run as root (cargo xtask test does)"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cap = rt
            .block_on(async { LiveCapture::start(&opts) })
            .unwrap_or_else(|e| panic!("agent failed to start: {e}"));
        Self {
            rt,
            cap,
            events: Vec::new(),
        }
    }

    /// Receives events for `d`.
    pub fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump_once();
        }
    }

    fn pump_once(&mut self) {
        let mut batch = Vec::new();
        let cap = &mut self.cap;
        self.rt
            .block_on(async { cap.next_events(&mut batch).await })
            .expect("capture");
        self.events.extend(batch);
    }

    /// Receives events until one matches, for at most `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() >= end {
                return None;
            }
            self.pump_once();
        }
    }

    /// Events attributed to process `tgid`.
    pub fn of(&self, tgid: u32) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| tgid_of(e) == Some(tgid))
            .collect()
    }
}

/// The tgid an event is attributed to.
pub fn tgid_of(e: &Event) -> Option<u32> {
    e.process.as_ref().map(|p| p.tgid)
}

/// True when `e` is of kind `k` from process `tgid`.
pub fn is(e: &Event, k: Kind, tgid: u32) -> bool {
    e.kind == k && tgid_of(e) == Some(tgid)
}

/// Path of the actor binary: beside the test executable's `deps/` folder, where cargo puts
/// the package's binaries.
pub fn actor_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("actor");
    assert!(p.exists(), "actor binary missing at {}", p.display());
    p
}

/// Runs the actor to completion; returns (pid, stdout).
pub fn actor(args: &[&str]) -> (u32, String) {
    actor_in(None, args)
}

/// Runs the actor, optionally inside network namespace `netns`.
pub fn actor_in(netns: Option<&str>, args: &[&str]) -> (u32, String) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(actor_path());
            c
        }
        None => Command::new(actor_path()),
    };
    let child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn actor");
    let pid = child.id();
    let out = child.wait_with_output().expect("actor");
    assert!(
        out.status.success(),
        "actor {args:?} failed: {:?}",
        out.status
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `/var/tmp/detector-test-<name>-<pid>` (on a disk filesystem: the page-cache
    /// vantage point does not see tmpfs).
    pub fn new(name: &str) -> Self {
        let p = PathBuf::from(format!(
            "/var/tmp/detector-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }

    /// A path inside.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes a file inside and returns its path.
    pub fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace made by the test, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// `ip netns add <name>` with loopback up.
    pub fn new(name: &str) -> Self {
        let n = format!("dt-{name}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &n]).status();
        sh(&["ip", "netns", "add", &n]);
        sh(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        Self(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two network namespaces made by the test and joined by a veth pair: `a` holds
/// `10.<net>.0.1/24`, `b` holds `10.<net>.0.2/24`; both are deleted on drop.
pub struct Link {
    /// The first namespace.
    pub a: Netns,
    /// The second.
    pub b: Netns,
}

impl Link {
    /// Makes the pair; `tag` (a few letters) keeps the interface names unique per test.
    pub fn new(tag: &str, net: u8) -> Self {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let (va, vb) = (
            format!("{tag}{}a", std::process::id() % 100000),
            format!("{tag}{}b", std::process::id() % 100000),
        );
        sh(&[
            "ip", "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns",
            &b.0,
        ]);
        for (ns, dev, host) in [(&a, &va, 1), (&b, &vb, 2)] {
            sh(&[
                "ip",
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("10.{net}.0.{host}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        Self { a, b }
    }
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed: {st}");
}

/// Inode number of a path (for assertions on (dev, ino) identity).
pub fn ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("stat").ino()
}

/// Standard wait for one event.
pub const WAIT: Duration = Duration::from_secs(5);

/// A credential's inventory record built through the ledger's public API: alice's key, read
/// by her ssh and by bob's cat, both then connecting to 10.0.0.7:22; `gone` marks it deleted.
pub fn sample_inventory(gone: bool) -> detector::ledger::query::InventoryRecord {
    use detector::ledger::{input, model::Model, model::WatchedCredential, policy::Policy, query};
    let pol = Policy::new(
        &detector::config::LedgerConfig::default(),
        std::sync::Arc::new(detector::enrich::identity::IdentityConfig::default()),
    );
    let mut m = Model::new();
    let mut out = Vec::new();
    let t0 = 1_780_000_000_000_000_000u64;
    for (i, (who, exe, user, uid)) in [
        ("exe:/usr/bin/ssh@alice", "/usr/bin/ssh", "alice", 1000),
        ("exe:/usr/bin/cat@bob", "/usr/bin/cat", "bob", 1001),
    ]
    .into_iter()
    .enumerate()
    {
        let actor = input::Actor {
            identity: who.into(),
            tgid: 100 + i as u32,
            start: 1,
            tree: 90,
            exe: exe.into(),
            parent_exe: Some("/usr/bin/bash".into()),
            user: Some(user.into()),
            uid,
            pod_uid: None,
        };
        m.apply_use(
            &input::Access {
                ts: t0 + i as u64,
                path: "/home/alice/.ssh/id_ed25519".into(),
                name: None,
                category: "ssh_key".into(),
                dev: 2049,
                ino: 77,
                mtime: Some(t0 - 86_400_000_000_000),
                fingerprint: Some("hmac-sha256:00112233445566778899aabbccddeeff".into()),
                actor: actor.clone(),
            },
            &pol,
            &mut out,
        );
        m.apply_contact(
            &input::Contact {
                ts: t0 + 5,
                identity: actor.identity.clone(),
                tgid: actor.tgid,
                start: actor.start,
                tree: actor.tree,
                addr: "10.0.0.7".into(),
                port: 22,
                name: None,
            },
            &pol,
        );
    }
    if gone {
        m.apply_watched(&[] as &[WatchedCredential], t0 + 6, &pol);
    }
    let summary = pol.summary();
    let recs = query::Records::new(&m, &summary, t0 + 10);
    let rec = recs
        .list(&query::Filter {
            include_gone: true,
            ..Default::default()
        })
        .pop()
        .expect("a record");
    query::InventoryRecord::new(rec, "web-1", t0 + 10)
}
