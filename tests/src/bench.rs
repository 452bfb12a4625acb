//! Building blocks of the end-to-end benchmarks (`detbench latency|flood`, run by
//! `cargo xtask bench latency|flood`) and of their scaled-down CI test: the real `detector run`
//! binary with alerts to a file sink, a network namespace with test hosts behind a veth pair,
//! an inotify tail of the alert file that stamps each line when it appears, and a trigger that
//! performs the default pack's `machine-speed-credential-reuse` pattern in a fresh process
//! tree.
//!
//! Everything made here is removed on drop (agent process, namespace, veth, scratch files), so
//! a failing or interrupted run leaves nothing behind.

use std::{
    collections::HashMap,
    ffi::CString,
    io::{Read as _, Seek as _, SeekFrom},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// `CLOCK_BOOTTIME` in ns: the clock of the kernel's event timestamps
/// (`bpf_ktime_get_boot_ns`), so driver stamps and event times compare directly.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// `CLOCK_REALTIME` in ns (alerts carry wall-clock times).
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; async-signal-safe, so also usable
    // in a forked child.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn run_ok(args: &[&str]) -> Result<()> {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .with_context(|| format!("starting {args:?}"))?;
    if !st.success() {
        bail!("{args:?} failed: {st}");
    }
    Ok(())
}

/// What a run has made and must remove even when interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    Agent(u32),
    Link(String),
    Netns(String),
    Dir(PathBuf),
}

static MADE: std::sync::Mutex<Vec<Made>> = std::sync::Mutex::new(Vec::new());

fn made(m: Made) {
    MADE.lock().unwrap_or_else(|e| e.into_inner()).push(m);
}

fn unmade(m: &Made) {
    MADE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|x| x != m);
}

/// For a benchmark binary: SIGINT, SIGTERM and SIGHUP stop the run and remove what it made
/// (agent, namespaces, veth pairs, scratch directories) before exiting with 128 + signal, as a
/// failure returning through the destructors would. Call first in `main`, before any thread
/// starts (the signals are blocked in every thread and taken by a dedicated one).
pub fn cleanup_on_signal() -> Result<()> {
    // SAFETY: plain sigset manipulation; the mask is set before other threads exist, so all
    // inherit it and only the waiting thread receives these signals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("pthread_sigmask failed");
        }
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: waits on the set built above.
        unsafe { libc::sigwait(&set, &mut sig) };
        eprintln!("detbench: signal {sig}, removing what the run made");
        let list = std::mem::take(&mut *MADE.lock().unwrap_or_else(|e| e.into_inner()));
        for m in list.iter().rev() {
            match m {
                Made::Agent(pid) => {
                    // SAFETY: kill(2) on the agent we started.
                    unsafe {
                        libc::kill(*pid as libc::pid_t, libc::SIGCONT);
                        libc::kill(*pid as libc::pid_t, libc::SIGTERM);
                    }
                    let end = Instant::now() + Duration::from_secs(10);
                    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < end {
                        let mut st = 0;
                        // SAFETY: reaping our own child, without blocking.
                        unsafe { libc::waitpid(*pid as libc::pid_t, &mut st, libc::WNOHANG) };
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Made::Link(l) => {
                    let _ = Command::new("ip").args(["link", "del", l]).status();
                }
                Made::Netns(n) => {
                    let _ = Command::new("ip").args(["netns", "del", n]).status();
                }
                Made::Dir(d) => {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        }
        std::process::exit(128 + sig);
    });
    Ok(())
}

/// A network namespace with test hosts `10.X.Y.2 …` on a veth pair whose root-namespace end
/// is `10.X.Y.1/24`. Nothing listens in it: a TCP connect to a host is refused at once (RST),
/// so no traffic ever leaves the machine. Removed (namespace and both veth ends) on drop.
pub struct TestNet {
    /// Namespace name.
    pub ns: String,
    /// Root-namespace end of the veth pair.
    pub host_if: String,
    /// The test hosts' addresses.
    pub hosts: Vec<Ipv4Addr>,
}

impl TestNet {
    /// Creates the namespace with `n_hosts` addresses (1..=200) in a /24 not routed yet.
    pub fn new(tag: &str, n_hosts: u8) -> Result<Self> {
        if !(1..=200).contains(&n_hosts) {
            bail!("TestNet: 1..=200 hosts");
        }
        // One at a time within a process (tests run in parallel threads), so that two
        // namespaces never pick the same free subnet; a counter keeps their names apart.
        static CREATE: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
        let mut n = CREATE.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let k = *n % 100;
        let pid = std::process::id();
        let ns = format!("db-{tag}-{pid}-{k}");
        // Interface names are at most 15 bytes: 3 + 7 (pid_max ≤ 2^22) + 1 + 2.
        let host_if = format!("dbh{}n{k}", pid % 10_000_000);
        let peer_if = format!("dbp{}n{k}", pid % 10_000_000);
        let routes = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "route", "show", "table", "all"])
                .output()
                .context("ip route")?
                .stdout,
        )
        .into_owned();
        // A /24 under 10.224.0.0/11 that no route mentions yet (other tests may run at once).
        let start = pid as usize;
        let subnet = (0..8192)
            .map(|i| (start + i * 7919) % 8192)
            .map(|k| format!("10.{}.{}", 224 + k / 256, k % 256))
            .find(|s| !routes.contains(&format!("{s}.")))
            .context("no free 10.224.0.0/11 subnet for the test namespace")?;
        let mut me = Self {
            ns,
            host_if,
            hosts: Vec::new(),
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &me.ns])
            .stderr(Stdio::null())
            .status();
        made(Made::Netns(me.ns.clone()));
        made(Made::Link(me.host_if.clone()));
        let _ = Command::new("ip")
            .args(["link", "del", &me.host_if])
            .stderr(Stdio::null())
            .status();
        run_ok(&["ip", "netns", "add", &me.ns])?;
        run_ok(&[
            "ip",
            "link",
            "add",
            &me.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &me.ns,
        ])?;
        run_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &me.host_if,
        ])?;
        run_ok(&["ip", "link", "set", &me.host_if, "up"])?;
        run_ok(&["ip", "-n", &me.ns, "link", "set", "lo", "up"])?;
        for h in 0..n_hosts {
            let a = format!("{subnet}.{}", u16::from(h) + 2);
            run_ok(&[
                "ip",
                "-n",
                &me.ns,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                &peer_if,
            ])?;
            me.hosts.push(a.parse().context("test host address")?);
        }
        run_ok(&["ip", "-n", &me.ns, "link", "set", &peer_if, "up"])?;
        Ok(me)
    }
}

impl TestNet {
    /// The hosts' /24 without its last octet (`10.X.Y`): the actor's `fanout` prefix.
    pub fn prefix(&self) -> String {
        let o = self.hosts.first().map_or([10, 0, 0, 0], |h| h.octets());
        format!("{}.{}.{}", o[0], o[1], o[2])
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        unmade(&Made::Link(self.host_if.clone()));
        unmade(&Made::Netns(self.ns.clone()));
    }
}

/// A scratch directory under /var/tmp (a disk filesystem: the page-cache hook does not see
/// tmpfs), removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Creates `/var/tmp/detector-bench-<tag>-<pid>`.
    pub fn new(tag: &str) -> Result<Self> {
        let p = PathBuf::from(format!(
            "/var/tmp/detector-bench-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        made(Made::Dir(p.clone()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        unmade(&Made::Dir(self.0.clone()));
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Current resident set (VmRSS), KiB.
    pub rss_kib: u64,
}

/// Usage of process `pid` (zeros for what cannot be read).
pub fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            u.cpu_s = (t(11) + t(12)) as f64 / hz;
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for l in status.lines() {
            let kib = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if l.starts_with("VmHWM:") {
                u.hwm_kib = kib();
            } else if l.starts_with("VmRSS:") {
                u.rss_kib = kib();
            }
        }
    }
    u
}

/// The real `detector run` with the embedded default rules and identities, alerts to a file
/// sink (native NDJSON) set in an agent config, Prometheus metrics on a loopback port.
/// SIGTERM (then SIGKILL) on drop.
pub struct AgentRun {
    child: Option<Child>,
    /// The alert file.
    pub alerts: PathBuf,
    /// The agent's stdout (events, with `--events`).
    pub stdout: PathBuf,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
}

impl AgentRun {
    /// Writes the config into `dir`, starts `detector run --config … extra…`, and returns once
    /// the metrics endpoint answers (it is bound after the programs are attached).
    pub fn start(detector: &Path, dir: &Path, extra: &[String]) -> Result<Self> {
        let alerts = dir.join("alerts.ndjson");
        let state = dir.join("state");
        let cfg = dir.join("agent.yaml");
        std::fs::write(
            &cfg,
            format!(
                "run:\n  state_dir: {}\nsinks:\n  - file:\n      path: {}\n      format: native\n",
                state.display(),
                alerts.display()
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let stdout = dir.join("stdout.ndjson");
        let out = std::fs::File::create(&stdout)?;
        let mut cmd = Command::new(detector);
        // SAFETY: prctl and sigprocmask in the forked child before exec: the agent gets SIGTERM
        // should this process die without cleaning up (SIGKILL), and handles signals normally.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The signals `cleanup_on_signal` blocks would stay blocked across exec.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", detector.display()))?;
        made(Made::Agent(child.id()));
        let mut me = Self {
            child: Some(child),
            alerts,
            stdout,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        };
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            if me.metrics().is_ok() {
                break;
            }
            if let Some(c) = me.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
                    bail!("detector run exited at start ({st}): {log}");
                }
            }
            if Instant::now() > end {
                bail!("detector run did not come up within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// CPU and memory so far.
    pub fn usage(&self) -> Usage {
        usage(self.pid())
    }

    /// The Prometheus exposition text.
    pub fn metrics(&self) -> Result<String> {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?
            .get(&self.metrics_url)
            .send()?;
        if !r.status().is_success() {
            bail!("metrics: HTTP {}", r.status());
        }
        Ok(r.text()?)
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    /// SIGTERM; waits up to 30 s (then SIGKILL). Returns the usage just before and the exit.
    pub fn stop(mut self) -> Result<(Usage, ExitStatus)> {
        let u = self.usage();
        let st = self.terminate()?;
        Ok((u, st))
    }

    fn terminate(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("agent already stopped");
        };
        unmade(&Made::Agent(c.id()));
        // A stopped agent (flood test) must run again to see SIGTERM.
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGCONT);
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > end {
                let _ = c.kill();
                return Ok(c.wait()?);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

/// Sum of every sample of metric `name` (all label sets) in an exposition text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, val) = l.rsplit_once(' ')?;
            let base = key.split('{').next()?;
            (base == name).then(|| val.parse::<f64>().ok())?
        })
        .sum()
}

/// One sample of metric `name` whose labels contain `label` (e.g. `quantile="0.99"`).
pub fn metric_with(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (key, val) = l.rsplit_once(' ')?;
        (key.starts_with(&format!("{name}{{")) && key.contains(label)).then(|| val.parse().ok())?
    })
}

/// An alert line and the `CLOCK_BOOTTIME` at which the tail read it.
pub struct SeenLine {
    /// When the line was read (ns, `CLOCK_BOOTTIME`).
    pub seen_ns: u64,
    /// The line.
    pub line: String,
}

/// Follows the alert file with inotify (`IN_MODIFY`): on each wakeup reads what was
/// appended and stamps every complete line with the time of that read.
pub struct AlertTail {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
    rx: mpsc::Receiver<SeenLine>,
}

impl AlertTail {
    /// Starts following `path` from its current end (the file must exist).
    pub fn start(path: &Path) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())?;
        let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let mut pos = f.seek(SeekFrom::End(0))?;
        // SAFETY: inotify_init1/add_watch with a valid NUL-terminated path.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::inotify_add_watch(fd, cpath.as_ptr(), libc::IN_MODIFY) } < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: closing the fd we opened.
            unsafe { libc::close(fd) };
            bail!("inotify_add_watch {}: {e}", path.display());
        }
        let st = stop.clone();
        let handle = std::thread::spawn(move || -> Result<()> {
            let mut partial = Vec::<u8>::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut ev = [0u8; 4096];
            let mut drain = |f: &mut std::fs::File, pos: &mut u64| -> Result<()> {
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    let seen_ns = boottime_ns();
                    *pos += n as u64;
                    partial.extend_from_slice(&buf[..n]);
                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=i).collect();
                        let line = String::from_utf8_lossy(&line[..i]).into_owned();
                        if tx.send(SeenLine { seen_ns, line }).is_err() {
                            return Ok(());
                        }
                    }
                }
            };
            f.seek(SeekFrom::Start(pos))?;
            while !st.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, 100) };
                if r > 0 {
                    // SAFETY: reading inotify events into our buffer (non-blocking fd).
                    while unsafe { libc::read(fd, ev.as_mut_ptr().cast(), ev.len()) } > 0 {}
                }
                drain(&mut f, &mut pos)?;
            }
            drain(&mut f, &mut pos)?;
            // SAFETY: closing the inotify fd this thread owns.
            unsafe { libc::close(fd) };
            Ok(())
        });
        Ok(Self {
            stop,
            handle: Some(handle),
            rx,
        })
    }

    /// Lines seen so far (non-blocking).
    pub fn take(&self) -> Vec<SeenLine> {
        self.rx.try_iter().collect()
    }

    /// Stops following; returns the remaining lines.
    pub fn finish(mut self) -> Result<Vec<SeenLine>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("alert tail thread panicked"))??;
        }
        Ok(self.rx.try_iter().collect())
    }
}

impl Drop for AlertTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One credential-reuse trigger as performed: the process that completed the pattern and
/// the `CLOCK_BOOTTIME` stamped right before the completing `connect`.
#[derive(Debug, Clone, Copy)]
pub struct Fired {
    /// tgid of the process whose connect completed the pattern (the alert's `process.tgid`).
    pub pid: u32,
    /// Its parent, the `process.tree` group key.
    pub tree: u32,
    /// Stamp before the completing syscall.
    pub stamp_ns: u64,
}

/// The default pack's `machine-speed-credential-reuse` pattern, in a fresh process tree each
/// time: the driver forks P, P forks C; C opens a watched credential, then makes
/// non-blocking TCP connects to three distinct test hosts (refused by the namespace: nothing
/// listens), stamping `CLOCK_BOOTTIME` right before the third. Group key `process.tree` is
/// C's parent P, distinct per trigger, so suppression does not hide any of them.
pub struct CredReuse {
    cred: CString,
    addrs: Vec<libc::sockaddr_in>,
    pipe: [libc::c_int; 2],
    used_trees: std::collections::HashSet<u32>,
}

impl CredReuse {
    /// A trigger reading `cred` and connecting to the first three `hosts` on `port`.
    pub fn new(cred: &Path, hosts: &[Ipv4Addr], port: u16) -> Result<Self> {
        if hosts.len() < 3 {
            bail!("credential reuse needs three hosts");
        }
        let addrs = hosts[..3]
            .iter()
            .map(|h| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*h).to_be(),
                },
                sin_zero: [0; 8],
            })
            .collect();
        let mut pipe = [0; 2];
        // SAFETY: pipe2 fills the two-element array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe2: {}", std::io::Error::last_os_error());
        }
        Ok(Self {
            cred: CString::new(cred.as_os_str().as_encoded_bytes())?,
            addrs,
            pipe,
            used_trees: Default::default(),
        })
    }

    /// Performs one trigger and waits for its processes to exit. `None` when the kernel handed
    /// out a parent pid already used as a tree in this run (pid wrap-around): that tree's
    /// alert would be suppressed by design, so the trigger is not counted (no pattern is
    /// performed).
    pub fn fire(&mut self) -> Result<Option<Fired>> {
        // SAFETY: fork; the children only make async-signal-safe syscalls on memory prepared
        // before the fork, then _exit.
        let p = unsafe { libc::fork() };
        if p < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if p == 0 {
            // SAFETY: see above.
            unsafe { self.parent_side() }
        }
        let tree = p as u32;
        let fresh = self.used_trees.insert(tree);
        // P reads one byte of go/no-go before forking C.
        let go: u8 = u8::from(fresh);
        let mut st = 0;
        // SAFETY: the go byte goes through the pipe's write end, which P also holds; P reads it
        // from its own copy of the read end before anyone else can, since C does not exist yet
        // and the driver does not read until P has exited.
        unsafe {
            libc::write(self.pipe[1], (&go as *const u8).cast(), 1);
            libc::waitpid(p, &mut st, 0);
        }
        if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
            bail!("trigger process failed: status {st:#x}");
        }
        if !fresh {
            return Ok(None);
        }
        let mut rec = [0u8; 16];
        let mut got = 0;
        while got < rec.len() {
            // SAFETY: reading into the rest of our buffer.
            let n = unsafe {
                libc::read(
                    self.pipe[0],
                    rec[got..].as_mut_ptr().cast(),
                    rec.len() - got,
                )
            };
            if n <= 0 {
                bail!("trigger pipe: {}", std::io::Error::last_os_error());
            }
            got += n as usize;
        }
        let pid = u64::from_ne_bytes(rec[..8].try_into()?) as u32;
        let stamp_ns = u64::from_ne_bytes(rec[8..].try_into()?);
        if stamp_ns == 0 {
            bail!("trigger: the credential open or a connect failed in the child");
        }
        Ok(Some(Fired {
            pid,
            tree,
            stamp_ns,
        }))
    }

    /// In P: read the go byte, fork C, wait for it, exit.
    unsafe fn parent_side(&self) -> ! {
        let mut go = 0u8;
        if libc::read(self.pipe[0], (&mut go as *mut u8).cast(), 1) != 1 {
            libc::_exit(2);
        }
        if go == 0 {
            libc::_exit(0);
        }
        let c = libc::fork();
        if c < 0 {
            libc::_exit(3);
        }
        if c == 0 {
            self.child_side();
        }
        let mut st = 0;
        libc::waitpid(c, &mut st, 0);
        libc::_exit(if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            0
        } else {
            4
        });
    }

    /// In C: credential open, three connects, report (pid, stamp) on the pipe.
    unsafe fn child_side(&self) -> ! {
        let mut stamp = 0u64;
        let fd = libc::open(self.cred.as_ptr(), libc::O_RDONLY);
        let mut ok = fd >= 0;
        if ok {
            libc::close(fd);
        }
        for (i, a) in self.addrs.iter().enumerate() {
            if !ok {
                break;
            }
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            if s < 0 {
                ok = false;
                break;
            }
            let t = clock_ns(libc::CLOCK_BOOTTIME);
            let r = libc::connect(
                s,
                (a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r != 0 && *libc::__errno_location() != libc::EINPROGRESS {
                ok = false;
            }
            if i == self.addrs.len() - 1 {
                stamp = t;
            }
            libc::close(s);
        }
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&(libc::getpid() as u64).to_ne_bytes());
        rec[8..].copy_from_slice(&(if ok { stamp } else { 0 }).to_ne_bytes());
        libc::write(self.pipe[1], rec.as_ptr().cast(), rec.len());
        libc::_exit(0);
    }
}

impl Drop for CredReuse {
    fn drop(&mut self) {
        // SAFETY: closing the pipe we created.
        unsafe {
            libc::close(self.pipe[0]);
            libc::close(self.pipe[1]);
        }
    }
}

/// Alert lines of `rule` matched to fired triggers by `process.tgid` (first unmatched trigger
/// of that pid, in order). Returns, per trigger index, the stamp at which its alert line was
/// seen and the alert.
pub fn match_alerts(
    fired: &[Fired],
    lines: &[SeenLine],
    rule: &str,
) -> Vec<Option<(u64, serde_json::Value)>> {
    let mut by_pid: HashMap<u32, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, f) in fired.iter().enumerate() {
        by_pid.entry(f.pid).or_default().push_back(i);
    }
    let mut out = vec![None; fired.len()];
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&l.line) else {
            continue;
        };
        if v["rule"]["id"] != rule {
            continue;
        }
        let Some(pid) = v["process"]["tgid"].as_u64() else {
            continue;
        };
        if let Some(i) = by_pid.get_mut(&(pid as u32)).and_then(|q| q.pop_front()) {
            out[i] = Some((l.seen_ns, v));
        }
    }
    out
}
