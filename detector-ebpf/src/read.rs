//! Reading kernel memory: BTF-typed direct loads (one instruction per member, offsets patched
//! by userspace), `bpf_rdonly_cast`, helper reads for the fallback paths, and tracepoint fields.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, generated::bpf_get_current_task_btf,
    generated::bpf_probe_read_kernel as probe_read_raw,
};
use detector_common::NO_OFFSET;

use crate::{global, settings::KOFF};

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
        // SAFETY: one load the verifier checks as a BTF-typed access (PROBE_MEM: a fault yields 0);
        // `readonly`, no stack.
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
        // SAFETY: one load the verifier checks as a BTF-typed access (PROBE_MEM: a fault yields 0);
        // `readonly`, no stack.
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
        // SAFETY: one load the verifier checks as a BTF-typed access (PROBE_MEM: a fault yields 0);
        // `readonly`, no stack.
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
        // SAFETY: userspace patches this call into `bpf_rdonly_cast`, which only types a number
        // (or, without it, into a move that is never reached); r1-r5 are marked clobbered.
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
    // SAFETY: a helper without preconditions; the verifier types the pointer it returns.
    unsafe { bpf_get_current_task_btf() as u64 }
}

/// Reads a `T` at `base + off` from kernel memory; `None` for a null base, a missing offset or
/// a failed read.
#[inline(always)]
pub(crate) fn kread<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == NO_OFFSET {
        return None;
    }
    // SAFETY: a fault-tolerant helper read: a bad address is an error, not a fault.
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
        // SAFETY: reads `span` (at most 64) bytes into the 64-byte `buf` we own; fault-tolerant.
        let rc = unsafe {
            probe_read_raw(
                buf.as_mut_ptr() as *mut core::ffi::c_void,
                span,
                (base + lo as u64) as *const core::ffi::c_void,
            )
        };
        if rc == 0 {
            // SAFETY: within `buf`: each member's offset from `lo` plus its size is at most `span`.
            let a = unsafe {
                core::ptr::read_unaligned(buf.as_ptr().add((off_a - lo) as usize) as *const A)
            };
            // SAFETY: within `buf`: each member's offset from `lo` plus its size is at most `span`.
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
            // SAFETY: `bit` says this kernel puts the field at `$fixed` in the record: a direct
            // load from the context, which the verifier checks.
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
                // SAFETY: a fault-tolerant helper read at an offset inside the tracepoint record
                // (from its format file).
                unsafe { $ctx.read_at::<$t>(off as usize) }.ok()
            }
        }
    }};
}
pub(crate) use tpf;
