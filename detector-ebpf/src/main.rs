//! Kernel programs of the detector. This file is wiring; each concern has its module:
//!
//! - `process`: exec, fork, exit (`sched:*`, `tp_btf/sched_process_fork`);
//! - `net`: TCP via `sock:inet_sock_set_state` (attempt, outcome, listeners, accepts), UDP
//!   associations and contacts via cgroup `connect`/`sendmsg` hooks and `cgroup_skb/egress`, DNS
//!   answers via `cgroup_skb/ingress` — none taxes unrelated syscalls;
//! - `file`: credential files by kernel identity (dev, inode) at the exit of every open-family
//!   syscall, io_uring open/read requests, and buffered reads seen by the page cache (or the
//!   entry of `filemap_read` where that tracepoint is missing);
//! - `header` (who and when), `read` (kernel memory), `maps`, `wakeup` (batched ring-buffer
//!   wakeups), `settings` (load-time offsets and settings), `calibration` (benchmarks only).
#![no_std]
#![no_main]
// Inline assembly for the BTF-typed direct loads (`dl!`); the eBPF crate builds on nightly.
#![feature(asm_experimental_arch)]
// Map keys and values are passed by reference on purpose: by value they would be copied onto
// the 512-byte BPF stack, which the larger records already come close to.
#![allow(clippy::needless_borrows_for_generic_args)]
// Every unsafe block says why it is sound (`cargo xtask lint` runs clippy on this crate).
#![deny(clippy::undocumented_unsafe_blocks)]

mod calibration;
mod file;
mod header;
mod maps;
mod net;
mod process;
mod read;
mod settings;
mod wakeup;

pub(crate) use header::{fill_basic, fill_common, fill_header, is_agent};
pub(crate) use maps::{count, lost, EVENTS, PROCS};
pub(crate) use read::{cast, direct, dl, has_cast, kread, kread_pair, task_btf, tpf};
pub(crate) use settings::{global, CONFIG, KOFF, TPOFF};
pub(crate) use wakeup::wake_flags;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL: needed for `bpf_probe_read_kernel` and friends.
#[unsafe(link_section = "license")]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
