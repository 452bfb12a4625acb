//! Connections.
//!
//! TCP comes from `sock:inet_sock_set_state`, which fires from the socket layer whatever the
//! syscall path (connect(2), io_uring CONNECT, 32-bit compat) and carries the 4-tuple read from
//! the socket, not from user memory:
//! - `CLOSE → SYN_SENT` runs in the connecting task: the attempt (`CONNECT`, in progress);
//! - `SYN_SENT → ESTABLISHED | CLOSE` often runs in softirq (`CONNECT_RESULT`): the record
//!   carries the socket but no process; userspace pairs it with the attempt of the same socket,
//!   so the kernel keeps no per-connection state (a hash insert, lookup and delete per connect
//!   cost more than the outcome record itself);
//! - `→ LISTEN` runs in the listening task: remembered in `LISTENERS` so that an inbound
//!   `SYN_RECV → ESTABLISHED` (softirq, unrelated current task) is attributed to the listener.
//!
//! UDP has no state machine: `cgroup/connect4|6` on the cgroup v2 root sees every connect
//! before it happens and costs nothing to other syscalls.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    macros::{btf_tracepoint, cgroup_sock_addr, map, tracepoint},
    maps::LruHashMap as Lru,
    programs::{BtfTracePointContext, SockAddrContext, TracePointContext},
};
use detector_common::{direct as d, kind, outcome, tp_fixed, Header, ListenKey, NetEvent};

use crate::{
    cast, direct, dl, fill_basic, fill_common, fill_header, global, has_cast, is_agent, kread,
    lost, tpf, wake_flags, EVENTS, KOFF, TPOFF,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const SOCK_DGRAM: u32 = 2;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
const ECONNREFUSED: u32 = 111;

/// Listening TCP ports → the listening process. Userspace seeds listeners older than the agent.
#[map]
static LISTENERS: Lru<ListenKey, Header> = Lru::with_max_entries(16384, 0);

/// The fields of one `inet_sock_set_state` record.
struct StateChange {
    sk: u64,
    old: i32,
    new: i32,
    family: u16,
    sport: u16,
    dport: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

/// One `inet_sock_set_state` field: fixed offset when the layout matches, else runtime.
macro_rules! field {
    ($ctx:expr, $fixed:ident, $off:ident, $t:ty) => {
        tpf!(
            $ctx,
            tp_fixed::ISS,
            tp_fixed::$fixed,
            global!(TPOFF.$off),
            $t
        )
        .unwrap_or_default()
    };
}

/// Reads a state change of interest into `c` (`false`: not TCP, or a transition of no
/// interest). A function of its own (`inline(never)`): its temporaries then do not add to the
/// stack of what handles the change (the verifier limits the sum along a call chain).
#[inline(never)]
fn read_change(ctx: &TracePointContext, c: &mut StateChange) -> bool {
    let protocol: u16 = field!(ctx, ISS_PROTOCOL, iss_protocol, u16);
    if protocol != IPPROTO_TCP {
        return false;
    }
    let old: i32 = field!(ctx, ISS_OLDSTATE, iss_oldstate, i32);
    let new: i32 = field!(ctx, ISS_NEWSTATE, iss_newstate, i32);
    // Most transitions of a connection's life (FIN_WAIT…) are of no interest: leave early.
    let interesting = new == TCP_SYN_SENT
        || new == TCP_LISTEN
        || old == TCP_SYN_SENT
        || old == TCP_LISTEN
        || (old == TCP_SYN_RECV && new == TCP_ESTABLISHED);
    if !interesting {
        return false;
    }
    let family: u16 = field!(ctx, ISS_FAMILY, iss_family, u16);
    if family == AF_INET {
        c.saddr = [0; 16];
        c.daddr = [0; 16];
        let s: [u8; 4] = field!(ctx, ISS_SADDR, iss_saddr, [u8; 4]);
        let d: [u8; 4] = field!(ctx, ISS_DADDR, iss_daddr, [u8; 4]);
        c.saddr[..4].copy_from_slice(&s);
        c.daddr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        c.saddr = field!(ctx, ISS_SADDR_V6, iss_saddr_v6, [u8; 16]);
        c.daddr = field!(ctx, ISS_DADDR_V6, iss_daddr_v6, [u8; 16]);
    } else {
        return false;
    }
    c.sk = field!(ctx, ISS_SKADDR, iss_skaddr, u64);
    c.old = old;
    c.new = new;
    c.family = family;
    c.sport = field!(ctx, ISS_SPORT, iss_sport, u16);
    c.dport = field!(ctx, ISS_DPORT, iss_dport, u16);
    true
}

/// Network namespace of a socket (`sk->__sk_common.skc_net.net->ns.inum`).
#[inline(always)]
fn sock_netns(sk: u64) -> u32 {
    if direct() && has_cast() {
        let net = dl!(u64, cast!(sk, d::TYPE_SOCK), d::SOCK_NET);
        return dl!(u32, net, d::NET_NS_INUM);
    }
    let net: u64 = kread(sk, global!(KOFF.sock_net)).unwrap_or(0);
    kread(net, global!(KOFF.net_ns_inum)).unwrap_or(0)
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

/// The same hook as a BTF-typed raw tracepoint, used when direct loads are available: the
/// kernel then skips building the classic tracepoint record for every state change of every
/// socket (most of which are of no interest), and the program reads the socket itself.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    if direct() {
        if let Some(c) = read_change_btf(&ctx) {
            let _ = on_change(&c);
        }
    }
    0
}

/// The fields the classic tracepoint would record (`TP_STORE_ADDRS` and all), read from the
/// socket by direct loads.
#[inline(always)]
fn read_change_btf(ctx: &BtfTracePointContext) -> Option<StateChange> {
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let interesting = new == TCP_SYN_SENT
        || new == TCP_LISTEN
        || old == TCP_SYN_SENT
        || old == TCP_LISTEN
        || (old == TCP_SYN_RECV && new == TCP_ESTABLISHED);
    if !interesting || dl!(u16, sk, d::SK_PROTOCOL) != IPPROTO_TCP {
        return None;
    }
    let family = dl!(u16, sk, d::SK_FAMILY);
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == AF_INET {
        saddr[..4].copy_from_slice(&dl!(u32, sk, d::SK_RCV_SADDR).to_ne_bytes());
        daddr[..4].copy_from_slice(&dl!(u32, sk, d::SK_DADDR).to_ne_bytes());
    } else if family == AF_INET6 {
        saddr[..8].copy_from_slice(&dl!(u64, sk, d::SK_V6_RCV_SADDR[0]).to_ne_bytes());
        saddr[8..].copy_from_slice(&dl!(u64, sk, d::SK_V6_RCV_SADDR[1]).to_ne_bytes());
        daddr[..8].copy_from_slice(&dl!(u64, sk, d::SK_V6_DADDR[0]).to_ne_bytes());
        daddr[8..].copy_from_slice(&dl!(u64, sk, d::SK_V6_DADDR[1]).to_ne_bytes());
    } else {
        return None;
    }
    let sport = if has_cast() {
        dl!(u16, cast!(sk, d::TYPE_INET_SOCK), d::INET_SPORT)
    } else {
        // `inet_sport` lies past `struct sock`, out of a direct load's reach without a cast.
        kread(sk, global!(KOFF.inet_sport)).unwrap_or(0)
    };
    Some(StateChange {
        sk,
        old,
        new,
        family,
        sport: u16::from_be(sport),
        dport: u16::from_be(dl!(u16, sk, d::SK_DPORT)),
        saddr,
        daddr,
    })
}

fn try_set_state(ctx: &TracePointContext) -> Option<()> {
    let mut c = StateChange {
        sk: 0,
        old: 0,
        new: 0,
        family: 0,
        sport: 0,
        dport: 0,
        saddr: [0; 16],
        daddr: [0; 16],
    };
    if !read_change(ctx, &mut c) {
        return None;
    }
    on_change(&c)
}

/// What a state change means: an attempt, an outcome, a listener, an accept. Each case is a
/// function of its own (`inline(never)`), so that their stack frames are not added to the
/// frame of the record parsing before them: the verifier limits the sum along a call chain.
#[inline(always)]
fn on_change(c: &StateChange) -> Option<()> {
    if c.new == TCP_SYN_SENT {
        return attempt(c);
    }
    if c.old == TCP_SYN_SENT && (c.new == TCP_ESTABLISHED || c.new == TCP_CLOSE) {
        return result(c);
    }
    if c.new == TCP_LISTEN || (c.old == TCP_LISTEN && c.new == TCP_CLOSE) {
        return listen(c);
    }
    if c.old == TCP_SYN_RECV && c.new == TCP_ESTABLISHED {
        return accepted(c);
    }
    None
}

/// A socket starts or stops listening: remember or forget the listener.
#[inline(never)]
fn listen(c: &StateChange) -> Option<()> {
    let key = ListenKey {
        family: c.family,
        port: c.sport,
        netns: sock_netns(c.sk),
    };
    if c.new != TCP_LISTEN {
        let _ = LISTENERS.remove(&key);
        return None;
    }
    let mut h = Header::default();
    fill_header(&mut h, kind::ACCEPT);
    let _ = LISTENERS.insert(&key, &h, 0);
    None
}

#[inline(always)]
fn fill_net(ev: &mut NetEvent, c: &StateChange, outcome: u32, errno: u32) {
    ev.sock = c.sk;
    ev.family = c.family;
    ev.protocol = IPPROTO_TCP;
    ev.sport = c.sport;
    ev.dport = c.dport;
    ev.saddr = c.saddr;
    ev.daddr = c.daddr;
    ev.outcome = outcome;
    ev.errno = errno;
}

fn attempt(c: &StateChange) -> Option<()> {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        lost();
        return None;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, kind::CONNECT);
    fill_net(ev, c, outcome::IN_PROGRESS, 0);
    let flags = wake_flags::<NetEvent>();
    entry.submit(flags);
    Some(())
}

#[inline(never)]
fn result(c: &StateChange) -> Option<()> {
    // No process here: userspace takes it from the attempt with the same socket, and drops
    // outcomes of attempts it never saw (the agent's own connects, lost attempts).
    let (out, errno) = if c.new == TCP_ESTABLISHED {
        (outcome::ESTABLISHED, 0)
    } else {
        let err: i32 = if direct() && has_cast() {
            dl!(u32, cast!(c.sk, d::TYPE_SOCK), d::SOCK_ERR) as i32
        } else {
            kread(c.sk, global!(KOFF.sock_err)).unwrap_or(0)
        };
        let err = if err < 0 { (-err) as u32 } else { err as u32 };
        if err == ECONNREFUSED {
            (outcome::REFUSED, err)
        } else {
            (outcome::FAILED, err)
        }
    };
    emit_with(None, kind::CONNECT_RESULT, c, out, errno)
}

#[inline(never)]
fn accepted(c: &StateChange) -> Option<()> {
    let key = ListenKey {
        family: c.family,
        port: c.sport,
        netns: sock_netns(c.sk),
    };
    // A listener older than the agent that userspace could not seed: reported with no
    // process, userspace attributes it by port.
    let hdr = unsafe { LISTENERS.get(&key) };
    if let Some(h) = hdr {
        if h.tgid != 0 && is_agent(h.tgid) {
            return None;
        }
    }
    emit_with(hdr, kind::ACCEPT, c, outcome::ESTABLISHED, 0)
}

/// Emits a record for a process captured earlier (`hdr`, in map memory; none: no process),
/// the current task being unrelated.
#[inline(always)]
fn emit_with(hdr: Option<&Header>, k: u32, c: &StateChange, out: u32, errno: u32) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        lost();
        return None;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    // The process from `hdr`; only the record's time, CPU and sequence are of now.
    match hdr {
        Some(h) => {
            ev.hdr = *h;
            let (ppid, mntns, netns, start_ns) = (h.ppid, h.mntns, h.netns, h.start_ns);
            fill_common(&mut ev.hdr, k);
            ev.hdr.ppid = ppid;
            ev.hdr.mntns = mntns;
            ev.hdr.netns = netns;
            ev.hdr.start_ns = start_ns;
        }
        None => {
            ev.hdr.pid = 0;
            ev.hdr.tgid = 0;
            ev.hdr.uid = 0;
            ev.hdr.gid = 0;
            ev.hdr.cgroup_id = 0;
            ev.hdr.comm = [0; 16];
            fill_common(&mut ev.hdr, k);
        }
    }
    fill_net(ev, c, out, errno);
    let flags = wake_flags::<NetEvent>();
    entry.submit(flags);
    Some(())
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let _ = try_udp_connect(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let _ = try_udp_connect(&ctx, AF_INET6);
    1
}

fn try_udp_connect(ctx: &SockAddrContext, family: u16) -> Option<()> {
    let sa: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_DGRAM {
        // TCP is reported by inet_sock_set_state with its outcome.
        return None;
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        lost();
        return None;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_basic(&mut ev.hdr, kind::CONNECT);
    ev.sock = 0;
    ev.family = family;
    ev.protocol = IPPROTO_UDP;
    ev.sport = 0;
    ev.saddr = [0; 16];
    ev.daddr = [0; 16];
    if family == AF_INET {
        ev.daddr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        let w = sa.user_ip6;
        ev.daddr[0..4].copy_from_slice(&w[0].to_ne_bytes());
        ev.daddr[4..8].copy_from_slice(&w[1].to_ne_bytes());
        ev.daddr[8..12].copy_from_slice(&w[2].to_ne_bytes());
        ev.daddr[12..16].copy_from_slice(&w[3].to_ne_bytes());
    }
    ev.dport = u16::from_be(sa.user_port as u16);
    ev.outcome = outcome::ASSOCIATED;
    ev.errno = 0;
    let flags = wake_flags::<NetEvent>();
    entry.submit(flags);
    Some(())
}
