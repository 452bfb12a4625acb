//! Real programs under the real agent, shared by the end-to-end tests (`tests/realworld.rs`)
//! and the benign soak (`soak` binary): `detector run --events` as a child whose alerts are
//! attributed to the process trees a scenario started, and labs made of real programs —
//! network namespaces with addresses of their own (hosts), OpenSSH's `sshd`, `dnsmasq`
//! serving names with several addresses, users made with `useradd`, commands run as a user
//! inside a namespace with their own `/etc/resolv.conf` and `/etc/hosts`.
//!
//! Nothing here sends a packet outside the namespaces it made.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// What the agent's output told us so far.
#[derive(Default)]
struct Seen {
    /// Alert lines, in arrival order.
    alerts: Vec<Value>,
    /// Parent of each process (tgid) as its fork (else its exec) reported it: survives the
    /// parent's exit and a re-parenting to init.
    parent: HashMap<u32, u32>,
    /// Markers whose exec was seen.
    markers: HashSet<String>,
}

/// `detector run --events` with the default pack (plus `extra` flags), detached from the
/// caller: its parent is init, as a deployed agent's is. Were it the caller's child, its own
/// reads of credentials (to fingerprint them) would open correlation groups on the caller's
/// process tree — which every scenario the caller starts belongs to — where a lone agent
/// excludes its own reads.
pub struct Detector {
    pid: u32,
    seen: Arc<Mutex<Seen>>,
    events: Arc<AtomicU64>,
    stderr: PathBuf,
    marker: AtomicU64,
}

/// The `detector` binary beside the test executables.
pub fn detector_path() -> PathBuf {
    let p = crate::actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

fn lock(m: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Detector {
    /// Starts `detector run --events --state-dir STATE extra…` and waits until it reports
    /// events (at most 60 s).
    pub fn start(bin: &Path, state: &Path, extra: &[&str]) -> Self {
        let stderr = state.with_extension("stderr");
        let pidfile = state.with_extension("pid");
        std::fs::create_dir_all(state).expect("state dir");
        let _ = std::fs::remove_file(&pidfile);
        let mut child = Command::new("setsid")
            .args(["-f", "/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(&pidfile)
            .arg(bin)
            .arg("run")
            .arg("--events")
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("agent stderr file"))
            .spawn()
            .expect("spawn detector run");
        let out = child.stdout.take().expect("stdout");
        let _ = child.wait();
        let end = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < end, "the agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let events = Arc::new(AtomicU64::new(0));
        let (s, n) = (seen.clone(), events.clone());
        // DT_RECORD_DIR: keep every line the agent wrote, to look into a failure.
        let record = std::env::var_os("DT_RECORD_DIR").map(|d| {
            let tag = state
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            PathBuf::from(d).join(format!("{tag}.ndjson"))
        });
        std::thread::spawn(move || {
            let mut rec = record.map(|p| std::fs::File::create(p).expect("record file"));
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(f) = rec.as_mut() {
                    let _ = writeln!(f, "{l}");
                }
                let Ok(v) = serde_json::from_str::<Value>(&l) else {
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                take(&s, v);
            }
        });
        let d = Self {
            pid,
            seen,
            events,
            stderr,
            marker: AtomicU64::new(0),
        };
        let end = Instant::now() + Duration::from_secs(60);
        while !d.mark(Duration::from_secs(2)) {
            assert!(
                Instant::now() < end,
                "the agent reported no event within 60 s: {}",
                d.stderr()
            );
        }
        d
    }

    /// Runs a marker process and waits (at most `d`) for its exec event: everything that
    /// happened before it has been read from the kernel. True when seen.
    fn mark(&self, d: Duration) -> bool {
        let m = format!(
            "dtmark-{}-{}",
            std::process::id(),
            self.marker.fetch_add(1, Ordering::Relaxed)
        );
        let _ = Command::new("/usr/bin/true").arg(&m).status();
        let end = Instant::now() + d;
        while Instant::now() < end {
            if lock(&self.seen).markers.contains(&m) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until the agent has processed everything done so far, and the correlation
    /// windows that may still wait for reordered events (the 500 ms tolerance) are decided.
    pub fn barrier(&self) {
        assert!(
            self.mark(Duration::from_secs(30)),
            "the agent stopped reporting events: {}",
            self.stderr()
        );
        std::thread::sleep(Duration::from_millis(1500));
    }

    /// Alerts raised for `root` or any process descending from it (as forks reported it),
    /// leaving out those another agent took part in: other agents on this machine (other
    /// tests' and developers') read credentials to fingerprint them, where a host's only agent
    /// excludes its own reads.
    pub fn alerts_under(&self, root: u32) -> Vec<Value> {
        let s = lock(&self.seen);
        s.alerts
            .iter()
            .filter(|a| alert_descends(a, root) && !involves_an_agent(a))
            .cloned()
            .collect()
    }

    /// Every alert so far.
    pub fn alerts(&self) -> Vec<Value> {
        lock(&self.seen).alerts.clone()
    }

    /// Whether `tgid` descends from `root` (or is it).
    pub fn descends(&self, tgid: u32, root: u32) -> bool {
        descends(&lock(&self.seen).parent, tgid, root)
    }

    /// Lines read from the agent.
    pub fn lines(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// What the agent logged.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the agent (SIGTERM); true when it exited within 10 s. Returns its log too.
    pub fn stop(self) -> (bool, String) {
        let gone = self.terminate();
        (gone, self.stderr())
    }

    fn terminate(&self) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{}", self.pid));
        // SAFETY: kill(2) on the agent this value started (its pid, read from its pid file).
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            // Gone, or a zombie until init reaps it.
            let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        if !self.terminate() {
            // SAFETY: as in `terminate`.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Key under which an alert keeps the ancestry of its process as known when it arrived.
const ANCESTRY: &str = "_ancestry";

fn take(s: &Mutex<Seen>, mut v: Value) {
    if v.get("rule").is_some() {
        // The ancestry now, not when asked: pids are reused (pid_max is 32768 on many hosts,
        // and a long run wraps it), so a later fork can take an early process's entry.
        let mut g = lock(s);
        if let (Some(t), Some(o)) = (
            v["process"]["tgid"].as_u64().map(|t| t as u32),
            v.as_object_mut(),
        ) {
            o.insert(ANCESTRY.into(), Value::from(ancestry(&g.parent, t)));
        }
        g.alerts.push(v);
        return;
    }
    let tgid = |v: &Value| v["process"]["tgid"].as_u64().map(|t| t as u32);
    match v["kind"].as_str() {
        Some("fork") => {
            if let (Some(p), Some(c)) = (tgid(&v), v["fork"]["child_tgid"].as_u64()) {
                lock(s).parent.insert(c as u32, p);
            }
        }
        Some("exec") => {
            let (Some(t), Some(pp)) = (tgid(&v), v["process"]["ppid"].as_u64()) else {
                return;
            };
            let marker = v["exec"]["argv"]
                .as_array()
                .and_then(|a| a.get(1))
                .and_then(Value::as_str)
                .filter(|m| m.starts_with("dtmark-"))
                .map(str::to_string);
            let mut g = lock(s);
            g.parent.entry(t).or_insert(pp as u32);
            if let Some(m) = marker {
                g.markers.insert(m);
            }
        }
        _ => {}
    }
}

/// Whether an alert's evidence holds an event of a `detector` process.
pub fn involves_an_agent(a: &Value) -> bool {
    // The credential ledger's findings name the identities that used a credential; other
    // agents' fingerprinting reads are uses in this agent's ledger. Sharing without them
    // (fewer than two other identities among the finding's `identities`, copies included) is
    // theirs.
    let is_agent = |x: &str| {
        Path::new(x.trim_end_matches(" (deleted)"))
            .file_name()
            .is_some_and(|n| n == "detector")
    };
    let agent_id = |id: &str| {
        id.strip_prefix("exe:")
            .and_then(|x| x.rsplit_once('@'))
            .is_some_and(|(x, _)| is_agent(x))
    };
    let ledger_users = a["rule"]["id"] == "ledger-shared-credential"
        && a["group"]["identities"]
            .as_str()
            .is_some_and(|u| u.split(", ").filter(|id| !agent_id(id)).count() < 2);
    // A finding about another agent's own use (its fingerprinting read).
    let agent_identity = a["identity"].as_str().is_some_and(agent_id);
    ledger_users
        || agent_identity
        || a["evidence"].as_array().is_some_and(|ev| {
            ev.iter().any(|e| {
                e["process"]["exe"].as_str().is_some_and(|x| {
                    Path::new(x.trim_end_matches(" (deleted)"))
                        .file_name()
                        .is_some_and(|n| n == "detector")
                })
            })
        })
}

/// `t` and its ancestors, nearest first (at most 64).
fn ancestry(parent: &HashMap<u32, u32>, mut t: u32) -> Vec<u32> {
    let mut v = vec![t];
    for _ in 0..64 {
        match parent.get(&t) {
            Some(&p) if p != t && p > 1 => {
                v.push(p);
                t = p;
            }
            _ => break,
        }
    }
    v
}

/// Whether an alert's process was `root` or descended from it when the alert arrived.
pub fn alert_descends(a: &Value, root: u32) -> bool {
    a[ANCESTRY]
        .as_array()
        .is_some_and(|v| v.iter().any(|t| t.as_u64() == Some(u64::from(root))))
}

fn descends(parent: &HashMap<u32, u32>, mut t: u32, root: u32) -> bool {
    for _ in 0..64 {
        if t == root {
            return true;
        }
        match parent.get(&t) {
            Some(&p) if p != t && p > 1 => t = p,
            _ => return false,
        }
    }
    false
}

/// Alerts counted by (rule id, process exe): what the tests compare exactly.
pub fn summary(alerts: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        let k = (
            a["rule"]["id"].as_str().unwrap_or("?").to_string(),
            a["process"]["exe"].as_str().unwrap_or("?").to_string(),
        );
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// The expected summary, from `(rule, exe, count)` triples.
pub fn expect(list: &[(&str, &str, usize)]) -> BTreeMap<(String, String), usize> {
    list.iter()
        .map(|(r, e, n)| ((r.to_string(), e.to_string()), *n))
        .collect()
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_ok(args: &[&str]) {
    run_ok(Command::new(args[0]).args(&args[1..]));
}

/// Two network namespaces joined by a veth pair: `a` (the client side, `10.X.Y.1` and
/// `fd00:X:Y::1`) and `b` (hosts `10.X.Y.2…` and `fd00:X:Y::2…`). The /24 is one that no
/// route of the root namespace mentions, so the agent never takes these hosts for its own
/// addresses. Removed on drop.
pub struct Lab {
    /// Client namespace.
    pub a: String,
    /// Server namespace.
    pub b: String,
    prefix: String,
    prefix6: String,
    hosts: u8,
    dev_a: String,
    dev_b: String,
}

impl Lab {
    /// A lab with `hosts` addresses (2 ≤ hosts ≤ 100) in `b`.
    pub fn new(tag: &str, hosts: u8) -> Self {
        assert!((1..=100).contains(&hosts));
        static N: Mutex<u32> = Mutex::new(0);
        let mut n = N.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let k = *n;
        let pid = std::process::id();
        let routes = run_ok(Command::new("ip").args(["-4", "route", "show", "table", "all"]));
        let addrs = run_ok(Command::new("ip").args(["-4", "addr"]));
        // Under 10.160.0.0/11 (the benchmarks' test networks use 10.224.0.0/11).
        let seq = (0..8192)
            .map(|i| (pid as usize * 31 + k as usize * 7 + i * 7919) % 8192)
            .find(|s| {
                let p = format!("10.{}.{}.", 160 + s / 256, s % 256);
                !routes.contains(&p) && !addrs.contains(&p)
            })
            .expect("a free 10.160.0.0/11 subnet");
        let prefix = format!("10.{}.{}", 160 + seq / 256, seq % 256);
        let prefix6 = format!("fd00:{:x}:{:x}", 160 + seq / 256, seq % 256);
        let a = format!("rw-{tag}-{pid}-{k}a");
        let b = format!("rw-{tag}-{pid}-{k}b");
        let dev_a = format!("rw{}x{k}a", pid % 1_000_000);
        let dev_b = format!("rw{}x{k}b", pid % 1_000_000);
        for ns in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            sh_ok(&["ip", "netns", "add", ns]);
            sh_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let lab = Self {
            a,
            b,
            prefix,
            prefix6,
            hosts,
            dev_a,
            dev_b,
        };
        sh_ok(&[
            "ip", "link", "add", &lab.dev_a, "netns", &lab.a, "type", "veth", "peer", "name",
            &lab.dev_b, "netns", &lab.b,
        ]);
        let add = |ns: &str, dev: &str, addr: String| {
            sh_ok(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev, "nodad"]);
        };
        let add4 = |ns: &str, dev: &str, addr: String| {
            sh_ok(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
        };
        add4(&lab.a, &lab.dev_a, format!("{}.1/24", lab.prefix));
        add(&lab.a, &lab.dev_a, format!("{}::1/64", lab.prefix6));
        for h in 0..hosts {
            add4(&lab.b, &lab.dev_b, format!("{}/24", lab.host(h)));
            add(&lab.b, &lab.dev_b, format!("{}/64", lab.host6(h)));
        }
        sh_ok(&["ip", "-n", &lab.a, "link", "set", &lab.dev_a, "up"]);
        sh_ok(&["ip", "-n", &lab.b, "link", "set", &lab.dev_b, "up"]);
        lab
    }

    /// IPv4 address of host `i` (0-based) in `b`.
    pub fn host(&self, i: u8) -> String {
        assert!(i < self.hosts, "the lab has {} hosts", self.hosts);
        format!("{}.{}", self.prefix, u16::from(i) + 2)
    }

    /// IPv6 address of host `i` in `b`.
    pub fn host6(&self, i: u8) -> String {
        assert!(i < self.hosts, "the lab has {} hosts", self.hosts);
        format!("{}::{:x}", self.prefix6, u16::from(i) + 2)
    }

    /// Adds `addr` (e.g. the cloud metadata address) to `b`, reachable from `a` on the link.
    pub fn add_b_address(&self, addr: &str) {
        sh_ok(&[
            "ip",
            "-n",
            &self.b,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            &self.dev_b,
        ]);
        sh_ok(&[
            "ip",
            "-n",
            &self.a,
            "route",
            "add",
            &format!("{addr}/32"),
            "dev",
            &self.dev_a,
        ]);
    }

    /// A command run in namespace `ns` (`ip netns exec` execs it: same pid).
    pub fn in_ns(ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A user made with `useradd -m` (home `/home/NAME`, shell `/bin/sh`, a password field that
/// is not locked so that sshd without PAM lets it in); `userdel -r` on drop.
pub struct User {
    /// Login name.
    pub name: String,
    /// Home directory.
    pub home: PathBuf,
}

impl User {
    /// `useradd -m -s /bin/sh -p '*' dt<tag><pid>`.
    pub fn new(tag: &str) -> Self {
        let name = format!("dt{tag}{}", std::process::id());
        assert!(name.len() <= 32, "user name too long: {name}");
        let _ = Command::new("userdel")
            .args(["-r", &name])
            .stderr(Stdio::null())
            .status();
        sh_ok(&["useradd", "-m", "-s", "/bin/sh", "-p", "*", &name]);
        let home = PathBuf::from(format!("/home/{name}"));
        Self { name, home }
    }

    /// Writes `rel` (relative to the home) owned by the user with `mode`; its directories
    /// too (0700).
    pub fn write(&self, rel: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.home.join(rel);
        let mut d = p.parent().expect("parent").to_path_buf();
        let mut made = Vec::new();
        while !d.exists() {
            made.push(d.clone());
            d = d.parent().expect("parent").to_path_buf();
        }
        for d in made.iter().rev() {
            std::fs::create_dir(d).expect("mkdir");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            sh_ok(&[
                "chown",
                &format!("{0}:{0}", self.name),
                d.to_str().expect("utf-8"),
            ]);
        }
        std::fs::write(&p, content).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        sh_ok(&[
            "chown",
            &format!("{0}:{0}", self.name),
            p.to_str().expect("utf-8"),
        ]);
        p
    }

    /// `ssh-keygen` as the user: `~/.ssh/id_ed25519` (no passphrase); returns the public key.
    pub fn keygen(&self) -> String {
        self.write(".ssh/.keep", "", 0o600);
        run_ok(
            Command::new("setpriv")
                .args(self.setpriv())
                .args(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(self.home.join(".ssh/id_ed25519")),
        );
        std::fs::read_to_string(self.home.join(".ssh/id_ed25519.pub")).expect("public key")
    }

    /// `setpriv` arguments that become this user (its groups, its environment).
    pub fn setpriv(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.name),
            format!("--regid={}", self.name),
            "--init-groups".into(),
            "--reset-env".into(),
        ]
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // -f: a session of the user may still be closing.
        let _ = Command::new("userdel")
            .args(["-f", "-r", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// How a scenario's script runs: in which namespace, as which user, with which resolver and
/// hosts file (bind-mounted over `/etc/resolv.conf` and `/etc/hosts` in a mount namespace
/// of its own, as a container or a CLI's sandbox has them).
#[derive(Default, Clone)]
pub struct Env {
    /// Network namespace.
    pub netns: Option<String>,
    /// setpriv arguments (a user).
    pub user: Vec<String>,
    /// resolv.conf to use.
    pub resolv: Option<PathBuf>,
    /// hosts file to use.
    pub hosts: Option<PathBuf>,
    /// Extra shell run as root in the mount namespace before the script (mounts).
    pub pre: Option<String>,
    /// A cgroup (v2 directory) the script runs in, entered before anything else (`ip netns
    /// exec` remounts /sys, hiding the cgroup mounts).
    pub cgroup: Option<PathBuf>,
}

/// Debian's default PATH for root: programs run as `/usr/bin/x`, as from a login shell (the
/// agent reports the path a program was executed by, and `setpriv --reset-env` would put
/// `/bin` first).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Env {
    /// The command running `script` with `sh -c`; its pid is the script's shell (every
    /// wrapper execs), the root of the scenario's process tree.
    pub fn sh(&self, script: &str) -> Command {
        let mut mounts = Vec::new();
        if let Some(r) = &self.resolv {
            mounts.push(format!("mount --bind '{}' /etc/resolv.conf", r.display()));
        }
        if let Some(h) = &self.hosts {
            mounts.push(format!("mount --bind '{}' /etc/hosts", h.display()));
        }
        if let Some(p) = &self.pre {
            mounts.push(p.clone());
        }
        let mut c = match &self.cgroup {
            Some(cg) => {
                let mut c = Command::new("/bin/sh");
                c.args([
                    "-c",
                    &format!("echo $$ > '{}/cgroup.procs' && exec \"$@\"", cg.display()),
                    "sh",
                ]);
                c
            }
            None => Command::new("env"),
        };
        if let Some(ns) = &self.netns {
            c.args(["ip", "netns", "exec", ns]);
        }
        if !mounts.is_empty() {
            mounts.push("exec \"$0\" \"$@\"".into());
            c.args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
                .arg(mounts.join(" && "));
        }
        if !self.user.is_empty() {
            c.arg("setpriv").args(&self.user);
        }
        c.args([
            "/bin/sh",
            "-c",
            &format!("PATH={PATH}; export PATH; {script}"),
        ]);
        c
    }

    /// Runs `script` to completion (it must succeed); returns (pid, stdout).
    pub fn run(&self, script: &str) -> (u32, String) {
        let child = self
            .sh(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scenario");
        let pid = child.id();
        let out = child.wait_with_output().expect("scenario");
        assert!(
            out.status.success(),
            "scenario failed ({}): {script}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (pid, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A background program started by a lab (sshd, dnsmasq, a listener); killed on drop.
pub struct Daemon {
    child: Child,
    /// Its log.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr to `log`.
    pub fn start(mut cmd: Command, log: PathBuf) -> Self {
        let f = std::fs::File::create(&log).expect("daemon log");
        let child = cmd
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Self { child, log }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 10 s) until its log contains `what`.
    pub fn wait_log(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let l = std::fs::read_to_string(&self.log).unwrap_or_default();
            if l.contains(what) {
                return;
            }
            assert!(
                Instant::now() < end,
                "no `{what}` in {}: {l}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenSSH's sshd in the lab's server namespace, listening on the given hosts, with a host
/// key and an authorized-keys file of its own (never the system's), no PAM.
pub fn sshd(lab: &Lab, dir: &Path, hosts: &[String], authorized: &str) -> Daemon {
    std::fs::create_dir_all(dir).expect("sshd dir");
    let key = dir.join("host_ed25519");
    let _ = std::fs::remove_file(&key);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let ak = dir.join("authorized_keys");
    std::fs::write(&ak, authorized).expect("authorized_keys");
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut cfg = String::new();
    for h in hosts {
        cfg.push_str(&format!("ListenAddress {h}\n"));
    }
    cfg.push_str(&format!(
        "HostKey {}\nAuthorizedKeysFile {}\nSubsystem sftp /usr/lib/openssh/sftp-server\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPidFile none\nLogLevel INFO\n",
        key.display(),
        ak.display()
    ));
    let conf = dir.join("sshd_config");
    std::fs::write(&conf, cfg).expect("sshd_config");
    // The privilege-separation directory sshd insists on.
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let mut c = Lab::in_ns(&lab.b);
    c.args(["/usr/sbin/sshd", "-D", "-e", "-f"]).arg(&conf);
    let d = Daemon::start(c, dir.join("sshd.log"));
    for h in hosts {
        d.wait_log(&format!("Server listening on {h} port 22"));
    }
    d
}

/// The ssh client options of a scripted session: no host-key prompt, no known_hosts writes,
/// no password prompt.
pub const SSH_OPTS: &str =
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=5";

/// dnsmasq in the lab's server namespace on `listen`:53, answering only from `hosts_file`
/// (a name on several lines has several addresses); no upstream.
pub fn dnsmasq(lab: &Lab, dir: &Path, listen: &str, hosts_file: &str) -> Daemon {
    std::fs::create_dir_all(dir).expect("dns dir");
    let hf = dir.join("dns.hosts");
    std::fs::write(&hf, hosts_file).expect("hosts file");
    let mut c = Lab::in_ns(&lab.b);
    c.args([
        "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
        "--log-queries",
    ])
    .arg(format!("--addn-hosts={}", hf.display()))
    .arg(format!("--listen-address={listen}"));
    let d = Daemon::start(c, dir.join("dnsmasq.log"));
    d.wait_log("read ");
    d
}

/// A resolv.conf naming `server`.
pub fn resolv_conf(dir: &Path, server: &str) -> PathBuf {
    let p = dir.join("resolv.conf");
    let mut f = std::fs::File::create(&p).expect("resolv.conf");
    writeln!(f, "nameserver {server}\noptions timeout:2 attempts:1").expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p
}

/// The cgroup v2 hierarchy's mount point.
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup v2 mount")
}

/// A pod's projected service-account volume as the kubelet's atomic writer lays it out
/// (`token -> ..data/token`, `..data -> ..<timestamp>`), created while the agent runs;
/// removed on drop (and the kubelet directories, when empty), with the pod's cgroup if one
/// was made.
pub struct Pod {
    /// The pod's uid.
    pub uid: String,
    /// The projected volume's directory (holding `token`).
    pub vol: PathBuf,
    cgroup: Option<PathBuf>,
}

impl Pod {
    /// Pod `n` of this run (a 36-character uid, as the kubelet's).
    pub fn new(n: u8) -> Self {
        let uid = format!(
            "{n:02x}{:06x}-1111-4222-8333-444455556666",
            std::process::id() % 0x100_0000
        );
        let vol = Path::new("/var/lib/kubelet/pods")
            .join(&uid)
            .join("volumes/kubernetes.io~projected/kube-api-access-dt");
        let ts = vol.join("..2026_01_01_00_00_00.000000001");
        std::fs::create_dir_all(&ts).expect("pod volume");
        // Each pod's token is its own (as the API server signs one per pod): two pods with the
        // same token would be one credential shared by both pods' users.
        std::fs::write(ts.join("token"), format!("eyJhbGciOiJSUzI1NiJ9.{uid}.sig"))
            .expect("pod volume");
        std::fs::write(ts.join("namespace"), "default").expect("pod volume");
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.000000001", vol.join("..data"))
            .expect("pod volume");
        std::os::unix::fs::symlink("..data/token", vol.join("token")).expect("pod volume");
        std::os::unix::fs::symlink("..data/namespace", vol.join("namespace")).expect("pod volume");
        Self {
            uid,
            vol,
            cgroup: None,
        }
    }

    /// The pod's container cgroup as the kubelet's systemd driver and containerd name it.
    pub fn cgroup(&mut self) -> PathBuf {
        let cg = cgroup2_root()
            .join("kubepods.slice/kubepods-besteffort.slice")
            .join(format!(
                "kubepods-besteffort-pod{}.slice",
                self.uid.replace('-', "_")
            ))
            .join(format!("cri-containerd-{}.scope", "ab12".repeat(16)));
        std::fs::create_dir_all(&cg).expect("pod volume");
        self.cgroup = Some(cg.clone());
        cg
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/kubelet/pods").join(&self.uid));
        let _ = std::fs::remove_dir("/var/lib/kubelet/pods");
        let _ = std::fs::remove_dir("/var/lib/kubelet");
        // Leaf first; the shared slices only when empty.
        let mut d = self.cgroup.clone();
        for _ in 0..4 {
            let Some(p) = d else { break };
            let _ = std::fs::remove_dir(&p);
            d = p.parent().map(Path::to_path_buf);
        }
    }
}

/// A cloud SDK call: reads `~/.aws/credentials` as botocore does (configparser), then opens
/// one HTTPS connection per name given (glibc getaddrinfo, then each address in turn, as
/// `socket.create_connection` does); nothing listens, so every address is tried.
pub const SDK: &str = r#"
import configparser, os, socket, sys
c = configparser.ConfigParser()
c.read(os.path.expanduser("~/.aws/credentials"))
assert c.has_section("default"), "no credentials read"
for name in sys.argv[1:]:
    try:
        socket.create_connection((name, 443), timeout=2).close()
    except OSError:
        pass
"#;

/// Writes the SDK script into `s` (readable by every user); returns its path.
pub fn write_sdk(s: &crate::Scratch) -> String {
    let p = s.file("sdk.py", SDK);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("sdk script");
    p.display().to_string()
}

/// AWS credentials unique to `who` (the same content in two files is a copied credential).
pub fn aws(who: &str) -> String {
    format!("[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {who}/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
}
