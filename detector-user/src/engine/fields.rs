//! Field paths rules may address (`net.dst_port`, `process.identity`…), resolved once at load
//! time to a [`Field`] so that evaluation is a match, not a string lookup. Besides the event's
//! own fields there are derived ones, documented in `docs/rules.md`: `process.tree`, `net.dst`,
//! `net.dst_host`, `net.contact`, `net.service`, `net.peer_allowed`, `net.novel`,
//! `credential.owned`, `file.age_days`, `file.home_user` (and `net.off_host` for recordings
//! made before the agent set it).

use std::borrow::Cow;
use std::net::IpAddr;

use crate::event::{Event, FileInfo, NetInfo, Process};
use crate::policy::identities::{Baseline, IdentityConfig};

/// What type a field has, so that literals are checked when rules load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text.
    Str,
    /// Integer.
    Int,
    /// Boolean.
    Bool,
    /// A list of strings (argv): string matchers apply to any element.
    StrList,
}

macro_rules! fields {
    ($($name:literal => $id:ident : $ty:ident),* $(,)?) => {
        /// A field a rule can address.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Field { $($id),* }

        impl Field {
            /// All fields with their paths.
            pub const ALL: &'static [(&'static str, Field)] = &[$(($name, Field::$id)),*];

            /// Resolves a dotted path.
            pub fn parse(path: &str) -> Option<Field> {
                match path { $($name => Some(Field::$id),)* _ => None }
            }

            /// The dotted path.
            pub fn path(self) -> &'static str {
                match self { $(Field::$id => $name),* }
            }

            /// The field's type.
            pub fn ty(self) -> FieldType {
                match self { $(Field::$id => FieldType::$ty),* }
            }
        }
    };
}

fields! {
    "kind" => Kind: Str,
    "ts" => Ts: Int,
    "process.pid" => Pid: Int,
    "process.tgid" => Tgid: Int,
    "process.ppid" => Ppid: Int,
    "process.start" => Start: Int,
    "process.uid" => Uid: Int,
    "process.gid" => Gid: Int,
    "process.user" => User: Str,
    "process.group" => Group: Str,
    "process.comm" => Comm: Str,
    "process.exe" => Exe: Str,
    "process.argv" => Argv: StrList,
    "process.parent_exe" => ParentExe: Str,
    "process.cgroup_id" => CgroupId: Int,
    "process.cgroup" => Cgroup: Str,
    "process.mntns" => Mntns: Int,
    "process.netns" => Netns: Int,
    "process.workload.unit" => Unit: Str,
    "process.workload.container_id" => ContainerId: Str,
    "process.workload.pod_uid" => PodUid: Str,
    "process.workload.pod_namespace" => PodNamespace: Str,
    "process.workload.pod_name" => PodName: Str,
    "process.workload.container_name" => ContainerName: Str,
    "process.identity" => Identity: Str,
    "process.tree" => Tree: Int,
    "exec.filename" => ExecFilename: Str,
    "exec.argv" => ExecArgv: StrList,
    "fork.child_tgid" => ChildTgid: Int,
    "exit.code" => ExitCode: Int,
    "exit.signal" => ExitSignal: Int,
    "net.protocol" => Protocol: Str,
    "net.family" => Family: Int,
    "net.direction" => Direction: Str,
    "net.src_addr" => SrcAddr: Str,
    "net.src_port" => SrcPort: Int,
    "net.dst_addr" => DstAddr: Str,
    "net.dst_port" => DstPort: Int,
    "net.dst" => Dst: Str,
    "net.outcome" => Outcome: Str,
    "net.error" => NetError: Str,
    "net.conn" => Conn: Int,
    "net.dst_name" => DstName: Str,
    "net.dst_host" => DstHost: Str,
    "net.off_host" => OffHost: Bool,
    "net.contact" => Contact: Bool,
    "net.service" => Service: Str,
    "net.peer_allowed" => PeerAllowed: Bool,
    "net.novel" => Novel: Bool,
    "file.watched" => Watched: Str,
    "file.category" => Category: Str,
    "file.path" => FilePath: Str,
    "file.resolved" => Resolved: Str,
    "file.dev" => Dev: Int,
    "file.ino" => Ino: Int,
    "file.flags" => Flags: Int,
    "file.access" => Access: Str,
    "file.via" => Via: Str,
    "file.target_pid" => TargetPid: Int,
    "file.mtime" => Mtime: Int,
    "file.fingerprint" => Fingerprint: Str,
    "file.age_days" => AgeDays: Int,
    "file.home_user" => HomeUser: Str,
    "credential.owned" => Owned: Bool,
    "loss.cpu" => LossCpu: Int,
    "loss.count" => LossCount: Int,
}

/// A field's value on one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    /// Text.
    Str(Cow<'a, str>),
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// List of strings.
    List(&'a [String]),
}

impl Val<'_> {
    /// Rendering used for group keys, distinct values and alerts.
    pub fn render(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::List(l) => Cow::Owned(l.join(" ")),
        }
    }
}

/// What derived fields need besides the event: the identities config and the baseline.
#[derive(Debug, Default)]
pub struct Policy {
    /// Configured identities (ownership, declared peers, services, budgets).
    pub(crate) identities: IdentityConfig,
    /// Learned peers.
    pub(crate) baseline: Baseline,
}

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Root of the process tree an event belongs to: the parent, unless the parent is init (or
/// unknown), so that `cat key; ssh host` run by one shell share a tree and unrelated services
/// started by init do not.
pub(crate) fn tree_root(p: &Process) -> u32 {
    if p.ppid > 1 {
        p.ppid
    } else {
        p.tgid
    }
}

pub(crate) use crate::policy::identities::home_user;

/// Derived ownership of a credential when no identity declares it (see
/// [`crate::policy::identities::derived_owner`]).
fn derived_owned(p: &Process, watched: &str, category: &str) -> Option<bool> {
    crate::policy::identities::derived_owner(watched, category)
        .map(|o| o.owns(p.user.as_deref(), p.uid, p.workload.pod_uid.as_deref()))
}

/// An event as conditions see it: with its destination address parsed once (CIDR tests,
/// declared peers and service names of several rules all need it).
pub(crate) struct Subject<'a> {
    /// The event.
    pub(crate) ev: &'a Event,
    /// Identities and baseline.
    pub(crate) pol: &'a Policy,
    /// Its destination address, parsed.
    pub(crate) dst_ip: Option<IpAddr>,
}

impl<'a> Subject<'a> {
    /// Parses what several tests of the event share.
    pub(crate) fn new(ev: &'a Event, pol: &'a Policy) -> Subject<'a> {
        Subject {
            ev,
            pol,
            dst_ip: ev.net.as_ref().and_then(|n| parse_ip(&n.dst_addr)),
        }
    }
}

/// The value of `f` on `ev`, `None` when the event has no such value.
pub fn get<'a>(f: Field, ev: &'a Event, pol: &Policy) -> Option<Val<'a>> {
    get_ip(f, ev, pol, || {
        ev.net.as_ref().and_then(|n| parse_ip(&n.dst_addr))
    })
}

/// [`get`] on a [`Subject`], with its destination address parsed already.
pub(crate) fn get_at<'a>(f: Field, s: &Subject<'a>) -> Option<Val<'a>> {
    get_ip(f, s.ev, s.pol, || s.dst_ip)
}

fn get_ip<'a>(
    f: Field,
    ev: &'a Event,
    pol: &Policy,
    dst_ip: impl FnOnce() -> Option<IpAddr>,
) -> Option<Val<'a>> {
    use Field::*;
    let s = |x: &'a str| Some(Val::Str(Cow::Borrowed(x)));
    let os = |x: &'a Option<String>| x.as_deref().map(|v| Val::Str(Cow::Borrowed(v)));
    let i = |x: u64| Some(Val::Int(x as i64));
    let p = ev.process.as_ref();
    let n = ev.net.as_ref();
    let fl = ev.file.as_ref();
    let ex = ev.exit.as_ref();
    match f {
        Kind => s(ev.kind.as_str()),
        Ts => i(ev.ts),
        Pid => p.and_then(|p| i(p.pid.into())),
        Tgid => p.and_then(|p| i(p.tgid.into())),
        Ppid => p.and_then(|p| i(p.ppid.into())),
        Start => p.and_then(|p| i(p.start)),
        Uid => p.and_then(|p| i(p.uid.into())),
        Gid => p.and_then(|p| i(p.gid.into())),
        User => p.and_then(|p| os(&p.user)),
        Group => p.and_then(|p| os(&p.group)),
        Comm => p.and_then(|p| s(&p.comm)),
        Exe => p.and_then(|p| s(&p.exe)),
        Argv => p.map(|p| Val::List(&p.argv)),
        ParentExe => p.and_then(|p| os(&p.parent_exe)),
        CgroupId => p.and_then(|p| i(p.cgroup_id)),
        Cgroup => p.and_then(|p| os(&p.cgroup)),
        Mntns => p.and_then(|p| i(p.mntns.into())),
        Netns => p.and_then(|p| i(p.netns.into())),
        Unit => p.and_then(|p| os(&p.workload.unit)),
        ContainerId => p.and_then(|p| os(&p.workload.container_id)),
        PodUid => p.and_then(|p| os(&p.workload.pod_uid)),
        PodNamespace => p.and_then(|p| os(&p.workload.pod_namespace)),
        PodName => p.and_then(|p| os(&p.workload.pod_name)),
        ContainerName => p.and_then(|p| os(&p.workload.container_name)),
        Identity => p.and_then(|p| os(&p.identity)),
        Tree => p.and_then(|p| i(tree_root(p).into())),
        ExecFilename => ev.exec.as_ref().and_then(|e| s(&e.filename)),
        ExecArgv => ev.exec.as_ref().map(|e| Val::List(&e.argv)),
        ChildTgid => ev.fork.as_ref().and_then(|x| i(x.child_tgid.into())),
        ExitCode => ex.and_then(|x| x.code.map(|c| Val::Int(c.into()))),
        ExitSignal => ex.and_then(|x| x.signal.map(|c| Val::Int(c.into()))),
        Protocol => n.map(|n| Val::Str(Cow::Borrowed(enum_str(&n.protocol)))),
        Family => n.and_then(|n| i(n.family.into())),
        Direction => n.map(|n| Val::Str(Cow::Borrowed(enum_str(&n.direction)))),
        SrcAddr => n.and_then(|n| s(&n.src_addr)),
        SrcPort => n.and_then(|n| i(n.src_port.into())),
        DstAddr => n.and_then(|n| s(&n.dst_addr)),
        DstPort => n.and_then(|n| i(n.dst_port.into())),
        Dst => n.map(|n| Val::Str(Cow::Owned(dst_string(&n.dst_addr, n.dst_port)))),
        Outcome => n.map(|n| Val::Str(Cow::Borrowed(enum_str(&n.outcome)))),
        NetError => n.and_then(|n| os(&n.error)),
        Conn => n.and_then(|n| i(n.conn)),
        DstName => n.and_then(|n| os(&n.dst_name)),
        // What fan-out counts: the name when the agent saw it resolved (the addresses of one
        // name tried in turn are one host), else the address.
        DstHost => n.map(|n| Val::Str(Cow::Borrowed(n.dst_name.as_deref().unwrap_or(&n.dst_addr)))),
        OffHost => n.map(|n| Val::Bool(off_host(n, dst_ip))),
        Contact => n.map(|n| Val::Bool(is_contact(ev.kind, n))),
        Service => service(n?, pol, dst_ip).map(|x| Val::Str(Cow::Owned(x))),
        PeerAllowed => peer_allowed(n?, p?, pol, dst_ip).map(Val::Bool),
        Novel => peer_allowed(n?, p?, pol, dst_ip).map(|allowed| Val::Bool(!allowed)),
        Watched => fl.and_then(|x| s(&x.watched)),
        Category => fl.and_then(|x| s(&x.category)),
        FilePath => fl.and_then(|x| os(&x.path)),
        Resolved => fl.and_then(|x| os(&x.resolved)),
        Dev => fl.and_then(|x| i(x.dev)),
        Ino => fl.and_then(|x| i(x.ino)),
        Flags => fl.and_then(|x| x.flags.map(|v| Val::Int(v.into()))),
        Access => fl.and_then(|x| os(&x.access)),
        Via => fl.map(|x| Val::Str(Cow::Borrowed(enum_str(&x.via)))),
        TargetPid => fl.and_then(|x| x.target_pid.map(|v| Val::Int(v.into()))),
        Mtime => fl.and_then(|x| x.mtime.map(|v| Val::Int(v as i64))),
        Fingerprint => fl.and_then(|x| os(&x.fingerprint)),
        AgeDays => fl
            .and_then(|x| x.mtime)
            .map(|m| Val::Int((ev.ts.saturating_sub(m) / NS_PER_DAY) as i64)),
        HomeUser => fl.and_then(|x| home_user(&x.watched)).and_then(s),
        Owned => owned(fl?, p?, pol).map(Val::Bool),
        LossCpu => ev.loss.as_ref().and_then(|x| i(x.cpu.into())),
        LossCount => ev.loss.as_ref().and_then(|x| i(x.count)),
    }
}

/// `net.off_host`: as the agent saw it, else (recordings without the field) from the address.
fn off_host(n: &NetInfo, dst_ip: impl FnOnce() -> Option<IpAddr>) -> bool {
    match n.off_host {
        Some(v) => v,
        None => dst_ip().is_some_and(|ip| !is_this_host(ip)),
    }
}

/// `net.service`: the configured service name of the destination.
fn service(n: &NetInfo, pol: &Policy, dst_ip: impl FnOnce() -> Option<IpAddr>) -> Option<String> {
    let ip = dst_ip()?;
    pol.identities
        .service_name(ip, n.dst_port)
        .map(|x| x.to_string())
}

/// Whether the identity of `p` may contact the destination: declared, or learned by the
/// baseline (`None`: neither knows).
fn peer_allowed(
    n: &NetInfo,
    p: &Process,
    pol: &Policy,
    dst_ip: impl FnOnce() -> Option<IpAddr>,
) -> Option<bool> {
    let id = p.identity.as_deref()?;
    let ip = dst_ip();
    let declared = ip.and_then(|ip| pol.identities.peer_declared(id, ip, n.dst_port));
    let learned = pol.baseline.knows(id, ip, n.dst_port);
    match (declared, learned) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    }
}

/// Whether the process's identity owns the watched credential (declared, else derived).
fn owned(fl: &FileInfo, p: &Process, pol: &Policy) -> Option<bool> {
    let id = p.identity.as_deref().unwrap_or_default();
    pol.identities
        .owns(id, &fl.watched)
        .or_else(|| derived_owned(p, &fl.watched, &fl.category))
}

/// True for an address that always means this host: unspecified or loopback (also as an
/// IPv4-mapped IPv6 address).
pub(crate) fn is_this_host(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_unspecified() || ip.is_loopback()
}

/// Whether a network event is a contact with its destination: a TCP attempt or a UDP datagram
/// sent. A UDP association sends nothing (resolvers make one per address of a name to sort
/// them); outcomes and accepts are not attempts.
pub(crate) fn is_contact(kind: crate::event::Kind, n: &crate::event::NetInfo) -> bool {
    use crate::event::{Kind, Outcome, Protocol};
    kind == Kind::Connect
        && match n.protocol {
            Protocol::Tcp => true,
            _ => n.outcome == Outcome::Sent,
        }
}

/// Parses an address.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// `addr:port`, with brackets for IPv6.
pub(crate) fn dst_string(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// snake_case name of a serde unit enum variant (the same string JSON carries).
/// The name of an enum-valued field's value (`net.direction` → `outbound`), read without
/// building a [`Val`]: conditions test these on nearly every event.
pub(crate) fn enum_name(f: Field, ev: &Event) -> Option<&'static str> {
    match f {
        Field::Kind => Some(ev.kind.as_str()),
        Field::Protocol => ev.net.as_ref().map(|n| enum_str(&n.protocol)),
        Field::Direction => ev.net.as_ref().map(|n| enum_str(&n.direction)),
        Field::Outcome => ev.net.as_ref().map(|n| enum_str(&n.outcome)),
        Field::Via => ev.file.as_ref().map(|x| enum_str(&x.via)),
        _ => None,
    }
}

/// Whether `f` is one of the fields [`enum_name`] reads.
pub(crate) fn is_enum(f: Field) -> bool {
    matches!(
        f,
        Field::Kind | Field::Protocol | Field::Direction | Field::Outcome | Field::Via
    )
}

fn enum_str<T: EnumName>(v: &T) -> &'static str {
    v.name()
}

trait EnumName {
    fn name(&self) -> &'static str;
}

impl EnumName for crate::event::Protocol {
    fn name(&self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Other => "other",
        }
    }
}
impl EnumName for crate::event::Direction {
    fn name(&self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}
impl EnumName for crate::event::Outcome {
    fn name(&self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Established => "established",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Associated => "associated",
            Self::Sent => "sent",
        }
    }
}
impl EnumName for crate::event::Via {
    fn name(&self) -> &'static str {
        match self {
            Self::Syscall => "syscall",
            Self::IoUring => "io_uring",
            Self::Filemap => "filemap",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_roundtrip() {
        for (p, f) in Field::ALL {
            assert_eq!(Field::parse(p), Some(*f));
            assert_eq!(f.path(), *p);
        }
        assert_eq!(Field::parse("net.nope"), None);
    }

    #[test]
    fn home_users() {
        assert_eq!(home_user("/home/alice/.ssh/id_rsa"), Some("alice"));
        assert_eq!(home_user("/root/.ssh/id_rsa"), Some("root"));
        assert_eq!(home_user("/etc/shadow"), None);
        assert_eq!(home_user("/home/x"), None);
    }

    /// The shortcut conditions take for enum-valued fields reads what `get` gives.
    #[test]
    fn enum_name_is_the_field_value() {
        use crate::event::{Direction, FileInfo, Kind, NetInfo, Outcome, Protocol, Via};
        let mut ev = Event {
            ts: 1,
            kind: Kind::Connect,
            process: None,
            exec: None,
            fork: None,
            exit: None,
            net: None,
            file: None,
            loss: None,
        };
        let pol = Policy::default();
        let check = |ev: &Event| {
            for (_, f) in Field::ALL {
                let via_get = get(*f, ev, &pol).map(|v| v.render().into_owned());
                if is_enum(*f) {
                    assert_eq!(enum_name(*f, ev).map(str::to_string), via_get, "{f:?}");
                } else {
                    assert_eq!(enum_name(*f, ev), None, "{f:?}");
                }
            }
        };
        check(&ev);
        for (p, d, o) in [
            (Protocol::Tcp, Direction::Outbound, Outcome::InProgress),
            (Protocol::Udp, Direction::Inbound, Outcome::Established),
            (Protocol::Other, Direction::Outbound, Outcome::Refused),
            (Protocol::Tcp, Direction::Outbound, Outcome::Failed),
            (Protocol::Udp, Direction::Outbound, Outcome::Associated),
        ] {
            ev.net = Some(NetInfo {
                protocol: p,
                family: 4,
                direction: d,
                src_addr: "0.0.0.0".into(),
                src_port: 0,
                dst_addr: "10.0.0.1".into(),
                dst_port: 22,
                outcome: o,
                error: None,
                conn: 1,
                dst_name: None,
                off_host: None,
                service: None,
            });
            check(&ev);
        }
        for (k, via) in [
            (Kind::CredOpen, Via::Syscall),
            (Kind::CredRead, Via::IoUring),
            (Kind::CredRead, Via::Filemap),
        ] {
            ev.kind = k;
            ev.file = Some(FileInfo {
                watched: "/root/.ssh/id_rsa".into(),
                category: "ssh_key".into(),
                path: None,
                resolved: None,
                dev: 1,
                ino: 2,
                flags: None,
                access: None,
                via,
                target_pid: None,
                mtime: None,
                fingerprint: None,
            });
            check(&ev);
        }
    }

    #[test]
    fn enum_names_match_serde() {
        use crate::event::{Direction, Outcome, Protocol, Via};
        let j = |v: serde_json::Value| v.as_str().unwrap().to_string();
        assert_eq!(
            j(serde_json::to_value(Via::IoUring).unwrap()),
            Via::IoUring.name()
        );
        assert_eq!(
            j(serde_json::to_value(Outcome::InProgress).unwrap()),
            Outcome::InProgress.name()
        );
        assert_eq!(
            j(serde_json::to_value(Direction::Outbound).unwrap()),
            Direction::Outbound.name()
        );
        assert_eq!(
            j(serde_json::to_value(Protocol::Udp).unwrap()),
            Protocol::Udp.name()
        );
    }
}
