//! Kernel programs of the detector. Tracepoint-class hooks only (no kprobes, fentry or LSM):
//!
//! - `process`: exec, fork, exit (`sched:*`, `tp_btf/sched_process_fork`);
//! - `net`: TCP via `sock:inet_sock_set_state` (attempt, outcome, listeners, accepts) and UDP
//!   via `cgroup/connect4|6` on the cgroup v2 root — neither taxes unrelated syscalls;
//! - `file`: credential files by kernel identity (dev, inode) at the exit of every open-family
//!   syscall, io_uring open/read requests, and buffered reads seen by the page cache.
//!
//! Everything goes to one ring buffer with batched wakeups (see `emit`). Kernel structure
//! offsets come from userspace (resolved from BTF) in `KOFF`, tracepoint field offsets from the
//! tracefs `format` files in `TPOFF`.
#![no_std]
#![no_main]
// Inline assembly for the BTF-typed direct loads (`dl!`); the eBPF crate builds on nightly.
#![feature(asm_experimental_arch)]
// Map keys and values are passed by reference on purpose: by value they would be copied onto
// the 512-byte BPF stack, which the larger records already come close to.
#![allow(clippy::needless_borrows_for_generic_args)]

mod file;
mod net;
mod process;

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel as probe_read_raw,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel, generated::bpf_get_current_task_btf,
    },
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use detector_common::{
    counter, ringbuf, AgentConfig, Header, KernelOffsets, TracepointOffsets, NO_OFFSET,
};

/// Kernel structure offsets (from BTF, written by userspace before load).
#[no_mangle]
static KOFF: KernelOffsets = KernelOffsets::unset();
/// Tracepoint field offsets (from tracefs, written by userspace before load).
#[no_mangle]
static TPOFF: TracepointOffsets = TracepointOffsets::unset();
/// Agent settings (its own tgid, wakeup threshold…).
#[no_mangle]
static CONFIG: AgentConfig = AgentConfig::unset();

/// The one ring buffer to userspace. Userspace sets its size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters (`detector_common::counter`): loss, records sent, opens inspected.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Reads one field of a global without letting the compiler fold the pre-load value.
macro_rules! global {
    ($g:ident . $f:ident) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(&$g.$f) };
        v
    }};
}
pub(crate) use global;

/// One BTF-typed direct load: `dl!(u64|u32, base, PLACEHOLDER)` emits a single `ldx` whose
/// offset is a [`detector_common::direct`] placeholder that userspace rewrites with this
/// kernel's member offset before load. `base` must be a `PTR_TO_BTF_ID` for the verifier
/// (`task_btf()`, a `tp_btf` argument, or a pointer loaded with `dl!`); the JIT turns the load
/// into a `PROBE_MEM` access (a fault, e.g. through NULL, yields 0). Only reachable when
/// `KOFF.direct` is 1, i.e. when every placeholder was patched.
macro_rules! dl {
    (u64, $base:expr, $m:expr) => {{
        let out: u64;
        let base: u64 = $base;
        unsafe {
            core::arch::asm!(
                "{o} = *(u64 *)({b} + {m})",
                o = lateout(reg) out,
                b = in(reg) base,
                m = const $m,
                options(readonly, nostack),
            )
        };
        out
    }};
    (u16, $base:expr, $m:expr) => {{
        let out: u64;
        let base: u64 = $base;
        unsafe {
            core::arch::asm!(
                "{o} = *(u16 *)({b} + {m})",
                o = lateout(reg) out,
                b = in(reg) base,
                m = const $m,
                options(readonly, nostack),
            )
        };
        out as u16
    }};
    (u32, $base:expr, $m:expr) => {{
        let out: u64;
        let base: u64 = $base;
        unsafe {
            core::arch::asm!(
                "{o} = *(u32 *)({b} + {m})",
                o = lateout(reg) out,
                b = in(reg) base,
                m = const $m,
                options(readonly, nostack),
            )
        };
        out as u32
    }};
}
pub(crate) use dl;

/// `bpf_rdonly_cast(p, TYPE)`: `p` (a kernel pointer held as a number) as a BTF-typed,
/// read-only pointer to the struct behind the [`detector_common::direct`] type placeholder,
/// so that [`dl!`] applies to it. Userspace patches the call into a kfunc call and the
/// placeholder into the BTF id; the verifier replaces the call with a register move.
macro_rules! cast {
    ($p:expr, $ty:expr) => {{
        let out: u64;
        let p: u64 = $p;
        unsafe {
            core::arch::asm!(
                "r2 = {t}",
                "call {c}",
                t = const $ty,
                c = const detector_common::direct::KFUNC_RDONLY_CAST,
                inout("r1") p => _,
                lateout("r0") out,
                lateout("r2") _,
                lateout("r3") _,
                lateout("r4") _,
                lateout("r5") _,
                options(readonly, nostack),
            )
        };
        out
    }};
}
pub(crate) use cast;

/// True when the direct-load paths are in use (see [`dl!`]); a load-time constant.
#[inline(always)]
pub(crate) fn direct() -> bool {
    global!(KOFF.direct) != 0
}

/// True when `cast!` is a real `bpf_rdonly_cast` (6.2+); else every cast site must take its
/// helper-read path instead (the patched-out cast is a plain move). A load-time constant.
#[inline(always)]
pub(crate) fn has_cast() -> bool {
    global!(KOFF.has_cast) != 0
}

/// The current task as a BTF-typed pointer (the start of every [`dl!`] chain).
#[inline(always)]
pub(crate) fn task_btf() -> u64 {
    unsafe { bpf_get_current_task_btf() as u64 }
}

/// Reads a `T` at `base + off` from kernel memory; `None` for a null base, a missing offset or
/// a failed read.
#[inline(always)]
pub(crate) fn kread<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == NO_OFFSET {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Reads two fields of one structure with a single helper call when they lie within 64 bytes
/// of each other (the offsets are load-time constants, so the verifier sees fixed bounds).
/// Probe reads dominate the cost of the credential filter on every open.
#[inline(always)]
pub(crate) fn kread_pair<A: Copy, B: Copy>(base: u64, off_a: u32, off_b: u32) -> Option<(A, B)> {
    if base == 0 || off_a == NO_OFFSET || off_b == NO_OFFSET {
        return None;
    }
    let (sa, sb) = (
        core::mem::size_of::<A>() as u32,
        core::mem::size_of::<B>() as u32,
    );
    let lo = if off_a < off_b { off_a } else { off_b };
    let hi = if off_a + sa > off_b + sb {
        off_a + sa
    } else {
        off_b + sb
    };
    let span = hi - lo;
    if span <= 64 {
        let mut buf = [0u8; 64];
        let rc = unsafe {
            probe_read_raw(
                buf.as_mut_ptr() as *mut core::ffi::c_void,
                span,
                (base + lo as u64) as *const core::ffi::c_void,
            )
        };
        if rc == 0 {
            let a = unsafe {
                core::ptr::read_unaligned(buf.as_ptr().add((off_a - lo) as usize) as *const A)
            };
            let b = unsafe {
                core::ptr::read_unaligned(buf.as_ptr().add((off_b - lo) as usize) as *const B)
            };
            return Some((a, b));
        }
    }
    Some((kread(base, off_a)?, kread(base, off_b)?))
}

/// Reads a tracepoint field: a plain context load at the compiled-in offset `fixed` when this
/// kernel's layout matches (`bit` of `TPOFF.fixed_layout`, a load-time constant, so the
/// verifier prunes the other branch), else through aya's probe-read at the runtime offset.
macro_rules! tpf {
    ($ctx:expr, $bit:expr, $fixed:expr, $off:expr, $t:ty) => {{
        if global!(TPOFF.fixed_layout) & $bit != 0 {
            Some(unsafe {
                core::ptr::read_volatile(
                    (aya_ebpf::EbpfContext::as_ptr($ctx) as *const u8).add($fixed) as *const $t,
                )
            })
        } else {
            let off = $off;
            if off == detector_common::NO_OFFSET {
                None
            } else {
                unsafe { $ctx.read_at::<$t>(off as usize) }.ok()
            }
        }
    }};
}
pub(crate) use tpf;

/// Adds `n` to a per-CPU counter and returns the new value.
#[inline(always)]
pub(crate) fn count(idx: u32, n: u64) -> u64 {
    match COUNTERS.get_ptr_mut(idx) {
        Some(p) => unsafe {
            *p += n;
            *p
        },
        None => 0,
    }
}

/// True when the current task belongs to the agent: its own activity is never reported.
#[inline(always)]
pub(crate) fn is_agent(tgid: u32) -> bool {
    tgid == global!(CONFIG.agent_tgid)
}

/// Set (1) by the consumer when it goes to sleep on a long timer because nothing has come for
/// a while; the first producer that finds it set clears it and forces a wakeup, so an idle
/// agent does not poll and the first record after a quiet spell is read at once.
#[map]
static CONSUMER_IDLE: Array<u32> = Array::with_max_entries(1, 0);

/// Wakeup policy: never one wakeup per record (≈3 µs each here: a self-IPI, a VM exit in a
/// guest). Records are submitted without a wakeup and the consumer drains on a short timer
/// while records flow, which bounds the delay; an idle consumer sleeps and the first record
/// wakes it (`CONSUMER_IDLE`). A producer forces one wakeup only when its record makes the pending
/// bytes cross a multiple of the threshold, so a burst that outruns the timer wakes the
/// consumer once per threshold's worth of records. Forcing on *every* record past the
/// threshold (the earlier policy) made each record of a burst pay the 3 µs whenever the
/// consumer was behind: a workload opening a credential 20,000 times ran 5× slower while the
/// consumer caught up. `T` is the record type just reserved.
#[inline(always)]
pub(crate) fn wake_flags<T>() -> u64 {
    // The ring buffer's own 8-byte header, and reservations rounded up to 8 bytes.
    let len = ((core::mem::size_of::<T>() + 8 + 7) & !7) as u64;
    let pending = EVENTS.query(ringbuf::AVAIL_DATA);
    let step = global!(CONFIG.wakeup_bytes) as u64;
    if step != 0 && pending >= len && pending / step != (pending - len) / step {
        count(counter::WAKEUPS, 1);
        return ringbuf::FORCE_WAKEUP;
    }
    // A sleeping consumer. Two producers racing here may both wake it: harmless. No barrier
    // orders this load after our reservation, so in a rare race the consumer misses the
    // record and reads it at its safety timer instead (bounded, see the pacer).
    if let Some(p) = CONSUMER_IDLE.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer; a plain u32.
        unsafe {
            if core::ptr::read_volatile(p) != 0 {
                core::ptr::write_volatile(p, 0);
                count(counter::WAKEUPS, 1);
                return ringbuf::FORCE_WAKEUP;
            }
        }
    }
    ringbuf::NO_WAKEUP
}

/// Per-process identity fields that do not change between events, cached so that an event
/// costs one lookup instead of nine kernel reads.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ProcCache {
    /// `task->nsproxy` when cached: a changed pointer (setns/unshare) invalidates the entry.
    nsproxy: u64,
    start_ns: u64,
    ppid: u32,
    mntns: u32,
    netns: u32,
    _pad: u32,
}

/// tgid → cached identity; deleted when the process exits, so a reused pid starts afresh.
#[map]
pub(crate) static PROCS: LruHashMap<u32, ProcCache> = LruHashMap::with_max_entries(32768, 0);

/// Called when a reservation fails: the record is lost, count it for the in-band loss report.
#[inline(always)]
pub(crate) fn lost() {
    count(counter::LOST, 1);
}

/// Fills the parts of a header every program type can know.
#[inline(always)]
pub(crate) fn fill_basic(h: &mut Header, kind: u32) {
    fill_common(h, kind);
    let pid_tgid = bpf_get_current_pid_tgid();
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let uid_gid = bpf_get_current_uid_gid();
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// The header fields that only helpers give (no task pointer needed).
#[inline(always)]
pub(crate) fn fill_common(h: &mut Header, kind: u32) {
    h.kind = kind;
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.seq = count(counter::SENT, 1);
    h.ppid = 0;
    h.mntns = 0;
    h.netns = 0;
    h.start_ns = 0;
    h._pad = 0;
}

/// Fills a full header for the current task (tracing programs only).
#[inline(always)]
pub(crate) fn fill_header(h: &mut Header, kind: u32) {
    if direct() {
        fill_common(h, kind);
        // A dozen direct loads cost less than one lookup in the per-process cache, and
        // replace the comm and uid/gid helpers too.
        let task = task_btf();
        use detector_common::direct as d;
        let comm = [
            dl!(u64, task, d::TASK_COMM[0]).to_ne_bytes(),
            dl!(u64, task, d::TASK_COMM[1]).to_ne_bytes(),
        ];
        h.comm[..8].copy_from_slice(&comm[0]);
        h.comm[8..].copy_from_slice(&comm[1]);
        h.pid = dl!(u32, task, d::TASK_PID);
        h.tgid = dl!(u32, task, d::TASK_TGID);
        // task_dfl_cgroup(task)->kn->id, as bpf_get_current_cgroup_id.
        let cset = dl!(u64, task, d::TASK_CGROUPS);
        let cgrp = dl!(u64, cset, d::CSS_SET_DFL_CGRP);
        let kn = dl!(u64, cgrp, d::CGROUP_KN);
        h.cgroup_id = dl!(u64, kn, d::KERNFS_NODE_ID);
        let cred = dl!(u64, task, d::TASK_CRED);
        h.uid = dl!(u32, cred, d::CRED_UID);
        h.gid = dl!(u32, cred, d::CRED_GID);
        fill_task_direct(h, task);
        return;
    }
    fill_basic(h, kind);
    let task = unsafe { bpf_get_current_task() };
    let nsproxy: u64 = kread(task, global!(KOFF.task_nsproxy)).unwrap_or(0);
    // Map keys must live on the stack: before 6.2 the verifier refuses ring-buffer memory
    // (where `h` usually is) as a key.
    let tgid = h.tgid;
    if let Some(c) = unsafe { PROCS.get(&tgid) } {
        if c.nsproxy == nsproxy && nsproxy != 0 {
            h.start_ns = c.start_ns;
            h.ppid = c.ppid;
            h.mntns = c.mntns;
            h.netns = c.netns;
            return;
        }
    }
    fill_task(h, task);
    if nsproxy != 0 {
        let c = ProcCache {
            nsproxy,
            start_ns: h.start_ns,
            ppid: h.ppid,
            mntns: h.mntns,
            netns: h.netns,
            _pad: 0,
        };
        let _ = PROCS.insert(&tgid, &c, 0);
    }
}

/// Process identity fields of `task` (a `PTR_TO_BTF_ID`), by direct loads.
#[inline(always)]
pub(crate) fn fill_task_direct(h: &mut Header, task: u64) {
    use detector_common::direct as d;
    let leader = dl!(u64, task, d::TASK_GROUP_LEADER);
    h.start_ns = dl!(u64, leader, d::TASK_START_BOOTTIME);
    let parent = dl!(u64, task, d::TASK_REAL_PARENT);
    h.ppid = dl!(u32, parent, d::TASK_TGID);
    let nsproxy = dl!(u64, task, d::TASK_NSPROXY);
    let mnt = dl!(u64, nsproxy, d::NSPROXY_MNT_NS);
    h.mntns = dl!(u32, mnt, d::MNT_NS_INUM);
    let net = dl!(u64, nsproxy, d::NSPROXY_NET_NS);
    h.netns = dl!(u32, net, d::NET_NS_INUM);
}

/// Process identity fields read from `task_struct`.
#[inline(always)]
pub(crate) fn fill_task(h: &mut Header, task: u64) {
    let leader: u64 = kread(task, global!(KOFF.task_group_leader)).unwrap_or(0);
    h.start_ns = kread(leader, global!(KOFF.task_start_boottime)).unwrap_or(0);
    let parent: u64 = kread(task, global!(KOFF.task_real_parent)).unwrap_or(0);
    h.ppid = kread(parent, global!(KOFF.task_tgid)).unwrap_or(0);
    let nsproxy: u64 = kread(task, global!(KOFF.task_nsproxy)).unwrap_or(0);
    let mnt: u64 = kread(nsproxy, global!(KOFF.nsproxy_mnt_ns)).unwrap_or(0);
    h.mntns = kread(mnt, global!(KOFF.mnt_ns_inum)).unwrap_or(0);
    let net: u64 = kread(nsproxy, global!(KOFF.nsproxy_net_ns)).unwrap_or(0);
    h.netns = kread(net, global!(KOFF.net_ns_inum)).unwrap_or(0);
}

/// Calibration, never attached by the agent: empty programs that `cargo xtask bench kernel`
/// (and `kbench hold-floor`) attach on their own to every hook the agent uses, to measure what
/// *any* program there costs on this kernel (for the syscall exits: the syscall-tracing slow
/// path and the tracepoint's dispatch) — the floor under the programs' own work. This one goes
/// on the classic tracepoints.
#[aya_ebpf::macros::tracepoint]
pub fn calibration_empty(_ctx: aya_ebpf::programs::TracePointContext) -> u32 {
    0
}

/// Calibration, never attached by the agent: the TCP hook's dispatch alone (`kbench` attaches
/// it to `tp_btf/inet_sock_set_state`).
#[aya_ebpf::macros::btf_tracepoint(function = "inet_sock_set_state")]
pub fn calibration_empty_btf(_ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
    0
}

/// Calibration, never attached by the agent: the fork hook's dispatch alone.
#[aya_ebpf::macros::btf_tracepoint(function = "sched_process_fork")]
pub fn calibration_empty_fork(_ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
    0
}

/// Calibration, never attached by the agent: the connect hook's dispatch alone (`kbench`
/// attaches it to `cgroup/connect4` on the cgroup v2 root). Allows every connect.
#[aya_ebpf::macros::cgroup_sock_addr(connect4)]
pub fn calibration_empty_connect4(_ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    1
}

/// Calibration, never attached by the agent: as above for IPv6.
#[aya_ebpf::macros::cgroup_sock_addr(connect6)]
pub fn calibration_empty_connect6(_ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    1
}

/// Calibration, never attached by the agent: the unconnected-send hooks' dispatch alone.
#[aya_ebpf::macros::cgroup_sock_addr(sendmsg4)]
pub fn calibration_empty_sendmsg4(_ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    1
}

/// Calibration, never attached by the agent: as above for IPv6.
#[aya_ebpf::macros::cgroup_sock_addr(sendmsg6)]
pub fn calibration_empty_sendmsg6(_ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    1
}

/// Calibration, never attached by the agent: a cgroup skb hook's dispatch alone (`kbench`
/// attaches it both ways on the cgroup v2 root). Lets every packet through.
#[aya_ebpf::macros::cgroup_skb]
pub fn calibration_empty_skb(_ctx: aya_ebpf::programs::SkBuffContext) -> i32 {
    1
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL: needed for `bpf_probe_read_kernel` and friends.
#[unsafe(link_section = "license")]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
