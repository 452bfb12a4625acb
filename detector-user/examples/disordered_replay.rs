//! Equivalence harness for engine changes: replays a generated, disordered stream through the
//! embedded default pack and prints every alert (NDJSON, derived ids) and then the engine's
//! stats. An optimization must leave the output byte-identical: build this example at two
//! commits and `cmp` their outputs over several stream shapes. A change to how group keys are
//! hashed changes derived alert ids (they hash the key) and nothing else: compare with the ids
//! blanked then (`sed -E 's/"id":"[0-9a-f-]{36}"/"id":""/'`).
//!
//! `cargo run --release -p detector-user --example disordered_replay -- EVENTS IDENTITIES HOSTS
//! PORTS SEED` (e.g. `400000 50 300 40 1`). The stream mixes connects (a tenth IPv6, some to the
//! cloud metadata address) and credential reads (a quarter SSH keys), dense and sparse phases
//! (so suppression intervals end), swapped neighbours, events up to 400 ms late and a few
//! beyond the tolerance; groups are capped at 2,000 so evictions happen.
use detector::engine::fields::Policy;
use detector::engine::load::load_rules;
use detector::engine::{Engine, EngineOptions, IdMode};
use detector::event::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [n, ids, hosts, ports, seed] = args[..] else {
        eprintln!("usage: disordered_replay EVENTS IDENTITIES HOSTS PORTS SEED");
        std::process::exit(2);
    };
    let (ids, hosts, ports) = (ids.max(1), hosts.max(1), ports.clamp(1, 60_000));
    let n = n as usize;
    let mut r = Rng(seed | 1);
    let nproc = ids * 10;
    let procs: Vec<Process> = (0..nproc as u32)
        .map(|i| Process {
            pid: 10_000 + i,
            tgid: 10_000 + i,
            ppid: 2 + i % 50,
            start: u64::from(i),
            uid: 1000 + i % 7,
            gid: 1000,
            user: Some(format!("u{}", i % 7)),
            comm: "svc".into(),
            exe: format!("/opt/svc{}/bin/svc", i as u64 % ids),
            ancestors: vec![2 + i % 50, 1],
            cgroup_id: u64::from(i),
            identity: Some(format!("unit:svc{}.service", i as u64 % ids)),
            argv: vec!["svc".into(), "--password=hunter2".into()],
            ..Default::default()
        })
        .collect();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut evs: Vec<Event> = (0..n)
        .map(|i| {
            // Phases: dense bursts and sparse stretches (suppression intervals end).
            let gap = if (i / 20_000) % 3 == 2 {
                20_000_000
            } else {
                40_000
            };
            ts += r.next() % gap;
            let p = procs[(r.next() % procs.len() as u64) as usize].clone();
            let roll = r.next() % 100;
            let (kind, net, file) = if roll < 85 {
                let host = r.next() % hosts;
                let v6 = r.next().is_multiple_of(10);
                let net = NetInfo {
                    protocol: Protocol::Tcp,
                    family: if v6 { 6 } else { 4 },
                    direction: Direction::Outbound,
                    src_addr: "0.0.0.0".into(),
                    src_port: 0,
                    dst_addr: if v6 {
                        format!("fd00::{:x}", host)
                    } else if host.is_multiple_of(97) {
                        "169.254.169.254".into()
                    } else {
                        format!("10.{}.{}.{}", host >> 16, (host >> 8) & 255, host & 255)
                    },
                    dst_port: (r.next() % ports) as u16 + 20,
                    outcome: Outcome::InProgress,
                    error: None,
                    conn: i as u64,
                    dst_name: None,
                    off_host: None,
                    service: None,
                };
                (Kind::Connect, Some(net), None)
            } else {
                let ssh = r.next().is_multiple_of(4);
                let file = FileInfo {
                    watched: if ssh {
                        "/root/.ssh/id_ed25519".into()
                    } else {
                        format!("/etc/svc{}/secret.key", r.next() % 100)
                    },
                    category: if ssh {
                        "ssh_key".into()
                    } else {
                        "secret".into()
                    },
                    path: None,
                    resolved: None,
                    dev: 1,
                    ino: r.next() % 100,
                    flags: None,
                    access: None,
                    via: Via::Syscall,
                    target_pid: None,
                    mtime: Some(ts - 10 * 86_400_000_000_000),
                    fingerprint: Some(format!("hmac-sha256:{:032x}", r.next() % 100)),
                };
                (Kind::CredOpen, None, Some(file))
            };
            Event {
                ts,
                kind,
                process: Some(p),
                exec: None,
                fork: None,
                exit: None,
                net,
                file,
                loss: None,
            }
        })
        .collect();
    // Disorder: swap neighbours, move some events up to 400 ms later in arrival, a few far
    // beyond the tolerance.
    for i in 0..evs.len().saturating_sub(40) {
        match r.next() % 50 {
            0 => evs.swap(i, i + 1 + (r.next() % 30) as usize),
            1 => {
                let e = evs[i].clone();
                evs[i].ts = e.ts.saturating_sub(r.next() % 400_000_000);
            }
            2 if r.next().is_multiple_of(20) => evs[i].ts = evs[i].ts.saturating_sub(2_000_000_000),
            _ => {}
        }
    }
    let rules = load_rules(&[], false).unwrap();
    let mut e = Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(7),
            max_groups: 2000,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    for ev in &evs {
        e.process(ev, &mut out);
        for a in out.drain(..) {
            println!("{}", serde_json::to_string(&a).unwrap());
        }
    }
    e.finish(&mut out);
    for a in out.drain(..) {
        println!("{}", serde_json::to_string(&a).unwrap());
    }
    println!("{}", serde_json::to_string(e.stats()).unwrap());
}
