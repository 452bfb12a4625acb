//! Ring-buffer fill without kernel cost: the BPF ring buffer's consumer and producer
//! positions, read from our own read-only mapping of the map's first two pages.
//!
//! Layout (kernel/bpf/ringbuf.c, `bpf_ringbuf_mmap`): page 0 holds `consumer_pos`, page 1
//! `producer_pos`, each an `unsigned long` at the start of its page, then the data pages. Both
//! grow monotonically; `producer − consumer` is the bytes written (with 8-byte record headers,
//! including records being written or discarded) and not yet consumed, at most the capacity.
//! aya 0.14's `RingBuf` keeps its own mapping private, so we map the same pages again
//! (`PROT_READ`, which the kernel allows on any ring-buffer page).

use std::{
    os::fd::RawFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering::Acquire},
};

/// A read-only view of a ring buffer's positions.
#[derive(Debug)]
pub(crate) struct RingFill {
    base: NonNull<libc::c_void>,
    page: usize,
    capacity: u64,
}

// SAFETY: the mapping is read-only shared memory owned by this value; reads are atomic loads.
unsafe impl Send for RingFill {}
// SAFETY: as above; `&self` methods only do atomic loads.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the positions of the ring buffer behind `fd`, whose data area is `capacity` bytes.
    pub(crate) fn new(fd: RawFd, capacity: u64) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("page size"))?;
        // SAFETY: a new shared read-only mapping of two pages of a ring-buffer map fd; the
        // kernel validates the fd and the range; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self {
            base,
            page,
            capacity,
        })
    }

    fn pos(&self, page: usize) -> u64 {
        // SAFETY: inside the two mapped pages, page-aligned (so aligned for u64), and the
        // kernel updates the value with release stores: an atomic load is the right read.
        let a = unsafe {
            &*(self.base.as_ptr().cast::<u8>().add(page * self.page) as *const AtomicU64)
        };
        a.load(Acquire)
    }

    /// Bytes produced and not yet consumed (never more than the capacity).
    pub(crate) fn pending(&self) -> u64 {
        let cons = self.pos(0);
        let prod = self.pos(1);
        prod.saturating_sub(cons).min(self.capacity)
    }

    /// The data area's size in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe { libc::munmap(self.base.as_ptr(), 2 * self.page) };
    }
}
