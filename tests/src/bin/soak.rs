//! `soak`: a mixed, realistic benign workload on this machine under the real agent (the
//! default pack, no config), with attacks injected at random times. Reports the alerts per
//! host-hour by rule that the benign workload raised (false alerts) and the recall of the
//! injected attacks (each attack matched to its own alert by process ancestry).
//!
//! Run as root by `cargo xtask bench soak [--minutes N] [--seed S]`.
//!
//! The workload is made of real programs, each activity on its own schedule: builds (make -j2
//! of a generated C tree, cargo build of a small crate, offline), Debian package installs and
//! removals from the registry (packages whose maintainer scripts create system users), user
//! administration with the shadow suite, the real `cron` daemon running periodic jobs
//! (`ps aux`, metrics scrapes, a backup, git), credential rotation (a refresher rewriting a
//! token in place and by rename for an application user; a developer's own `aws configure`-
//! and `kubectl config`-style rewrites; an ssh-keygen key rotation), a metrics scraper daemon,
//! cloud-CLI-style credential use against names with several A and AAAA records (dnsmasq,
//! glibc's resolver), hand-paced ssh and scp sessions to OpenSSH's sshd, and git over ssh.
//! Hosts are addresses of network namespaces the soak makes; nothing leaves the machine but
//! the package downloads from the Debian registry.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde_json::{json, Value};
use tests::{
    real::{
        aws, dnsmasq, involves_an_agent, resolv_conf, run_ok, sshd, write_sdk, Daemon, Detector,
        Env, Lab, Pod, User, SSH_OPTS,
    },
    Scratch,
};

#[derive(Parser)]
#[command(about = "Benign soak with injected attacks under the real agent")]
struct Args {
    /// The `detector` binary.
    #[arg(long)]
    detector: PathBuf,
    /// The test `actor` binary (io_uring reads).
    #[arg(long)]
    actor: PathBuf,
    /// Length of the run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seed of the schedule (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the report goes (report.json, report.md, the workload log).
    #[arg(long)]
    out: PathBuf,
}

const PY: &str = "/usr/bin/python3";

/// xorshift64*: the schedule's randomness (reproducible with --seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi` seconds.
    fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo * 1000 + self.next() % ((hi - lo) * 1000 + 1))
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// What ran, for the report.
#[derive(Default)]
struct Tally {
    runs: BTreeMap<&'static str, (u64, u64)>,
}

struct Ctx {
    stop: AtomicBool,
    until: Instant,
    log: Mutex<std::fs::File>,
    tally: Mutex<Tally>,
    seq: AtomicU64,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.until
    }

    /// Sleeps `d` unless the run ends first; false when it ended.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if !self.running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200).min(end - Instant::now()));
        }
        self.running()
    }

    /// Runs one benign step; a failure is logged and counted, never fatal.
    fn step(&self, what: &'static str, env: &Env, script: &str) {
        let out = env
            .sh(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        let ok = matches!(&out, Ok(o) if o.status.success());
        {
            let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            let e = t.runs.entry(what).or_insert((0, 0));
            e.0 += 1;
            if !ok {
                e.1 += 1;
            }
        }
        if !ok {
            let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = match out {
                Ok(o) => writeln!(
                    l,
                    "[{what}] failed ({}): {script}\n{}{}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => writeln!(l, "[{what}] did not start: {e}: {script}"),
            };
        }
    }
}

/// An injected attack: what it runs, the rule it must raise, and its process tree.
struct Attack {
    name: &'static str,
    rule: &'static str,
    env: Env,
    script: String,
    /// Made right before the attack (a pod scheduled then).
    pod: bool,
    root: Option<u32>,
    at: Option<SystemTime>,
    ok: bool,
}

/// Everything the soak made; removed on drop in reverse order.
struct World {
    work: Scratch,
    lab: Lab,
    fleet: Lab,
    dev: User,
    ops: User,
    _monitor: User,
    app: User,
    web: User,
    _daemons: Vec<Daemon>,
    secrets: PathBuf,
    cron_file: Option<PathBuf>,
    pkgs_added: Mutex<Vec<String>>,
    users_before: String,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(f) = &self.cron_file {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.secrets);
        let _ = std::fs::remove_dir("/run/secrets");
        let pkgs = self
            .pkgs_added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !pkgs.is_empty() {
            let _ = apt(&["purge", "-y", "-q"], &pkgs);
        }
        // System users the packages' maintainer scripts created (and nothing else).
        for name in PACKAGE_USERS {
            let existed = self
                .users_before
                .lines()
                .any(|b| b.split(':').next() == Some(name));
            if !existed {
                let _ = Command::new("userdel")
                    .arg(name)
                    .stderr(Stdio::null())
                    .status();
                let _ = Command::new("groupdel")
                    .arg(name)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Packages the soak installs and purges, and the system users their maintainer scripts
/// create.
const PACKAGES: &[&str] = &["tcpdump", "uuid-runtime", "jq", "tree", "iotop"];
const PACKAGE_USERS: &[&str] = &["tcpdump", "uuidd"];

fn apt(args: &[&str], pkgs: &[String]) -> Result<()> {
    let st = Command::new("apt-get")
        .args(args)
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("apt-get {args:?} {pkgs:?}: {st}");
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn which(p: &str) -> Result<String> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {p}")])
        .output()?;
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if s.is_empty() {
        bail!("{p} not found");
    }
    Ok(s)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak runs the agent and makes namespaces and users: run it as root");
    }
    std::fs::create_dir_all(&args.out)?;
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let duration = Duration::from_secs(args.minutes * 60);
    eprintln!("soak: {} minutes, seed {seed}", args.minutes);
    let cargo = which("cargo").context("cargo for the soak's crate build")?;
    let world = setup(&args)?;
    let ctx = Arc::new(Ctx {
        stop: AtomicBool::new(false),
        until: Instant::now() + duration,
        log: Mutex::new(std::fs::File::create(args.out.join("workload.log"))?),
        tally: Mutex::new(Tally::default()),
        seq: AtomicU64::new(0),
    });

    // The agent: default pack, no config (its state in the work directory).
    let agent = Detector::start(&args.detector, &world.work.path("agent-state"), &[]);
    eprintln!("soak: agent {} running", agent.pid());
    let started = SystemTime::now();
    let t0 = Instant::now();

    let world = Arc::new(world);
    let mut threads = Vec::new();
    let mut spawn = |name: &'static str, seed: u64, f: fn(&Ctx, &World, &mut Rng, &str)| {
        let (c, w) = (ctx.clone(), world.clone());
        let cargo = cargo.clone();
        threads.push(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&c, &w, &mut Rng(seed), &cargo))
                .expect("thread"),
        );
    };
    spawn("cloud-cli", seed ^ 1, cloud_cli);
    spawn("ssh", seed ^ 2, ssh_sessions);
    spawn("builds", seed ^ 3, builds);
    spawn("packages", seed ^ 4, packages);
    spawn("accounts", seed ^ 5, accounts);
    spawn("rotation", seed ^ 6, rotation);
    spawn("interactive", seed ^ 7, admin_shell);
    if world.cron_file.is_none() {
        spawn("periodic", seed ^ 8, periodic);
    }

    // Attacks: every kind once, in a random order, at random times spread over the run.
    let mut rng = Rng(seed ^ 99);
    let mut attacks = attacks(&world, &args.actor);
    for i in (1..attacks.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        attacks.swap(i, j);
    }
    let first = Duration::from_secs(40).min(duration / 4);
    let span = duration.saturating_sub(first + Duration::from_secs(60));
    let slot = span / attacks.len() as u32;
    for (i, a) in attacks.iter_mut().enumerate() {
        let at = first + slot * i as u32 + rng.secs(0, slot.as_secs().saturating_sub(25).max(1));
        let now = t0.elapsed();
        if at > now && !ctx.nap(at - now) {
            break;
        }
        let _pod = a.pod.then(|| {
            let p = Pod::new(ctx.seq.fetch_add(1, Ordering::Relaxed) as u8 + 10);
            std::thread::sleep(Duration::from_millis(500));
            p
        });
        let script = match &_pod {
            Some(p) => a.script.replace("{POD}", &p.vol.display().to_string()),
            None => a.script.clone(),
        };
        a.at = Some(SystemTime::now());
        let out = a
            .env
            .sh(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|c| {
                a.root = Some(c.id());
                c.wait_with_output()
            });
        a.ok = matches!(&out, Ok(o) if o.status.success());
        eprintln!(
            "soak: {:>5.0}s attack {} ({}){}",
            t0.elapsed().as_secs_f64(),
            a.name,
            a.rule,
            if a.ok { "" } else { " — FAILED TO RUN" }
        );
        if !a.ok {
            if let Ok(o) = out {
                let _ = writeln!(
                    ctx.log.lock().unwrap_or_else(|e| e.into_inner()),
                    "[attack {}] {}\n{}{}",
                    a.name,
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
    while ctx.running() {
        std::thread::sleep(Duration::from_millis(500));
    }
    ctx.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    agent.barrier();
    std::thread::sleep(Duration::from_secs(2));
    let elapsed = t0.elapsed();
    // What the cron daemon ran (its jobs note each run).
    if let Ok(runs) = std::fs::read_to_string(world.work.path("cron-runs")) {
        let mut t = ctx.tally.lock().unwrap_or_else(|e| e.into_inner());
        for l in runs.lines() {
            let k: &'static str = match l {
                "ps" => "cron: ps aux",
                "scrape" => "cron: scrape",
                "backup" => "cron: backup",
                "git" => "cron: git",
                _ => "cron: cleanup",
            };
            t.runs.entry(k).or_insert((0, 0)).0 += 1;
        }
    }
    let report = report(&agent, &attacks, &ctx, elapsed, started, seed, &args);
    let (_, log) = agent.stop();
    std::fs::write(args.out.join("agent.log"), log)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report.0)?,
    )?;
    std::fs::write(args.out.join("report.md"), &report.1)?;
    println!("{}", report.1);
    drop(world);
    Ok(())
}

fn setup(args: &Args) -> Result<World> {
    let users_before = std::fs::read_to_string("/etc/passwd")?;
    // Package lists for the installs (from the Debian registry).
    apt(&["update", "-q"], &[]).context("apt-get update")?;
    let work = Scratch::new("soak");
    let lab = Lab::new("sk", 12);
    let fleet = Lab::new("sf", 64);
    let dev = User::new("sdev");
    let ops = User::new("sops");
    let monitor = User::new("smon");
    let app = User::new("sapp");
    let web = User::new("sweb");
    let dev_pub = dev.keygen();
    let ops_pub = ops.keygen();
    dev.write(".aws/credentials", &aws(&dev.name), 0o600);
    dev.write(
        ".netrc",
        "machine api.lab.test login deploy password s3cr3t-netrc\n",
        0o600,
    );
    dev.write(
        ".kube/config",
        "apiVersion: v1\nkind: Config\nusers: [{name: dev, user: {token: t0}}]\n",
        0o600,
    );
    // A credential nobody rotated for 120 days (what the long-lived attack reads).
    let pgpass = dev.write(".pgpass", "db.lab.test:5432:app:app:s3cr3t\n", 0o600);
    run_ok(
        Command::new("touch")
            .args(["-m", "-d", "120 days ago"])
            .arg(&pgpass),
    );
    // Names: 0 resolver; 1-3 ssh hosts; 4-7 api (and two AAAA); 8 s3; 9-11 services.
    let mut names = String::new();
    for i in 1..=3u8 {
        names.push_str(&format!("{} ssh{i}.lab.test\n", lab.host(i)));
    }
    for i in 4..=7 {
        names.push_str(&format!("{} api.lab.test\n", lab.host(i)));
    }
    for i in 4..=5 {
        names.push_str(&format!("{} api.lab.test\n", lab.host6(i)));
    }
    names.push_str(&format!("{} s3.lab.test\n", lab.host(8)));
    for i in 1..=3u8 {
        names.push_str(&format!("{} svc{i}.lab.test\n", lab.host(8 + i)));
    }
    for (i, h) in [1u8, 2, 3, 4, 8].iter().enumerate() {
        names.push_str(&format!("{} node{}.lab.test\n", lab.host(*h), i + 1));
    }
    let mut daemons = vec![dnsmasq(&lab, &work.path("dns"), &lab.host(0), &names)];
    resolv_conf(&work.0, &lab.host(0));
    let hosts: Vec<String> = (1..=3).map(|i| lab.host(i)).collect();
    daemons.push(sshd(
        &lab,
        &work.path("sshd"),
        &hosts,
        &format!("{dev_pub}{ops_pub}"),
    ));
    // Exporters on every server address; a metrics scraper daemon.
    std::fs::create_dir_all(work.path("exporter"))?;
    std::fs::write(
        work.path("exporter/metrics"),
        "# TYPE up gauge\nup 1\nnode_load1 0.42\n",
    )?;
    let mut c = Lab::in_ns(&lab.b);
    c.args([
        PY,
        "-m",
        "http.server",
        "--bind",
        "0.0.0.0",
        "9100",
        "--directory",
    ])
    .arg(work.path("exporter"));
    daemons.push(Daemon::start(c, work.path("exporter.log")));
    // The cloud metadata service at its address, in the lab.
    lab.add_b_address("169.254.169.254");
    let imds = work.path("imds/latest/meta-data/iam/security-credentials");
    std::fs::create_dir_all(&imds)?;
    std::fs::write(imds.join("app-role"), "{\"AccessKeyId\": \"ASIAEXAMPLE\"}")?;
    let mut c = Lab::in_ns(&lab.b);
    c.args([
        PY,
        "-m",
        "http.server",
        "--bind",
        "169.254.169.254",
        "80",
        "--directory",
    ])
    .arg(work.path("imds"));
    daemons.push(Daemon::start(c, work.path("imds.log")));
    let scraper = work.file(
        "scraper.py",
        "import time, urllib.request\nwhile True:\n    for n in range(1, 6):\n        try:\n            urllib.request.urlopen(f'http://node{n}.lab.test:9100/metrics', timeout=2).read()\n        except OSError:\n            pass\n    time.sleep(15)\n",
    );
    let env = Env {
        netns: Some(lab.a.clone()),
        user: monitor.setpriv(),
        resolv: Some(work.path("resolv.conf")),
        ..Default::default()
    };
    let mut c = env.sh(&format!("exec {PY} {}", scraper.display()));
    c.current_dir("/");
    daemons.push(Daemon::start(c, work.path("scraper.log")));
    write_sdk(&work);
    // A project under git, its bare repository served over ssh.
    std::fs::create_dir_all(work.path("srv"))?;
    run_ok(
        Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(work.path("srv/proj.git")),
    );
    run_ok(
        Command::new("chown")
            .args(["-R", &dev.name])
            .arg(work.path("srv")),
    );
    let dev_env = Env {
        user: dev.setpriv(),
        ..Default::default()
    };
    dev_env.run(&format!(
        "git init -q ~/proj && cd ~/proj && git config user.email dev@lab.test && git config user.name dev && \
         echo hello > README && git add README && git commit -qm init && \
         git remote add origin ssh://ssh1.lab.test{} ",
        work.path("srv/proj.git").display()
    ));
    // A C tree for make, and a crate without dependencies for cargo (both offline).
    let ct = work.path("ctree");
    std::fs::create_dir_all(&ct)?;
    let mut objs = Vec::new();
    for i in 0..120 {
        std::fs::write(
            ct.join(format!("f{i}.c")),
            format!("int f{i}(int x) {{ int s = 0; for (int k = 0; k < x; k++) s += k * {i}; return s; }}\n"),
        )?;
        objs.push(format!("f{i}.o"));
    }
    std::fs::write(ct.join("main.c"), "int main(void) { return 0; }\n")?;
    std::fs::write(
        ct.join("Makefile"),
        format!(
            "OBJS = main.o {}\nall: prog\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n%.o: %.c\n\tcc -O2 -c $< -o $@\nclean:\n\trm -f prog *.o\n",
            objs.join(" ")
        ),
    )?;
    let cr = work.path("crate");
    std::fs::create_dir_all(cr.join("src"))?;
    std::fs::write(
        cr.join("Cargo.toml"),
        "[package]\nname = \"soakcrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    )?;
    std::fs::write(
        cr.join("src/main.rs"),
        "fn main() {\n    let v: Vec<u64> = (0..1000).map(|x| x * x).collect();\n    println!(\"{}\", v.iter().sum::<u64>());\n}\n",
    )?;
    // A token a refresher rotates for an application.
    let secrets = PathBuf::from(format!("/run/secrets/dt-soak-{}", std::process::id()));
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("token"), "token-0")?;
    run_ok(
        Command::new("chown")
            .arg(&app.name)
            .arg(secrets.join("token")),
    );
    // The real cron daemon with periodic jobs, when no cron runs on this machine already.
    let cron_file = start_cron(&work, &lab, &dev, &mut daemons)?;
    let _ = args;
    Ok(World {
        work,
        lab,
        fleet,
        dev,
        ops,
        _monitor: monitor,
        app,
        web,
        _daemons: daemons,
        secrets,
        cron_file,
        pkgs_added: Mutex::new(Vec::new()),
        users_before,
    })
}

fn start_cron(
    work: &Scratch,
    lab: &Lab,
    dev: &User,
    daemons: &mut Vec<Daemon>,
) -> Result<Option<PathBuf>> {
    let running = Command::new("pgrep")
        .args(["-x", "cron"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if running || !Path::new("/usr/sbin/cron").exists() {
        eprintln!("soak: a cron daemon already runs (or none is installed): periodic jobs run from the soak's own scheduler");
        return Ok(None);
    }
    let f = PathBuf::from(format!("/etc/cron.d/detector-soak-{}", std::process::id()));
    let ip = which("ip")?;
    let scrape: Vec<String> = [1u8, 2, 3, 4, 8]
        .iter()
        .map(|h| format!("http://{}:9100/metrics", lab.host(*h)))
        .collect();
    std::fs::create_dir_all(work.path("backup"))?;
    std::fs::write(work.path("cron-runs"), "")?;
    std::fs::set_permissions(
        work.path("cron-runs"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )?;
    std::fs::write(
        &f,
        format!(
            "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             * * * * * root ps aux >/dev/null && echo ps >> {runs}\n\
             * * * * * root {ip} netns exec {ns} curl -s -m 2 {urls} >/dev/null; echo scrape >> {runs}\n\
             */2 * * * * root tar czf {bk}/proj.tgz -C {home} proj 2>/dev/null && echo backup >> {runs}\n\
             */3 * * * * {dev} git -C {home}/proj log -1 --oneline >/dev/null && echo git >> {runs}\n\
             */5 * * * * root find {work} -name '*.tmp' -mmin +5 -delete && echo cleanup >> {runs}\n",
            runs = work.path("cron-runs").display(),
            ns = lab.a,
            urls = scrape.join(" "),
            bk = work.path("backup").display(),
            home = dev.home.display(),
            dev = dev.name,
            work = work.0.display(),
        ),
    )?;
    std::fs::create_dir_all(work.path("backup"))?;
    let mut c = Command::new("/usr/sbin/cron");
    c.args(["-f", "-L", "0"]);
    daemons.push(Daemon::start(c, work.path("cron.log")));
    Ok(Some(f))
}

/// The cron jobs' work, from the soak's own scheduler when a system cron daemon already
/// runs (its jobs would not descend from the soak, which is how alerts are attributed).
fn periodic(c: &Ctx, w: &World, _: &mut Rng, _: &str) {
    let scrape: Vec<String> = [1u8, 2, 3, 4, 8]
        .iter()
        .map(|h| format!("http://{}:9100/metrics", w.lab.host(*h)))
        .collect();
    let mut minute = 0u64;
    while c.nap(Duration::from_secs(60)) {
        c.step("periodic", &Env::default(), "ps aux >/dev/null");
        c.step(
            "periodic",
            &root_in_lab(w),
            &format!("curl -s -m 2 {} >/dev/null", scrape.join(" ")),
        );
        if minute.is_multiple_of(2) {
            c.step(
                "periodic",
                &Env::default(),
                &format!(
                    "tar czf {}/proj.tgz -C {} proj 2>/dev/null",
                    w.work.path("backup").display(),
                    w.dev.home.display()
                ),
            );
        }
        minute += 1;
    }
}

fn client(w: &World, u: &User) -> Env {
    Env {
        netns: Some(w.lab.a.clone()),
        user: u.setpriv(),
        resolv: Some(w.work.path("resolv.conf")),
        ..Default::default()
    }
}

fn root_in_lab(w: &World) -> Env {
    Env {
        netns: Some(w.lab.a.clone()),
        resolv: Some(w.work.path("resolv.conf")),
        ..Default::default()
    }
}

/// A developer's cloud CLI and SDK calls: each reads the credential and reaches one or two
/// names, several of whose addresses are tried in turn.
fn cloud_cli(c: &Ctx, w: &World, r: &mut Rng, _: &str) {
    let sdk = w.work.path("sdk.py").display().to_string();
    let env = client(w, &w.dev);
    while c.nap(r.secs(15, 45)) {
        let script = match r.next() % 4 {
            0 => format!("{PY} {sdk} api.lab.test"),
            1 => format!("{PY} {sdk} s3.lab.test api.lab.test"),
            2 => "curl -s --netrc -m 3 https://api.lab.test/v1/items; true".to_string(),
            _ => format!("{PY} {sdk} s3.lab.test; sleep 2; {PY} {sdk} api.lab.test"),
        };
        c.step("cloud-cli", &env, &script);
    }
}

/// A person's ssh sessions, copies and git over ssh, minutes apart.
fn ssh_sessions(c: &Ctx, w: &World, r: &mut Rng, _: &str) {
    let env = client(w, &w.dev);
    while c.nap(r.secs(60, 200)) {
        let h = r.pick(&["ssh1", "ssh2", "ssh3"]);
        let script = match r.next() % 4 {
            0 => format!(
                "ssh {SSH_OPTS} {h}.lab.test 'sleep {}; uptime' >/dev/null",
                5 + r.next() % 25
            ),
            1 => format!(
                "scp -q {SSH_OPTS} {h}.lab.test:/etc/os-release ~/os-release.copy && sleep 3 && ssh {SSH_OPTS} {h}.lab.test 'cat /etc/hostname' >/dev/null"
            ),
            2 => format!(
                "cd ~/proj && echo $(date +%s) >> README && git commit -qam change && \
                 GIT_SSH_COMMAND='ssh {SSH_OPTS}' git push -q origin HEAD:main 2>/dev/null && \
                 GIT_SSH_COMMAND='ssh {SSH_OPTS}' git fetch -q origin"
            ),
            _ => format!("ssh {SSH_OPTS} {h}.lab.test 'ls /tmp | wc -l' >/dev/null"),
        };
        c.step("ssh-session", &env, &script);
    }
}

/// make -j2 of the C tree and cargo build of the crate, in turn.
fn builds(c: &Ctx, w: &World, r: &mut Rng, cargo: &str) {
    let env = Env::default();
    let mut n = 0u64;
    while c.nap(r.secs(90, 240)) {
        let script = if n.is_multiple_of(2) {
            format!(
                "make -s -j2 -C {} clean all",
                w.work.path("ctree").display()
            )
        } else {
            format!(
                "cd {} && touch src/main.rs && {cargo} build -q --offline --release",
                w.work.path("crate").display()
            )
        };
        c.step("build", &env, &script);
        n += 1;
    }
}

/// Installs and later purges packages whose maintainer scripts create system users.
fn packages(c: &Ctx, w: &World, r: &mut Rng, _: &str) {
    let candidates: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    let mut i = 0;
    while !candidates.is_empty() && c.nap(r.secs(150, 300)) {
        let p = candidates[i % candidates.len()];
        let env = Env::default();
        if installed(p) {
            c.step(
                "package-remove",
                &env,
                &format!("apt-get purge -y -q -o DPkg::Lock::Timeout=300 {p} >/dev/null"),
            );
        } else {
            w.pkgs_added
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(p.to_string());
            c.step(
                "package-install",
                &env,
                &format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 {p} >/dev/null"),
            );
        }
        i += 1;
    }
}

/// User administration with the shadow suite (and Debian's adduser).
fn accounts(c: &Ctx, _w: &World, r: &mut Rng, _: &str) {
    let env = Env::default();
    let mut n = 0u64;
    while c.nap(r.secs(90, 200)) {
        let u = format!("dtsk{}x{n}", std::process::id() % 100_000);
        let script = if n.is_multiple_of(2) {
            format!(
                "set -e; useradd -m -s /bin/sh {u}; echo '{u}:$6$salt$hash' | chpasswd -e; passwd -l {u} >/dev/null; \
                 chage -M 90 {u}; usermod -aG users {u}; chage -l {u} >/dev/null; id {u} >/dev/null; userdel -r {u} 2>/dev/null"
            )
        } else {
            format!(
                "set -e; adduser --system --group --quiet --no-create-home {u}; getent passwd {u} >/dev/null; \
                 deluser --quiet --system {u}; groupdel {u} 2>/dev/null || true"
            )
        };
        c.step("accounts", &env, &script);
        n += 1;
    }
}

/// Credential rotation: a refresher (root) rewriting an application's token in place and
/// by rename, the application reading it; the developer's own credentials rewritten by
/// their tools; the developer's deploy key regenerated.
fn rotation(c: &Ctx, w: &World, r: &mut Rng, _: &str) {
    let t = w.secrets.join("token");
    let app = w.app.setpriv().join(" ");
    let mut n = 0u64;
    while c.nap(r.secs(40, 80)) {
        let script = if n.is_multiple_of(2) {
            format!(
                "printf 'token-%s' $(date +%s%N) > {t} && setpriv {app} cat {t} >/dev/null",
                t = t.display()
            )
        } else {
            format!(
                "printf 'token-%s' $(date +%s%N) > {t}.new && chown {a} {t}.new && mv {t}.new {t} && sleep 1 && setpriv {app} cat {t} >/dev/null",
                t = t.display(),
                a = w.app.name
            )
        };
        c.step("rotation-refresher", &Env::default(), &script);
        if n % 6 == 3 {
            let dev = Env {
                user: w.dev.setpriv(),
                ..Default::default()
            };
            c.step(
                "rotation-owner",
                &dev,
                &format!(
                    "{PY} -c \"import os; p=os.path.expanduser('~/.aws/credentials'); s=open(p).read(); open(p, 'w').write(s)\" && \
                     {PY} -c \"import os; p=os.path.expanduser('~/.kube/config'); s=open(p).read(); open(p, 'w').write(s.replace('t0', 't1').replace('t1', 't0'))\""
                ),
            );
        }
        if n % 10 == 7 {
            let dev = Env {
                user: w.dev.setpriv(),
                ..Default::default()
            };
            c.step(
                "rotation-keygen",
                &dev,
                "rm -f ~/.ssh/id_deploy ~/.ssh/id_deploy.pub && ssh-keygen -q -t ed25519 -N '' -C deploy -f ~/.ssh/id_deploy && ssh-keygen -l -f ~/.ssh/id_deploy >/dev/null",
            );
        }
        n += 1;
    }
}

/// An administrator's shell: process listings, log and config reading, service checks.
fn admin_shell(c: &Ctx, _w: &World, r: &mut Rng, _: &str) {
    let env = Env::default();
    while c.nap(r.secs(30, 90)) {
        let script = *r.pick(&[
            "ps -ef >/dev/null; ps aux --sort=-%cpu | head -5 >/dev/null",
            "top -bn1 >/dev/null",
            "cat /proc/self/environ >/dev/null; env >/dev/null",
            "df -h >/dev/null; free -m >/dev/null; uptime >/dev/null",
            "getent passwd >/dev/null; id; last -n 3 >/dev/null 2>&1; true",
            "ls -la /etc/ssh >/dev/null; ss -tlnp >/dev/null",
        ]);
        c.step("admin-shell", &env, script);
    }
}

fn attacks(w: &World, actor: &Path) -> Vec<Attack> {
    let dev = client(w, &w.dev);
    let root = Env::default();
    let sdk = w.work.path("sdk.py").display().to_string();
    let home = w.dev.home.display().to_string();
    let ops = w.ops.setpriv().join(" ");
    let fleet: Vec<String> = (0..60).map(|i| w.fleet.host(i)).collect();
    let fleet_env = Env {
        netns: Some(w.fleet.a.clone()),
        ..Default::default()
    };
    let mk = |name, rule, env: &Env, script: String| Attack {
        name,
        rule,
        env: env.clone(),
        script,
        pod: false,
        root: None,
        at: None,
        ok: false,
    };
    let mut v = vec![
        mk(
            "SDK credential, then three services within a second",
            "machine-speed-credential-reuse",
            &dev,
            format!("{PY} {sdk} svc1.lab.test svc2.lab.test svc3.lab.test"),
        ),
        mk(
            "ssh down a host list, 10 s apart",
            "ssh-key-then-ssh-fanout",
            &dev,
            format!(
                "for h in ssh1 ssh2 ssh3; do ssh {SSH_OPTS} $h.lab.test 'id' >/dev/null; sleep 10; done"
            ),
        ),
        mk(
            "script reads /etc/shadow",
            "shadow-read-unexpected",
            &root,
            format!("{PY} -c 'open(\"/etc/shadow\").read()'"),
        ),
        mk(
            "shell opens /etc/shadow to append",
            "shadow-written-outside-account-tools",
            &root,
            ": >> /etc/shadow".into(),
        ),
        mk(
            "root rewrites the developer's kubeconfig",
            "credential-modified-by-another-user",
            &root,
            format!("cat {home}/.kube/config > {home}/.kube/config.tmp && cat {home}/.kube/config.tmp > {home}/.kube/config && rm {home}/.kube/config.tmp"),
        ),
        mk(
            "root reads the developer's SSH key",
            "ledger-credential-used-by-non-owner",
            &root,
            format!("cat {home}/.ssh/id_ed25519 >/dev/null"),
        ),
        mk(
            "reads the scraper daemon's environment",
            "proc-environ-of-other-process",
            &root,
            "for p in $(pgrep -f scraper.py); do cat /proc/$p/environ >/dev/null; done".into(),
        ),
        mk(
            "io_uring read of the developer's AWS credentials",
            "credential-access-via-io-uring",
            &Env {
                user: w.dev.setpriv(),
                ..Default::default()
            },
            format!("{} uring-open ~/.aws/credentials", actor.display()),
        ),
        mk(
            "a 120-day-old database password in use",
            "ledger-credential-past-rotation",
            &Env {
                user: w.dev.setpriv(),
                ..Default::default()
            },
            "cat ~/.pgpass >/dev/null".into(),
        ),
        mk(
            "the developer's key copied to another user and used there",
            "ledger-shared-credential",
            &root,
            format!(
                "cp {home}/.ssh/id_ed25519 {oh}/.ssh/id_ed25519 && chown {o} {oh}/.ssh/id_ed25519 && setpriv {ops} ssh-keygen -y -f {oh}/.ssh/id_ed25519 >/dev/null",
                oh = w.ops.home.display(),
                o = w.ops.name
            ),
        ),
        mk(
            "nmap connect scan of a host",
            "port-sweep",
            &root_in_lab(w),
            format!("nmap -sT -Pn -n --max-retries 0 -p 1-100 {} >/dev/null", w.lab.host(9)),
        ),
        mk(
            "contacts 60 hosts in a few seconds",
            "service-fan-out-burst",
            &fleet_env,
            format!(
                "{PY} -c \"import socket\nfor h in '{}'.split():\n    s = socket.socket(); s.settimeout(0.5)\n    try: s.connect((h, 80))\n    except OSError: pass\n    s.close()\"",
                fleet.join(" ")
            ),
        ),
        mk(
            "a web application fetches instance credentials (SSRF)",
            "cloud-metadata-unexpected-identity",
            &client(w, &w.web),
            "curl -s -m 2 http://169.254.169.254/latest/meta-data/iam/security-credentials/app-role >/dev/null".into(),
        ),
    ];
    let mut k8s = mk(
        "a new pod's token read from the host, then API servers",
        "k8s-token-then-apiserver",
        &root_in_lab(w),
        format!(
            "T=$(cat {{POD}}/token); for h in {} {} {}; do curl -sk -m 1 -H \"Authorization: Bearer $T\" https://$h:6443/api >/dev/null; sleep 1.2; done; true",
            w.lab.host(9),
            w.lab.host(10),
            w.lab.host(11)
        ),
    );
    k8s.pod = true;
    v.push(k8s);
    v
}

type Report = (Value, String);

fn report(
    agent: &Detector,
    attacks: &[Attack],
    ctx: &Ctx,
    elapsed: Duration,
    started: SystemTime,
    seed: u64,
    args: &Args,
) -> Report {
    let me = std::process::id();
    let all = agent.alerts();
    let hours = elapsed.as_secs_f64() / 3600.0;
    let mut false_by_rule: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut side: BTreeMap<String, u64> = BTreeMap::new();
    let mut foreign: BTreeMap<String, u64> = BTreeMap::new();
    let mut other_agents = 0u64;
    for a in &all {
        let rule = a["rule"]["id"].as_str().unwrap_or("?").to_string();
        let Some(t) = a["process"]["tgid"].as_u64().map(|t| t as u32) else {
            *foreign.entry(rule).or_default() += 1;
            continue;
        };
        if !agent.descends(t, me) {
            *foreign.entry(rule).or_default() += 1;
        } else if involves_an_agent(a) {
            other_agents += 1;
        } else if let Some(x) = attacks
            .iter()
            .find(|x| x.root.is_some_and(|r| agent.descends(t, r)))
        {
            if x.rule != rule {
                *side.entry(rule).or_default() += 1;
            }
        } else {
            false_by_rule.entry(rule).or_default().push(a.clone());
        }
    }
    let mut recall = Vec::new();
    let mut matched = 0;
    for x in attacks {
        let hit = x.root.and_then(|r| {
            all.iter().find(|a| {
                a["rule"]["id"] == x.rule
                    && a["process"]["tgid"]
                        .as_u64()
                        .is_some_and(|t| agent.descends(t as u32, r))
            })
        });
        if hit.is_some() {
            matched += 1;
        }
        recall.push(json!({
            "attack": x.name,
            "rule": x.rule,
            "ran": x.ok,
            "injected_at": x.at.map(humantime),
            "root": x.root,
            "alert": hit.map(|a| json!({"id": a["id"], "process": a["process"]["exe"], "tgid": a["process"]["tgid"]})),
        }));
    }
    let false_total: usize = false_by_rule.values().map(Vec::len).sum();
    let tally = &ctx.tally.lock().unwrap_or_else(|e| e.into_inner()).runs;
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let json = json!({
        "started": humantime(started),
        "minutes": elapsed.as_secs_f64() / 60.0,
        "seed": seed,
        "kernel": host.trim(),
        "cpus": cpus,
        "detector": args.detector,
        "agent_lines": agent.lines(),
        "false_alerts": false_total,
        "false_alerts_per_host_hour": false_total as f64 / hours,
        "false_by_rule": false_by_rule.iter().map(|(k, v)| (k.clone(), json!({"count": v.len(), "per_host_hour": v.len() as f64 / hours, "alerts": v}))).collect::<serde_json::Map<_, _>>(),
        "attacks": attacks.len(),
        "attacks_matched": matched,
        "recall": matched as f64 / attacks.len().max(1) as f64,
        "attack_results": recall,
        "attack_side_alerts": side,
        "alerts_involving_other_agents": other_agents,
        "foreign_alerts_by_rule": foreign,
        "workload_runs": tally.iter().map(|(k, (n, f))| (k.to_string(), json!({"runs": n, "failed": f}))).collect::<serde_json::Map<_, _>>(),
        "not_injected": [{"rule": "first-seen-peer", "why": "judges only identities with declared peers or a learned baseline; the soak runs without config"}],
    });
    let mut md = String::new();
    md.push_str(&format!(
        "soak: {:.1} min, seed {seed}, kernel {}, {cpus} CPUs, {} agent lines\n\n",
        elapsed.as_secs_f64() / 60.0,
        host.trim(),
        agent.lines()
    ));
    md.push_str(&format!(
        "false alerts: {false_total} ({:.2} per host-hour)\n",
        false_total as f64 / hours
    ));
    for (k, v) in &false_by_rule {
        md.push_str(&format!(
            "  {k}: {} ({:.2}/host-hour) e.g. {} {}\n",
            v.len(),
            v.len() as f64 / hours,
            v[0]["process"]["exe"],
            v[0]["process"]["argv"]
        ));
    }
    md.push_str(&format!(
        "recall: {matched}/{} ({:.0} %)\n",
        attacks.len(),
        100.0 * matched as f64 / attacks.len().max(1) as f64
    ));
    md.push_str("\n| attack | rule | alert |\n|---|---|---|\n");
    for r in &recall {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            r["attack"].as_str().unwrap_or(""),
            r["rule"].as_str().unwrap_or(""),
            match &r["alert"] {
                Value::Null if r["ran"] == false => "attack failed to run".to_string(),
                Value::Null => "**missed**".to_string(),
                a => format!(
                    "{} (tgid {})",
                    a["process"].as_str().unwrap_or(""),
                    a["tgid"]
                ),
            }
        ));
    }
    md.push_str(&format!(
        "\nother rules' alerts in the attacks' process trees: {side:?}\n"
    ));
    md.push_str(&format!(
        "alerts outside the soak (other users of this machine): {foreign:?}; involving another agent: {other_agents}\n"
    ));
    md.push_str("\n| activity | runs | failed |\n|---|---:|---:|\n");
    for (k, (n, f)) in tally {
        md.push_str(&format!("| {k} | {n} | {f} |\n"));
    }
    (json, md)
}

fn humantime(t: SystemTime) -> String {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Command::new("date")
        .args(["-u", "-d", &format!("@{s}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| s.to_string())
}
