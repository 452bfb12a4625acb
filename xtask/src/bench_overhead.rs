//! `cargo xtask bench overhead`: the same workloads under four configurations in one run,
//! interleaved (none, detector, auditd, bpftrace, none, detector, …), reported as medians,
//! spreads and ratios against no agent, with each tool's CPU seconds and peak RSS.
//!
//! - **none**: no agent.
//! - **detector**: the real `detector run` binary (release), default embedded rules and
//!   identities, alerts to a file sink, plus a `--watch` for the credential file the workload
//!   opens; ready when `detector status` reports every program attached.
//! - **auditd**: Debian's auditd started by hand (`auditd -n -c <private config dir>`), with
//!   rules equivalent in coverage: connect (b64, b32), execve/execveat (b64, b32), and `-w`
//!   watches on every file of the default watch list that exists (plus the workload's
//!   credential file); ready when `auditctl -s` names its pid and says enabled. Afterwards the
//!   rules are replaced by `-a task,never` and auditing is disabled (see [`audit_quiesce`]).
//! - **bpftrace**: Debian's bpftrace on the tracepoints we use (open-family syscall exits,
//!   `sock:inet_sock_set_state`, sched exec/fork/exit), printing every event to a file; ready
//!   when its `BEGIN` probe (run after every probe is attached) has printed.
//!
//! Micro workloads (`tests/src/bin/workload.rs`) run pinned to CPU 0; every tool is pinned to
//! CPU 1 (auditd's kernel thread `kauditd` too, for the phase). Macro workloads (redis, make,
//! stress-ng, nginx/wrk) are not pinned: they use both CPUs as they would on a node, so what
//! the tool burns on CPU 1 counts against them.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::TcpStream,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::{output, status, workspace_root};

mod plot;

/// Debian packages of the benchmark: (a binary they install, package).
const PACKAGES: &[(&str, &str)] = &[
    ("auditd", "auditd"),
    ("bpftrace", "bpftrace"),
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("stress-ng", "stress-ng"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("taskset", "util-linux"),
    ("setpriv", "util-linux"),
];
/// The plot's font (plotters draws text through ab_glyph from these bytes; no fontconfig).
const FONT: (&str, &str) = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "fonts-dejavu-core",
);
/// The agent's default watch list, expanded into auditd `-w` rules.
const DEFAULT_WATCH_LIST: &str = include_str!("../../detector-user/src/sources/watchlist.default");
/// CPU of the micro workloads; the tools run on [`TOOL_CPU`].
const WORKLOAD_CPU: &str = "0";
const TOOL_CPU: &str = "1";
/// Nice value of workloads and tools (and kauditd during its phase): on a machine shared with
/// other work they then lose less time to it; on a quiet machine it changes nothing.
const NICE: &str = "-20";
/// Key of our audit rules (`ausearch -k`).
const AUDIT_KEY: &str = "detector_bench";

/// Arguments of `cargo xtask bench overhead`.
#[derive(Debug, Parser)]
#[command(
    name = "bench overhead",
    about = "overhead side by side: no agent, detector, auditd, bpftrace"
)]
pub struct Args {
    /// Short smoke run (2 rounds, small operation counts; about 6 minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds; each runs every configuration once, in order [default: 3, with --quick 2].
    #[arg(long)]
    rounds: Option<usize>,
    /// Configurations besides `none` (which is always run): detector, detector-reads, floor,
    /// auditd, bpftrace.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "detector,detector-reads,floor,auditd,bpftrace"
    )]
    configs: Vec<String>,
    /// Workloads: getppid, open, cred-open, connect, exec, redis, make, stress-ng, wrk
    /// [default: all].
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Where the markdown report and the raw samples go [default: <target dir>/bench-overhead].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the PNG plot of the ratios goes [default: docs/overhead.png].
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Extra argument for `detector run` in the detector and detector-reads configurations
    /// (repeatable), e.g. `--agent-arg=--poll-interval=10ms`.
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    agent_args: Vec<String>,
    /// Run nothing: redraw the plot from a previous run's raw samples (`samples.jsonl`) into
    /// `--plot` (default docs/overhead.png).
    #[arg(long, value_name = "SAMPLES")]
    replot: Option<PathBuf>,
    /// Run nothing: redraw the plot from the ratio table of a report, for a run whose raw
    /// samples were not kept: the first table of FILE whose header is `| workload |` followed
    /// by configuration names (the harness's `overhead.md`, or BENCHMARKS.md).
    #[arg(long, value_name = "FILE", conflicts_with = "replot")]
    plot_only: Option<PathBuf>,
    /// Workloads left out of the plot (row keys: getppid, open, cred-open, connect, exec,
    /// redis, make, stress-open, stress-sock, stress-exec, wrk), e.g. one a run could not
    /// measure; the tables keep them.
    #[arg(long, value_delimiter = ',', value_name = "ROW")]
    omit_rows: Vec<String>,
}

/// A configuration under which every workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Config {
    /// No agent.
    None,
    /// `detector run`.
    Detector,
    /// `detector run --hooks process,net,reads`: no syscall tracepoint at all (credential
    /// access seen through page-cache reads and io_uring, not at open).
    #[serde(rename = "detector-reads")]
    DetectorReads,
    /// The hooks' floor: empty programs on `sys_exit_openat`, `cgroup/connect4` and
    /// `tp_btf/inet_sock_set_state` (`kbench hold-floor`), what any program there costs.
    Floor,
    /// auditd with equivalent rules.
    Auditd,
    /// bpftrace printing every event.
    Bpftrace,
}

impl Config {
    const ALL: [Config; 6] = [
        Config::None,
        Config::Detector,
        Config::DetectorReads,
        Config::Floor,
        Config::Auditd,
        Config::Bpftrace,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::Detector => "detector",
            Config::DetectorReads => "detector-reads",
            Config::Floor => "floor",
            Config::Auditd => "auditd",
            Config::Bpftrace => "bpftrace",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .with_context(|| {
                format!("unknown configuration `{s}` (detector, detector-reads, floor, auditd, bpftrace)")
            })
    }
}

/// A reported row: one metric of one workload.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Stable key (raw samples, filters).
    pub key: &'static str,
    /// Workload invocation that produces it.
    pub workload: &'static str,
    /// Title in tables and the plot.
    pub title: &'static str,
    /// Unit of the metric.
    pub unit: &'static str,
    /// Throughput (higher is better) or time (lower is better).
    pub higher_better: bool,
}

const ROWS: &[Row] = &[
    Row {
        key: "getppid",
        workload: "getppid",
        title: "getppid (unrelated syscall)",
        unit: "ns/op",
        higher_better: false,
    },
    Row {
        key: "open",
        workload: "open",
        title: "open+close, benign file",
        unit: "ns/op",
        higher_better: false,
    },
    Row {
        key: "cred-open",
        workload: "cred-open",
        title: "open+close, watched credential file",
        unit: "ns/op",
        higher_better: false,
    },
    Row {
        key: "connect",
        workload: "connect",
        title: "TCP connect+accept+close, loopback",
        unit: "ns/op",
        higher_better: false,
    },
    Row {
        key: "exec",
        workload: "exec",
        title: "fork+exec+wait /bin/true",
        unit: "ns/op",
        higher_better: false,
    },
    Row {
        key: "redis",
        workload: "redis",
        title: "redis-benchmark SET+GET, loopback",
        unit: "req/s",
        higher_better: true,
    },
    Row {
        key: "make",
        workload: "make",
        title: "make -j2, generated C tree",
        unit: "s",
        higher_better: false,
    },
    Row {
        key: "stress-open",
        workload: "stress-ng",
        title: "stress-ng --open",
        unit: "bogo ops/s",
        higher_better: true,
    },
    Row {
        key: "stress-sock",
        workload: "stress-ng",
        title: "stress-ng --sock",
        unit: "bogo ops/s",
        higher_better: true,
    },
    Row {
        key: "stress-exec",
        workload: "stress-ng",
        title: "stress-ng --exec",
        unit: "bogo ops/s",
        higher_better: true,
    },
    Row {
        key: "wrk",
        workload: "wrk",
        title: "wrk → nginx, loopback, keep-alive",
        unit: "req/s",
        higher_better: true,
    },
];

const WORKLOADS: &[&str] = &[
    "getppid",
    "open",
    "cred-open",
    "connect",
    "exec",
    "redis",
    "make",
    "stress-ng",
    "wrk",
];

fn is_micro(workload: &str) -> bool {
    matches!(
        workload,
        "getppid" | "open" | "cred-open" | "connect" | "exec"
    )
}

/// Operation counts and durations.
#[derive(Debug, Clone, Serialize)]
struct Sizes {
    rounds: usize,
    /// Runs of each micro workload per phase (their median is the phase's value).
    micro_reps: usize,
    getppid: u64,
    open: u64,
    cred_open: u64,
    connect: u64,
    exec: u64,
    redis_requests: u64,
    make_files: usize,
    stress_open: u64,
    stress_sock: u64,
    stress_exec: u64,
    wrk_seconds: u64,
}

impl Sizes {
    fn new(quick: bool, rounds: Option<usize>) -> Self {
        if quick {
            Sizes {
                rounds: rounds.unwrap_or(2),
                micro_reps: 2,
                getppid: 500_000,
                open: 50_000,
                cred_open: 5_000,
                connect: 1_000,
                exec: 100,
                redis_requests: 50_000,
                make_files: 24,
                stress_open: 1_000,
                stress_sock: 100,
                stress_exec: 100,
                wrk_seconds: 3,
            }
        } else {
            Sizes {
                rounds: rounds.unwrap_or(3),
                micro_reps: 3,
                getppid: 2_000_000,
                open: 200_000,
                cred_open: 20_000,
                connect: 5_000,
                exec: 300,
                redis_requests: 200_000,
                make_files: 96,
                stress_open: 5_000,
                stress_sock: 500,
                stress_exec: 500,
                wrk_seconds: 8,
            }
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Round (0-based).
    pub round: usize,
    /// Configuration.
    pub config: Config,
    /// Row key.
    pub row: String,
    /// Metric value (unit of the row).
    pub value: f64,
    /// CPU seconds the tool used during the workload invocation.
    pub tool_cpu_s: Option<f64>,
    /// The tool's VmHWM (KiB) after the invocation (its peak so far in the phase).
    pub tool_hwm_kib: Option<u64>,
}

/// Everything a phase needs to know.
struct Ctx {
    work: PathBuf,
    agent_args: Vec<String>,
    detector: PathBuf,
    workload: PathBuf,
    kbench: PathBuf,
    benign: PathBuf,
    cred: PathBuf,
    ctree: PathBuf,
    sizes: Sizes,
    clk_tck: f64,
}

fn install_packages() -> Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(|(_, p)| *p)
        .collect();
    if !Path::new(FONT.0).exists() {
        missing.push(FONT.1);
    }
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    status(Command::new("apt-get").args(["update", "-q"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Debian's maintainer scripts would start nginx/redis/auditd where they can; the
            // benchmark starts its own, with private configs.
            .env("RUNLEVEL", "1"),
    )
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let a = Args::try_parse_from(
        std::iter::once("bench overhead".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let omit = omitted(&a.omit_rows)?;
    if let Some(samples) = &a.replot {
        return replot(samples, a.plot.as_deref(), &omit);
    }
    if let Some(table) = &a.plot_only {
        return plot_only(table, a.plot.as_deref(), &omit);
    }
    if !crate::is_root() {
        bail!("bench overhead loads eBPF programs, auditd rules and bpftrace: run it as root");
    }
    let mut configs = vec![Config::None];
    for c in &a.configs {
        let c = Config::parse(c)?;
        if !configs.contains(&c) {
            configs.push(c);
        }
    }
    configs.sort();
    let workloads: Vec<&'static str> =
        if a.workloads.is_empty() {
            WORKLOADS.to_vec()
        } else {
            a.workloads
                .iter()
                .map(|w| {
                    WORKLOADS.iter().copied().find(|k| k == w).with_context(|| {
                        format!("unknown workload `{w}` ({})", WORKLOADS.join(", "))
                    })
                })
                .collect::<Result<_>>()?
        };
    let sizes = Sizes::new(a.quick, a.rounds);
    if sizes.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    install_packages()?;
    if configs.contains(&Config::Auditd) {
        let running = Command::new("pgrep").args(["-x", "auditd"]).output()?;
        if running.status.success() {
            bail!(
                "an auditd is already running (pid {}): stop it first, the benchmark runs its own",
                String::from_utf8_lossy(&running.stdout).trim()
            );
        }
    }

    let root = workspace_root();
    let release = crate::build_release(
        &root,
        &[
            ("detector-user", "detector"),
            ("tests", "workload"),
            ("tests", "kbench"),
        ],
    )?;
    let target = crate::target_dir(&root);
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| target.join("bench-overhead"));
    fs::create_dir_all(&out_dir)?;
    let plot = a
        .plot
        .clone()
        .unwrap_or_else(|| root.join("docs/overhead.png"));

    // Under /tmp, not the target dir: nginx's workers (nobody) and stress-ng (run as nobody:
    // its exec stressor refuses root) must reach it.
    let work = std::env::temp_dir().join("detector-bench-overhead");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    fs::set_permissions(&work, fs::Permissions::from_mode(0o755))?;
    let benign = work.join("benign.txt");
    fs::write(&benign, b"not a secret\n")?;
    let ssh = work.join("home/.ssh");
    fs::create_dir_all(&ssh)?;
    let cred = ssh.join("id_rsa");
    fs::write(&cred, b"-----BEGIN OPENSSH PRIVATE KEY-----\nbench\n")?;
    fs::set_permissions(&cred, fs::Permissions::from_mode(0o600))?;
    let ctree = work.join("ctree");
    write_c_tree(&ctree, sizes.make_files)?;
    // SAFETY: sysconf has no preconditions.
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ctx = Ctx {
        agent_args: a.agent_args.clone(),
        detector: release.join("detector"),
        workload: release.join("workload"),
        kbench: release.join("kbench"),
        work,
        benign,
        cred,
        ctree,
        sizes,
        clk_tck: if clk_tck > 0.0 { clk_tck } else { 100.0 },
    };

    // Restores the audit state when the run ends however it ends.
    let _audit = configs.contains(&Config::Auditd).then(|| {
        audit_quiesce();
        AuditRestore
    });
    let load_start = loadavg();
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let raw_path = out_dir.join("samples.jsonl");
    let mut raw = fs::File::create(&raw_path)?;
    for round in 0..ctx.sizes.rounds {
        for &config in &configs {
            eprintln!(
                "overhead: round {}/{} {} (elapsed {:.0} s)",
                round + 1,
                ctx.sizes.rounds,
                config.name(),
                started.elapsed().as_secs_f64()
            );
            let mut tool = Tool::start(config, &ctx)?;
            let phase = run_phase(&ctx, &mut tool, round, config, &workloads);
            let note = tool.stop();
            let phase = phase?;
            let note = note?;
            if !note.is_empty() {
                notes.push(format!("round {} {}: {note}", round + 1, config.name()));
            }
            for s in phase {
                writeln!(raw, "{}", serde_json::to_string(&s)?)?;
                samples.push(s);
            }
        }
    }
    let load_end = loadavg();
    let elapsed = started.elapsed();

    let rows: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|r| workloads.contains(&r.workload))
        .collect();
    let summary = summarize(&rows, &configs, &samples);
    let header = format!(
        "Command: `cargo xtask bench overhead {}`; {} rounds; kernel {}; commit {}; {} UTC; \
         load average at start {} / at end {}; took {:.1} min.\n",
        args.join(" "),
        ctx.sizes.rounds,
        output(Command::new("uname").arg("-r"))?.trim(),
        output(
            Command::new("git")
                .current_dir(&root)
                .args(["rev-parse", "--short", "HEAD"])
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into()),
        output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"]))?.trim(),
        load_start,
        load_end,
        elapsed.as_secs_f64() / 60.0
    );
    let md = render_markdown(&header, &ctx.sizes, &rows, &configs, &summary, &notes);
    println!("{md}");
    let md_path = out_dir.join("overhead.md");
    fs::write(&md_path, &md)?;
    plot::draw(&plot, FONT.0, &plotted(&rows, &omit), &summary)?;
    eprintln!(
        "overhead: report {}, raw samples {}, plot {}",
        md_path.display(),
        raw_path.display(),
        plot.display()
    );
    Ok(())
}

/// `--omit-rows`: the row keys, each checked.
fn omitted(keys: &[String]) -> Result<Vec<&'static str>> {
    keys.iter()
        .map(|k| {
            ROWS.iter()
                .map(|r| r.key)
                .find(|r| r == k)
                .with_context(|| {
                    let all: Vec<&str> = ROWS.iter().map(|r| r.key).collect();
                    format!("--omit-rows: unknown row `{k}` ({})", all.join(", "))
                })
        })
        .collect()
}

/// The rows the plot shows.
fn plotted(rows: &[Row], omit: &[&str]) -> Vec<Row> {
    rows.iter()
        .copied()
        .filter(|r| !omit.contains(&r.key))
        .collect()
}

/// `--plot-only`: the plot of a run whose raw samples are gone, from its report's ratio table.
fn plot_only(table: &Path, plot: Option<&Path>, omit: &[&str]) -> Result<()> {
    let text = fs::read_to_string(table).with_context(|| format!("reading {}", table.display()))?;
    let (rows, summary) =
        ratio_table(&text).with_context(|| format!("{}: the ratio table", table.display()))?;
    let plot = plot
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::workspace_root().join("docs/overhead.png"));
    plot::draw(&plot, FONT.0, &plotted(&rows, omit), &summary)?;
    eprintln!("overhead: plot {}", plot.display());
    Ok(())
}

/// The cells of a markdown table line (`| a | b |` → `[a, b]`), or none for another line.
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// A ratio cell as the report writes it: `**0.769** (0.763–0.857)`, `1.235 (0.143–1.451)`;
/// `n/a`/`–` (not measured) is none.
fn ratio_cell(cell: &str) -> Result<Option<(f64, f64, f64)>> {
    let c = cell.replace("**", "");
    let c = c.trim();
    if c.is_empty() || c.starts_with("n/a") || c == "–" || c == "-" {
        return Ok(None);
    }
    let num = |s: &str| -> Result<f64> {
        s.trim()
            .parse()
            .with_context(|| format!("`{cell}`: `{s}` is not a ratio"))
    };
    match c.split_once('(') {
        Some((m, range)) => {
            let range = range.trim_end_matches(')');
            let (lo, hi) = range
                .split_once('–')
                .with_context(|| format!("`{cell}`: want `median (min–max)`"))?;
            Ok(Some((num(m)?, num(lo)?, num(hi)?)))
        }
        None => {
            let m = num(c)?;
            Ok(Some((m, m, m)))
        }
    }
}

/// Statistics per (row key, configuration), as [`summarize`] returns them.
type Summary = BTreeMap<(String, Config), Stat>;

/// The first ratio table of a report: its rows (by title) and each configuration's ratios.
fn ratio_table(text: &str) -> Result<(Vec<Row>, Summary)> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, columns) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let h = cells(l)?;
            if h.first() != Some(&"workload") {
                return None;
            }
            let configs: Vec<Config> = h[1..].iter().map_while(|c| Config::parse(c).ok()).collect();
            (!configs.is_empty()).then_some((i, configs))
        })
        .context("no table with the header `| workload | <configuration> …|`")?;
    let mut rows = Vec::new();
    let mut stats = BTreeMap::new();
    // Past the header and its `|---|` line, up to the first line that is not a table row.
    for (i, line) in lines.iter().enumerate().skip(start + 2) {
        let Some(c) = cells(line) else { break };
        let title = c.first().copied().unwrap_or_default();
        let row = ROWS
            .iter()
            .find(|r| r.title == title)
            .with_context(|| format!("line {}: unknown workload `{title}`", i + 1))?;
        for (k, config) in columns.iter().enumerate() {
            let cell = c.get(k + 1).copied().unwrap_or_default();
            let ratio = ratio_cell(cell).with_context(|| format!("line {}", i + 1))?;
            stats.insert(
                (row.key.to_string(), *config),
                Stat {
                    ratio,
                    ..Default::default()
                },
            );
        }
        rows.push(*row);
    }
    if rows.is_empty() {
        bail!("line {}: the table has no rows", start + 1);
    }
    Ok((rows, stats))
}

/// `--replot`: the plot of a previous run, from its raw samples.
fn replot(samples: &Path, plot: Option<&Path>, omit: &[&str]) -> Result<()> {
    let text =
        fs::read_to_string(samples).with_context(|| format!("reading {}", samples.display()))?;
    let samples: Vec<Sample> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a sample", samples.display(), i + 1))
        })
        .collect::<Result<_>>()?;
    let mut configs: Vec<Config> = samples.iter().map(|s| s.config).collect();
    configs.sort();
    configs.dedup();
    let rows: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|r| samples.iter().any(|s| s.row == r.key))
        .collect();
    let summary = summarize(&rows, &configs, &samples);
    let plot = plot
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::workspace_root().join("docs/overhead.png"));
    plot::draw(&plot, FONT.0, &plotted(&rows, omit), &summary)?;
    eprintln!("overhead: plot {}", plot.display());
    Ok(())
}

/// One phase: every selected workload under an attached tool.
fn run_phase(
    ctx: &Ctx,
    tool: &mut Tool,
    round: usize,
    config: Config,
    workloads: &[&'static str],
) -> Result<Vec<Sample>> {
    // Per micro workload, each run's (value, tool CPU s, tool VmHWM KiB).
    type Runs = Vec<(f64, Option<f64>, Option<u64>)>;
    let mut micro: BTreeMap<&str, Runs> = BTreeMap::new();
    let mut out = Vec::new();
    for _ in 0..ctx.sizes.micro_reps {
        for w in workloads.iter().copied().filter(|w| is_micro(w)) {
            let before = tool.cpu_ticks();
            let v = micro_run(ctx, w)?;
            let cpu = tool.cpu_since(before, ctx.clk_tck);
            micro.entry(w).or_default().push((v, cpu, tool.hwm_kib()));
        }
    }
    for (w, runs) in micro {
        let mut vals: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let mut cpus: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        out.push(Sample {
            round,
            config,
            row: w.to_string(),
            value: median(&mut vals),
            tool_cpu_s: (!cpus.is_empty()).then(|| median(&mut cpus)),
            tool_hwm_kib: runs.iter().filter_map(|r| r.2).max(),
        });
    }
    for w in workloads.iter().copied().filter(|w| !is_micro(w)) {
        if w == "stress-ng" {
            // One stressor at a time: run together they contend with each other far more
            // than with any agent (the open stressor slowed fivefold next to exec).
            for (key, stressor, ops) in [
                ("stress-open", "open", ctx.sizes.stress_open),
                ("stress-sock", "sock", ctx.sizes.stress_sock),
                ("stress-exec", "exec", ctx.sizes.stress_exec),
            ] {
                let before = tool.cpu_ticks();
                let value = stress_ng(ctx, stressor, ops)?;
                out.push(Sample {
                    round,
                    config,
                    row: key.into(),
                    value,
                    tool_cpu_s: tool.cpu_since(before, ctx.clk_tck),
                    tool_hwm_kib: tool.hwm_kib(),
                });
            }
            continue;
        }
        let before = tool.cpu_ticks();
        let value = match w {
            "redis" => redis(ctx)?,
            "make" => make(ctx)?,
            "wrk" => wrk(ctx)?,
            other => bail!("no runner for workload {other}"),
        };
        out.push(Sample {
            round,
            config,
            row: w.into(),
            value,
            tool_cpu_s: tool.cpu_since(before, ctx.clk_tck),
            tool_hwm_kib: tool.hwm_kib(),
        });
    }
    for s in &out {
        eprintln!("overhead:   {:<12} {:>14.1}", s.row, s.value);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct WorkloadReport {
    ns_per_op: f64,
}

fn micro_run(ctx: &Ctx, w: &str) -> Result<f64> {
    let s = &ctx.sizes;
    let mut c = niced(&ctx.workload);
    c.args(["--cpu", WORKLOAD_CPU]);
    match w {
        "getppid" => c.args([
            "--warmup",
            "10000",
            "getppid",
            "--ops",
            &s.getppid.to_string(),
        ]),
        "open" => c
            .args([
                "--warmup",
                "1000",
                "open",
                "--ops",
                &s.open.to_string(),
                "--path",
            ])
            .arg(&ctx.benign),
        "cred-open" => c
            .args([
                "--warmup",
                "100",
                "open",
                "--ops",
                &s.cred_open.to_string(),
                "--path",
            ])
            .arg(&ctx.cred),
        "connect" => c.args(["--warmup", "50", "connect", "--ops", &s.connect.to_string()]),
        "exec" => c.args(["--warmup", "5", "exec", "--ops", &s.exec.to_string()]),
        other => bail!("not a micro workload: {other}"),
    };
    let out = output(&mut c)?;
    let r: WorkloadReport = serde_json::from_str(out.trim())
        .with_context(|| format!("workload {w}: unexpected output {out:?}"))?;
    Ok(r.ns_per_op)
}

/// `program` run through `nice -n NICE` (the pid is `program`'s: nice execs it).
fn niced(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nice");
    c.args(["-n", NICE]).arg(program);
    c
}

/// A server process of a macro workload, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        signal(self.0.id(), libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let t = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("{what} exited before listening: {st}");
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not listen on 127.0.0.1:{port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// redis-benchmark SET and GET against a fresh loopback redis-server (started in the phase, so
/// its process is born under the phase's tool); combined requests per second.
fn redis(ctx: &Ctx) -> Result<f64> {
    let port = free_port()?;
    let dir = ctx.work.join("redis");
    fs::create_dir_all(&dir)?;
    let child = niced("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let mut server = Server(child);
    wait_port(port, &mut server.0, "redis-server")?;
    let out = output(niced("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-n",
        &ctx.sizes.redis_requests.to_string(),
        "-c",
        "50",
        "-t",
        "set,get",
        "--csv",
    ]))?;
    drop(server);
    parse_redis_csv(&out)
}

/// Combined throughput of redis-benchmark's `--csv` tests (each test runs the same number of
/// requests): the harmonic mean of their rates.
pub fn parse_redis_csv(out: &str) -> Result<f64> {
    let mut inv = 0.0;
    let mut n = 0;
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        if fields.first() == Some(&"test") {
            continue;
        }
        let rps: f64 = fields
            .get(1)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("redis-benchmark: unexpected line {line:?}"))?;
        if rps <= 0.0 {
            bail!("redis-benchmark: rate {rps} in {line:?}");
        }
        inv += 1.0 / rps;
        n += 1;
    }
    if n == 0 {
        bail!("redis-benchmark printed no results: {out:?}");
    }
    Ok(n as f64 / inv)
}

/// A deterministic C tree: `files` modules of arithmetic, string and table code that include
/// libc headers and a shared header, a `main.c`, and a Makefile. Generated rather than fetched:
/// it needs no source repositories, is byte-identical on every machine, and its size is a knob.
pub fn write_c_tree(dir: &Path, files: usize) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("src"))?;
    fs::create_dir_all(dir.join("include"))?;
    fs::write(
        dir.join("include/common.h"),
        "#ifndef COMMON_H\n#define COMMON_H\n#include <stddef.h>\n#include <stdint.h>\n\
         struct item { uint64_t key; double weight; char name[32]; };\n\
         uint64_t mix(uint64_t x);\n#endif\n",
    )?;
    let mut main = String::from(
        "#include <stdio.h>\n#include \"common.h\"\n\
         uint64_t mix(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; return x ^ (x >> 33); }\n",
    );
    for i in 0..files {
        main.push_str(&format!("uint64_t module_{i}(uint64_t);\n"));
    }
    main.push_str("int main(void) {\n  uint64_t acc = 1;\n");
    for i in 0..files {
        main.push_str(&format!("  acc = module_{i}(acc);\n"));
    }
    main.push_str("  printf(\"%llu\\n\", (unsigned long long)acc);\n  return 0;\n}\n");
    fs::write(dir.join("src/main.c"), main)?;
    for i in 0..files {
        let mut s = format!(
            "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n\
             #include \"common.h\"\n\nstatic struct item table_{i}[64];\n\n"
        );
        for f in 0..12 {
            s.push_str(&format!(
                "static uint64_t f{i}_{f}(uint64_t x) {{\n\
                 \x20 uint64_t acc = x + {f};\n\
                 \x20 for (int k = 0; k < 64; k++) {{\n\
                 \x20   struct item *it = &table_{i}[(k * {m}) & 63];\n\
                 \x20   switch ((acc + k) % 5) {{\n\
                 \x20   case 0: acc += mix(it->key ^ k); break;\n\
                 \x20   case 1: acc ^= (uint64_t)(sqrt(it->weight + k) * 1000.0); break;\n\
                 \x20   case 2: snprintf(it->name, sizeof it->name, \"m{i}f{f}-%d\", k); acc += strlen(it->name); break;\n\
                 \x20   case 3: it->weight = it->weight * 0.5 + (double)(acc & 0xff); break;\n\
                 \x20   default: it->key = mix(acc + {f}); acc ^= it->key >> {r};\n\
                 \x20   }}\n\
                 \x20 }}\n\
                 \x20 return acc;\n}}\n\n",
                m = 2 * f + 1,
                r = 1 + (i + f) % 31,
            ));
        }
        s.push_str(&format!(
            "static int cmp_{i}(const void *a, const void *b) {{\n\
             \x20 const struct item *x = a, *y = b;\n\
             \x20 return x->key < y->key ? -1 : x->key > y->key;\n}}\n\n\
             uint64_t module_{i}(uint64_t x) {{\n"
        ));
        for f in 0..12 {
            s.push_str(&format!("  x = f{i}_{f}(x);\n"));
        }
        s.push_str(&format!(
            "  qsort(table_{i}, 64, sizeof table_{i}[0], cmp_{i});\n  return x;\n}}\n"
        ));
        fs::write(dir.join(format!("src/mod_{i:03}.c")), s)?;
    }
    fs::write(
        dir.join("Makefile"),
        "CC = gcc\nCFLAGS = -O2 -Iinclude\nSRCS = $(sort $(wildcard src/*.c))\n\
         OBJS = $(SRCS:src/%.c=obj/%.o)\n\n\
         prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS) -lm\n\n\
         obj/%.o: src/%.c include/common.h | obj\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n\
         obj:\n\tmkdir -p obj\n\n\
         clean:\n\trm -rf obj prog\n\n.PHONY: clean\n",
    )?;
    Ok(())
}

/// `make -j2` of the generated tree from clean; wall seconds.
fn make(ctx: &Ctx) -> Result<f64> {
    output(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&ctx.ctree)
            .arg("clean"),
    )?;
    let t = Instant::now();
    output(niced("make").args(["-s", "-j2", "-C"]).arg(&ctx.ctree))?;
    let secs = t.elapsed().as_secs_f64();
    if !ctx.ctree.join("prog").exists() {
        bail!("make -j2 built no program in {}", ctx.ctree.display());
    }
    Ok(secs)
}

#[derive(Deserialize)]
struct StressYaml {
    metrics: Vec<StressMetric>,
}

#[derive(Deserialize)]
struct StressMetric {
    stressor: String,
    #[serde(rename = "bogo-ops-per-second-real-time")]
    rate: f64,
}

/// Bogo ops per second (real time) of one stressor from stress-ng's `-Y` YAML report.
pub fn parse_stress_yaml(text: &str, stressor: &str) -> Result<f64> {
    let y: StressYaml = serde_norway::from_str(text).context("stress-ng YAML report")?;
    y.metrics
        .iter()
        .find(|m| m.stressor == stressor)
        .map(|m| m.rate)
        .with_context(|| format!("stress-ng report has no `{stressor}` metrics"))
}

/// One stressor with a fixed operation count, as `nobody` (the exec stressor refuses root).
fn stress_ng(ctx: &Ctx, stressor: &str, ops: u64) -> Result<f64> {
    let dir = ctx.work.join("stress-ng");
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
    // The open stressor's temporary files on tmpfs: on the ext4 root their creation waits on
    // journal commits, and the stressor's own speed varied 14× between runs with no agent at
    // all (2,286–34,217 ops/s in one benchmark); on /dev/shm it varies by ±6 %.
    let temp = match stressor {
        "open" if Path::new("/dev/shm").is_dir() => {
            let t = PathBuf::from(format!("/dev/shm/overhead-stress-{}", std::process::id()));
            fs::create_dir_all(&t)?;
            fs::set_permissions(&t, fs::Permissions::from_mode(0o777))?;
            t
        }
        _ => dir.clone(),
    };
    let report = dir.join("report.yaml");
    let _ = fs::remove_file(&report);
    let mut c = niced("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "stress-ng",
    ])
    .arg("--temp-path")
    .arg(&temp)
    .args([
        &format!("--{stressor}"),
        "1",
        &format!("--{stressor}-ops"),
        &ops.to_string(),
    ])
    .args(["--timeout", "600s", "--metrics-brief", "-Y"])
    .arg(&report)
    .current_dir(&dir);
    match stressor {
        "sock" => {
            c.args(["--sock-port", &free_port()?.to_string()]);
        }
        // Fewer children per round than the default 4,096, so the op count bounds the time.
        "exec" => {
            c.args(["--exec-max", "16"]);
        }
        _ => {}
    }
    let out = output(&mut c);
    if temp != dir {
        let _ = fs::remove_dir_all(&temp);
    }
    out?;
    parse_stress_yaml(&fs::read_to_string(&report)?, stressor)
}

/// wrk against a fresh nginx (one worker, static 4 KiB page, access log on), keep-alive;
/// requests per second.
fn wrk(ctx: &Ctx) -> Result<f64> {
    let dir = ctx.work.join("nginx");
    fs::create_dir_all(dir.join("html"))?;
    fs::create_dir_all(dir.join("tmp"))?;
    fs::write(dir.join("html/index.html"), "<p>bench</p>\n".repeat(300))?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n\
             \x20 server {{ listen 127.0.0.1:{port}; root {d}/html; }}\n}}\n",
            d = dir.display()
        ),
    )?;
    let child = niced("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let mut server = Server(child);
    wait_port(port, &mut server.0, "nginx")?;
    let out = output(niced("wrk").args([
        "-t1",
        "-c16",
        &format!("-d{}s", ctx.sizes.wrk_seconds),
        &format!("http://127.0.0.1:{port}/index.html"),
    ]))?;
    drop(server);
    parse_wrk(&out)
}

/// `Requests/sec:` of wrk's report; fails when wrk saw errors (non-2xx or socket errors).
pub fn parse_wrk(out: &str) -> Result<f64> {
    if let Some(l) = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk reported errors: {}", l.trim());
    }
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk: no Requests/sec in {out:?}"))
}

/// Sends a signal to a process we started.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid of our own child.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// utime+stime (clock ticks) of a process, all its threads, live and exited.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&s)
}

/// utime + stime from the text of `/proc/<pid>/stat` (fields 14 and 15; the command name in
/// parentheses may itself contain spaces and parentheses, so count from the last `)`).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// VmHWM (peak RSS, KiB) of a process.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn pid_of_kthread(name: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// Leaves the kernel's audit state quiet: no rules but `-a task,never`, auditing disabled.
///
/// Why not an empty rule set: once audit has ever been enabled, every task forked afterwards
/// gets an audit context and takes the syscall slow path on every syscall, rules or not — the
/// baseline of this run (and every later benchmark on the machine) would pay auditd's entry
/// tax. The `task,never` rule makes new tasks skip auditing entirely.
pub fn audit_quiesce() {
    for args in [&["-D"][..], &["-a", "task,never"], &["-e", "0"]] {
        let r = Command::new("auditctl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(r, Ok(s) if s.success()) {
            eprintln!("overhead: warning: auditctl {args:?} failed");
        }
    }
}

/// Puts the audit state back when the run ends (also on error or panic).
struct AuditRestore;

impl Drop for AuditRestore {
    fn drop(&mut self) {
        audit_quiesce();
    }
}

/// `auditctl -s` as key → value.
fn audit_status() -> Result<BTreeMap<String, String>> {
    let s = output(Command::new("auditctl").arg("-s"))?;
    Ok(s.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The audit rules of the auditd configuration: connect and execve/execveat for both ABIs,
/// and a read/write/attribute watch on each file of the watch list that exists now (auditd
/// has no globs: each pattern is expanded over `homes`), plus `extra` files.
pub fn audit_rules(watch_list: &str, homes: &[PathBuf], extra: &[&Path]) -> Result<String> {
    let mut r = format!(
        "-D\n-b 8192\n--backlog_wait_time 60000\n-f 1\n\
         -a always,exit -F arch=b64 -S connect -k {AUDIT_KEY}_net\n\
         -a always,exit -F arch=b32 -S connect -k {AUDIT_KEY}_net\n\
         -a always,exit -F arch=b64 -S execve -S execveat -k {AUDIT_KEY}_exec\n\
         -a always,exit -F arch=b32 -S execve -S execveat -k {AUDIT_KEY}_exec\n"
    );
    let mut files = std::collections::BTreeSet::new();
    for line in watch_list.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(pattern) = line.split_whitespace().next() else {
            continue;
        };
        let expanded: Vec<String> = match pattern.strip_prefix("~/") {
            Some(rest) => homes
                .iter()
                .map(|h| h.join(rest).display().to_string())
                .collect(),
            None => vec![pattern.to_string()],
        };
        for p in expanded {
            for m in glob::glob(&p).with_context(|| format!("watch pattern {p}"))? {
                let m = m?;
                if m.is_file() {
                    files.insert(m);
                }
            }
        }
    }
    files.extend(extra.iter().map(|p| p.to_path_buf()));
    for f in files {
        r.push_str(&format!("-w {} -p rwa -k {AUDIT_KEY}_cred\n", f.display()));
    }
    Ok(r)
}

/// `/root` and every home directory in /etc/passwd that exists (as the agent expands `~`).
fn homes() -> Vec<PathBuf> {
    let mut h = vec![PathBuf::from("/root")];
    if let Ok(p) = fs::read_to_string("/etc/passwd") {
        for l in p.lines() {
            if let Some(home) = l.split(':').nth(5) {
                let home = PathBuf::from(home);
                if home != Path::new("/") && home.is_dir() && !h.contains(&home) {
                    h.push(home);
                }
            }
        }
    }
    h
}

/// The bpftrace script: the tracepoints the agent uses, every event printed.
const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_exit_openat,
tracepoint:syscalls:sys_exit_openat2,
tracepoint:syscalls:sys_exit_open,
tracepoint:syscalls:sys_exit_open_by_handle_at
{ printf("open %d %d %s %d\n", pid, tid, comm, args->ret); }
tracepoint:sock:inet_sock_set_state
{ printf("sock %d %s %d>%d %d %d\n", pid, comm, args->oldstate, args->newstate, args->sport, args->dport); }
tracepoint:sched:sched_process_exec
{ printf("exec %d %s %s\n", pid, comm, str(args->filename)); }
tracepoint:sched:sched_process_fork
{ printf("fork %d %d %s\n", args->parent_pid, args->child_pid, comm); }
tracepoint:sched:sched_process_exit
{ printf("exit %d %s\n", pid, comm); }
BEGIN { printf("READY\n"); }
"#;

/// A running tool of one configuration (nothing for `none`).
struct Tool {
    config: Config,
    child: Option<Child>,
    /// Processes whose CPU time is the tool's (auditd adds kauditd).
    pids: Vec<u32>,
    /// kauditd's affinity before the phase, restored after it.
    kauditd_mask: Option<(u32, String)>,
    /// kauditd's nice value before the phase, restored after it.
    kauditd_nice: Option<(u32, String)>,
    log: PathBuf,
    /// Detector's alert file or bpftrace's output.
    events: PathBuf,
    audit_lost_before: u64,
}

fn wait_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let t = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        let tail = || {
            fs::read_to_string(log)
                .map(|s| s.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        };
        if let Ok(Some(st)) = child.try_wait() {
            bail!(
                "{what} exited before it was ready ({st}); its log:\n{}",
                tail()
            );
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("{what} not ready after 120 s; its log:\n{}", tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Tool {
    fn start(config: Config, ctx: &Ctx) -> Result<Tool> {
        // Each tool's files in a directory of their own: the detector's file sink makes its
        // directory 0700, which nginx's workers and stress-ng (nobody) could not traverse.
        let tdir = ctx.work.join(config.name());
        fs::create_dir_all(&tdir)?;
        let log = tdir.join("log");
        let events = tdir.join("events");
        let _ = fs::remove_file(&events);
        let mut tool = Tool {
            config,
            child: None,
            pids: Vec::new(),
            kauditd_mask: None,
            kauditd_nice: None,
            log: log.clone(),
            events: events.clone(),
            audit_lost_before: 0,
        };
        let spawn = |cmd: &mut Command| -> Result<Child> {
            let f = fs::File::create(&log)?;
            cmd.stdin(Stdio::null())
                .stderr(f.try_clone()?)
                .spawn()
                .with_context(|| format!("starting {cmd:?}"))
        };
        match config {
            Config::None => {}
            Config::Detector | Config::DetectorReads => {
                let state = tdir.join("state");
                fs::create_dir_all(&state)?;
                let cfg = tdir.join("detector.yaml");
                fs::write(
                    &cfg,
                    format!(
                        "run:\n  state_dir: {}\n  shutdown_timeout: 5s\n\
                         sinks:\n  - file:\n      name: bench\n      path: {}\n      format: native\n",
                        state.display(),
                        events.display()
                    ),
                )?;
                let addr = format!("127.0.0.1:{}", free_port()?);
                let mut c = niced("taskset");
                c.args(["-c", TOOL_CPU])
                    .arg(&ctx.detector)
                    .args(["run", "--config"])
                    .arg(&cfg)
                    .args(["--metrics-addr", &addr, "--watch"])
                    .arg(format!("{}=ssh_key", ctx.cred.display()))
                    .args(if config == Config::DetectorReads {
                        &["--hooks", "process,net,reads"][..]
                    } else {
                        &[]
                    })
                    .args(&ctx.agent_args)
                    .env("NO_COLOR", "1")
                    .stdout(fs::File::create(tdir.join("stdout"))?);
                let mut child = spawn(&mut c)?;
                tool.pids.push(child.id());
                let detector = ctx.detector.clone();
                let r = wait_ready("detector run", &mut child, &log, || {
                    Command::new(&detector)
                        .args(["status", "--metrics-addr", &addr])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false)
                });
                tool.child = Some(child);
                r?;
            }
            Config::Auditd => {
                let dir = tdir.clone();
                let conf = dir.join("auditd.conf");
                fs::write(
                    &conf,
                    format!(
                        "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = ENRICHED\n\
                         flush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 512\nnum_logs = 2\n\
                         max_log_file_action = ROTATE\npriority_boost = 4\nname_format = NONE\n\
                         space_left = 75\nspace_left_action = IGNORE\nadmin_space_left = 50\n\
                         admin_space_left_action = IGNORE\ndisk_full_action = IGNORE\n\
                         disk_error_action = IGNORE\nq_depth = 2000\noverflow_action = SYSLOG\n\
                         plugin_dir = /etc/audit/plugins.d\nend_of_event_timeout = 2\n",
                        events.display()
                    ),
                )?;
                fs::set_permissions(&conf, fs::Permissions::from_mode(0o640))?;
                let rules = dir.join("bench.rules");
                fs::write(
                    &rules,
                    audit_rules(DEFAULT_WATCH_LIST, &homes(), &[&ctx.cred])?,
                )?;
                let mut c = niced("taskset");
                c.args(["-c", TOOL_CPU, "auditd", "-n", "-s", "enable", "-c"])
                    .arg(&dir)
                    .stdout(Stdio::null());
                let mut child = spawn(&mut c)?;
                let pid = child.id().to_string();
                tool.pids.push(child.id());
                let r = wait_ready("auditd", &mut child, &log, || {
                    audit_status()
                        .map(|s| {
                            s.get("pid") == Some(&pid)
                                && s.get("enabled").map(String::as_str) == Some("1")
                        })
                        .unwrap_or(false)
                });
                tool.child = Some(child);
                r?;
                status(
                    Command::new("auditctl")
                        .arg("-R")
                        .arg(&rules)
                        .stdout(Stdio::null()),
                )?;
                let st = audit_status()?;
                tool.audit_lost_before = st.get("lost").and_then(|v| v.parse().ok()).unwrap_or(0);
                if let Some(k) = pid_of_kthread("kauditd") {
                    tool.pids.push(k);
                    let mask = output(Command::new("taskset").args(["-p", &k.to_string()]))
                        .ok()
                        .and_then(|s| s.rsplit(':').next().map(|m| m.trim().to_string()));
                    let pinned = Command::new("taskset")
                        .args(["-pc", TOOL_CPU, &k.to_string()])
                        .stdout(Stdio::null())
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false);
                    if pinned {
                        tool.kauditd_mask = mask.map(|m| (k, m));
                    } else {
                        eprintln!("overhead: kauditd ({k}) could not be pinned; it floats");
                    }
                    // The kernel side of auditd gets the priority its daemon has.
                    let nice = output(Command::new("ps").args(["-o", "ni=", "-p", &k.to_string()]))
                        .map(|s| s.trim().to_string());
                    if let Ok(nice) = nice {
                        if Command::new("renice")
                            .args(["-n", NICE, "-p", &k.to_string()])
                            .stdout(Stdio::null())
                            .status()
                            .map(|s| s.success())
                            .unwrap_or(false)
                        {
                            tool.kauditd_nice = Some((k, nice));
                        }
                    }
                }
            }
            Config::Floor => {
                let mut c = niced("taskset");
                c.args(["-c", TOOL_CPU])
                    .arg(&ctx.kbench)
                    .arg("hold-floor")
                    .stdout(fs::File::create(&events)?);
                let mut child = spawn(&mut c)?;
                tool.pids.push(child.id());
                let ev = events.clone();
                let r = wait_ready("kbench hold-floor", &mut child, &log, || {
                    fs::read_to_string(&ev)
                        .map(|s| s.lines().any(|l| l == "READY"))
                        .unwrap_or(false)
                });
                tool.child = Some(child);
                r?;
            }
            Config::Bpftrace => {
                let script = tdir.join("bench.bt");
                fs::write(&script, BPFTRACE_SCRIPT)?;
                let mut c = niced("taskset");
                c.args(["-c", TOOL_CPU, "bpftrace"])
                    .arg(&script)
                    .stdout(fs::File::create(&events)?);
                let mut child = spawn(&mut c)?;
                tool.pids.push(child.id());
                let ev = events.clone();
                let r = wait_ready("bpftrace", &mut child, &log, || {
                    fs::read_to_string(&ev)
                        .map(|s| s.lines().any(|l| l == "READY"))
                        .unwrap_or(false)
                });
                tool.child = Some(child);
                r?;
            }
        }
        Ok(tool)
    }

    fn cpu_ticks(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|p| cpu_ticks(*p)).sum()
    }

    fn cpu_since(&self, before: Option<u64>, clk_tck: f64) -> Option<f64> {
        Some(self.cpu_ticks()?.saturating_sub(before?) as f64 / clk_tck)
    }

    fn hwm_kib(&self) -> Option<u64> {
        hwm_kib(*self.pids.first()?)
    }

    /// Stops the tool; returns what it reported (alerts, events, losses).
    fn stop(&mut self) -> Result<String> {
        let mut note = String::new();
        if self.config == Config::Auditd {
            let lost = audit_status()
                .ok()
                .and_then(|s| s.get("lost").and_then(|v| v.parse::<u64>().ok()))
                .unwrap_or(0);
            audit_quiesce();
            note = format!(
                "{} audit records lost",
                lost.saturating_sub(self.audit_lost_before)
            );
            if let Some((k, mask)) = self.kauditd_mask.take() {
                let _ = Command::new("taskset")
                    .args(["-p", &mask, &k.to_string()])
                    .stdout(Stdio::null())
                    .status();
            }
            if let Some((k, nice)) = self.kauditd_nice.take() {
                let _ = Command::new("renice")
                    .args(["-n", &nice, "-p", &k.to_string()])
                    .stdout(Stdio::null())
                    .status();
            }
        }
        let Some(mut child) = self.child.take() else {
            return Ok(note);
        };
        // bpftrace detaches and flushes on SIGINT; detector and auditd stop on SIGTERM.
        let sig = if self.config == Config::Bpftrace {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        signal(child.id(), sig);
        let t = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait()? {
                break Some(st);
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = fs::read_to_string(&self.events)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        match self.config {
            Config::Detector | Config::DetectorReads => {
                // Its closing log line: `stopped records=N lost=N`.
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                let field = |k: &str| {
                    log.lines()
                        .rev()
                        .find(|l| l.contains(" stopped "))
                        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(k)))
                        .unwrap_or("?")
                        .to_string()
                };
                note = format!(
                    "{lines} alerts, {} records consumed, {} lost",
                    field("records="),
                    field("lost=")
                );
            }
            Config::Bpftrace => {
                let lost: u64 = fs::read_to_string(&self.events)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.strip_prefix("Lost "))
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .sum();
                note = format!("{lines} lines printed, {lost} events lost");
            }
            Config::Auditd => note = format!("{note}, {lines} log lines"),
            Config::None | Config::Floor => {}
        }
        match st {
            Some(st)
                if !st.success()
                    && matches!(self.config, Config::Detector | Config::DetectorReads) =>
            {
                bail!("detector run exited {st}; log {}", self.log.display())
            }
            None => note.push_str(", had to be killed"),
            _ => {}
        }
        let _ = fs::remove_file(&self.events);
        Ok(note)
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if self.child.is_some() || self.kauditd_mask.is_some() || self.kauditd_nice.is_some() {
            let _ = self.stop();
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Statistics of one row under one configuration.
#[derive(Debug, Clone, Default)]
pub struct Stat {
    /// Median of the per-round values.
    pub median: f64,
    /// Smallest per-round value.
    pub min: f64,
    /// Largest per-round value.
    pub max: f64,
    /// Ratio against `none` in the same round (1.00 = no cost, < 1 slower): median, min, max.
    pub ratio: Option<(f64, f64, f64)>,
    /// Median CPU seconds of the tool per workload run.
    pub cpu_s: Option<f64>,
    /// Largest VmHWM (KiB) seen.
    pub hwm_kib: Option<u64>,
}

/// Per (row key, configuration) statistics. Ratios pair each round with the same round's
/// `none` value, so slow drift of the machine cancels.
pub fn summarize(
    rows: &[Row],
    configs: &[Config],
    samples: &[Sample],
) -> BTreeMap<(String, Config), Stat> {
    let mut out = BTreeMap::new();
    for row in rows {
        let of = |c: Config| -> BTreeMap<usize, &Sample> {
            samples
                .iter()
                .filter(|s| s.row == row.key && s.config == c)
                .map(|s| (s.round, s))
                .collect()
        };
        let base = of(Config::None);
        for &c in configs {
            let mine = of(c);
            if mine.is_empty() {
                continue;
            }
            let mut vals: Vec<f64> = mine.values().map(|s| s.value).collect();
            let mut ratios: Vec<f64> = mine
                .iter()
                .filter_map(|(r, s)| {
                    let b = base.get(r)?.value;
                    Some(if row.higher_better {
                        s.value / b
                    } else {
                        b / s.value
                    })
                })
                .collect();
            let mut cpus: Vec<f64> = mine.values().filter_map(|s| s.tool_cpu_s).collect();
            let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let ratio = (!ratios.is_empty()).then(|| {
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (median(&mut ratios), lo, hi)
            });
            out.insert(
                (row.key.to_string(), c),
                Stat {
                    median: median(&mut vals),
                    min,
                    max,
                    ratio,
                    cpu_s: (!cpus.is_empty()).then(|| median(&mut cpus)),
                    hwm_kib: mine.values().filter_map(|s| s.tool_hwm_kib).max(),
                },
            );
        }
    }
    out
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    // Thousands separators for the integer part.
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{grouped}.{f}"),
        None => grouped,
    }
}

/// "auditd's overhead ÷ detector's overhead", overhead = the time a tool adds per unit of
/// work, relative to the base: 1/ratio − 1 (a ratio of 0.5 is +100 %, 0.8 is +25 %). The
/// complement 1 − ratio (what the first version used) saturates at 1 for a tool that slows
/// work down many times over, which understates a slow tool's cost.
///
/// A ratio clearly above 1 is noise (a tool only adds work): no factor is derived from it.
fn overhead_factor(ours: f64, theirs: f64) -> String {
    let added = |r: f64| {
        if r > 0.0 {
            1.0 / r - 1.0
        } else {
            f64::INFINITY
        }
    };
    let (o, t) = (added(ours), added(theirs));
    if ours > 1.02 || theirs > 1.02 {
        "n/a (a ratio > 1: noise)".into()
    } else if o <= 0.005 {
        if t <= 0.005 {
            "both ≈ 0".into()
        } else {
            "∞ (ours ≈ 0)".into()
        }
    } else {
        format!("{:.1}×", t / o)
    }
}

/// The report: a summary of ratios, then a table per workload.
fn render_markdown(
    header: &str,
    sizes: &Sizes,
    rows: &[Row],
    configs: &[Config],
    stats: &BTreeMap<(String, Config), Stat>,
    notes: &[String],
) -> String {
    let mut md = String::new();
    md.push_str(header);
    md.push_str(&format!(
        "\nSizes: `{}`\n\nRatio = throughput under the tool ÷ throughput with no agent in the same \
         round (1.00 = no cost); median over rounds, min–max in brackets.\n\n",
        serde_json::to_string(sizes).unwrap_or_default()
    ));
    let others: Vec<Config> = configs
        .iter()
        .copied()
        .filter(|c| *c != Config::None)
        .collect();
    md.push_str("| workload |");
    for c in &others {
        md.push_str(&format!(" {} |", c.name()));
    }
    // One "auditd ÷ ours" column per detector configuration run beside auditd.
    let ours: Vec<Config> = if others.contains(&Config::Auditd) {
        others
            .iter()
            .copied()
            .filter(|c| matches!(c, Config::Detector | Config::DetectorReads))
            .collect()
    } else {
        Vec::new()
    };
    for c in &ours {
        md.push_str(&format!(
            " auditd overhead ÷ {} overhead (added time) |",
            c.name()
        ));
    }
    md.push_str("\n|---|");
    for _ in others.iter().chain(ours.iter()) {
        md.push_str("---|");
    }
    md.push('\n');
    for row in rows {
        md.push_str(&format!("| {} |", row.title));
        for c in &others {
            match stats.get(&(row.key.to_string(), *c)).and_then(|s| s.ratio) {
                Some((m, lo, hi)) => md.push_str(&format!(" **{m:.3}** ({lo:.3}–{hi:.3}) |")),
                None => md.push_str(" – |"),
            }
        }
        let get = |c| {
            stats
                .get(&(row.key.to_string(), c))
                .and_then(|s: &Stat| s.ratio)
        };
        for c in &ours {
            match (get(*c), get(Config::Auditd)) {
                (Some(d), Some(a)) => md.push_str(&format!(" {} |", overhead_factor(d.0, a.0))),
                _ => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    for row in rows {
        md.push_str(&format!(
            "\n#### {} ({}, {} is better)\n\n| configuration | {} median | min–max | ratio vs none | \
             ratio min–max | tool CPU s per run | tool peak RSS MiB |\n|---|---|---|---|---|---|---|\n",
            row.title,
            row.unit,
            if row.higher_better { "higher" } else { "lower" },
            row.unit
        ));
        for c in configs {
            let Some(s) = stats.get(&(row.key.to_string(), *c)) else {
                continue;
            };
            let (r, rr) = match s.ratio {
                Some((m, lo, hi)) if *c != Config::None => {
                    (format!("{m:.3}"), format!("{lo:.3}–{hi:.3}"))
                }
                _ => ("1.000".into(), "–".into()),
            };
            md.push_str(&format!(
                "| {} | {} | {}–{} | {} | {} | {} | {} |\n",
                c.name(),
                fmt_num(s.median),
                fmt_num(s.min),
                fmt_num(s.max),
                r,
                rr,
                s.cpu_s.map_or("–".into(), |v| format!("{v:.2}")),
                s.hwm_kib
                    .map_or("–".into(), |v| format!("{:.1}", v as f64 / 1024.0)),
            ));
        }
    }
    if !notes.is_empty() {
        md.push_str("\nPer phase:\n\n");
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--plot-only BENCHMARKS.md` reads the six-configuration run's table, the one the
    /// README's plot shows.
    #[test]
    fn the_ratio_table_of_benchmarks_md_parses() {
        let text = std::fs::read_to_string(crate::workspace_root().join("BENCHMARKS.md"))
            .expect("BENCHMARKS.md");
        let (rows, stats) = ratio_table(&text).expect("a ratio table");
        assert_eq!(rows.len(), ROWS.len(), "every workload has a row");
        let get = |row: &str, c: Config| stats[&(row.to_string(), c)].ratio;
        assert_eq!(
            get("getppid", Config::Detector),
            Some((0.769, 0.763, 0.857))
        );
        assert_eq!(
            get("stress-open", Config::Floor),
            Some((1.263, 0.098, 1.655))
        );
        assert_eq!(get("wrk", Config::Bpftrace), Some((0.383, 0.347, 0.398)));
        assert_eq!(ratio_cell("n/a (noise)").expect("cell"), None);
        assert!(ratio_cell("fast").is_err());
        assert!(ratio_table("| workload | unit |\n|---|---|\n| x | y |\n").is_err());
        let omit = omitted(&["stress-open".to_string()]).expect("a row key");
        assert_eq!(plotted(&rows, &omit).len(), ROWS.len() - 1);
        assert!(omitted(&["nope".to_string()]).is_err());
    }

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(290));
        assert_eq!(parse_stat_ticks("1 (x) S 1"), None);
        // Our own process has a readable, parseable stat.
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(hwm_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn tool_reports_parse() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"100000.00\",\"0.3\"\n\"GET\",\"50000.00\",\"0.2\"\n";
        let r = parse_redis_csv(csv).expect("csv");
        assert!((r - 66_666.67).abs() < 0.1, "{r}");
        assert!(parse_redis_csv("\"test\",\"rps\"\n").is_err());
        assert!(parse_redis_csv("ERROR: connection refused\n").is_err());

        let wrk = "Running 3s test @ http://127.0.0.1:1/index.html\n  1 threads and 16 connections\n\
                   \x20 4000 requests in 3.00s, 20.00MB read\nRequests/sec:   1333.33\nTransfer/sec:      6.67MB\n";
        assert!((parse_wrk(wrk).expect("wrk") - 1333.33).abs() < 1e-6);
        assert!(parse_wrk(
            &wrk.replace("Requests/sec", "Non-2xx or 3xx responses: 5\nRequests/sec")
        )
        .is_err());

        let yaml = "---\nsystem-info:\n  cpus: 2\nmetrics:\n    - stressor: open\n      bogo-ops: 500\n      \
                    bogo-ops-per-second-real-time: 957.9\n      wall-clock-time: 0.5\n...\n";
        assert!((parse_stress_yaml(yaml, "open").expect("yaml") - 957.9).abs() < 1e-9);
        assert!(parse_stress_yaml(yaml, "exec").is_err());
    }

    #[test]
    fn audit_rules_cover_connect_exec_and_existing_credential_files() {
        let root = std::env::temp_dir().join(format!("overhead-rules-{}", std::process::id()));
        let home = root.join("alice");
        fs::create_dir_all(home.join(".ssh")).expect("dirs");
        fs::write(home.join(".ssh/id_ed25519"), "k").expect("key");
        fs::write(home.join(".ssh/known_hosts"), "h").expect("not watched");
        let extra = root.join("extra");
        let r =
            audit_rules(DEFAULT_WATCH_LIST, std::slice::from_ref(&home), &[&extra]).expect("rules");
        for needle in [
            "-a always,exit -F arch=b64 -S connect",
            "-a always,exit -F arch=b32 -S connect",
            "-a always,exit -F arch=b64 -S execve -S execveat",
            &format!("-w {} -p rwa", home.join(".ssh/id_ed25519").display()),
            &format!("-w {} -p rwa", extra.display()),
        ] {
            assert!(r.contains(needle), "missing {needle:?} in\n{r}");
        }
        assert!(!r.contains("known_hosts"), "{r}");
        // /etc/shadow exists on every Debian system and is on the default list.
        assert!(r.contains("-w /etc/shadow -p rwa"), "{r}");
        let _ = fs::remove_dir_all(&root);
    }

    fn sample(round: usize, config: Config, row: &str, value: f64) -> Sample {
        Sample {
            round,
            config,
            row: row.into(),
            value,
            tool_cpu_s: Some(0.5),
            tool_hwm_kib: Some(2048),
        }
    }

    #[test]
    fn ratios_pair_rounds_and_respect_direction() {
        let rows = [ROWS[0], ROWS[5]]; // getppid (ns/op, lower better), redis (req/s)
        let samples = vec![
            sample(0, Config::None, "getppid", 100.0),
            sample(0, Config::Detector, "getppid", 125.0),
            sample(1, Config::None, "getppid", 200.0),
            sample(1, Config::Detector, "getppid", 200.0),
            sample(2, Config::None, "getppid", 100.0),
            sample(2, Config::Detector, "getppid", 110.0),
            sample(0, Config::None, "redis", 1000.0),
            sample(0, Config::Detector, "redis", 990.0),
        ];
        let s = summarize(&rows, &[Config::None, Config::Detector], &samples);
        let g = &s[&("getppid".to_string(), Config::Detector)];
        let (m, lo, hi) = g.ratio.expect("ratio");
        assert!((m - 100.0 / 110.0).abs() < 1e-9);
        assert!((lo - 0.8).abs() < 1e-9 && (hi - 1.0).abs() < 1e-9);
        assert_eq!((g.min, g.max, g.median), (110.0, 200.0, 125.0));
        let r = s[&("redis".to_string(), Config::Detector)]
            .ratio
            .expect("ratio");
        assert!((r.0 - 0.99).abs() < 1e-9);
        let md = render_markdown(
            "h\n",
            &Sizes::new(true, None),
            &rows,
            &[Config::None, Config::Detector],
            &s,
            &[],
        );
        assert!(
            md.contains("| getppid (unrelated syscall) | **0.909** (0.800–1.000) |"),
            "{md}"
        );
        assert!(
            md.contains("| detector | 125 | 110–200 | 0.909 | 0.800–1.000 | 0.50 | 2.0 |"),
            "{md}"
        );
    }

    #[test]
    fn overhead_factor_handles_noise() {
        // +2.04 % against +25 %.
        assert_eq!(overhead_factor(0.98, 0.80), "12.2×");
        // A tool 30× slower is +2,900 %, not "at most 1".
        assert_eq!(overhead_factor(0.8, 1.0 / 30.0), "116.0×");
        assert_eq!(overhead_factor(1.01, 0.80), "∞ (ours ≈ 0)");
        assert_eq!(overhead_factor(1.3, 0.80), "n/a (a ratio > 1: noise)");
        assert_eq!(overhead_factor(0.9, 1.1), "n/a (a ratio > 1: noise)");
        assert_eq!(overhead_factor(1.0, 1.0), "both ≈ 0");
    }

    #[test]
    fn c_tree_builds() {
        let dir = std::env::temp_dir().join(format!("overhead-ctree-{}", std::process::id()));
        write_c_tree(&dir, 3).expect("tree");
        let st = Command::new("make")
            .args(["-s", "-j2", "-C"])
            .arg(&dir)
            .status()
            .expect("make");
        assert!(st.success());
        let out = Command::new(dir.join("prog")).output().expect("prog");
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
