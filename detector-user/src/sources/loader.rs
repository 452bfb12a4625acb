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

/// The embedded eBPF object, unpatched (for calibration runs that load one program of it by
/// themselves; the agent goes through [`load`]).
pub fn object() -> &'static [u8] {
    OBJECT
}

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
    /// The program and hook used instead when the direct loads are patched in.
    direct_variant: Option<(&'static str, Hook)>,
}

const SPECS: &[Spec] = &[
    Spec {
        program: "sched_process_exec",
        hook: Hook::Tracepoint("sched", "sched_process_exec"),
        group: Group::Process,
        covers: "exec events",
        direct_variant: None,
    },
    Spec {
        program: "sched_process_fork",
        hook: Hook::TpBtf("sched_process_fork"),
        group: Group::Process,
        covers: "fork events (parents of new processes)",
        direct_variant: None,
    },
    Spec {
        program: "sched_process_exit",
        hook: Hook::Tracepoint("sched", "sched_process_exit"),
        group: Group::Process,
        covers: "exit events",
        direct_variant: None,
    },
    Spec {
        program: "inet_sock_set_state",
        hook: Hook::Tracepoint("sock", "inet_sock_set_state"),
        group: Group::Net,
        covers: "TCP connects, outcomes and accepts",
        // A raw tracepoint costs each socket state change far less than the classic one,
        // which builds a record for every change before the program runs.
        direct_variant: Some((
            "inet_sock_set_state_btf",
            Hook::TpBtf("inet_sock_set_state"),
        )),
    },
    Spec {
        program: "connect4",
        hook: Hook::Cgroup,
        group: Group::Net,
        covers: "UDP connects (IPv4)",
        direct_variant: None,
    },
    Spec {
        program: "connect6",
        hook: Hook::Cgroup,
        group: Group::Net,
        covers: "UDP connects (IPv6)",
        direct_variant: None,
    },
    Spec {
        program: "sys_exit_openat",
        hook: Hook::Tracepoint("syscalls", "sys_exit_openat"),
        group: Group::Files,
        covers: "credential opens via openat",
        direct_variant: None,
    },
    Spec {
        program: "sys_exit_openat2",
        hook: Hook::Tracepoint("syscalls", "sys_exit_openat2"),
        group: Group::Files,
        covers: "credential opens via openat2",
        direct_variant: None,
    },
    Spec {
        program: "sys_exit_open",
        hook: Hook::Tracepoint("syscalls", "sys_exit_open"),
        group: Group::Files,
        covers: "credential opens via open",
        direct_variant: None,
    },
    Spec {
        program: "sys_exit_open_by_handle_at",
        hook: Hook::Tracepoint("syscalls", "sys_exit_open_by_handle_at"),
        group: Group::Files,
        covers: "credential opens via open_by_handle_at",
        direct_variant: None,
    },
    Spec {
        program: "io_uring_submit_req",
        hook: Hook::Tracepoint("io_uring", "io_uring_submit_req"),
        group: Group::Reads,
        covers: "credential opens and reads through io_uring",
        direct_variant: None,
    },
    Spec {
        program: "io_uring_complete",
        hook: Hook::Tracepoint("io_uring", "io_uring_complete"),
        group: Group::Reads,
        covers: "credential opens through io_uring",
        direct_variant: None,
    },
    Spec {
        program: "mm_filemap_get_pages",
        hook: Hook::Tracepoint("filemap", "mm_filemap_get_pages"),
        group: Group::Reads,
        covers: "credential reads by any path (page cache)",
        direct_variant: None,
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
    /// A producer forces one consumer wakeup each time the pending bytes cross a multiple of
    /// this (0: never; the consumer's timer alone drains the ring).
    pub wakeup_bytes: u32,
    /// Read-record deduplication window.
    pub read_dedup_ns: u64,
    /// Tgid to exclude (the agent itself).
    pub agent_tgid: u32,
    /// Read kernel structures with helper calls even where direct loads would work (for
    /// comparison and for testing the fallback).
    pub helper_reads: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            groups: vec![Group::Process, Group::Net, Group::Files, Group::Reads],
            ring_bytes: 16 * 1024 * 1024,
            wakeup_bytes: 256 * 1024,
            read_dedup_ns: 1_000_000_000,
            agent_tgid: std::process::id(),
            helper_reads: false,
        }
    }
}

/// How the kernel programs read kernel structures, for `status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct KernelReads {
    /// `direct`: BTF-typed direct loads patched with this kernel's offsets (one instruction
    /// per member); `helper`: one `bpf_probe_read_kernel` call per member (slower).
    pub mode: &'static str,
    /// Load instructions patched (direct mode).
    pub patched: usize,
    /// Why the helper-call paths are used, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// The prefilter bitmap in front of `watched` (one element).
    pub watch_bits: aya::maps::Array<MapData, [u64; detector_common::watch_bits::WORDS]>,
    /// The consumer's "asleep, wake me" flag (one element).
    pub consumer_idle: aya::maps::Array<MapData, u32>,
    /// Listening ports → listener.
    pub listeners: BpfHashMap<MapData, ListenKey, detector_common::Header>,
    /// Per-program state.
    pub status: Vec<ProgramStatus>,
    /// Direct loads or helper calls.
    pub reads: KernelReads,
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
///
/// The object's direct loads are patched with this kernel's offsets first; when that is not
/// possible, or the verifier refuses the direct-load variant, the unpatched object is loaded
/// with the helper-call paths selected instead, and `reads` says so.
pub fn load(env: &Environment, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let resolver = offsets::BtfResolver::open(&env.btf)?;
    let mut koff = resolver.kernel_offsets()?;
    let tpoff = offsets::tracepoint_offsets(&env.tracefs);
    let patched = if opts.helper_reads {
        Err(offsets::OffsetError::Direct(
            "helper reads requested".into(),
        ))
    } else {
        resolver.patch_direct_loads(OBJECT)
    };
    let reason = match patched {
        Ok(p) => {
            koff.direct = 1;
            match load_object(env, opts, p.object.bytes(), &koff, &tpoff) {
                Ok(mut l) => {
                    l.reads = KernelReads {
                        mode: "direct",
                        patched: p.patched,
                        reason: None,
                    };
                    return Ok(l);
                }
                Err(LoadError::Verifier {
                    program,
                    error,
                    log_tail,
                }) => {
                    let last = log_tail.lines().last().unwrap_or("").to_string();
                    format!("the verifier refused the direct loads of {program}: {error}: {last}")
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => e.to_string(),
    };
    tracing::warn!("kernel structures read with helper calls (slower): {reason}");
    koff.direct = 0;
    let mut l = load_object(env, opts, OBJECT, &koff, &tpoff)?;
    l.reads = KernelReads {
        mode: "helper",
        patched: 0,
        reason: Some(reason),
    };
    Ok(l)
}

fn load_object(
    env: &Environment,
    opts: &LoadOptions,
    object: &[u8],
    koff: &detector_common::KernelOffsets,
    tpoff: &detector_common::TracepointOffsets,
) -> Result<Loaded, LoadError> {
    let config = AgentConfig {
        agent_tgid: opts.agent_tgid,
        wakeup_bytes: opts.wakeup_bytes,
        read_dedup_ns: opts.read_dedup_ns,
    };
    let mut ebpf = EbpfLoader::new()
        .override_global("KOFF", koff, true)
        .override_global("TPOFF", tpoff, true)
        .override_global("CONFIG", &config, true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .load(object)
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
        let (program, hook_kind) = match spec.direct_variant {
            Some(v) if koff.direct != 0 => v,
            _ => (spec.program, spec.hook),
        };
        let hook = describe(hook_kind, &env.cgroup2);
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
        if let Hook::Tracepoint(c, n) = hook_kind {
            if !env.tracefs.join("events").join(c).join(n).exists() {
                st.reason = Some("this kernel has no such tracepoint".into());
                status.push(st);
                continue;
            }
        }
        let prog = ebpf
            .program_mut(program)
            .ok_or_else(|| LoadError::Object(format!("program {} missing from object", program)))?;
        let attached: Result<(), LoadError> = match hook_kind {
            Hook::Tracepoint(c, n) => {
                let p: &mut TracePoint = prog
                    .try_into()
                    .map_err(|e: ProgramError| LoadError::Object(e.to_string()))?;
                p.load().map_err(|e| program_error(program, e))?;
                p.attach(c, n).map(|_| ()).map_err(|e| LoadError::Attach {
                    program: program.into(),
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
                    Err(e) => return Err(program_error(program, e)),
                }
                p.attach().map(|_| ()).map_err(|e| LoadError::Attach {
                    program: program.into(),
                    hook: hook.clone(),
                    error: chain(&e),
                })
            }
            Hook::Cgroup => {
                let p: &mut CgroupSockAddr = prog
                    .try_into()
                    .map_err(|e: ProgramError| LoadError::Object(e.to_string()))?;
                p.load().map_err(|e| program_error(program, e))?;
                p.attach(&cgroup, CgroupAttachMode::Single)
                    .map(|_| ())
                    .map_err(|e| LoadError::Attach {
                        program: program.into(),
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
    let watch_bits = take_map(&mut ebpf, "WATCH_BITS")?;
    let consumer_idle = take_map(&mut ebpf, "CONSUMER_IDLE")?;
    let listeners = take_map(&mut ebpf, "LISTENERS")?;
    Ok(Loaded {
        ebpf,
        logger,
        events,
        counters,
        watched,
        watch_bits,
        consumer_idle,
        listeners,
        status,
        reads: KernelReads {
            mode: "helper",
            patched: 0,
            reason: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use detector_common::direct;

    use super::{offsets, OBJECT};

    fn table(members: Vec<(i16, i16)>) -> offsets::DirectTable {
        offsets::DirectTable {
            members,
            rdonly_cast: 77,
            types: direct::TYPES.iter().map(|(p, _)| (*p, 5)).collect(),
        }
    }

    /// Placeholders still present in the executable sections of `object`.
    fn placeholders(object: &[u8]) -> usize {
        let t = table((direct::BASE..direct::END).map(|p| (p, 8)).collect());
        match offsets::patch_loads(object, &t) {
            Ok(p) => p.patched,
            Err(_) => 0,
        }
    }

    #[test]
    fn every_placeholder_of_the_object_is_patched() {
        if OBJECT.is_empty() {
            return; // AYA_BUILD_SKIP build: no object to inspect.
        }
        let before = placeholders(OBJECT);
        assert!(before > 64, "the object has {before} direct loads");
        let t = table(
            (direct::BASE..direct::END)
                .map(|p| (p, p - direct::BASE))
                .collect(),
        );
        let patched = offsets::patch_loads(OBJECT, &t).expect("patch");
        assert_eq!(patched.patched, before);
        assert_eq!(placeholders(patched.object.bytes()), 0);
    }

    #[test]
    fn an_unknown_placeholder_is_refused() {
        if OBJECT.is_empty() {
            return;
        }
        let t = table(
            (direct::BASE..direct::END)
                .filter(|p| *p != direct::TASK_FILES)
                .map(|p| (p, 0))
                .collect(),
        );
        let err = offsets::patch_loads(OBJECT, &t).err().expect("must fail");
        assert!(err.to_string().contains("unknown placeholder"), "{err}");
    }

    #[test]
    fn this_kernel_resolves_every_placeholder() {
        let btf = std::path::Path::new("/sys/kernel/btf/vmlinux");
        if !btf.exists() {
            return;
        }
        let r = offsets::BtfResolver::open(btf).expect("btf");
        let t = r.direct_table().expect("resolved");
        assert_eq!(
            t.members.len(),
            direct::MEMBERS.len()
                + direct::MEMBER_TAILS.len()
                + direct::DENTRY_WORDS.len()
                + direct::FD_SLOTS
        );
        assert!(t.rdonly_cast > 0 && t.types.iter().all(|(_, id)| *id > 0));
        let files = t
            .members
            .iter()
            .find(|(p, _)| *p == direct::TASK_FILES)
            .expect("files");
        assert_eq!(
            files.1 as u32,
            r.offset("task_struct", "files").expect("files")
        );
    }
}
