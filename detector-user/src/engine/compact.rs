//! A compact byte encoding of [`Event`] for the evidence ring.
//!
//! Every event that feeds a correlation is kept (for alerts' evidence) until 65,536 newer ones
//! have been: as `Event` structs that is 816 bytes inline plus a dozen separately allocated
//! strings each, ~90 MB that the store sweeps through once per 65,536 events, evicting the
//! groups' state from the cache. Encoded, an event is the few hundred bytes of its actual
//! content, written sequentially into the ring's byte arena ([`super::store::Ring`]). Events are decoded only
//! for an alert that goes out (or the rare out-of-order paths that need an old event).
//!
//! The format is private to one process and never stored: fields in declaration order,
//! integers little-endian, strings and lists length-prefixed, `Option` a presence byte. Structs
//! are destructured without `..`, so a new field is a compile error here, and enums are
//! matched exhaustively when encoding.

use crate::event::{
    Direction, Event, ExecInfo, ExitInfo, FileInfo, ForkInfo, Kind, LossInfo, NetInfo, Outcome,
    Process, Protocol, Via, Workload,
};

/// Reads encoded values back, front to back.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}

/// A value that can be written to and read back from the compact encoding.
pub(crate) trait Codec: Sized {
    /// Appends the encoding.
    fn put(&self, b: &mut Vec<u8>);
    /// Reads one value (`None`: malformed, which only a bug could produce).
    fn take(r: &mut Reader<'_>) -> Option<Self>;
}

macro_rules! int_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            #[inline]
            fn put(&self, b: &mut Vec<u8>) {
                b.extend_from_slice(&self.to_le_bytes());
            }
            fn take(r: &mut Reader<'_>) -> Option<Self> {
                let a = r.bytes(std::mem::size_of::<$t>())?;
                Some(<$t>::from_le_bytes(a.try_into().ok()?))
            }
        }
    )*};
}
int_codec!(u8, u16, u32, u64, i32);

impl Codec for bool {
    #[inline]
    fn put(&self, b: &mut Vec<u8>) {
        b.push(u8::from(*self));
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        Some(u8::take(r)? != 0)
    }
}

impl Codec for String {
    #[inline]
    fn put(&self, b: &mut Vec<u8>) {
        (self.len() as u32).put(b);
        b.extend_from_slice(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        let n = u32::take(r)? as usize;
        String::from_utf8(r.bytes(n)?.to_vec()).ok()
    }
}

impl<T: Codec> Codec for Option<T> {
    #[inline]
    fn put(&self, b: &mut Vec<u8>) {
        match self {
            None => b.push(0),
            Some(x) => {
                b.push(1);
                x.put(b);
            }
        }
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        match u8::take(r)? {
            0 => Some(None),
            _ => Some(Some(T::take(r)?)),
        }
    }
}

impl<T: Codec> Codec for Vec<T> {
    #[inline]
    fn put(&self, b: &mut Vec<u8>) {
        (self.len() as u32).put(b);
        for x in self {
            x.put(b);
        }
    }
    fn take(r: &mut Reader<'_>) -> Option<Self> {
        let n = u32::take(r)? as usize;
        // Each element takes at least one byte: a corrupt length cannot reserve much.
        let mut v = Vec::with_capacity(n.min(r.0.len()));
        for _ in 0..n {
            v.push(T::take(r)?);
        }
        Some(v)
    }
}

/// Fieldless enums as one byte: `$n` is the variant's code, matched exhaustively both ways.
macro_rules! enum_codec {
    ($t:ident { $($v:ident = $n:literal),* $(,)? }) => {
        impl Codec for $t {
            #[inline]
            fn put(&self, b: &mut Vec<u8>) {
                b.push(match self { $($t::$v => $n),* });
            }
            fn take(r: &mut Reader<'_>) -> Option<Self> {
                match u8::take(r)? { $($n => Some($t::$v),)* _ => None }
            }
        }
    };
}
enum_codec!(Kind {
    Exec = 0,
    Fork = 1,
    Exit = 2,
    Connect = 3,
    ConnectResult = 4,
    Accept = 5,
    CredOpen = 6,
    CredRead = 7,
    Loss = 8,
    CredWrite = 9,
});
enum_codec!(Protocol {
    Tcp = 0,
    Udp = 1,
    Other = 2,
});
enum_codec!(Direction {
    Outbound = 0,
    Inbound = 1,
});
enum_codec!(Outcome {
    InProgress = 0,
    Established = 1,
    Refused = 2,
    Failed = 3,
    Associated = 4,
    Sent = 5,
});
enum_codec!(Via {
    Syscall = 0,
    IoUring = 1,
    Filemap = 2,
});

/// Structs field by field, in declaration order: the pattern has no `..`, so it must name
/// every field.
macro_rules! struct_codec {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl Codec for $t {
            #[inline]
            fn put(&self, b: &mut Vec<u8>) {
                let $t { $($f),* } = self;
                $($f.put(b);)*
            }
            fn take(r: &mut Reader<'_>) -> Option<Self> {
                $(let $f = Codec::take(r)?;)*
                Some($t { $($f),* })
            }
        }
    };
}
struct_codec!(Event {
    ts,
    kind,
    process,
    exec,
    fork,
    exit,
    net,
    file,
    loss,
});
struct_codec!(Process {
    pid,
    tgid,
    ppid,
    start,
    uid,
    gid,
    user,
    group,
    comm,
    exe,
    argv,
    parent_exe,
    ancestors,
    cgroup_id,
    cgroup,
    mntns,
    netns,
    workload,
    identity,
});
struct_codec!(Workload {
    unit,
    container_id,
    pod_uid,
    pod_namespace,
    pod_name,
    container_name,
});
struct_codec!(ExecInfo {
    filename,
    argv,
    argv_truncated,
});
struct_codec!(ForkInfo {
    child_tgid,
    child_start,
});
struct_codec!(ExitInfo { code, signal });
struct_codec!(NetInfo {
    protocol,
    family,
    direction,
    src_addr,
    src_port,
    dst_addr,
    dst_port,
    outcome,
    error,
    conn,
    dst_name,
    off_host,
    service,
});
struct_codec!(FileInfo {
    watched,
    category,
    path,
    resolved,
    dev,
    ino,
    flags,
    access,
    via,
    target_pid,
    mtime,
    fingerprint,
});
struct_codec!(LossInfo { cpu, count, total });

/// Replaces `b`'s contents with the encoding of `ev` (keeping its allocation). One function
/// with every field's encoding inlined into it: left to the compiler, how much of it was
/// inlined changed with unrelated edits elsewhere, and its cost by a fifth.
#[inline(never)]
pub(crate) fn encode(ev: &Event, b: &mut Vec<u8>) {
    b.clear();
    ev.put(b);
}

/// Decodes an event encoded by [`encode`].
pub(crate) fn decode(b: &[u8]) -> Option<Event> {
    let mut r = Reader(b);
    let ev = Event::take(&mut r)?;
    r.0.is_empty().then_some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Event {
        let s = |x: &str| x.to_string();
        Event {
            ts: 7,
            kind: Kind::Connect,
            process: Some(Process {
                pid: 1,
                tgid: 2,
                ppid: 3,
                start: 4,
                uid: 5,
                gid: 6,
                user: Some(s("alice")),
                group: Some(s("staff")),
                comm: s("ssh"),
                exe: s("/usr/bin/ssh"),
                argv: vec![s("ssh"), s("-i"), s("/root/.ssh/id_rsa"), s("hôst ✓")],
                parent_exe: Some(s("/bin/bash")),
                ancestors: vec![3, 1],
                cgroup_id: 9,
                cgroup: Some(s("/system.slice/x.service")),
                mntns: 10,
                netns: 11,
                workload: Workload {
                    unit: Some(s("x.service")),
                    container_id: None,
                    pod_uid: Some(s("uid")),
                    pod_namespace: Some(s("ns")),
                    pod_name: Some(s("pod")),
                    container_name: Some(s("c")),
                },
                identity: Some(s("svc")),
            }),
            exec: Some(ExecInfo {
                filename: s("/usr/bin/ssh"),
                argv: vec![s("ssh")],
                argv_truncated: true,
            }),
            fork: Some(ForkInfo {
                child_tgid: 12,
                child_start: 13,
            }),
            exit: Some(ExitInfo {
                code: Some(-1),
                signal: None,
            }),
            net: Some(NetInfo {
                protocol: Protocol::Udp,
                family: 6,
                direction: Direction::Inbound,
                src_addr: s("::1"),
                src_port: 1234,
                dst_addr: s("10.0.0.2"),
                dst_port: 22,
                outcome: Outcome::Refused,
                error: Some(s("refused")),
                conn: u64::MAX,
                dst_name: None,
                off_host: None,
                service: None,
            }),
            file: Some(FileInfo {
                watched: s("/root/.ssh/id_rsa"),
                category: s("ssh_key"),
                path: Some(s("id_rsa")),
                resolved: None,
                dev: 1,
                ino: 2,
                flags: Some(3),
                access: Some(s("read")),
                via: Via::IoUring,
                target_pid: Some(4),
                mtime: Some(5),
                fingerprint: Some(s("hmac-sha256:00")),
            }),
            loss: Some(LossInfo {
                cpu: 1,
                count: 2,
                total: 3,
            }),
        }
    }

    #[test]
    fn events_round_trip() {
        let bare = Event {
            ts: 1,
            kind: Kind::Loss,
            process: None,
            exec: None,
            fork: None,
            exit: None,
            net: None,
            file: None,
            loss: None,
        };
        let mut b = vec![0xff; 3];
        for ev in [full(), bare] {
            encode(&ev, &mut b);
            assert_eq!(decode(&b), Some(ev));
        }
    }

    #[test]
    fn every_enum_variant_round_trips() {
        fn rt<T: Codec + PartialEq + std::fmt::Debug>(x: T) {
            let mut b = Vec::new();
            x.put(&mut b);
            assert_eq!(T::take(&mut Reader(&b)), Some(x));
        }
        use Kind::*;
        for k in [
            Exec,
            Fork,
            Exit,
            Connect,
            ConnectResult,
            Accept,
            CredOpen,
            CredRead,
            Loss,
        ] {
            rt(k);
        }
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Other] {
            rt(p);
        }
        for d in [Direction::Outbound, Direction::Inbound] {
            rt(d);
        }
        for o in [
            Outcome::InProgress,
            Outcome::Established,
            Outcome::Refused,
            Outcome::Failed,
            Outcome::Associated,
        ] {
            rt(o);
        }
        for v in [Via::Syscall, Via::IoUring, Via::Filemap] {
            rt(v);
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let mut b = Vec::new();
        encode(&full(), &mut b);
        for n in [0, 1, 9, b.len() / 2, b.len() - 1] {
            assert_eq!(decode(&b[..n]), None, "{n} bytes");
        }
        b.push(0);
        assert_eq!(decode(&b), None, "trailing byte");
    }
}
