//! When a record wakes the consumer (see [`wake_flags`]).

use detector_common::{counter, ringbuf};

use crate::{
    global,
    maps::{count, CONSUMER_IDLE, EVENTS},
    settings::CONFIG,
};

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
