//! Loads the embedded kernel programs, fills in offsets and settings, attaches every hook this
//! kernel has, and reports what is attached.

use std::path::Path;

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        links::CgroupAttachMode, BtfTracePoint, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr,
        FEntry, ProgramError, TracePoint,
    },
    Btf, Ebpf, EbpfLoader,
};
use detector_common::{
    names::{global as G, map as M, program as P},
    AgentConfig, ListenKey, WatchKey,
};
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
    /// Not one program attached: there is nothing to capture with.
    #[error("no kernel program could be attached on this kernel, so nothing can be captured: {0}")]
    NothingAttached(String),
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
    /// Function entry (BPF trampoline) of a kernel function.
    FEntry(&'static str),
    /// cgroup skb hook on the cgroup v2 root: every packet of the host's sockets, one way.
    CgroupSkb(SkbWay),
}

/// Direction of a [`Hook::CgroupSkb`].
#[derive(Debug, Clone, Copy)]
enum SkbWay {
    Ingress,
    Egress,
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

/// One way of covering a concern: a program of the object on a hook.
struct Candidate {
    program: &'static str,
    hook: Hook,
    /// Only with direct loads patched in (the program reads through BTF-typed pointers).
    direct_only: bool,
    /// Why this candidate exists when it is not the first one: said when it is used.
    note: &'static str,
}

/// A concern the capture covers, with its candidates in order of preference: the first one
/// this kernel has and accepts is attached, the others are fallbacks.
struct Spec {
    /// The concern's stable name in status, health and metrics (a program name).
    name: &'static str,
    group: Group,
    /// What is lost when no candidate attaches.
    covers: &'static str,
    candidates: &'static [Candidate],
}

/// The common case: one program on one hook.
macro_rules! one {
    ($program:expr, $hook:expr) => {
        &[Candidate {
            program: $program,
            hook: $hook,
            direct_only: false,
            note: "",
        }]
    };
}

const SPECS: &[Spec] = &[
    Spec {
        name: P::SCHED_PROCESS_EXEC,
        group: Group::Process,
        covers: "exec events",
        candidates: one!(
            P::SCHED_PROCESS_EXEC,
            Hook::Tracepoint("sched", "sched_process_exec")
        ),
    },
    Spec {
        name: P::SCHED_PROCESS_FORK,
        group: Group::Process,
        covers: "fork events (parents of new processes)",
        candidates: one!(P::SCHED_PROCESS_FORK, Hook::TpBtf("sched_process_fork")),
    },
    Spec {
        name: P::SCHED_PROCESS_EXIT,
        group: Group::Process,
        covers: "exit events",
        candidates: one!(
            P::SCHED_PROCESS_EXIT,
            Hook::Tracepoint("sched", "sched_process_exit")
        ),
    },
    Spec {
        name: P::INET_SOCK_SET_STATE,
        group: Group::Net,
        covers: "TCP connects, outcomes and accepts",
        candidates: &[
            // A raw tracepoint costs each socket state change far less than the classic one,
            // which builds a record for every change before the program runs.
            Candidate {
                program: P::INET_SOCK_SET_STATE_BTF,
                hook: Hook::TpBtf("inet_sock_set_state"),
                direct_only: true,
                note: "",
            },
            Candidate {
                program: P::INET_SOCK_SET_STATE,
                hook: Hook::Tracepoint("sock", "inet_sock_set_state"),
                direct_only: false,
                note: "the classic tracepoint (builds a record per state change)",
            },
        ],
    },
    Spec {
        name: P::CONNECT4,
        group: Group::Net,
        covers: "UDP connects (IPv4)",
        candidates: one!(P::CONNECT4, Hook::Cgroup),
    },
    Spec {
        name: P::CONNECT6,
        group: Group::Net,
        covers: "UDP connects (IPv6)",
        candidates: one!(P::CONNECT6, Hook::Cgroup),
    },
    Spec {
        name: P::SENDMSG4,
        group: Group::Net,
        covers: "unconnected UDP sends (IPv4)",
        candidates: one!(P::SENDMSG4, Hook::Cgroup),
    },
    Spec {
        name: P::SENDMSG6,
        group: Group::Net,
        covers: "unconnected UDP sends (IPv6)",
        candidates: one!(P::SENDMSG6, Hook::Cgroup),
    },
    Spec {
        name: P::UDP_EGRESS,
        group: Group::Net,
        covers:
            "the first datagram of connected UDP sockets (without it no UDP connect is a contact)",
        candidates: one!(P::UDP_EGRESS, Hook::CgroupSkb(SkbWay::Egress)),
    },
    Spec {
        name: P::DNS_INGRESS,
        group: Group::Net,
        covers: "DNS answers (the names of the hosts connections go to)",
        candidates: one!(P::DNS_INGRESS, Hook::CgroupSkb(SkbWay::Ingress)),
    },
    Spec {
        name: P::SYS_EXIT_OPENAT,
        group: Group::Files,
        covers: "credential opens via openat",
        candidates: one!(
            P::SYS_EXIT_OPENAT,
            Hook::Tracepoint("syscalls", "sys_exit_openat")
        ),
    },
    Spec {
        name: P::SYS_EXIT_OPENAT2,
        group: Group::Files,
        covers: "credential opens via openat2",
        candidates: one!(
            P::SYS_EXIT_OPENAT2,
            Hook::Tracepoint("syscalls", "sys_exit_openat2")
        ),
    },
    Spec {
        name: P::SYS_EXIT_OPEN,
        group: Group::Files,
        covers: "credential opens via open",
        candidates: one!(
            P::SYS_EXIT_OPEN,
            Hook::Tracepoint("syscalls", "sys_exit_open")
        ),
    },
    Spec {
        name: P::SYS_EXIT_OPEN_BY_HANDLE_AT,
        group: Group::Files,
        covers: "credential opens via open_by_handle_at",
        candidates: one!(
            P::SYS_EXIT_OPEN_BY_HANDLE_AT,
            Hook::Tracepoint("syscalls", "sys_exit_open_by_handle_at")
        ),
    },
    Spec {
        name: P::IO_URING_SUBMIT_REQ,
        group: Group::Reads,
        covers: "credential opens and reads through io_uring",
        candidates: &[
            Candidate {
                program: P::IO_URING_SUBMIT_REQ,
                hook: Hook::Tracepoint("io_uring", "io_uring_submit_req"),
                direct_only: false,
                note: "",
            },
            Candidate {
                program: P::IO_URING_SUBMIT_REQ,
                hook: Hook::Tracepoint("io_uring", "io_uring_submit_sqe"),
                direct_only: false,
                note: "the tracepoint's name before 6.2",
            },
        ],
    },
    Spec {
        name: P::IO_URING_COMPLETE,
        group: Group::Reads,
        covers: "credential opens through io_uring",
        candidates: one!(
            P::IO_URING_COMPLETE,
            Hook::Tracepoint("io_uring", "io_uring_complete")
        ),
    },
    Spec {
        name: P::MM_FILEMAP_GET_PAGES,
        group: Group::Reads,
        covers: "credential reads by any path (page cache)",
        candidates: &[
            Candidate {
                program: P::MM_FILEMAP_GET_PAGES,
                hook: Hook::Tracepoint("filemap", "mm_filemap_get_pages"),
                direct_only: false,
                note: "",
            },
            Candidate {
                program: P::FILEMAP_READ,
                hook: Hook::FEntry("filemap_read"),
                direct_only: false,
                note: "the entry of filemap_read, where the tracepoint (6.11+) is missing",
            },
        ],
    },
];

/// One concern's state, for `status`, `/health` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    /// The concern's program name, stable across kernels (whichever candidate attached).
    pub program: String,
    /// The hook in use, or the preferred one when nothing attached.
    pub hook: String,
    /// Group.
    pub(crate) group: Group,
    /// Attached?
    pub attached: bool,
    /// Attached through a fallback: which, and why it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Why not attached (or why the preferred hooks were passed over), when so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What is missing when not attached.
    pub(crate) covers: String,
}

/// How the kernel programs read kernel structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReadMode {
    /// Direct loads where the kernel allows them, else helper calls (decided at start).
    #[default]
    Auto,
    /// Direct loads only: a program the verifier refuses is left out (for testing a kernel).
    Direct,
    /// Helper calls only (for comparison and for testing the fallback).
    Helper,
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
    pub(crate) read_dedup_ns: u64,
    /// Tgid to exclude (the agent itself).
    pub agent_tgid: u32,
    /// How kernel structures are read.
    pub reads: ReadMode,
    /// Tests only: a program the verifier must refuse (see [`offsets::poison_program`]), to
    /// prove the capture degrades instead of dying.
    #[doc(hidden)]
    pub reject_for_test: Option<&'static str>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            groups: vec![Group::Process, Group::Net, Group::Files, Group::Reads],
            ring_bytes: 16 * 1024 * 1024,
            wakeup_bytes: 256 * 1024,
            read_dedup_ns: 1_000_000_000,
            agent_tgid: std::process::id(),
            reads: ReadMode::Auto,
            reject_for_test: None,
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
    /// Direct mode only: whether `bpf_rdonly_cast` (6.2+) types numbers as pointers; without
    /// it the few members behind a cast are read by helper.
    pub(crate) casts: bool,
    /// Why the helper-call paths are used, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Loaded and attached programs with the maps userspace uses.
pub(crate) struct Loaded {
    /// Keeps programs, links and maps alive.
    pub(crate) ebpf: Ebpf,
    /// Keeps the log map's fd open (closing it breaks loads).
    pub(crate) logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The event ring buffer.
    pub(crate) events: RingBuf<MapData>,
    /// Per-CPU counters.
    pub(crate) counters: PerCpuArray<MapData, u64>,
    /// Watched (dev, ino) → id.
    pub(crate) watched: BpfHashMap<MapData, WatchKey, u32>,
    /// The prefilter bitmap in front of `watched` (one element).
    pub(crate) watch_bits: aya::maps::Array<MapData, [u64; detector_common::watch_bits::WORDS]>,
    /// Watched files' names the programs learned → id (userspace deletes retired ids).
    pub(crate) watched_names: BpfHashMap<MapData, detector_common::NameKey, u32>,
    /// The consumer's "asleep, wake me" flag (one element).
    pub(crate) consumer_idle: aya::maps::Array<MapData, u32>,
    /// Listening ports → listener.
    pub(crate) listeners: BpfHashMap<MapData, ListenKey, detector_common::Header>,
    /// Per-program state.
    pub(crate) status: Vec<ProgramStatus>,
    /// Direct loads or helper calls.
    pub(crate) reads: KernelReads,
    /// Programs the verifier refused (program, one-line reason).
    rejected: Vec<(String, String)>,
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
        Hook::FEntry(f) => format!("fentry/{f}"),
        Hook::CgroupSkb(SkbWay::Ingress) => format!("cgroup skb ingress on {}", cgroup.display()),
        Hook::CgroupSkb(SkbWay::Egress) => format!("cgroup skb egress on {}", cgroup.display()),
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

/// Loads and attaches everything this kernel allows. A hook the kernel lacks, or a program its
/// verifier refuses, is passed over for the concern's next candidate, and failing those the
/// concern is left out and reported in `status` (reduced coverage, never a crash). Only when
/// no program at all attaches is it an error.
///
/// The object's direct loads are patched with this kernel's offsets first ([`ReadMode::Auto`]);
/// when that is not possible, or the verifier refuses a direct-load program, the unpatched
/// object is loaded with the helper-call paths selected instead, and `reads` says so.
pub(crate) fn load(env: &Environment, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let resolver = offsets::BtfResolver::open(&env.btf)?;
    let mut koff = resolver.kernel_offsets()?;
    let tpoff = offsets::tracepoint_offsets(&env.tracefs);
    let patched = match opts.reads {
        ReadMode::Helper => Err(offsets::OffsetError::Direct(
            "helper reads requested".into(),
        )),
        ReadMode::Auto | ReadMode::Direct => resolver.patch_direct_loads(OBJECT),
    };
    let attached = |l: &Loaded| l.status.iter().filter(|s| s.attached).count();
    let mut direct = None;
    let reason = match patched {
        Ok(p) => {
            koff.direct = 1;
            koff.has_cast = u32::from(p.casts);
            let mut l = load_object(env, opts, p.object.bytes(), &koff, &tpoff)?;
            l.reads = KernelReads {
                mode: "direct",
                patched: p.patched,
                casts: p.casts,
                reason: None,
            };
            match l.rejected.first() {
                Some((program, why)) if opts.reads == ReadMode::Auto => {
                    let reason =
                        format!("the verifier refused the direct loads of {program}: {why}");
                    direct = Some(l);
                    reason
                }
                _ => return finish(l, opts),
            }
        }
        Err(e) if opts.reads == ReadMode::Direct => {
            return Err(LoadError::Object(format!(
                "direct reads requested, but {e}"
            )))
        }
        Err(e) => e.to_string(),
    };
    koff.direct = 0;
    koff.has_cast = 0;
    let mut l = load_object(env, opts, OBJECT, &koff, &tpoff)?;
    l.reads = KernelReads {
        mode: "helper",
        patched: 0,
        casts: false,
        reason: Some(reason.clone()),
    };
    // A program the verifier refuses either way (a defect of ours, not of the direct
    // loads) does not cost everything else the direct loads: keep whichever covers more.
    if let Some(d) = direct {
        if attached(&d) >= attached(&l) {
            return finish(d, opts);
        }
    }
    if opts.reads != ReadMode::Helper {
        tracing::warn!("kernel structures read with helper calls (slower): {reason}");
    }
    finish(l, opts)
}

/// Says what runs and what is missing, and refuses a capture with nothing attached.
fn finish(l: Loaded, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    for st in &l.status {
        let wanted = opts.groups.contains(&st.group);
        match (&st.fallback, st.attached) {
            (Some(f), true) => tracing::info!(
                "{} through {} ({f}){}",
                st.covers,
                st.hook,
                st.reason
                    .as_deref()
                    .map(|r| format!("; passed over: {r}"))
                    .unwrap_or_default()
            ),
            (_, false) if wanted => tracing::warn!(
                "reduced coverage: no {} on this kernel ({} not attached: {})",
                st.covers,
                st.program,
                st.reason.as_deref().unwrap_or("unknown")
            ),
            _ => {}
        }
    }
    let wanted: Vec<&ProgramStatus> = l
        .status
        .iter()
        .filter(|s| opts.groups.contains(&s.group))
        .collect();
    tracing::info!(
        "kernel {}: {} of {} concerns covered ({} through fallbacks), kernel structures read by {}",
        super::preflight::kernel_release(),
        wanted.iter().filter(|s| s.attached).count(),
        wanted.len(),
        wanted.iter().filter(|s| s.fallback.is_some()).count(),
        l.reads.mode
    );
    if !opts.groups.is_empty() && !l.status.iter().any(|s| s.attached) {
        let why: Vec<String> = l
            .status
            .iter()
            .filter(|s| opts.groups.contains(&s.group))
            .map(|s| {
                format!(
                    "{}: {}",
                    s.program,
                    s.reason.as_deref().unwrap_or("unknown")
                )
            })
            .collect();
        return Err(LoadError::NothingAttached(why.join("; ")));
    }
    Ok(l)
}

/// Why a candidate's hook cannot be used on this kernel at all (before trying to load).
fn unavailable(env: &Environment, hook: Hook) -> Option<String> {
    match hook {
        Hook::Tracepoint(c, n) if !env.tracefs.join("events").join(c).join(n).exists() => {
            Some(format!("this kernel has no tracepoint {c}:{n}"))
        }
        _ => None,
    }
}

/// Loads and attaches one candidate. `Err` carries a one-line reason and whether it was the
/// verifier that refused the program.
fn attach_candidate(
    ebpf: &mut Ebpf,
    cand: &Candidate,
    btf: Option<&Btf>,
    cgroup: &std::fs::File,
) -> Result<(), (String, bool)> {
    let prog = ebpf.program_mut(cand.program).ok_or_else(|| {
        (
            format!("program {} missing from the object", cand.program),
            false,
        )
    })?;
    let rejected = |e: ProgramError| match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                (format!("the kernel refused to load it: {io_error}"), false)
            } else {
                tracing::debug!(
                    "verifier log of {} (tail):\n{}",
                    cand.program,
                    tail(&log, 25)
                );
                // The verdict is the last line before the statistics the verifier appends.
                let last = log
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| {
                        !l.is_empty()
                            && !l.starts_with("processed ")
                            && !l.starts_with("verification time")
                            && !l.starts_with("stack depth")
                    })
                    .unwrap_or("");
                (
                    format!(
                        "the kernel verifier refused it: {io_error}: {}",
                        last.trim()
                    ),
                    true,
                )
            }
        }
        other => (chain(&other), false),
    };
    let attach_err = |e: ProgramError| (format!("attaching failed: {}", chain(&e)), false);
    let need_btf = || btf.ok_or_else(|| ("kernel BTF unavailable to aya".to_string(), false));
    let typed = |e: ProgramError| (e.to_string(), false);
    match cand.hook {
        Hook::Tracepoint(c, n) => {
            let p: &mut TracePoint = prog.try_into().map_err(typed)?;
            p.load().map_err(rejected)?;
            p.attach(c, n).map(|_| ()).map_err(attach_err)
        }
        Hook::TpBtf(n) => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(typed)?;
            p.load(n, need_btf()?).map_err(rejected)?;
            p.attach().map(|_| ()).map_err(attach_err)
        }
        Hook::FEntry(f) => {
            let p: &mut FEntry = prog.try_into().map_err(typed)?;
            p.load(f, need_btf()?).map_err(rejected)?;
            p.attach().map(|_| ()).map_err(attach_err)
        }
        Hook::CgroupSkb(way) => {
            let p: &mut CgroupSkb = prog.try_into().map_err(typed)?;
            p.load().map_err(rejected)?;
            let way = match way {
                SkbWay::Ingress => CgroupSkbAttachType::Ingress,
                SkbWay::Egress => CgroupSkbAttachType::Egress,
            };
            p.attach(cgroup, way, CgroupAttachMode::Single)
                .map(|_| ())
                .map_err(attach_err)
        }
        Hook::Cgroup => {
            let p: &mut CgroupSockAddr = prog.try_into().map_err(typed)?;
            p.load().map_err(rejected)?;
            p.attach(cgroup, CgroupAttachMode::Single)
                .map(|_| ())
                .map_err(attach_err)
        }
    }
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
    let poisoned = match opts.reject_for_test {
        Some(name) => Some(offsets::poison_program(object, name)?),
        None => None,
    };
    let object = poisoned.as_ref().map_or(object, |p| p.bytes());
    let mut ebpf = EbpfLoader::new()
        .override_global(G::KOFF, koff, true)
        .override_global(G::TPOFF, tpoff, true)
        .override_global(G::CONFIG, &config, true)
        .map_max_entries(M::EVENTS, opts.ring_bytes)
        .load(object)
        .map_err(|e| LoadError::Object(format!("{e:#}")))?;
    let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
    let btf = Btf::from_sys_fs().ok();
    let cgroup = std::fs::File::open(&env.cgroup2).map_err(|e| LoadError::Attach {
        program: "connect4/6".into(),
        hook: env.cgroup2.display().to_string(),
        error: chain(&e),
    })?;

    let direct = koff.direct != 0;
    let mut status = Vec::new();
    let mut rejected = Vec::new();
    for spec in SPECS {
        let eligible: Vec<&Candidate> = spec
            .candidates
            .iter()
            .filter(|c| direct || !c.direct_only)
            .collect();
        let Some(first) = eligible.first() else {
            continue;
        };
        let mut st = ProgramStatus {
            program: spec.name.into(),
            hook: describe(first.hook, &env.cgroup2),
            group: spec.group,
            attached: false,
            fallback: None,
            reason: None,
            covers: spec.covers.into(),
        };
        if !opts.groups.contains(&spec.group) {
            st.reason = Some("disabled by configuration".into());
            status.push(st);
            continue;
        }
        let mut why = Vec::new();
        for (i, cand) in eligible.iter().enumerate() {
            let hook = describe(cand.hook, &env.cgroup2);
            if let Some(r) = unavailable(env, cand.hook) {
                why.push(r);
                continue;
            }
            match attach_candidate(&mut ebpf, cand, btf.as_ref(), &cgroup) {
                Ok(()) => {
                    st.attached = true;
                    st.hook = hook;
                    if i > 0 {
                        st.fallback = Some(cand.note.to_string());
                    }
                    break;
                }
                Err((r, by_verifier)) => {
                    if by_verifier {
                        rejected.push((cand.program.to_string(), r.clone()));
                    }
                    why.push(format!("{hook}: {r}"));
                }
            }
        }
        if !why.is_empty() {
            st.reason = Some(why.join("; "));
        }
        status.push(st);
    }

    let events = take_map(&mut ebpf, M::EVENTS)?;
    let counters = take_map(&mut ebpf, M::COUNTERS)?;
    let watched = take_map(&mut ebpf, M::WATCHED)?;
    let watch_bits = take_map(&mut ebpf, M::WATCH_BITS)?;
    let watched_names = take_map(&mut ebpf, M::WATCHED_NAMES)?;
    let consumer_idle = take_map(&mut ebpf, M::CONSUMER_IDLE)?;
    let listeners = take_map(&mut ebpf, M::LISTENERS)?;
    Ok(Loaded {
        ebpf,
        logger,
        events,
        counters,
        watched,
        watch_bits,
        watched_names,
        consumer_idle,
        listeners,
        status,
        reads: KernelReads {
            mode: "helper",
            patched: 0,
            casts: false,
            reason: None,
        },
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use detector_common::direct;

    use super::{offsets, OBJECT};

    fn table(members: Vec<(i16, i16)>) -> offsets::DirectTable {
        offsets::DirectTable {
            members,
            rdonly_cast: Some(77),
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

    /// The names table of detector-common is the object's: every program, map and global it
    /// names exists in the embedded object, and every program of the object is in the table.
    #[test]
    fn every_name_of_the_table_is_in_the_object() {
        use detector_common::names;
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
        if OBJECT.is_empty() {
            return;
        }
        let file = object::File::parse(OBJECT).expect("object");
        let symbols: Vec<String> = file
            .symbols()
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect();
        let named: Vec<&str> = names::program::ALL
            .iter()
            .chain(names::calibration::ALL)
            .chain(names::map::ALL)
            .chain(&[
                names::global::KOFF,
                names::global::TPOFF,
                names::global::CONFIG,
            ])
            .copied()
            .collect();
        for n in &named {
            assert!(symbols.iter().any(|s| s == n), "{n} is not in the object");
        }
        // Every program of the object is named in the table.
        let mut programs = 0;
        for sym in file.symbols() {
            let Some(sec) = sym
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
            else {
                continue;
            };
            let sec_name = sec.name().unwrap_or("");
            // Programs are the global functions outside `.text` (where subprograms live).
            let is_program = sym.kind() == object::SymbolKind::Text
                && sym.is_global()
                && sec_name != ".text"
                && sec.kind() == object::SectionKind::Text;
            if is_program {
                programs += 1;
                let n = sym.name().unwrap_or("");
                assert!(
                    named.contains(&n),
                    "program {n} ({sec_name}) missing from the table"
                );
            }
        }
        assert_eq!(
            programs,
            names::program::ALL.len() + names::calibration::ALL.len()
        );
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
        assert!(t.rdonly_cast.is_some_and(|c| c > 0) && t.types.iter().all(|(_, id)| *id > 0));
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
