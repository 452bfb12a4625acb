//! What the engine benchmarks share: the generated stream, CPU time, RSS, pinning.
#![allow(dead_code)]

use detector::event::*;

/// Small deterministic generator (xorshift) so runs are comparable.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The generated stream: outbound connects (85 %), credential opens (10 %) and execs over
/// 10 k processes and 1 k identities, ~10 µs apart.
pub fn stream(n: usize) -> Vec<Event> {
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

/// True under `cargo bench`; `cargo test --all-targets` runs this file once as a smoke test.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A number from the environment (`_` separators allowed).
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// CPU time of this thread (s): on a shared machine the wall time includes waiting for a core,
/// the CPU time does not.
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Resident memory of this process (KiB).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Pins this process to one CPU (see the module documentation); says which on stderr.
pub fn pin() {
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

/// The 1 M live keys connect (one destination per key).
pub fn mem_event(i: u64) -> Event {
    Event {
        ts: 1_000_000_000 + i * 10_000,
        kind: Kind::Connect,
        process: Some(Process {
            tgid: 1,
            identity: Some("a".into()),
            ..Default::default()
        }),
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
    }
}
