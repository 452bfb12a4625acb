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
//! UDP has no state machine. A contact is a datagram sent, not a `connect()` (which sends
//! nothing; resolvers do one per address of a name to sort them): `cgroup/connect4|6` reports
//! the association, `cgroup_skb/egress` the first datagram of a connected socket (once per
//! socket), `cgroup/sendmsg4|6` unconnected sends (once per socket and destination per 10 s).
//! All on the cgroup v2 root, costing no unrelated syscall; the egress program costs each
//! outgoing packet a few loads (UDP sockets that connected: one hash lookup).
//!
//! DNS answers: `cgroup_skb/ingress` copies UDP datagrams from port 53 for userspace, which
//! names the addresses connections go to.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::{btf_tracepoint, cgroup_skb, cgroup_sock_addr, map, tracepoint},
    maps::LruHashMap as Lru,
    programs::{BtfTracePointContext, SkBuffContext, SockAddrContext, TracePointContext},
};
use detector_common::{
    direct as d, kind, outcome, tp_fixed, DnsEvent, Header, ListenKey, NetEvent, DNS_PAYLOAD_LEN,
};

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
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
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
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
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
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
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

/// Connected UDP sockets that have not sent a datagram yet: socket cookie → 1. A UDP
/// `connect()` exchanges no packet; resolvers do one per address of a name to sort them (RFC
/// 6724), so only the first datagram makes the association a contact ([`udp_egress`]).
/// Sockets that never send are forgotten by the LRU.
#[map]
static UDP_UNSENT: Lru<u64, u32> = Lru::with_max_entries(16384, 0);

/// Key of [`UDP_SENT`].
#[repr(C)]
#[derive(Clone, Copy)]
struct SendKey {
    cookie: u64,
    addr: [u8; 16],
    port: u16,
    family: u16,
    _pad: u32,
}

/// Unconnected UDP sends reported recently: (socket, destination) → time. A program that
/// sends many datagrams to one peer is one contact per window, not one record per datagram.
#[map]
static UDP_SENT: Lru<SendKey, u64> = Lru::with_max_entries(16384, 0);

/// One unconnected send to a destination is reported at most this often per socket.
const SEND_REPORT_NS: u64 = 10_000_000_000;

/// The destination of a `bpf_sock_addr` (IPv4 in the first 4 bytes) and its port. Each
/// field is one volatile load at its own offset: the verifier refuses a context access
/// through a pointer the compiler moved (`dereference of modified ctx ptr`).
#[inline(always)]
fn sock_addr_dst(sa: *const bpf_sock_addr, family: u16) -> ([u8; 16], u16) {
    use core::ptr::{addr_of, read_volatile};
    let mut daddr = [0u8; 16];
    // SAFETY: `sa` is the program's context; every field read is within it.
    unsafe {
        if family == AF_INET {
            daddr[..4].copy_from_slice(&read_volatile(addr_of!((*sa).user_ip4)).to_ne_bytes());
        } else {
            let w = [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ];
            daddr[0..4].copy_from_slice(&w[0].to_ne_bytes());
            daddr[4..8].copy_from_slice(&w[1].to_ne_bytes());
            daddr[8..12].copy_from_slice(&w[2].to_ne_bytes());
            daddr[12..16].copy_from_slice(&w[3].to_ne_bytes());
        }
        (
            daddr,
            u16::from_be(read_volatile(addr_of!((*sa).user_port)) as u16),
        )
    }
}

/// Emits a UDP record for the current task: an association or a datagram sent.
#[inline(always)]
fn emit_udp(cookie: u64, family: u16, daddr: &[u8; 16], dport: u16, out: u32) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_basic(&mut ev.hdr, kind::CONNECT);
    ev.sock = cookie;
    ev.family = family;
    ev.protocol = IPPROTO_UDP;
    ev.sport = 0;
    ev.saddr = [0; 16];
    ev.daddr = *daddr;
    ev.dport = dport;
    ev.outcome = out;
    ev.errno = 0;
    let flags = wake_flags::<NetEvent>();
    entry.submit(flags);
    Some(())
}

fn try_udp_connect(ctx: &SockAddrContext, family: u16) -> Option<()> {
    // SAFETY: the context the kernel passed the program, valid for the run.
    let sa: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_DGRAM {
        // TCP is reported by inet_sock_set_state with its outcome.
        return None;
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    // SAFETY: the context pointer is the program's own argument.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut c_void) };
    let _ = UDP_UNSENT.insert(&cookie, &1, 0);
    let (daddr, dport) = sock_addr_dst(ctx.sock_addr, family);
    emit_udp(cookie, family, &daddr, dport, outcome::ASSOCIATED)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let _ = try_udp_sendmsg(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    let _ = try_udp_sendmsg(&ctx, AF_INET6);
    1
}

/// An unconnected UDP send (`sendto`/`sendmsg` with an address): a contact with that
/// destination, once per socket and destination per [`SEND_REPORT_NS`].
fn try_udp_sendmsg(ctx: &SockAddrContext, family: u16) -> Option<()> {
    // SAFETY: the context the kernel passed the program, valid for the run.
    let sa: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_DGRAM {
        return None;
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    // SAFETY: the context pointer is the program's own argument.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut c_void) };
    let (daddr, dport) = sock_addr_dst(ctx.sock_addr, family);
    let key = SendKey {
        cookie,
        addr: daddr,
        port: dport,
        family,
        _pad: 0,
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match UDP_SENT.get_ptr_mut(&key) {
        // SAFETY: a valid map value pointer; a plain u64.
        Some(t) => unsafe {
            if now.saturating_sub(*t) < SEND_REPORT_NS {
                return None;
            }
            *t = now;
        },
        None => {
            let _ = UDP_SENT.insert(&key, &now, 0);
        }
    }
    emit_udp(cookie, family, &daddr, dport, outcome::SENT)
}

/// `__sk_buff.protocol` (the frame's ethertype, network order) of IPv4 and IPv6.
const ETH_P_IP_BE: u32 = 0x0800u16.to_be() as u32;
const ETH_P_IPV6_BE: u32 = 0x86ddu16.to_be() as u32;

/// The L4 protocol and the offset of the L4 header of a packet whose data starts at its
/// network header (as in cgroup skb programs), read with direct packet access so that the
/// packets of no interest cost no helper call. IPv6 extension headers are not walked (UDP
/// right after the fixed header, as DNS and ordinary datagrams are).
#[inline(always)]
fn l4_of(ctx: &SkBuffContext) -> Option<(u16, u8, usize)> {
    let skb = ctx.skb.skb;
    // SAFETY: reads of the program's own context.
    let (proto, data, end) = unsafe {
        (
            (*skb).protocol,
            (*skb).data as usize,
            (*skb).data_end as usize,
        )
    };
    if proto == ETH_P_IP_BE {
        if data + 20 > end {
            return None;
        }
        // SAFETY: within [data, data_end), checked above.
        let (vihl, l4) = unsafe { (*(data as *const u8), *((data + 9) as *const u8)) };
        Some((AF_INET, l4, ((vihl & 0x0f) as usize) * 4))
    } else if proto == ETH_P_IPV6_BE {
        if data + 40 > end {
            return None;
        }
        // SAFETY: within [data, data_end), checked above.
        let l4 = unsafe { *((data + 6) as *const u8) };
        Some((AF_INET6, l4, 40))
    } else {
        None
    }
}

/// The first datagram of a connected UDP socket: its association becomes a contact.
#[cgroup_skb(egress)]
pub fn udp_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_udp_egress(&ctx);
    1
}

fn try_udp_egress(ctx: &SkBuffContext) -> Option<()> {
    let (family, l4, l4off) = l4_of(ctx)?;
    if l4 != IPPROTO_UDP as u8 {
        return None;
    }
    // SAFETY: the context pointer is the program's own argument.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut c_void) };
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    unsafe { UDP_UNSENT.get(&cookie) }?;
    let _ = UDP_UNSENT.remove(&cookie);
    let mut daddr = [0u8; 16];
    if family == AF_INET {
        daddr[..4].copy_from_slice(&ctx.load::<[u8; 4]>(16).ok()?);
    } else {
        daddr = ctx.load::<[u8; 16]>(24).ok()?;
    }
    let dport = u16::from_be(ctx.load::<u16>(l4off + 2).ok()?);
    let Some(mut entry) = EVENTS.reserve::<NetEvent>(0) else {
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    // No process on the packet path: userspace takes the association's (same cookie).
    ev.hdr = Header::default();
    fill_common(&mut ev.hdr, kind::UDP_SEND);
    ev.sock = cookie;
    ev.family = family;
    ev.protocol = IPPROTO_UDP;
    ev.sport = 0;
    ev.saddr = [0; 16];
    ev.daddr = daddr;
    ev.dport = dport;
    ev.outcome = outcome::SENT;
    ev.errno = 0;
    let flags = wake_flags::<NetEvent>();
    entry.submit(flags);
    Some(())
}

/// DNS answers (UDP from port 53) received by any socket of the host: userspace learns the
/// names of the addresses that connections then go to.
#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_dns(&ctx);
    1
}

fn try_dns(ctx: &SkBuffContext) -> Option<()> {
    let (family, l4, l4off) = l4_of(ctx)?;
    if l4 != IPPROTO_UDP as u8 {
        return None;
    }
    let sport = u16::from_be(ctx.load::<u16>(l4off).ok()?);
    if sport != 53 {
        return None;
    }
    let udp_len = u16::from_be(ctx.load::<u16>(l4off + 4).ok()?) as u32;
    if udp_len <= 8 {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<DnsEvent>(0) else {
        lost();
        return None;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.hdr = Header::default();
    fill_common(&mut ev.hdr, kind::DNS_ANSWER);
    // SAFETY: the context pointer is the program's own argument.
    ev.hdr.cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    ev.family = family;
    ev._pad = 0;
    ev.server = [0; 16];
    if family == AF_INET {
        if let Ok(a) = ctx.load::<[u8; 4]>(12) {
            ev.server[..4].copy_from_slice(&a);
        }
    } else if let Ok(a) = ctx.load::<[u8; 16]>(8) {
        ev.server = a;
    }
    // A length the verifier can bound: one byte at least (`udp_len > 8` above, and the
    // helper refuses a size that may be zero), the payload buffer at most.
    let mut n = ((udp_len - 9) & 0x7ff) + 1;
    if n > DNS_PAYLOAD_LEN as u32 {
        n = DNS_PAYLOAD_LEN as u32;
    }
    // SAFETY: `payload` holds DNS_PAYLOAD_LEN bytes and `n` is at most that.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            (l4off + 8) as u32,
            ev.payload.as_mut_ptr() as *mut c_void,
            n,
        )
    };
    if rc != 0 {
        entry.discard(0);
        return None;
    }
    ev.len = n;
    let flags = wake_flags::<DnsEvent>();
    entry.submit(flags);
    Some(())
}
