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

mod common;
use common::*;

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
    for i in 0..1_000_000u64 {
        e.process(&mem_event(i), &mut out);
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
