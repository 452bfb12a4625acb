//! Micro workloads of `cargo xtask bench overhead`: one kind of operation in a tight loop,
//! timed, one JSON line on stdout (`{"workload":…,"ops":…,"elapsed_ns":…,"ns_per_op":…}`).
//!
//! The harness runs this binary once per workload and phase, pinned to a CPU (`--cpu`), under
//! each configuration (no agent, `detector run`, auditd, bpftrace); every operation is a real
//! syscall sequence the agents see: getppid (a syscall no hook cares about), open+close of a
//! benign or a watched file, a loopback TCP connect that is accepted and closed, and
//! fork+exec+wait of a program.

use std::{
    ffi::CString,
    io::Read as _,
    net::{TcpListener, TcpStream},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "timed micro workloads for the overhead benchmark")]
struct Cli {
    /// Pin this process to this CPU before the loop.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    /// Untimed operations run first (caches, page tables, the listener's first accept).
    #[arg(long, global = true, default_value_t = 0)]
    warmup: u64,
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
enum Op {
    /// getppid(2): a syscall none of the agents hooks; measures the tax on unrelated syscalls.
    Getppid {
        /// Operations to time.
        #[arg(long)]
        ops: u64,
    },
    /// open(O_RDONLY)+close of one existing file.
    Open {
        /// Operations to time.
        #[arg(long)]
        ops: u64,
        /// The file to open (must exist).
        #[arg(long)]
        path: PathBuf,
    },
    /// TCP connect to a listener on 127.0.0.1 that accepts and closes; the client waits for
    /// that close, then closes too.
    Connect {
        /// Operations to time.
        #[arg(long)]
        ops: u64,
    },
    /// fork + execv(program) + waitpid.
    Exec {
        /// Operations to time.
        #[arg(long)]
        ops: u64,
        /// Program to run (no arguments).
        #[arg(long, default_value = "/bin/true")]
        program: PathBuf,
    },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Getppid { .. } => "getppid",
            Op::Open { .. } => "open",
            Op::Connect { .. } => "connect",
            Op::Exec { .. } => "exec",
        }
    }

    fn ops(&self) -> u64 {
        match self {
            Op::Getppid { ops }
            | Op::Open { ops, .. }
            | Op::Connect { ops }
            | Op::Exec { ops, .. } => *ops,
        }
    }
}

/// One timed run.
#[derive(Debug)]
struct Timing {
    ops: u64,
    elapsed_ns: u128,
}

fn pin(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays inside it for cpu < CPU_SETSIZE.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!("--cpu {cpu}: out of range");
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("--cpu {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn getppid_loop(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
}

fn open_loop(path: &CString, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: a valid NUL-terminated path; the fd is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!(
                "open {}: {}",
                path.to_string_lossy(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The accepting side of the connect workload: accepts and closes at once, until `stop`.
fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        drop(conn);
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Connects and waits for the server's close (EOF) before closing: one operation is a whole
/// connect+accept+close, and the client never outruns the accept queue (a full queue drops
/// SYNs, and the retransmission after a second would swamp the measurement).
fn connect_loop(addr: std::net::SocketAddr, n: u64) -> Result<()> {
    let mut b = [0u8; 1];
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(_) => bail!("{addr}: the server sent data"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(e).with_context(|| format!("read from {addr}")),
        }
    }
    Ok(())
}

fn exec_loop(program: &CString, n: u64) -> Result<()> {
    let argv = [program.as_ptr(), std::ptr::null()];
    for _ in 0..n {
        // SAFETY: single-threaded here; the child only calls execv and _exit
        // (async-signal-safe), with arguments prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                libc::execv(program.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        // SAFETY: pid is our child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            bail!("waitpid: {}", std::io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!(
                "{} did not exit 0 (wait status {status:#x})",
                program.to_string_lossy()
            );
        }
    }
    Ok(())
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("{}: path contains a NUL byte", p.display()))
}

/// Runs `op` (after `warmup` untimed operations) and times it.
fn run(op: &Op, warmup: u64) -> Result<Timing> {
    let n = op.ops();
    if n == 0 {
        bail!("--ops must be at least 1");
    }
    let elapsed_ns = match op {
        Op::Getppid { .. } => {
            getppid_loop(warmup);
            let t = Instant::now();
            getppid_loop(n);
            t.elapsed().as_nanos()
        }
        Op::Open { path, .. } => {
            let c = cstring(path)?;
            // The first open says clearly which file is missing, before any timing.
            open_loop(&c, warmup.max(1))?;
            let t = Instant::now();
            open_loop(&c, n)?;
            t.elapsed().as_nanos()
        }
        Op::Connect { .. } => {
            let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let stop = Arc::new(AtomicBool::new(false));
            let server = {
                let stop = stop.clone();
                std::thread::spawn(move || serve(listener, stop))
            };
            connect_loop(addr, warmup)?;
            let t = Instant::now();
            let r = connect_loop(addr, n);
            let e = t.elapsed().as_nanos();
            // Stop the server: the flag, then one more connection for it to see it.
            stop.store(true, Ordering::Relaxed);
            drop(TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?);
            let _ = server.join();
            r?;
            e
        }
        Op::Exec { program, .. } => {
            let c = cstring(program)?;
            exec_loop(&c, warmup.max(1))?;
            let t = Instant::now();
            exec_loop(&c, n)?;
            t.elapsed().as_nanos()
        }
    };
    Ok(Timing { ops: n, elapsed_ns })
}

fn report(op: &Op, t: &Timing) -> String {
    serde_json::json!({
        "workload": op.name(),
        "ops": t.ops,
        "elapsed_ns": t.elapsed_ns as u64,
        "ns_per_op": t.elapsed_ns as f64 / t.ops as f64,
    })
    .to_string()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(cpu) = cli.cpu {
        pin(cpu)?;
    }
    let t = run(&cli.op, cli.warmup)?;
    println!("{}", report(&cli.op, &t));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("workload").chain(args.iter().copied()))
    }

    #[test]
    fn parses_each_workload_and_the_global_flags() {
        let c = parse(&[
            "--cpu", "0", "--warmup", "5", "open", "--ops", "7", "--path", "/x",
        ])
        .expect("valid");
        assert_eq!(c.cpu, Some(0));
        assert_eq!(c.warmup, 5);
        assert_eq!(
            c.op,
            Op::Open {
                ops: 7,
                path: "/x".into()
            }
        );
        let c = parse(&["exec", "--ops", "3"]).expect("valid");
        assert_eq!(
            c.op,
            Op::Exec {
                ops: 3,
                program: "/bin/true".into()
            }
        );
        assert_eq!(parse(&["getppid", "--ops", "1"]).expect("valid").cpu, None);
        assert!(
            parse(&["open", "--ops", "1"]).is_err(),
            "--path is required"
        );
        assert!(parse(&["getppid", "--ops", "many"]).is_err());
        assert!(parse(&["fly", "--ops", "1"]).is_err());
    }

    #[test]
    fn every_workload_runs_and_reports_its_ops() {
        let dir = std::env::temp_dir().join(format!("workload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("f");
        std::fs::write(&file, b"x").expect("file");
        for op in [
            Op::Getppid { ops: 1000 },
            Op::Open {
                ops: 50,
                path: file.clone(),
            },
            Op::Connect { ops: 20 },
            Op::Exec {
                ops: 3,
                program: "/bin/true".into(),
            },
        ] {
            let t = run(&op, 2).unwrap_or_else(|e| panic!("{}: {e:#}", op.name()));
            assert_eq!(t.ops, op.ops());
            assert!(t.elapsed_ns > 0);
            let v: serde_json::Value = serde_json::from_str(&report(&op, &t)).expect("json");
            assert_eq!(v["workload"], op.name());
            assert_eq!(v["ops"], op.ops());
            assert!(v["ns_per_op"].as_f64().expect("number") > 0.0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failures_are_errors_that_name_the_cause() {
        let missing = Op::Open {
            ops: 1,
            path: "/nonexistent/workload-test".into(),
        };
        let e = run(&missing, 0).expect_err("missing file");
        assert!(
            format!("{e:#}").contains("/nonexistent/workload-test"),
            "{e:#}"
        );
        let failing = Op::Exec {
            ops: 1,
            program: "/bin/false".into(),
        };
        let e = run(&failing, 0).expect_err("/bin/false exits 1");
        assert!(format!("{e:#}").contains("/bin/false"), "{e:#}");
        assert!(run(&Op::Getppid { ops: 0 }, 0).is_err());
    }
}
