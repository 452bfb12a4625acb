//! Process lifecycle: exec, fork (processes only, not threads), exit (last thread).
//! `sched:*` tracepoints and `tp_btf` cost nothing to unrelated syscalls.

use aya_ebpf::{
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user,
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use detector_common::{direct as d, kind, ExecEvent, ExitEvent, ForkEvent, ARGS_LEN, NO_OFFSET};

use crate::{
    direct, dl, fill_header, global, is_agent, kread, lost, task_btf, wake_flags, EVENTS, KOFF,
    PROCS, TPOFF,
};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Option<()> {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, kind::EXEC);
    ev.args_len = 0;
    ev.args_total = 0;
    ev.filename[0] = 0;
    ev.args[0] = 0;

    let off = global!(TPOFF.exec_filename);
    if off != NO_OFFSET {
        // SAFETY: a fault-tolerant helper read at an offset inside the tracepoint record (from its
        // format file).
        if let Ok(loc) = unsafe { ctx.read_at::<u32>(off as usize) } {
            let data = ctx.as_ptr() as u64 + (loc & 0xffff) as u64;
            // SAFETY: a fault-tolerant helper read into a buffer we own; it writes at most the
            // buffer's length.
            let _ = unsafe { bpf_probe_read_kernel_str_bytes(data as *const u8, &mut ev.filename) };
        }
    }

    // argv from the new image's argument area (user memory of the current task, just set up).
    let (start, end) = if direct() {
        let mm = dl!(u64, task_btf(), d::TASK_MM);
        (dl!(u64, mm, d::MM_ARG_START), dl!(u64, mm, d::MM_ARG_END))
    } else {
        // SAFETY: a helper without preconditions; the pointer is only read through fault-tolerant
        // helpers.
        let task = unsafe { bpf_get_current_task() };
        let mm: u64 = kread(task, global!(KOFF.task_mm)).unwrap_or(0);
        (
            kread(mm, global!(KOFF.mm_arg_start)).unwrap_or(0),
            kread(mm, global!(KOFF.mm_arg_end)).unwrap_or(0),
        )
    };
    if start != 0 && end > start {
        let total = end - start;
        ev.args_total = total as u32;
        // Fixed-size reads keep the verifier happy; the argument area is followed by the
        // environment on the same stack pages, so the full read normally succeeds. Fall back
        // to smaller reads at a page edge.
        let dst = ev.args.as_mut_ptr() as *mut core::ffi::c_void;
        let src = start as *const core::ffi::c_void;
        // Only the bytes argv has (most command lines are far shorter than the buffer); the
        // mask keeps the length provably within it for the verifier.
        let want = if total < ARGS_LEN as u64 {
            total as u32
        } else {
            ARGS_LEN as u32
        };
        let want = want & (2 * ARGS_LEN as u32 - 1);
        let want = if want > ARGS_LEN as u32 {
            ARGS_LEN as u32
        } else {
            want
        };
        // SAFETY: a fault-tolerant read of at most ARGS_LEN bytes (`want` is bounded above, 128
        // below that) into `ev.args`, which holds ARGS_LEN.
        let got = if unsafe { bpf_probe_read_user(dst, want, src) } == 0 {
            want
        // SAFETY: a fault-tolerant read of at most ARGS_LEN bytes (`want` is bounded above, 128
        // below that) into `ev.args`, which holds ARGS_LEN.
        } else if unsafe { bpf_probe_read_user(dst, 128, src) } == 0 {
            128
        } else {
            0
        };
        ev.args_len = if (total as u32) < got {
            total as u32
        } else {
            got
        };
    }
    let flags = wake_flags::<ExecEvent>();
    entry.submit(flags);
    Some(())
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Option<()> {
    // A tp_btf argument is a BTF-typed `task_struct *`: direct loads apply.
    let child: u64 = ctx.arg(1);
    let (child_pid, child_tgid): (u32, u32) = if direct() {
        (dl!(u32, child, d::TASK_PID), dl!(u32, child, d::TASK_TGID))
    } else {
        (
            kread(child, global!(KOFF.task_pid))?,
            kread(child, global!(KOFF.task_tgid))?,
        )
    };
    if child_pid != child_tgid {
        // A new thread, not a new process.
        return None;
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, kind::FORK);
    ev.child_tgid = child_tgid;
    ev._pad = 0;
    ev.child_start_ns = if direct() {
        dl!(u64, child, d::TASK_START_BOOTTIME)
    } else {
        kread(child, global!(KOFF.task_start_boottime)).unwrap_or(0)
    };
    let flags = wake_flags::<ForkEvent>();
    entry.submit(flags);
    Some(())
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Option<()> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let (pid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    let off = global!(TPOFF.exit_group_dead);
    if off != NO_OFFSET {
        // 6.16+: the kernel says whether this was the last thread.
        // SAFETY: a fault-tolerant helper read at an offset inside the tracepoint record (from its
        // format file).
        let dead: u8 = unsafe { ctx.read_at(off as usize) }.ok()?;
        if dead == 0 {
            return None;
        }
    } else if pid != tgid {
        return None;
    }
    // The per-process cache is only used by the probe-read paths.
    let cached = !direct();
    if is_agent(tgid) {
        if cached {
            let _ = PROCS.remove(&tgid);
        }
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        if cached {
            let _ = PROCS.remove(&tgid);
        }
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, kind::EXIT);
    ev.exit_code = if cached {
        // SAFETY: a helper without preconditions; the pointer is only read through fault-tolerant
        // helpers.
        let task = unsafe { bpf_get_current_task() };
        kread(task, global!(KOFF.task_exit_code)).unwrap_or(0)
    } else {
        dl!(u32, task_btf(), d::TASK_EXIT_CODE)
    };
    ev._pad = 0;
    // After the header used the cache: the pid may be reused from now on.
    if cached {
        let _ = PROCS.remove(&tgid);
    }
    let flags = wake_flags::<ExitEvent>();
    entry.submit(flags);
    Some(())
}
