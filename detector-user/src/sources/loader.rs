//! Loads the embedded kernel programs, fills in offsets and settings, attaches every hook this
//! kernel has, and reports what is attached.

use std::path::Path;

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{links::CgroupAttachMode, BtfTracePoint, CgroupSockAddr, ProgramError, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use detector_common::{AgentConfig, ListenKey, WatchKey};
use serde::Serialize;

use super::{offsets, preflight::Environment};

/// The kernel object built by build.rs (aya-build), embedded in the binary.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/detector"));

/// Failure to load or attach.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Built with `AYA_BUILD_SKIP`.
    #[error("this binary was built without its kernel programs (AYA_BUILD_SKIP); rebuild without it after `cargo xtask setup`")]
    NoObject,
    /// Offsets could not be resolved.
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetError),
    /// The object did not load.
    #[error("loading the eBPF object failed: {0}")]
    Object(String),
    /// The verifier rejected a program.
    #[error("the kernel verifier rejected program `{program}`: {error}\n--- verifier log (tail) ---\n{log_tail}")]
    Verifier {
        /// Program name.
        program: String,
        /// The syscall error.
        error: String,
        /// Last lines of the verifier log.
        log_tail: String,
    },
    /// Attaching failed for another reason.
    #[error("attaching program `{program}` to {hook} failed: {error}")]
    Attach {
        /// Program name.
        program: String,
        /// Hook.
        hook: String,
        /// Why.
        error: String,
    },
    /// A map is missing from the object.
    #[error("map `{0}` missing from the eBPF object")]
    Map(String),
}

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// Classic tracepoint `category/name`.
    Tracepoint(&'static str, &'static str),
    /// BTF-typed raw tracepoint.
    TpBtf(&'static str),
    /// cgroup sock_addr hook on the cgroup v2 root.
    Cgroup,
}

/// Groups of hooks an operator can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// exec/fork/exit.
    Process,
    /// Connections.
    Net,
    /// Credential opens at the exit of open-family syscalls (the only group with syscall
    /// tracepoints, so the only one that taxes unrelated syscalls).
    Files,
    /// Credential access seen without syscall tracepoints: io_uring requests and buffered
    /// reads through the page cache.
    Reads,
}

struct Spec {
    program: &'static str,
    hook: Hook,
    group: Group,
    /// What is lost when this hook is missing.
    covers: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        program: "sched_process_exec",
        hook: Hook::Tracepoint("sched", "sched_process_exec"),
        group: Group::Process,
        covers: "exec events",
    },
    Spec {
        program: "sched_process_fork",
        hook: Hook::TpBtf("sched_process_fork"),
        group: Group::Process,
        covers: "fork events (parents of new processes)",
    },
    Spec {
        program: "sched_process_exit",
        hook: Hook::Tracepoint("sched", "sched_process_exit"),
        group: Group::Process,
        covers: "exit events",
    },
    Spec {
        program: "inet_sock_set_state",
        hook: Hook::Tracepoint("sock", "inet_sock_set_state"),
        group: Group::Net,
        covers: "TCP connects, outcomes and accepts",
    },
    Spec {
        program: "connect4",
        hook: Hook::Cgroup,
        group: Group::Net,
        covers: "UDP connects (IPv4)",
    },
    Spec {
        program: "connect6",
        hook: Hook::Cgroup,
        group: Group::Net,
        covers: "UDP connects (IPv6)",
    },
    Spec {
        program: "sys_exit_openat",
        hook: Hook::Tracepoint("syscalls", "sys_exit_openat"),
        group: Group::Files,
        covers: "credential opens via openat",
    },
    Spec {
        program: "sys_exit_openat2",
        hook: Hook::Tracepoint("syscalls", "sys_exit_openat2"),
        group: Group::Files,
        covers: "credential opens via openat2",
    },
    Spec {
        program: "sys_exit_open",
        hook: Hook::Tracepoint("syscalls", "sys_exit_open"),
        group: Group::Files,
        covers: "credential opens via open",
    },
    Spec {
        program: "sys_exit_open_by_handle_at",
        hook: Hook::Tracepoint("syscalls", "sys_exit_open_by_handle_at"),
        group: Group::Files,
        covers: "credential opens via open_by_handle_at",
    },
    Spec {
        program: "io_uring_submit_req",
        hook: Hook::Tracepoint("io_uring", "io_uring_submit_req"),
        group: Group::Reads,
        covers: "credential opens and reads through io_uring",
    },
    Spec {
        program: "io_uring_complete",
        hook: Hook::Tracepoint("io_uring", "io_uring_complete"),
        group: Group::Reads,
        covers: "credential opens through io_uring",
    },
    Spec {
        program: "mm_filemap_get_pages",
        hook: Hook::Tracepoint("filemap", "mm_filemap_get_pages"),
        group: Group::Reads,
        covers: "credential reads by any path (page cache)",
    },
];

/// One program's state, for `status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    /// Program name.
    pub program: String,
    /// Hook description.
    pub hook: String,
    /// Group.
    pub group: Group,
    /// Attached?
    pub attached: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What is missing when not attached.
    pub covers: String,
}

/// Capture options.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Hook groups to attach.
    pub groups: Vec<Group>,
    /// Ring buffer size in bytes (power of two).
    pub ring_bytes: u32,
    /// Pending bytes that force a wakeup.
    pub wakeup_bytes: u32,
    /// Read-record deduplication window.
    pub read_dedup_ns: u64,
    /// Tgid to exclude (the agent itself).
    pub agent_tgid: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            groups: vec![Group::Process, Group::Net, Group::Files, Group::Reads],
            ring_bytes: 16 * 1024 * 1024,
            wakeup_bytes: 256 * 1024,
            read_dedup_ns: 1_000_000_000,
            agent_tgid: std::process::id(),
        }
    }
}

/// Loaded and attached programs with the maps userspace uses.
pub struct Loaded {
    /// Keeps programs, links and maps alive.
    pub ebpf: Ebpf,
    /// Keeps the log map's fd open (closing it breaks loads).
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The event ring buffer.
    pub events: RingBuf<MapData>,
    /// Per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// Watched (dev, ino) → id.
    pub watched: BpfHashMap<MapData, WatchKey, u32>,
    /// Listening ports → listener.
    pub listeners: BpfHashMap<MapData, ListenKey, detector_common::Header>,
    /// Per-program state.
    pub status: Vec<ProgramStatus>,
}

/// The error and its sources, joined (aya's errors keep the errno in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn describe(hook: Hook, cgroup: &Path) -> String {
    match hook {
        Hook::Tracepoint(c, n) => format!("tracepoint {c}:{n}"),
        Hook::TpBtf(n) => format!("tp_btf/{n}"),
        Hook::Cgroup => format!("cgroup sock_addr on {}", cgroup.display()),
    }
}

fn program_error(program: &str, e: ProgramError) -> LoadError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => LoadError::Verifier {
            program: program.to_string(),
            error: io_error.to_string(),
            log_tail: tail(&verifier_log.to_string(), 25),
        },
        other => LoadError::Object(format!("{program}: {other}")),
    }
}

/// Takes map `name` out of the object as the typed map userspace uses.
fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map>,
    T::Error: std::fmt::Display,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| LoadError::Map(name.into()))?;
    T::try_from(map).map_err(|e| LoadError::Object(format!("map {name}: {e}")))
}

/// Loads and attaches. Hooks this kernel lacks are skipped and reported in `status`; a program
/// the verifier rejects is an error with the verifier's log tail.
pub fn load(env: &Environment, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let resolver = offsets::BtfResolver::open(&env.btf)?;
    let koff = resolver.kernel_offsets()?;
    let tpoff = offsets::tracepoint_offsets(&env.tracefs);
    let config = AgentConfig {
        agent_tgid: opts.agent_tgid,
        wakeup_bytes: opts.wakeup_bytes,
        read_dedup_ns: opts.read_dedup_ns,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global("KOFF", &koff, true)
        .override_global("TPOFF", &tpoff, true)
        .override_global("CONFIG", &config, true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .load(OBJECT)
        .map_err(|e| LoadError::Object(format!("{e:#}")))?;
    let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
    let btf = Btf::from_sys_fs().ok();
    let cgroup = std::fs::File::open(&env.cgroup2).map_err(|e| LoadError::Attach {
        program: "connect4/6".into(),
        hook: env.cgroup2.display().to_string(),
        error: chain(&e),
    })?;

    let mut status = Vec::new();
    for spec in SPECS {
        let hook = describe(spec.hook, &env.cgroup2);
        let mut st = ProgramStatus {
            program: spec.program.into(),
            hook: hook.clone(),
            group: spec.group,
            attached: false,
            reason: None,
            covers: spec.covers.into(),
        };
        if !opts.groups.contains(&spec.group) {
            st.reason = Some("disabled by configuration".into());
            status.push(st);
            continue;
        }
        // A tracepoint this kernel does not have: run without it, say so.
        if let Hook::Tracepoint(c, n) = spec.hook {
            if !env.tracefs.join("events").join(c).join(n).exists() {
                st.reason = Some("this kernel has no such tracepoint".into());
                status.push(st);
                continue;
            }
        }
        let prog = ebpf.program_mut(spec.program).ok_or_else(|| {
            LoadError::Object(format!("program {} missing from object", spec.program))
        })?;
        let attached: Result<(), LoadError> = match spec.hook {
            Hook::Tracepoint(c, n) => {
                let p: &mut TracePoint = prog
                    .try_into()
                    .map_err(|e: ProgramError| LoadError::Object(e.to_string()))?;
                p.load().map_err(|e| program_error(spec.program, e))?;
                p.attach(c, n).map(|_| ()).map_err(|e| LoadError::Attach {
                    program: spec.program.into(),
                    hook: hook.clone(),
                    error: chain(&e),
                })
            }
            Hook::TpBtf(n) => {
                let Some(btf) = btf.as_ref() else {
                    st.reason = Some("kernel BTF unavailable to aya".into());
                    status.push(st);
                    continue;
                };
                let p: &mut BtfTracePoint = prog
                    .try_into()
                    .map_err(|e: ProgramError| LoadError::Object(e.to_string()))?;
                match p.load(n, btf) {
                    Ok(()) => {}
                    // tp_btf needs the BTF id of the tracepoint; older kernels lack it.
                    Err(ProgramError::LoadError {
                        io_error,
                        verifier_log,
                    }) if io_error.raw_os_error() == Some(libc::EINVAL)
                        && verifier_log.to_string().is_empty() =>
                    {
                        st.reason = Some(format!("tp_btf/{n} unsupported: {io_error}"));
                        status.push(st);
                        continue;
                    }
                    Err(e) => return Err(program_error(spec.program, e)),
                }
                p.attach().map(|_| ()).map_err(|e| LoadError::Attach {
                    program: spec.program.into(),
                    hook: hook.clone(),
                    error: chain(&e),
                })
            }
            Hook::Cgroup => {
                let p: &mut CgroupSockAddr = prog
                    .try_into()
                    .map_err(|e: ProgramError| LoadError::Object(e.to_string()))?;
                p.load().map_err(|e| program_error(spec.program, e))?;
                p.attach(&cgroup, CgroupAttachMode::Single)
                    .map(|_| ())
                    .map_err(|e| LoadError::Attach {
                        program: spec.program.into(),
                        hook: hook.clone(),
                        error: chain(&e),
                    })
            }
        };
        match attached {
            Ok(()) => st.attached = true,
            Err(e) => {
                st.reason = Some(e.to_string());
            }
        }
        status.push(st);
    }

    let events = take_map(&mut ebpf, "EVENTS")?;
    let counters = take_map(&mut ebpf, "COUNTERS")?;
    let watched = take_map(&mut ebpf, "WATCHED")?;
    let listeners = take_map(&mut ebpf, "LISTENERS")?;
    Ok(Loaded {
        ebpf,
        logger,
        events,
        counters,
        watched,
        listeners,
        status,
    })
}
