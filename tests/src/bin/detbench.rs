//! `cargo xtask bench latency|flood`: end-to-end benchmarks of the real `detector run` binary
//! (default rules and identities, alerts to a file sink set in an agent config).
//!
//! - `latency`: N credential-reuse triggers (the default pack's
//!   `machine-speed-credential-reuse`), each in a fresh process tree; syscall → alert line
//!   latency with hdrhistogram, matched by `process.tgid`; exits 1 if any trigger got no alert.
//! - `flood`: (a) a `/dev/tcp` port sweep by bash against a host in a test network namespace
//!   (`port-sweep` must fire; losses and the agent's peak RSS and CPU reported); (b) an open
//!   storm of benign files while credential-reuse triggers run (each must fire).
//!
//! Needs root (the agent loads eBPF programs; the bench makes a network namespace).

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use tests::bench::{
    boottime_ns, match_alerts, metric_sum, metric_with, realtime_ns, AgentRun, AlertTail,
    CredReuse, Fired, ScratchDir, SeenLine, TestNet, Usage,
};

#[derive(Parser)]
#[command(about = "end-to-end latency and flood benchmarks of `detector run`")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Syscall → alert-line latency over N credential-reuse triggers.
    Latency {
        /// The `detector` binary.
        #[arg(long)]
        detector: PathBuf,
        /// Triggers to measure.
        #[arg(long, default_value_t = 10_000)]
        triggers: u32,
        /// Triggers per second (paced).
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Seconds to wait for the last alerts after the last trigger.
        #[arg(long, default_value_t = 10)]
        settle: u64,
        /// Extra argument for `detector run` (repeatable), e.g. `--agent-arg=--tolerance=0ms`.
        #[arg(long = "agent-arg", allow_hyphen_values = true)]
        agent_args: Vec<String>,
    },
    /// Port-sweep flood and open storm with a concurrent credential-reuse pattern.
    Flood {
        /// The `detector` binary.
        #[arg(long)]
        detector: PathBuf,
        /// Ports swept (1..=N).
        #[arg(long, default_value_t = 65_535)]
        ports: u32,
        /// Distinct benign files pre-created (empty) for the storm.
        #[arg(long, default_value_t = 1_000_000)]
        files: u32,
        /// Total opens in the storm (spread over the files, round robin).
        #[arg(long, default_value_t = 1_000_000)]
        opens: u64,
        /// Storm worker processes.
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// Longest each phase may run (seconds) before the bench fails.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Extra argument for `detector run` (repeatable).
        #[arg(long = "agent-arg", allow_hyphen_values = true)]
        agent_args: Vec<String>,
    },
    /// (internal) One open-storm worker: open+close `opens` times over `files` files in `dir`.
    Storm {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        files: u32,
        #[arg(long)]
        opens: u64,
    },
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn summary(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (n = {})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

fn hist() -> Result<Histogram<u64>> {
    // 1 µs .. 10 min, 3 significant digits.
    Ok(Histogram::new_with_bounds(1_000, 600_000_000_000, 3)?)
}

/// Collects alert lines until every trigger in `fired` has its `rule` alert or `wait` passes.
fn collect(
    tail: &AlertTail,
    lines: &mut Vec<SeenLine>,
    fired: &[Fired],
    rule: &str,
    wait: Duration,
) -> usize {
    let end = Instant::now() + wait;
    loop {
        lines.extend(tail.take());
        let missing = match_alerts(fired, lines, rule)
            .iter()
            .filter(|m| m.is_none())
            .count();
        if missing == 0 || Instant::now() > end {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print_agent(label: &str, before: Usage, after: Usage, metrics: &str) {
    println!(
        "{label}: agent CPU {:.2} s during the phase, peak RSS (VmHWM) {:.1} MiB, RSS at end {:.1} MiB",
        after.cpu_s - before.cpu_s,
        after.hwm_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0
    );
    println!(
        "{label}: events received {}, kernel records lost {} (in-band loss events), decode errors {}",
        metric_sum(metrics, "detector_events_total"),
        metric_sum(metrics, "detector_kernel_lost_total"),
        metric_sum(metrics, "detector_decode_errors_total"),
    );
}

const RULE_REUSE: &str = "machine-speed-credential-reuse";
/// Port the triggers connect to (refused in the namespace; not an SSH or API-server port, so
/// only the credential-reuse correlation is completed).
const TRIGGER_PORT: u16 = 9;

fn latency(
    detector: &Path,
    triggers: u32,
    rate: u32,
    settle: u64,
    agent_args: &[String],
) -> Result<()> {
    let load0 = loadavg();
    let net = TestNet::new("lat", 3)?;
    let dir = ScratchDir::new("latency")?;
    let cred = dir.0.join("bench.key");
    std::fs::write(&cred, "not a real secret\n")?;
    let mut args = vec!["--watch".into(), format!("{}=secret", cred.display())];
    args.extend_from_slice(agent_args);
    let agent = AgentRun::start(detector, &dir.0, &args)?;
    let tail = AlertTail::start(&agent.alerts)?;
    let mut trig = CredReuse::new(&cred, &net.hosts, TRIGGER_PORT)?;
    let mut lines = Vec::new();

    // Warm-up: one trigger whose alert proves the whole path works before measuring.
    let warm: Vec<Fired> = loop {
        if let Some(f) = trig.fire()? {
            break vec![f];
        }
    };
    if collect(
        &tail,
        &mut lines,
        &warm,
        RULE_REUSE,
        Duration::from_secs(20),
    ) != 0
    {
        bail!("warm-up trigger got no {RULE_REUSE} alert within 20 s (see the agent log)");
    }
    lines.clear();

    let offset = realtime_ns().saturating_sub(boottime_ns());
    let u0 = agent.usage();
    let m0 = agent.metrics()?;
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut fired = Vec::with_capacity(triggers as usize);
    let mut skipped = 0u32;
    while fired.len() < triggers as usize {
        let due = t0 + period * (fired.len() as u32 + skipped);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        match trig.fire()? {
            Some(f) => fired.push(f),
            None => skipped += 1,
        }
        if fired.len() % 1000 == 0 {
            lines.extend(tail.take());
        }
    }
    let fire_s = t0.elapsed().as_secs_f64();
    let missing = collect(
        &tail,
        &mut lines,
        &fired,
        RULE_REUSE,
        Duration::from_secs(settle),
    );
    let u1 = agent.usage();
    let m1 = agent.metrics()?;
    let (_, st) = agent.stop()?;
    lines.extend(tail.finish()?);
    drop(net);

    let matched = match_alerts(&fired, &lines, RULE_REUSE);
    let (mut total, mut to_event, mut event_to_line) = (hist()?, hist()?, hist()?);
    let mut loss_overlap = 0;
    for (f, m) in fired.iter().zip(&matched) {
        let Some((seen, a)) = m else { continue };
        total.saturating_record(seen.saturating_sub(f.stamp_ns).max(1));
        if a["loss_overlap"] == true {
            loss_overlap += 1;
        }
        if let Some(last) = a["last_seen"].as_u64() {
            // The alert's last_seen is the completing event's kernel time in wall-clock ns.
            let ev = last.saturating_sub(offset);
            to_event.saturating_record(ev.saturating_sub(f.stamp_ns).max(1));
            event_to_line.saturating_record(seen.saturating_sub(ev).max(1));
        }
    }
    println!("== detection latency: {RULE_REUSE}, detector run (default rules and identities), file sink, extra agent args {agent_args:?}");
    println!(
        "triggers {} in {fire_s:.1} s ({:.0}/s; {skipped} skipped on pid reuse), alerts matched {}, triggers WITHOUT an alert {missing}",
        fired.len(),
        fired.len() as f64 / fire_s,
        fired.len() - missing
    );
    println!("syscall -> alert line seen: {}", summary(&total));
    println!(
        "  syscall -> kernel event ts (alert last_seen): {}",
        summary(&to_event)
    );
    println!(
        "  kernel event ts -> alert line seen: {}",
        summary(&event_to_line)
    );
    let q = |k: &str| {
        metric_with(
            &m1,
            "detector_syscall_to_alert_seconds",
            &format!("quantile=\"{k}\""),
        )
        .map(|s| format!("{:.3} ms", s * 1e3))
        .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "  agent's own view, event ts -> handed to the sinks (detector_syscall_to_alert_seconds, whole run): p50 {}, p99 {}, p99.9 {}",
        q("0.5"),
        q("0.99"),
        q("0.999")
    );
    println!("alerts with loss_overlap: {loss_overlap}");
    print_agent("latency", u0, u1, &m1);
    println!(
        "kernel records lost during the measured phase: {}",
        metric_sum(&m1, "detector_kernel_lost_total")
            - metric_sum(&m0, "detector_kernel_lost_total")
    );
    let load1 = loadavg();
    println!("load average at start {load0}, at end {load1}");
    let first = |l: &str| l.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "BENCHMARKS.md row: | {} | {} ({:.0}/s) | **{missing}** | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {} → {} |",
        if agent_args.is_empty() { "default".to_string() } else { format!("`{}`", agent_args.join(" ")) },
        fired.len(),
        fired.len() as f64 / fire_s,
        ms(total.value_at_quantile(0.5)),
        ms(total.value_at_quantile(0.9)),
        ms(total.value_at_quantile(0.99)),
        ms(total.value_at_quantile(0.999)),
        ms(total.max()),
        first(&load0),
        first(&load1),
    );
    if !st.success() {
        bail!("detector run exited with {st}");
    }
    if missing > 0 {
        bail!("{missing} triggers got no alert");
    }
    Ok(())
}

fn wait_child(c: &mut std::process::Child, end: Instant, what: &str) -> Result<()> {
    loop {
        if let Some(st) = c.try_wait()? {
            if !st.success() {
                bail!("{what} failed: {st}");
            }
            return Ok(());
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            bail!("{what} did not finish within the time limit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Port sweep: returns whether `port-sweep` fired for the sweeping bash.
fn sweep(detector: &Path, ports: u32, timeout: u64, agent_args: &[String]) -> Result<bool> {
    let load0 = loadavg();
    let net = TestNet::new("sweep", 1)?;
    let dir = ScratchDir::new("sweep")?;
    let agent = AgentRun::start(detector, &dir.0, agent_args)?;
    let tail = AlertTail::start(&agent.alerts)?;
    let u0 = agent.usage();
    let host = net.hosts[0];
    let t0 = Instant::now();
    // Each `exec 3<>/dev/tcp/…` is a blocking connect the namespace refuses at once.
    let mut bash = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for ((p=1;p<={ports};p++)); do exec 3<>/dev/tcp/{host}/$p; done 2>/dev/null; exit 0"
        ))
        .stdin(Stdio::null())
        .spawn()
        .context("bash")?;
    let pid = bash.id();
    wait_child(
        &mut bash,
        t0 + Duration::from_secs(timeout),
        "the port sweep",
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let fired = [Fired {
        pid,
        tree: 0,
        stamp_ns: 0,
    }];
    let mut lines = Vec::new();
    let missing = collect(
        &tail,
        &mut lines,
        &fired,
        "port-sweep",
        Duration::from_secs(10),
    );
    // Let the agent drain the rest of the sweep before reading its counters.
    std::thread::sleep(Duration::from_secs(2));
    let u1 = agent.usage();
    let m = agent.metrics()?;
    let (_, st) = agent.stop()?;
    lines.extend(tail.finish()?);
    drop(net);
    println!("== flood (a): /dev/tcp sweep of {ports} ports of {host} (test namespace) by bash");
    println!(
        "sweep took {secs:.1} s ({:.0} connects/s)",
        f64::from(ports) / secs
    );
    let alerts: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.line).ok())
        .filter(|v| v["process"]["tgid"] == pid)
        .collect();
    for a in &alerts {
        println!(
            "alert {} (destination_count {}, count {}, loss_overlap {})",
            a["rule"]["id"], a["destination_count"], a["count"], a["loss_overlap"]
        );
    }
    println!(
        "connect events received {}",
        metric_with(&m, "detector_events_total", "kind=\"connect\"").unwrap_or(0.0)
    );
    print_agent("sweep", u0, u1, &m);
    println!("load average at start {load0}, at end {}", loadavg());
    if !st.success() {
        bail!("detector run exited with {st}");
    }
    Ok(missing == 0)
}

/// Open storm with concurrent credential-reuse triggers: returns how many triggers got no
/// alert.
fn storm(
    detector: &Path,
    files: u32,
    opens: u64,
    workers: u32,
    timeout: u64,
    agent_args: &[String],
) -> Result<usize> {
    let load0 = loadavg();
    let net = TestNet::new("storm", 3)?;
    let dir = ScratchDir::new("storm")?;
    let sdir = dir.0.join("benign");
    std::fs::create_dir_all(&sdir)?;
    // Empty files: an inode each, no data blocks (a million of them fit anywhere).
    let tc = Instant::now();
    for i in 0..files {
        std::fs::File::create(sdir.join(format!("f{i}")))?;
    }
    println!(
        "created {files} benign files in {:.1} s",
        tc.elapsed().as_secs_f64()
    );
    let cred = dir.0.join("bench.key");
    std::fs::write(&cred, "not a real secret\n")?;
    let mut args = vec!["--watch".into(), format!("{}=secret", cred.display())];
    args.extend_from_slice(agent_args);
    let agent = AgentRun::start(detector, &dir.0, &args)?;
    let tail = AlertTail::start(&agent.alerts)?;
    let mut trig = CredReuse::new(&cred, &net.hosts, TRIGGER_PORT)?;
    let u0 = agent.usage();
    let me = std::env::current_exe()?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(timeout);
    let mut kids = Vec::new();
    for w in 0..workers {
        let share =
            opens / u64::from(workers) + u64::from(u64::from(w) < opens % u64::from(workers));
        kids.push(
            Command::new(&me)
                .args(["storm", "--dir"])
                .arg(&sdir)
                .args(["--files", &files.to_string(), "--opens", &share.to_string()])
                .spawn()?,
        );
    }
    // A credential-reuse pattern every 100 ms while the storm runs.
    let mut fired = Vec::new();
    let mut during = 0;
    let mut next = Instant::now();
    let mut storm_s = None;
    loop {
        let mut running = false;
        for k in kids.iter_mut() {
            if k.try_wait()?.is_none() {
                running = true;
            }
        }
        if !running {
            storm_s = storm_s.or(Some(t0.elapsed().as_secs_f64()));
            if fired.len() >= 3 {
                break;
            }
        }
        if Instant::now() > end {
            for k in kids.iter_mut() {
                let _ = k.kill();
                let _ = k.wait();
            }
            bail!("the open storm did not finish within {timeout} s");
        }
        if Instant::now() >= next {
            if let Some(f) = trig.fire()? {
                fired.push(f);
                during += usize::from(running);
            }
            next += Duration::from_millis(100);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for k in kids.iter_mut() {
        let st = k.wait()?;
        if !st.success() {
            bail!("storm worker failed: {st}");
        }
    }
    let storm_s = storm_s.unwrap_or_default();
    let mut lines = Vec::new();
    let missing = collect(
        &tail,
        &mut lines,
        &fired,
        RULE_REUSE,
        Duration::from_secs(10),
    );
    let u1 = agent.usage();
    let m = agent.metrics()?;
    let (_, st) = agent.stop()?;
    lines.extend(tail.finish()?);
    drop(net);
    let matched = match_alerts(&fired, &lines, RULE_REUSE);
    let mut lat = hist()?;
    let mut overlap = 0;
    for (f, m) in fired.iter().zip(&matched) {
        if let Some((seen, a)) = m {
            lat.saturating_record(seen.saturating_sub(f.stamp_ns).max(1));
            overlap += usize::from(a["loss_overlap"] == true);
        }
    }
    println!(
        "== flood (b): open storm, {opens} opens over {files} pre-created benign files by {workers} processes, credential reuse every 100 ms"
    );
    println!(
        "storm took {storm_s:.1} s ({:.0} opens/s)",
        opens as f64 / storm_s.max(1e-9)
    );
    println!(
        "credential-reuse triggers {} ({during} while the storm ran), alerted {}, WITHOUT an alert {missing}, alerts with loss_overlap {overlap}",
        fired.len(),
        fired.len() - missing
    );
    println!("their latency: {}", summary(&lat));
    print_agent("storm", u0, u1, &m);
    println!("load average at start {load0}, at end {}", loadavg());
    if !st.success() {
        bail!("detector run exited with {st}");
    }
    if during == 0 {
        bail!("no credential-reuse trigger ran while the storm was running");
    }
    Ok(missing)
}

fn storm_worker(dir: &Path, files: u32, opens: u64) -> Result<()> {
    let paths: Vec<CString> = (0..files.max(1))
        .map(|i| CString::new(dir.join(format!("f{i}")).as_os_str().as_encoded_bytes()))
        .collect::<Result<_, _>>()?;
    for i in 0..opens {
        let p = &paths[(i % paths.len() as u64) as usize];
        // SAFETY: open/close of a NUL-terminated path.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!("open: {}", std::io::Error::last_os_error());
        }
        // SAFETY: closing the fd just opened.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Storm { .. }) {
        tests::bench::cleanup_on_signal()?;
    }
    match cli.cmd {
        Cmd::Latency {
            detector,
            triggers,
            rate,
            settle,
            agent_args,
        } => latency(&detector, triggers, rate, settle, &agent_args),
        Cmd::Flood {
            detector,
            ports,
            files,
            opens,
            workers,
            timeout,
            agent_args,
        } => {
            let t0 = Instant::now();
            let swept = sweep(&detector, ports, timeout, &agent_args)?;
            println!();
            let missing = storm(&detector, files, opens, workers, timeout, &agent_args)?;
            println!("\nflood bench took {:.0} s", t0.elapsed().as_secs_f64());
            if !swept {
                bail!("port-sweep did not fire for the sweep");
            }
            if missing > 0 {
                bail!("{missing} credential-reuse patterns during the storm got no alert");
            }
            Ok(())
        }
        Cmd::Storm { dir, files, opens } => storm_worker(&dir, files, opens),
    }
}
