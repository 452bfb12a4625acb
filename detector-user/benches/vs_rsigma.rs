//! `cargo xtask bench engine --vs rsigma`: our engine and rsigma-eval side by side (figures in
//! BENCHMARKS.md, section "Engine").
//!
//! Both engines get the same stream (the engine bench's generated 10 M events, `common::stream`)
//! and the same rules: the pack's rules that translate to Sigma (`engine::sigma`), ours as
//! loaded and re-indexed (`RuleSet::retain`), rsigma's as exported. Times are exported with
//! milliseconds as Sigma seconds (Sigma engines count whole seconds; the stream is 10 µs
//! apart), so both evaluate the same windows and their alerts must be equal — checked per
//! rule after every run; a run whose alerts differ is reported as such.
//!
//! Runs are interleaved, ours then rsigma's (A B A B …, `RUNS` pairs, default 3), each on a
//! fresh engine, in one process pinned to one CPU (`BENCH_CPU`, as the engine bench). Each
//! engine is fed as the engine bench's `fresh` feed: chunks of 512 events prepared untimed
//! just before the engine sees them — our `Event`s copied, rsigma's event documents
//! (`sigma::event_document`, one flat JSON object per event, rsigma's `JsonEvent` over it)
//! built. Throughput is events per CPU second of the replaying thread inside the engine; the
//! figure of record is the ratio ours / rsigma's per pair, reported as the median and the
//! min–max over pairs.
//!
//! Bounded state, made equal: ours keeps at most 100,000 group keys per correlation; rsigma
//! bounds its state entries globally (`max_state_entries`, default 100,000), so it is given
//! 100,000 per translated correlation. rsigma's building-block matches are not emitted
//! (`emit_detections: false`), as ours raise no alerts for them.
//!
//! Memory: 1 M live window keys (one `event_count` group per destination, a 1 h window),
//! each engine in a child process of its own, RSS growth as in the engine bench.
//!
//! `EVENTS` (default 10,000,000), `RUNS`, `SKIP_MEMORY=1`, and `VS_ENGINE=ours|rsigma` (one
//! engine only, for `valgrind --tool=callgrind`; see BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap};

use detector::engine::fields::Policy;
use detector::engine::load::load_rules;
use detector::engine::rules::RuleSet;
use detector::engine::sigma::{self, Export, ExportOptions};
use detector::engine::{Engine, EngineOptions, IdMode};
use detector::event::*;
use rsigma_eval::event::JsonEvent;
use rsigma_eval::{CorrelationConfig, CorrelationEngine, TimestampFallback};

mod common;
use common::*;

/// Nanoseconds per Sigma second here: one millisecond.
const TICK: u64 = 1_000_000;
/// Events per fresh chunk (as the engine bench).
const CHUNK: usize = 512;
/// Our engine's group keys per correlation, and rsigma's share of state per correlation.
const GROUPS: usize = 100_000;

type Counts = BTreeMap<String, u64>;

fn ours(set: RuleSet, max_groups: usize) -> Engine {
    Engine::new(
        set,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(1),
            max_groups,
            ..Default::default()
        },
    )
}

/// rsigma over `export`, its state bounded at `entries`; and Sigma id → our rule id.
fn theirs(export: &Export, entries: usize) -> (CorrelationEngine, HashMap<String, String>) {
    let coll = rsigma_parser::parse_sigma_yaml(&export.yaml_stream())
        .expect("the translation parses")
        .into_result()
        .unwrap_or_else(|e| panic!("the translation has errors: {e:?}"));
    let cfg = CorrelationConfig {
        timestamp_fallback: TimestampFallback::Skip,
        emit_detections: false,
        max_state_entries: entries,
        ..Default::default()
    };
    let mut e = CorrelationEngine::new(cfg);
    e.add_collection(&coll)
        .expect("rsigma compiles the translation");
    let ids = export
        .documents
        .iter()
        .map(|d| (d.sigma_id.clone(), d.rule.clone()))
        .collect();
    (e, ids)
}

/// Shifts the pool's timestamps to pass `pass` of the replay (time keeps advancing).
fn set_pass(pool: &mut [Event], base: &[u64], span: u64, pass: u64) {
    for (ev, &t) in pool.iter_mut().zip(base) {
        ev.ts = t + span * pass;
    }
}

fn span(base: &[u64]) -> u64 {
    base.last().copied().unwrap_or(0) - base.first().copied().unwrap_or(0) + 20_000
}

/// Our replay: (alerts per rule, engine CPU seconds).
fn replay_ours(set: RuleSet, pool: &mut [Event], base: &[u64], total: usize) -> (Counts, f64) {
    let mut e = ours(set, GROUPS);
    let sp = span(base);
    let mut out = Vec::new();
    let mut counts = Counts::new();
    let mut cpu = 0.0;
    let mut chunk: Vec<Event> = Vec::with_capacity(CHUNK);
    let (mut fed, mut pass) = (0, 0);
    while fed < total {
        set_pass(pool, base, sp, pass);
        let n = pool.len().min(total - fed);
        for part in pool[..n].chunks(CHUNK) {
            chunk.clear();
            chunk.extend_from_slice(part);
            let c0 = thread_cpu();
            for ev in &chunk {
                e.process(ev, &mut out);
                for a in out.drain(..) {
                    *counts.entry(a.rule.id).or_default() += 1;
                }
            }
            cpu += thread_cpu() - c0;
        }
        fed += n;
        pass += 1;
    }
    let c0 = thread_cpu();
    e.finish(&mut out);
    cpu += thread_cpu() - c0;
    for a in out.drain(..) {
        *counts.entry(a.rule.id).or_default() += 1;
    }
    (counts, cpu)
}

/// rsigma's replay: (alerts per rule, engine CPU seconds).
fn replay_theirs(export: &Export, pool: &mut [Event], base: &[u64], total: usize) -> (Counts, f64) {
    let corrs = export
        .documents
        .iter()
        .filter(|d| d.kind == sigma::DocKind::Correlation)
        .count();
    let (mut e, ids) = theirs(export, GROUPS * corrs.max(1));
    let sp = span(base);
    let mut counts = Counts::new();
    let mut cpu = 0.0;
    let mut docs: Vec<(serde_json::Value, i64)> = Vec::with_capacity(CHUNK);
    let (mut fed, mut pass) = (0, 0);
    while fed < total {
        set_pass(pool, base, sp, pass);
        let n = pool.len().min(total - fed);
        for part in pool[..n].chunks(CHUNK) {
            docs.clear();
            docs.extend(part.iter().map(|ev| {
                (
                    serde_json::Value::Object(sigma::event_document(ev)),
                    (ev.ts / TICK) as i64,
                )
            }));
            let c0 = thread_cpu();
            for (doc, ts) in &docs {
                for r in e.process_event_at(&JsonEvent::borrow(doc), *ts) {
                    if r.is_correlation() {
                        let id = r.header.rule_id.as_ref().and_then(|s| ids.get(s));
                        *counts.entry(id.cloned().unwrap_or_default()).or_default() += 1;
                    }
                }
            }
            cpu += thread_cpu() - c0;
        }
        fed += n;
        pass += 1;
    }
    (counts, cpu)
}

/// The translated part of the pack: our rule set and the Sigma export.
fn translated() -> (RuleSet, Export) {
    let pack = load_rules(&[], false).expect("default pack loads");
    let export = sigma::export(&pack, &ExportOptions { tick: TICK });
    let set = pack.retain(|r| export.translated(&r.id));
    (set, export)
}

fn throughput() {
    let total = env_usize("EVENTS", if benchmarking() { 10_000_000 } else { 10_000 });
    let runs = env_usize("RUNS", if benchmarking() { 3 } else { 1 }).max(1);
    let only = std::env::var("VS_ENGINE").unwrap_or_default();
    let mut pool = stream(total.min(1_000_000));
    let base: Vec<u64> = pool.iter().map(|e| e.ts).collect();
    let (set, export) = translated();
    let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
    println!(
        "vs rsigma: {} rules translated ({}), {} events per run, {runs} pair(s)",
        ids.len(),
        ids.join(", "),
        total
    );
    let mut ratios = Vec::new();
    let (mut ours_rates, mut their_rates) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut a = None;
        if only.is_empty() || only == "ours" {
            let (set, _) = translated();
            let (counts, cpu) = replay_ours(set, &mut pool, &base, total);
            let rate = total as f64 / cpu;
            println!(
                "vs rsigma: run {run}: ours   {:>6.0} k events/s ({cpu:.2} s engine CPU), alerts {counts:?}",
                rate / 1e3
            );
            ours_rates.push(rate);
            a = Some((counts, rate));
        }
        if only.is_empty() || only == "rsigma" {
            let (counts, cpu) = replay_theirs(&export, &mut pool, &base, total);
            let rate = total as f64 / cpu;
            println!(
                "vs rsigma: run {run}: rsigma {:>6.0} k events/s ({cpu:.2} s engine CPU), alerts {counts:?}",
                rate / 1e3
            );
            their_rates.push(rate);
            if let Some((ours_counts, ours_rate)) = a {
                let equal = ours_counts == counts;
                println!(
                    "vs rsigma: run {run}: ratio ours/rsigma ×{:.2}, alerts {}",
                    ours_rate / rate,
                    if equal { "equal" } else { "DIFFER" }
                );
                if equal {
                    ratios.push(ours_rate / rate);
                }
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    if !ours_rates.is_empty() {
        println!(
            "vs rsigma: ours median {:.0} k events/s",
            med(&mut ours_rates) / 1e3
        );
    }
    if !their_rates.is_empty() {
        println!(
            "vs rsigma: rsigma median {:.0} k events/s",
            med(&mut their_rates) / 1e3
        );
    }
    if !ratios.is_empty() {
        let m = med(&mut ratios);
        println!(
            "vs rsigma: ratio ours/rsigma ×{m:.2} (median of {} pair(s) with equal alerts; min ×{:.2}, max ×{:.2})",
            ratios.len(),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    } else if only.is_empty() {
        println!("vs rsigma: no pair with equal alerts: no ratio");
    }
}

/// In a child process: 1 M live window keys in engine `which`; prints the RSS growth (MiB).
fn memory_child(which: &str) {
    let src = "rules:\n  - id: c\n    title: c\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: k\n    title: k\n    severity: low\n    correlation: {type: event_count, rules: [c], group-by: [net.dst_addr], timespan: 1h, condition: {gte: 1000}}\n";
    let set = RuleSet::load(&[("mem.yaml".into(), src.into())]).expect("loads");
    let export = sigma::export(&set, &ExportOptions { tick: TICK });
    const KEYS: u64 = 1_000_000;
    let (before, after, live) = match which {
        "ours" => {
            let mut e = ours(set, 2 * KEYS as usize);
            let mut out = Vec::new();
            let before = rss_kib();
            for i in 0..KEYS {
                e.process(&mem_event(i), &mut out);
            }
            e.finish(&mut out);
            (before, rss_kib(), e.live_groups())
        }
        _ => {
            let (mut e, _) = theirs(&export, 2 * KEYS as usize);
            let before = rss_kib();
            for i in 0..KEYS {
                let ev = mem_event(i);
                let doc = serde_json::Value::Object(sigma::event_document(&ev));
                let _ = e.process_event_at(&JsonEvent::borrow(&doc), (ev.ts / TICK) as i64);
            }
            (before, rss_kib(), e.state_count())
        }
    };
    println!(
        "{} {} {}",
        live,
        after.saturating_sub(before) / 1024,
        after / 1024
    );
}

fn memory() {
    let mut row = Vec::new();
    for which in ["ours", "rsigma"] {
        let out = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--bench")
                .env("VS_MEMORY_CHILD", which)
                .output()
        });
        let text = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
            Ok(o) => format!("failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("failed: {e}"),
        };
        let f: Vec<&str> = text.split_whitespace().collect();
        match f[..] {
            [live, grew, total] => {
                println!(
                    "vs rsigma: memory {which}: {live} live window keys, RSS grew {grew} MiB (to {total} MiB)"
                );
                row.push(grew.parse::<f64>().unwrap_or(f64::NAN));
            }
            _ => println!("vs rsigma: memory {which}: {}", text.trim()),
        }
    }
    if let [a, b] = row[..] {
        println!("vs rsigma: memory ours/rsigma ×{:.2}", a / b);
    }
}

fn main() {
    if let Ok(which) = std::env::var("VS_MEMORY_CHILD") {
        memory_child(&which);
        return;
    }
    if benchmarking() {
        pin();
    }
    if benchmarking() && std::env::var_os("SKIP_MEMORY").is_none() {
        memory();
    }
    throughput();
}
