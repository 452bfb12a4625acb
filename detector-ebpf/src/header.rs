//! The record header: who did it (process, credentials, cgroup, namespaces) and when.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
};
use detector_common::{counter, Header};

use crate::{
    dl, global,
    maps::{count, ProcCache, PROCS},
    read::{direct, kread, task_btf},
    settings::{CONFIG, KOFF},
};

/// True when the current task belongs to the agent: its own activity is never reported.
#[inline(always)]
pub(crate) fn is_agent(tgid: u32) -> bool {
    tgid == global!(CONFIG.agent_tgid)
}

/// Fills the parts of a header every program type can know.
#[inline(always)]
pub(crate) fn fill_basic(h: &mut Header, kind: u32) {
    fill_common(h, kind);
    let pid_tgid = bpf_get_current_pid_tgid();
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a helper without preconditions.
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
    // SAFETY: a helper without preconditions.
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    // SAFETY: a helper without preconditions.
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
    // SAFETY: a helper without preconditions; the pointer is only read through fault-tolerant
    // helpers.
    let task = unsafe { bpf_get_current_task() };
    let nsproxy: u64 = kread(task, global!(KOFF.task_nsproxy)).unwrap_or(0);
    // Map keys must live on the stack: before 6.2 the verifier refuses ring-buffer memory
    // (where `h` usually is) as a key.
    let tgid = h.tgid;
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
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
