//! `cargo xtask bench kernel`: what the kernel programs cost, measured on this machine with
//! attached and detached phases interleaved in one run (A B A B …), workload pinned to CPU 0
//! and the agent's consumer to CPU 1. Reports per workload the median attached/base
//! throughput ratio with its spread, and ns added per operation; then a burst test for loss.
//!
//! The agent runs in this process but with its self-exclusion pointed elsewhere, so the
//! workload's own events are produced and consumed exactly as for any other process.
//!
//! `kbench hold-floor` only attaches the calibration programs (empty programs on the agent's
//! hooks) and waits to be killed: the `floor` configuration of `cargo xtask bench overhead`.

use std::{
    ffi::CString,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use detector::{capture::LiveCapture, sources::watchlist};

/// While set, the agent's consumer does not read the ring buffer (`--paused-phase`): what the
/// kernel side costs the workload without the consumer's work on the other CPU.
static CONSUMER_PAUSED: AtomicBool = AtomicBool::new(false);

fn pin(cpu: usize) {
    // SAFETY: plain cpu_set_t manipulation and a syscall on the current thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Running {
    /// (program name, kernel id) of the agent's programs.
    ids: Vec<(String, u32)>,
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

/// The hooks' floor: the agent object's empty calibration programs on every hook the agent's
/// programs use (the four open-family syscall exits, the io_uring and filemap tracepoints,
/// `sched_process_exec`/`exit`, `tp_btf` fork and `inet_sock_set_state`, `cgroup/connect4|6`
/// on the cgroup v2 root). What a workload costs under it is what any programs there cost on
/// this kernel, whatever they do; the agent's phase minus this one is the programs' own work
/// and their records.
fn start_floor() -> aya::Ebpf {
    use detector_common::names::calibration as C;
    let mut ebpf = aya::EbpfLoader::new()
        .map_max_entries(detector_common::names::map::EVENTS, 1 << 20)
        .load(detector::sources::loader::object())
        .expect("load the object");
    let p: &mut aya::programs::TracePoint = ebpf
        .program_mut(C::CALIBRATION_EMPTY)
        .expect("calibration program in the object")
        .try_into()
        .expect("a tracepoint program");
    p.load().expect("load calibration_empty");
    for (cat, name) in [
        ("syscalls", "sys_exit_openat"),
        ("syscalls", "sys_exit_openat2"),
        ("syscalls", "sys_exit_open"),
        ("syscalls", "sys_exit_open_by_handle_at"),
        ("io_uring", "io_uring_submit_req"),
        ("io_uring", "io_uring_complete"),
        ("filemap", "mm_filemap_get_pages"),
        ("sched", "sched_process_exec"),
        ("sched", "sched_process_exit"),
    ] {
        p.attach(cat, name)
            .unwrap_or_else(|e| panic!("attach calibration_empty to {cat}:{name}: {e}"));
    }
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    for (prog, func) in [
        (C::CALIBRATION_EMPTY_BTF, "inet_sock_set_state"),
        (C::CALIBRATION_EMPTY_FORK, "sched_process_fork"),
    ] {
        let p: &mut aya::programs::BtfTracePoint = ebpf
            .program_mut(prog)
            .expect("calibration program in the object")
            .try_into()
            .expect("a tp_btf program");
        p.load(func, &btf)
            .unwrap_or_else(|e| panic!("load {prog}: {e}"));
        p.attach().unwrap_or_else(|e| panic!("attach {prog}: {e}"));
    }
    let env = detector::sources::preflight::check(None).expect("preflight");
    let cgroup = std::fs::File::open(&env.cgroup2).expect("cgroup v2 root");
    for prog in [
        C::CALIBRATION_EMPTY_CONNECT4,
        C::CALIBRATION_EMPTY_CONNECT6,
        C::CALIBRATION_EMPTY_SENDMSG4,
        C::CALIBRATION_EMPTY_SENDMSG6,
    ] {
        let p: &mut aya::programs::CgroupSockAddr = ebpf
            .program_mut(prog)
            .expect("calibration program in the object")
            .try_into()
            .expect("a cgroup_sock_addr program");
        p.load().unwrap_or_else(|e| panic!("load {prog}: {e}"));
        p.attach(&cgroup, aya::programs::links::CgroupAttachMode::Single)
            .unwrap_or_else(|e| panic!("attach {prog}: {e}"));
    }
    let p: &mut aya::programs::CgroupSkb = ebpf
        .program_mut(C::CALIBRATION_EMPTY_SKB)
        .expect("calibration program in the object")
        .try_into()
        .expect("a cgroup_skb program");
    p.load().expect("load calibration_empty_skb");
    for way in [
        aya::programs::CgroupSkbAttachType::Ingress,
        aya::programs::CgroupSkbAttachType::Egress,
    ] {
        p.attach(&cgroup, way, aya::programs::links::CgroupAttachMode::Single)
            .unwrap_or_else(|e| panic!("attach calibration_empty_skb {way:?}: {e}"));
    }
    ebpf
}

/// A UDP socket bound on loopback that never reads (datagrams to it are accepted, then
/// dropped when its buffer is full: no ICMP errors in the measurement), and its address.
fn udp_sink() -> (std::net::UdpSocket, libc::sockaddr_in) {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the UDP sink");
    let port = sink.local_addr().expect("sink address").port();
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    (sink, addr)
}

/// `kbench hold-floor`: every calibration program attached (the hooks' floor) until killed;
/// `cargo xtask bench overhead` runs its workloads under it as the `floor` configuration.
fn hold_floor() {
    let _floor = start_floor();
    println!("READY");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts the agent (load, attach, consume on CPU 1); returns once attached.
fn start_agent(watch: &str, hooks_files: bool, helper_reads: bool) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let (s, e, l) = (stop.clone(), events.clone(), lost.clone());
    let watch = watch.to_string();
    let handle = std::thread::spawn(move || {
        pin(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let mut o = detector::sources::kernel::KernelOptions {
                watch_patterns: watchlist::parse(&watch, "<bench>").expect("watch"),
                ..Default::default()
            };
            // Not this process: the workload here must be seen like any other process.
            o.load.agent_tgid = u32::MAX;
            o.load.reads = if helper_reads {
                detector::sources::loader::ReadMode::Helper
            } else {
                detector::sources::loader::ReadMode::Auto
            };
            if !hooks_files {
                o.load
                    .groups
                    .retain(|g| *g != detector::sources::loader::Group::Files);
            }
            let mut cap = LiveCapture::start(&o).expect("agent start");
            let want = if helper_reads { "helper" } else { "direct" };
            if cap.source.reads.mode != want {
                eprintln!("kbench: wanted {want} reads, got {:?}", cap.source.reads);
            }
            tx.send(cap.source.program_ids()).expect("ready");
            let mut buf = Vec::new();
            // The loss counter is published as it grows (at most every 10 ms: it is a map
            // read), so that each workload's losses can be told apart.
            let mut published = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if CONSUMER_PAUSED.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                buf.clear();
                cap.next_events(&mut buf).await.expect("capture");
                e.fetch_add(buf.len() as u64, Ordering::Relaxed);
                if published.elapsed() >= Duration::from_millis(10) {
                    published = Instant::now();
                    l.store(
                        cap.source.counter(detector_common::counter::LOST),
                        Ordering::Relaxed,
                    );
                }
            }
            buf.clear();
            let mut recs = Vec::new();
            cap.source.drain(&mut recs);
            cap.source.check_loss(&mut recs);
            e.fetch_add(recs.len() as u64, Ordering::Relaxed);
            l.store(
                cap.source.counter(detector_common::counter::LOST),
                Ordering::Relaxed,
            );
        });
    });
    let ids = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("agent did not start");
    Running {
        ids,
        stop,
        events,
        lost,
        handle,
    }
}

/// Waits until the consumer has caught up (no new events for 20 ms, and the loss counter
/// published since), then returns (events consumed, kernel losses) so far: a workload's own
/// figures are the difference around it.
fn settle(r: &Running) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(20));
    let mut last = r.events.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = r.events.load(Ordering::Relaxed);
        if now == last {
            return (now, r.lost.load(Ordering::Relaxed));
        }
        last = now;
    }
}

fn stop_agent(r: Running) -> (u64, u64) {
    r.stop.store(true, Ordering::Relaxed);
    let _ = r.handle.join();
    (
        r.events.load(Ordering::Relaxed),
        r.lost.load(Ordering::Relaxed),
    )
}

/// Name, operations per phase, and the loop; a loop that times itself (in another process)
/// returns its ns per operation, else the caller times it.
type Workload = (&'static str, u64, Box<dyn Fn(u64) -> Option<f64>>);

/// fork+exec+wait timed by the overhead bench's `workload` binary (built beside this one), so
/// that the spawning process is a small one. Spawned from here, each fork would copy this
/// process's descriptor table, which holds the in-process agent's ≈50 map, program and link
/// fds only in the attached phases, and charge that to the agent.
fn exec_in_workload(n: u64) -> Option<f64> {
    let bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("workload");
    let out = std::process::Command::new(&bin)
        .args(["--cpu", "0", "exec", "--ops", &n.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo xtask bench kernel builds it)",
                bin.display()
            )
        });
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{} printed no timing ({e}): {out:?}", bin.display()));
    Some(
        v["ns_per_op"]
            .as_f64()
            .expect("ns_per_op in the workload's report"),
    )
}

fn workloads(benign: CString, watched: CString) -> Vec<Workload> {
    let w2 = watched.clone();
    vec![
        (
            "getppid",
            2_000_000,
            Box::new(|n| {
                for _ in 0..n {
                    // SAFETY: no arguments; glibc does not cache getppid.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                }
                None
            }),
        ),
        (
            "open+close (benign)",
            300_000,
            Box::new(move |n| {
                for _ in 0..n {
                    // SAFETY: valid path, fd closed right away.
                    unsafe {
                        let fd = libc::open(benign.as_ptr(), libc::O_RDONLY);
                        libc::close(fd);
                    }
                }
                None
            }),
        ),
        (
            "open+close (watched file)",
            100_000,
            Box::new(move |n| {
                for _ in 0..n {
                    // SAFETY: as above.
                    unsafe {
                        let fd = libc::open(w2.as_ptr(), libc::O_RDONLY);
                        libc::close(fd);
                    }
                }
                None
            }),
        ),
        (
            "TCP connect (loopback, refused)",
            20_000,
            Box::new(|n| {
                let addr = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: 1u16.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
                    },
                    sin_zero: [0; 8],
                };
                for _ in 0..n {
                    // SAFETY: valid sockaddr and length; fd closed.
                    unsafe {
                        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                        libc::connect(
                            fd,
                            &addr as *const _ as *const libc::sockaddr,
                            std::mem::size_of::<libc::sockaddr_in>() as u32,
                        );
                        libc::close(fd);
                    }
                }
                None
            }),
        ),
        (
            "TCP connect+accept+close (loopback, established)",
            10_000,
            Box::new(|n| {
                // SAFETY: plain socket syscalls on valid fds and sockaddrs; every fd is closed.
                unsafe {
                    let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    let mut addr = libc::sockaddr_in {
                        sin_family: libc::AF_INET as u16,
                        sin_port: 0,
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
                        },
                        sin_zero: [0; 8],
                    };
                    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    libc::bind(l, &addr as *const _ as *const libc::sockaddr, len);
                    libc::listen(l, 128);
                    let mut alen = len;
                    libc::getsockname(l, &mut addr as *mut _ as *mut libc::sockaddr, &mut alen);
                    for _ in 0..n {
                        let c = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                        // Reset on close: no TIME_WAIT, so 100k connections do not exhaust
                        // the ephemeral ports.
                        let lg = libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        };
                        libc::setsockopt(
                            c,
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            &lg as *const _ as *const libc::c_void,
                            std::mem::size_of::<libc::linger>() as u32,
                        );
                        libc::connect(c, &addr as *const _ as *const libc::sockaddr, len);
                        let a = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                        libc::close(c);
                        libc::close(a);
                    }
                    libc::close(l);
                }
                None
            }),
        ),
        (
            // Unconnected sends: the sendmsg hook and the egress hook on every datagram.
            "UDP sendto (loopback, unconnected)",
            200_000,
            Box::new(|n| {
                let (_sink, addr) = udp_sink();
                // SAFETY: valid socket, buffer, sockaddr and length; fd closed.
                unsafe {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    for _ in 0..n {
                        libc::sendto(
                            fd,
                            b"x".as_ptr() as *const libc::c_void,
                            1,
                            0,
                            &addr as *const _ as *const libc::sockaddr,
                            std::mem::size_of::<libc::sockaddr_in>() as u32,
                        );
                    }
                    libc::close(fd);
                }
                None
            }),
        ),
        (
            // A connected socket: the egress hook on every datagram (one record, the first).
            "UDP send (loopback, connected)",
            200_000,
            Box::new(|n| {
                let (_sink, addr) = udp_sink();
                // SAFETY: as above.
                unsafe {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    libc::connect(
                        fd,
                        &addr as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    );
                    for _ in 0..n {
                        libc::send(fd, b"x".as_ptr() as *const libc::c_void, 1, 0);
                    }
                    libc::close(fd);
                }
                None
            }),
        ),
        ("fork+exec+wait /bin/true", 400, Box::new(exec_in_workload)),
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// UDP connects paced at `rate`/s for `dur`: each is one emitted record.
fn burst(rate: u64, dur: Duration) -> (u64, f64) {
    // SAFETY: plain socket syscalls on a valid fd and sockaddr.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 9u16.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < dur {
            let due = (start.elapsed().as_nanos() as u64 * rate) / 1_000_000_000;
            while sent < due {
                libc::connect(
                    fd,
                    &addr as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                sent += 1;
            }
        }
        libc::close(fd);
        (sent, sent as f64 / start.elapsed().as_secs_f64())
    }
}

/// (run_cnt, run_time_ns) of each of `ids` from `bpftool -j prog show`.
fn prog_stats(ids: &[(String, u32)]) -> Vec<(u64, u64)> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool (installed by `cargo xtask setup`)");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    let progs = all.as_array().cloned().unwrap_or_default();
    ids.iter()
        .map(|(_, id)| {
            progs
                .iter()
                .find(|p| p["id"].as_u64() == Some(*id as u64))
                .map(|p| {
                    (
                        p["run_cnt"].as_u64().unwrap_or(0),
                        p["run_time_ns"].as_u64().unwrap_or(0),
                    )
                })
                .unwrap_or((0, 0))
        })
        .collect()
}

/// `kbench stats [rounds]`: ns per program run (`kernel.bpf_stats_enabled`) for each workload,
/// direct loads against helper-call reads, agents alternating (A B A B). Less sensitive to
/// other load on the machine than throughput ratios.
fn stats(rounds: usize, loads: &[Workload], watch: &str) {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let old = std::fs::read_to_string(SYSCTL).unwrap_or_else(|_| "0".into());
    std::fs::write(SYSCTL, "1").expect("enable bpf_stats (root)");
    // (workload, program) → per mode → ns/run samples, and runs per op.
    let mut rows: Vec<(String, String, [Vec<f64>; 2], f64)> = Vec::new();
    for r in 0..rounds {
        for (m, helper) in [false, true].into_iter().enumerate() {
            let agent = start_agent(watch, true, helper);
            for w in loads {
                let before = prog_stats(&agent.ids);
                (w.2)(w.1);
                let after = prog_stats(&agent.ids);
                for (i, (name, _)) in agent.ids.iter().enumerate() {
                    let runs = after[i].0 - before[i].0;
                    // Programs that fire at least once per operation of the workload; programs
                    // run system-wide, so runs from other processes mix in (the runs/op column
                    // shows how many).
                    if runs < w.1 * 9 / 10 {
                        continue;
                    }
                    let ns = (after[i].1 - before[i].1) as f64 / runs as f64;
                    // The tp_btf variant of a hook counts as the hook.
                    let name = name.trim_end_matches("_btf").to_string();
                    let idx = match rows.iter().position(|x| x.0 == w.0 && x.1 == name) {
                        Some(i) => i,
                        None => {
                            rows.push((
                                w.0.to_string(),
                                name.clone(),
                                [Vec::new(), Vec::new()],
                                runs as f64 / w.1 as f64,
                            ));
                            rows.len() - 1
                        }
                    };
                    rows[idx].2[m].push(ns);
                }
            }
            let _ = stop_agent(agent);
        }
        eprintln!("kbench stats: round {}/{rounds} done", r + 1);
    }
    let _ = std::fs::write(SYSCTL, old.trim());
    println!("| workload | program | runs/op | direct ns/run (median) | helper ns/run (median) | direct/helper |");
    println!("|---|---|---|---|---|---|");
    for (w, p, [d, h], per) in rows.iter_mut() {
        let (md, mh) = (median(d), median(h));
        println!(
            "| {w} | {p} | {per:.2} | {md:.0} | {mh:.0} | {:.2} |",
            md / mh
        );
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hold-floor") {
        hold_floor();
        return;
    }
    let stats_mode = args.first().map(|a| a == "stats").unwrap_or(false);
    if stats_mode {
        args.remove(0);
    }
    // `--only TEXT`: the workloads whose name contains TEXT (to look at one closely).
    let only = args.iter().position(|a| a == "--only").map(|i| {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        v
    });
    // `--ops N`: operations per phase for every workload run (more for a steadier median).
    let ops = args.iter().position(|a| a == "--ops").map(|i| {
        let v = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        args.drain(i..(i + 2).min(args.len()));
        v.expect("--ops takes a number")
    });
    // `--paused-phase`: a fifth phase, direct loads with the consumer paused while the workload
    // runs (its records wait in the ring buffer; keep `--ops` small enough for them to fit).
    let paused_phase = args
        .iter()
        .position(|a| a == "--paused-phase")
        .map(|i| args.remove(i))
        .is_some();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = std::path::PathBuf::from(format!("/var/tmp/kbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let benign = dir.join("benign.txt");
    let watched = dir.join("secret.key");
    std::fs::write(&benign, "x").expect("write");
    std::fs::write(&watched, "x").expect("write");
    let watch = format!("{}/secret.key token\n", dir.display());
    let c = |p: &std::path::Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let mut loads = workloads(c(&benign), c(&watched));
    if let Some(o) = &only {
        loads.retain(|w| w.0.contains(o.as_str()));
        assert!(!loads.is_empty(), "no workload named like {o:?}");
    }
    if let Some(n) = ops {
        loads.iter_mut().for_each(|w| w.1 = n);
    }
    pin(0);
    if stats_mode {
        stats(rounds, &loads, &watch);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    let mut base: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    let mut att: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    let mut helper: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    // Floor phase: the empty calibration programs on every hook (see `start_floor`).
    let mut floor: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    let mut paused: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    let mut emitted = 0u64;
    let mut lost = 0u64;
    // Per workload, over both attached phases: (records consumed, kernel losses).
    let mut per_load = vec![(0u64, 0u64); loads.len()];
    let measure = |w: &Workload| {
        let t = Instant::now();
        let own = (w.2)(w.1);
        own.unwrap_or_else(|| t.elapsed().as_nanos() as f64 / w.1 as f64)
    };
    for r in 0..rounds {
        // A: no agent.
        for (i, w) in loads.iter().enumerate() {
            base[i].push(measure(w));
        }
        // B: agent attached and consuming (direct loads); C: the same with helper-call reads
        // (the fallback, and the code before direct loads).
        for (helper_reads, into) in [(false, &mut att), (true, &mut helper)] {
            let agent = start_agent(&watch, true, helper_reads);
            let mut before = settle(&agent);
            for (i, w) in loads.iter().enumerate() {
                into[i].push(measure(w));
                let after = settle(&agent);
                per_load[i].0 += after.0 - before.0;
                per_load[i].1 += after.1 - before.1;
                before = after;
            }
            let (e, l) = stop_agent(agent);
            emitted += e;
            lost += l;
        }
        // E (optional): direct loads, consumer paused during each workload.
        if paused_phase {
            let agent = start_agent(&watch, true, false);
            settle(&agent);
            for (i, w) in loads.iter().enumerate() {
                CONSUMER_PAUSED.store(true, Ordering::Relaxed);
                paused[i].push(measure(w));
                CONSUMER_PAUSED.store(false, Ordering::Relaxed);
                settle(&agent);
            }
            let _ = stop_agent(agent);
        }
        // D: only empty programs on the same hooks (the floor).
        let calib = start_floor();
        for (i, w) in loads.iter().enumerate() {
            floor[i].push(measure(w));
        }
        drop(calib);
        eprintln!("kbench: round {}/{rounds} done", r + 1);
    }

    // No syscall tracepoint at all (files group off, reads kept).
    let mut co_base = Vec::new();
    let mut co_att = Vec::new();
    for _ in 0..rounds {
        co_base.push(measure(&loads[0]));
        let agent = start_agent(&watch, false, false);
        co_att.push(measure(&loads[0]));
        let _ = stop_agent(agent);
    }

    // Ratio = base / attached per round; median and spread over rounds.
    let ratio = |b: &[f64], a: &[f64]| {
        let mut rs: Vec<f64> = b.iter().zip(a.iter()).map(|(b, a)| b / a).collect();
        let (mn, mx) = rs
            .iter()
            .fold((f64::MAX, f64::MIN), |(mn, mx), r| (mn.min(*r), mx.max(*r)));
        format!("{:.3} | {mn:.3}–{mx:.3}", median(&mut rs))
    };
    println!("| workload | ops/phase | base ns/op | floor ns/op | direct ns/op | helper ns/op | ratio floor (median) | floor min–max | ratio direct (median) | direct min–max | ratio helper (median) | helper min–max | ns added/op floor | direct | helper |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, w) in loads.iter().enumerate() {
        let (b, f, a, h) = (&base[i], &floor[i], &att[i], &helper[i]);
        let (mb, mf, ma, mh) = (
            median(&mut b.clone()),
            median(&mut f.clone()),
            median(&mut a.clone()),
            median(&mut h.clone()),
        );
        println!(
            "| {} | {} | {mb:.0} | {mf:.0} | {ma:.0} | {mh:.0} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            w.0,
            w.1,
            ratio(b, f),
            ratio(b, a),
            ratio(b, h),
            mf - mb,
            ma - mb,
            mh - mb
        );
    }
    let (mb, ma) = (median(&mut co_base.clone()), median(&mut co_att.clone()));
    println!(
        "| {}, no syscall tracepoint (--hooks process,net,reads) | {} | {mb:.0} | – | {ma:.0} | – | – | – | {} | – | – | – | {:.0} | – |",
        loads[0].0,
        loads[0].1,
        ratio(&co_base, &co_att),
        ma - mb
    );
    println!();
    if paused_phase {
        println!();
        println!("| workload | base ns/op | direct ns/op | direct, consumer paused ns/op | ns added direct | ns added paused | ratio paused (median) | paused min–max |");
        println!("|---|---:|---:|---:|---:|---:|---|---|");
        for (i, w) in loads.iter().enumerate() {
            let (mb, ma, mp) = (
                median(&mut base[i].clone()),
                median(&mut att[i].clone()),
                median(&mut paused[i].clone()),
            );
            println!(
                "| {} | {mb:.0} | {ma:.0} | {mp:.0} | {:.0} | {:.0} | {} |",
                w.0,
                ma - mb,
                mp - mb,
                ratio(&base[i], &paused[i])
            );
        }
    }
    println!("records consumed in attached phases: {emitted}, kernel losses: {lost}");
    println!();
    println!(
        "| workload | records consumed (direct + helper phases) | kernel losses | records per op |"
    );
    println!("|---|---:|---:|---:|");
    for (i, w) in loads.iter().enumerate() {
        let (e, l) = per_load[i];
        println!(
            "| {} | {e} | {l} | {:.2} |",
            w.0,
            (e + l) as f64 / (2 * rounds as u64 * w.1) as f64
        );
    }

    // Burst: 500k records/s for one second.
    let agent = start_agent(&watch, true, false);
    let (sent, rate) = burst(500_000, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(200));
    let (e, l) = stop_agent(agent);
    println!("burst: {sent} UDP connects at {rate:.0}/s → {e} records consumed, {l} lost");
    let _ = std::fs::remove_dir_all(&dir);
}
