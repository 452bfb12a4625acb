//! The maps every program shares: the ring buffer to userspace, per-CPU counters, the
//! consumer's sleep flag and the per-process cache of the helper-read paths.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use detector_common::counter;

/// The one ring buffer to userspace. Userspace sets its size at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters (`detector_common::counter`): loss, records sent, opens inspected.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Adds `n` to a per-CPU counter and returns the new value.
#[inline(always)]
pub(crate) fn count(idx: u32, n: u64) -> u64 {
    match COUNTERS.get_ptr_mut(idx) {
        // SAFETY: a map value pointer of this program run; a plain integer.
        Some(p) => unsafe {
            *p += n;
            *p
        },
        None => 0,
    }
}

/// Called when a reservation fails: the record is lost, count it for the in-band loss report.
#[inline(always)]
pub(crate) fn lost() {
    count(counter::LOST, 1);
}

/// Set (1) by the consumer when it goes to sleep on a long timer because nothing has come for
/// a while; the first producer that finds it set clears it and forces a wakeup, so an idle
/// agent does not poll and the first record after a quiet spell is read at once.
#[map]
pub(crate) static CONSUMER_IDLE: Array<u32> = Array::with_max_entries(1, 0);

/// Per-process identity fields that do not change between events, cached so that an event
/// costs one lookup instead of nine kernel reads.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ProcCache {
    /// `task->nsproxy` when cached: a changed pointer (setns/unshare) invalidates the entry.
    pub(crate) nsproxy: u64,
    pub(crate) start_ns: u64,
    pub(crate) ppid: u32,
    pub(crate) mntns: u32,
    pub(crate) netns: u32,
    pub(crate) _pad: u32,
}

/// tgid → cached identity; deleted when the process exits, so a reused pid starts afresh.
#[map]
pub(crate) static PROCS: LruHashMap<u32, ProcCache> = LruHashMap::with_max_entries(32768, 0);
