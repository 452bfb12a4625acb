//! Calibration programs, never attached by the agent: empty programs that `cargo xtask bench
//! kernel` (and `kbench hold-floor`) attach on their own to every hook the agent uses, to
//! measure what *any* program there costs on this kernel — the floor under the programs' own
//! work.

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
