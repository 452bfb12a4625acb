//! Replay throughput of the correlation engine (figures in BENCHMARKS.md, section "Engine").
//!
//! A generated stream — outbound connects, credential opens and execs over 10 k processes
//! and 1 k identities — is fed to the engine with (a) the embedded default pack and (b) the
//! default pack plus 1,000 generated rules. A third measurement fills 1 M live window keys
//! and prints the resident memory.
//!
//! Each scenario is fed two ways (see [`Feed`]): `fresh`, each event just built as the live
//! agent's sources and `detector replay`'s parser hand them over (the figure of record), and
//! `cold`, straight from a pool far larger than the caches (every event's first read misses).
//!
//! `EVENTS` (default 10,000,000 under `cargo bench`) sets the stream length, `RUNS` (default 3)
//! the replays per scenario, `SCENARIO` a scenario's name or a substring selecting scenarios, `FEED` the feeds
//! (`fresh,cold`), `SKIP_MEMORY=1` leaves out the memory row, and `RULES_DIR` replaces the
//! default pack with the rule files there (to measure what one rule costs, by leaving it out).
//! Plain timed replays rather than criterion: criterion's minimum of ten samples of a 10 M-event
//! stream would take many minutes.
//!
//! The target is a rate on one core, so the bench pins itself to one CPU (the last, or
//! `BENCH_CPU`; `BENCH_CPU=none` leaves it unpinned): moved between cores mid-run, the engine
//! refills its caches and the rate varied by a tenth from run to run on a 2-vCPU guest.

use std::hint::black_box;

use std::time::Instant;

use detector::engine::fields::Policy;
use detector::engine::load::{embedded_sources, load_rules};
use detector::engine::rules::RuleSet;
use detector::engine::{Engine, EngineOptions, IdMode};
use detector::event::*;

/// Small deterministic generator (xorshift) so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn stream(n: usize) -> Vec<Event> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let procs: Vec<Process> = (0..10_000u32)
        .map(|i| Process {
            pid: 10_000 + i,
            tgid: 10_000 + i,
            ppid: 2 + i % 500,
            start: u64::from(i),
            uid: 1000 + i % 1000,
            gid: 1000,
            user: Some(format!("u{}", i % 1000)),
            comm: "svc".into(),
            exe: format!("/opt/svc{}/bin/svc", i % 1000),
            ancestors: vec![2 + i % 500, 1],
            cgroup_id: u64::from(i),
            identity: Some(format!("unit:svc{}.service", i % 1000)),
            ..Default::default()
        })
        .collect();
    let mut ts = 1_700_000_000_000_000_000u64;
    (0..n)
        .map(|i| {
            // ~10 µs apart on average: 100 k events/s of capture.
            ts += r.next() % 20_000;
            let p = procs[(r.next() % procs.len() as u64) as usize].clone();
            let roll = r.next() % 100;
            let (kind, net, file, exec) = if roll < 85 {
                let host = r.next() % 5_000;
                let net = NetInfo {
                    protocol: Protocol::Tcp,
                    family: 4,
                    direction: Direction::Outbound,
                    src_addr: "0.0.0.0".into(),
                    src_port: 0,
                    dst_addr: format!("10.{}.{}.{}", host >> 16, (host >> 8) & 255, host & 255),
                    dst_port: [443, 5432, 22, 80][(r.next() % 4) as usize],
                    outcome: Outcome::InProgress,
                    error: None,
                    conn: i as u64,
                    dst_name: None,
                    off_host: None,
                    service: None,
                };
                (Kind::Connect, Some(net), None, None)
            } else if roll < 95 {
                let file = FileInfo {
                    watched: format!("/etc/svc{}/secret.key", r.next() % 1000),
                    category: "secret".into(),
                    path: None,
                    resolved: None,
                    dev: 1,
                    ino: r.next() % 1000,
                    flags: None,
                    access: None,
                    via: Via::Syscall,
                    target_pid: None,
                    mtime: Some(ts - 10 * 86_400_000_000_000),
                    fingerprint: Some(format!("hmac-sha256:{:032x}", r.next() % 1000)),
                };
                (Kind::CredOpen, None, Some(file), None)
            } else {
                let exec = ExecInfo {
                    filename: p.exe.clone(),
                    argv: vec!["svc".into()],
                    argv_truncated: false,
                };
                (Kind::Exec, None, None, Some(exec))
            };
            Event {
                ts,
                kind,
                process: Some(p),
                exec,
                fork: None,
                exit: None,
                net,
                file,
                loss: None,
            }
        })
        .collect()
}

fn generated_rules(n: usize) -> String {
    let mut s = String::from("rules:\n");
    for i in 0..n {
        // A mix of event rules (exact, glob, CIDR) and value_count correlations over them.
        s.push_str(&format!(
            "  - id: gen-{i}\n    title: generated {i}\n    severity: low\n    alert: {}\n    condition:\n      kind: connect\n      net.dst_port: {}\n      process.exe: {{glob: '/opt/svc{}/*'}}\n      net.dst_addr: {{cidr: 10.{}.0.0/16}}\n",
            i % 2 == 0,
            [443, 5432, 22, 80][i % 4],
            i % 1000,
            i % 256
        ));
        if i % 10 == 0 {
            s.push_str(&format!(
                "  - id: gen-corr-{i}\n    title: generated corr {i}\n    severity: low\n    correlation: {{type: value_count, rules: [gen-{i}], group-by: [process.identity], field: net.dst_addr, timespan: 10s, condition: {{gte: 20}}}}\n"
            ));
        }
    }
    s
}

fn engine(rules: RuleSet) -> Engine {
    Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(1),
            ..Default::default()
        },
    )
}

/// How the replay hands events to the engine.
#[derive(Clone, Copy, PartialEq)]
enum Feed {
    /// Straight from the 1 M-event pool, far larger than the caches: every event's first
    /// read is a cache miss the live agent does not pay.
    Cold,
    /// Each chunk of `CHUNK` events is copied from the pool (untimed) just before the engine
    /// sees it, as the live agent's sources and `detector replay`'s parser hand the engine
    /// events they have just built.
    Fresh,
}

/// Events per fresh chunk: a ring-buffer drain's worth, small enough to stay in L2.
const CHUNK: usize = 512;

/// Feeds `total` events: the pool over and over, each pass shifted later by the pool's time
/// span so that time keeps advancing (a 10 M stream would not fit in memory as `Event`s).
/// Events are passed by reference, as `detector run` does. Returns the alert count and the
/// CPU seconds spent in the engine (for `Feed::Fresh`, without the untimed copies).
fn replay(
    e: &mut Engine,
    pool: &mut [Event],
    base: &[u64],
    total: usize,
    feed: Feed,
) -> (usize, f64) {
    let span = base.last().copied().unwrap_or(0) - base.first().copied().unwrap_or(0) + 20_000;
    for (ev, &t) in pool.iter_mut().zip(base) {
        ev.ts = t;
    }
    let mut out = Vec::new();
    let mut n = 0;
    let mut fed = 0;
    let mut cpu = 0.0;
    let mut chunk: Vec<Event> = Vec::with_capacity(CHUNK);
    while fed < total {
        let pass = pool.len().min(total - fed);
        match feed {
            Feed::Cold => {
                let c0 = thread_cpu();
                for ev in pool.iter().take(pass) {
                    e.process(ev, &mut out);
                    n += out.len();
                    out.clear();
                }
                cpu += thread_cpu() - c0;
            }
            Feed::Fresh => {
                for part in pool[..pass].chunks(CHUNK) {
                    chunk.clear();
                    chunk.extend_from_slice(part);
                    let c0 = thread_cpu();
                    for ev in &chunk {
                        e.process(ev, &mut out);
                        n += out.len();
                        out.clear();
                    }
                    cpu += thread_cpu() - c0;
                }
            }
        }
        for ev in pool.iter_mut().take(pass) {
            ev.ts += span;
        }
        fed += pass;
    }
    let c0 = thread_cpu();
    e.finish(&mut out);
    cpu += thread_cpu() - c0;
    (n + out.len(), cpu)
}

/// True under `cargo bench`; `cargo test --all-targets` runs this file once as a smoke test.
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// CPU time of this thread (s): on a shared machine the wall time includes waiting for a core,
/// the CPU time does not.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Replays the stream `RUNS` times per scenario and feed, each on a fresh engine, and prints
/// the throughput of each run per CPU second the replaying thread spent in the engine, and the
/// median.
fn throughput() {
    let total = env_usize("EVENTS", if benchmarking() { 10_000_000 } else { 10_000 });
    let runs = env_usize("RUNS", if benchmarking() { 3 } else { 1 }).max(1);
    let mut pool = stream(total.min(1_000_000));
    let base: Vec<u64> = pool.iter().map(|e| e.ts).collect();
    let mut sources = embedded_sources();
    sources.push(("generated.yaml".into(), generated_rules(1000)));
    let only = std::env::var("SCENARIO").unwrap_or_default();
    let feeds = std::env::var("FEED").unwrap_or_else(|_| "fresh,cold".into());
    let scenarios: [(&str, &dyn Fn() -> RuleSet); 2] = [
        ("default_pack", &|| match std::env::var("RULES_DIR") {
            Ok(d) => load_rules(&[d.into()], true).expect("rules load"),
            Err(_) => load_rules(&[], false).expect("default pack loads"),
        }),
        ("default_pack_plus_1000_rules", &|| {
            RuleSet::load(&sources).expect("generated rules load")
        }),
    ];
    for (name, rules) in scenarios {
        // An exact name selects that scenario alone (`default_pack` is a prefix of the other).
        let exact = only == "default_pack" || only == "default_pack_plus_1000_rules";
        if !only.is_empty()
            && (if exact {
                name != only
            } else {
                !name.contains(only.as_str())
            })
        {
            continue;
        }
        for (feed, fname) in [(Feed::Fresh, "fresh"), (Feed::Cold, "cold")] {
            if !feeds.contains(fname) {
                continue;
            }
            let mut rates = Vec::new();
            for run in 0..runs {
                let mut e = engine(rules());
                let t0 = Instant::now();
                let (alerts, cpu) = black_box(replay(&mut e, &mut pool, &base, total, feed));
                let dt = t0.elapsed().as_secs_f64();
                println!(
                    "replay/{name}/{fname}: run {run}: {total} events, {cpu:.2} s engine CPU ({dt:.2} s wall with the copies) = {:.0} k events/s per engine CPU second ({alerts} alerts, {} late)",
                    total as f64 / cpu / 1e3,
                    e.stats().late
                );
                rates.push(total as f64 / cpu);
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "replay/{name}/{fname}: median {:.0} k events/s per CPU second over {runs} run(s)",
                rates[rates.len() / 2] / 1e3
            );
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 1 M live window keys: one event_count group per destination, one event per key.
///
/// Method: VmRSS of this process before and after feeding 1 M connects to distinct
/// destinations (a 1 h window keeps every key live), default options apart from `max_groups`.
/// Events are 10 µs apart (the capture rate of the throughput stream), so the reorder buffer
/// holds ~50 k of them at a time as it would live; RSS growth therefore includes the reorder
/// buffer, the evidence ring and allocator overhead, not only the groups.
fn memory_1m_keys() {
    let src = "rules:\n  - id: c\n    title: c\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: k\n    title: k\n    severity: low\n    correlation: {type: event_count, rules: [c], group-by: [net.dst_addr], timespan: 1h, condition: {gte: 1000}}\n";
    let rules = RuleSet::load(&[("mem.yaml".into(), src.into())]).expect("loads");
    let mut e = Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            max_groups: 2_000_000,
            ..Default::default()
        },
    );
    let before = rss_kib();
    let mut out = Vec::new();
    let p = Process {
        tgid: 1,
        identity: Some("a".into()),
        ..Default::default()
    };
    for i in 0..1_000_000u64 {
        let ev = Event {
            ts: 1_000_000_000 + i * 10_000,
            kind: Kind::Connect,
            process: Some(p.clone()),
            exec: None,
            fork: None,
            exit: None,
            net: Some(NetInfo {
                protocol: Protocol::Tcp,
                family: 4,
                direction: Direction::Outbound,
                src_addr: "0.0.0.0".into(),
                src_port: 0,
                dst_addr: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                dst_port: 443,
                outcome: Outcome::InProgress,
                error: None,
                conn: i,
                dst_name: None,
                off_host: None,
                service: None,
            }),
            file: None,
            loss: None,
        };
        e.process(&ev, &mut out);
    }
    e.finish(&mut out);
    let after = rss_kib();
    println!(
        "memory: {} live window keys, RSS grew {} MiB (from {} MiB to {} MiB)",
        e.live_groups(),
        (after.saturating_sub(before)) / 1024,
        before / 1024,
        after / 1024
    );
}

/// Pins this process to one CPU (see the module documentation); says which on stderr.
fn pin() {
    let choice = std::env::var("BENCH_CPU").unwrap_or_default();
    if choice == "none" {
        return;
    }
    // SAFETY: sysconf has no memory effects.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let cpu = choice.parse().unwrap_or(ncpu - 1);
    // SAFETY: `set` is a zeroed cpu_set_t that CPU_SET fills and sched_setaffinity reads.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        eprintln!("engine bench: pinned to CPU {cpu}");
    } else {
        eprintln!("engine bench: could not pin to CPU {cpu}; running unpinned");
    }
}

fn main() {
    if benchmarking() {
        pin();
    }
    // SKIP_MEMORY=1 leaves out the 1 M keys measurement (e.g. when profiling throughput).
    if benchmarking() && std::env::var_os("SKIP_MEMORY").is_none() {
        memory_1m_keys();
    }
    throughput();
}
