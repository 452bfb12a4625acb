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

mod file;
mod net;
mod process;

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{PerCpuArray, RingBuf},
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

/// Reads a `T` at `base + off` from kernel memory; `None` for a null base, a missing offset or
/// a failed read.
#[inline(always)]
pub(crate) fn kread<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == NO_OFFSET {
        return None;
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

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

/// Wakeup policy: never one wakeup per record. Records are submitted without a wakeup and the
/// consumer drains on a short timer; once the pending bytes pass a threshold the producer
/// forces one. `urgent` records (rare: credential access) use the kernel's default, which
/// wakes the consumer only when it has caught up, so they are seen at once without turning a
/// flood into a wakeup storm.
#[inline(always)]
pub(crate) fn wake_flags(urgent: bool) -> u64 {
    let pending = EVENTS.query(ringbuf::AVAIL_DATA);
    if pending >= global!(CONFIG.wakeup_bytes) as u64 {
        ringbuf::FORCE_WAKEUP
    } else if urgent {
        0
    } else {
        ringbuf::NO_WAKEUP
    }
}

/// Called when a reservation fails: the record is lost, count it for the in-band loss report.
#[inline(always)]
pub(crate) fn lost() {
    count(counter::LOST, 1);
}

/// Fills the parts of a header every program type can know.
#[inline(always)]
pub(crate) fn fill_basic(h: &mut Header, kind: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind;
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.seq = count(counter::SENT, 1);
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.ppid = 0;
    h.mntns = 0;
    h.netns = 0;
    h.start_ns = 0;
    h._pad = 0;
}

/// Fills a full header for the current task (tracing programs only).
#[inline(always)]
pub(crate) fn fill_header(h: &mut Header, kind: u32) {
    fill_basic(h, kind);
    let task = unsafe { bpf_get_current_task() };
    fill_task(h, task);
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL: needed for `bpf_probe_read_kernel` and friends.
#[unsafe(link_section = "license")]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
