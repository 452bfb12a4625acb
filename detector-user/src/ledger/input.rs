//! What the ledger takes from an enriched event: the one place that maps the event model to
//! ledger inputs.
//!
//! A `cred_write` (a credential opened to be rewritten: "credential modified, by whom") is a
//! modification by that process, never a use; a `cred_open`/`cred_read` is a use. A contact
//! (a TCP attempt, in progress or established, or a UDP datagram sent) is what a use may have
//! opened, local services included: a credential that opens a database on this host opens it;
//! a UDP association without traffic is not (no datagram left the socket), nor an inbound
//! connection.

use crate::{
    engine::fields::tree_root,
    event::{Direction, Event, Kind, Outcome, Process, Protocol},
};

/// The process behind a use, a write or a contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// Workload identity.
    pub identity: String,
    /// Process id.
    pub tgid: u32,
    /// Process start (boot-time ns): with `tgid`, the process key.
    pub start: u64,
    /// Root of its process tree (the engine's `process.tree`).
    pub tree: u32,
    /// Executable.
    pub exe: String,
    /// Parent's executable, when known.
    pub parent_exe: Option<String>,
    /// User name, when known.
    pub user: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// Kubernetes pod uid, when in a pod.
    pub pod_uid: Option<String>,
}

/// A credential read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Event time (ns since the Unix epoch).
    pub ts: u64,
    /// The watched path (the credential's name in the ledger).
    pub path: String,
    /// The name the caller used or the kernel resolved, when it differs from `path`.
    pub name: Option<String>,
    /// Category.
    pub category: String,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Last modification (ns), when known.
    pub mtime: Option<u64>,
    /// Keyed fingerprint of the content, when computed.
    pub fingerprint: Option<String>,
    /// Who.
    pub actor: Actor,
}

/// An outbound connection (only what reach needs: connections are many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Event time.
    pub ts: u64,
    /// Workload identity.
    pub identity: String,
    /// Process id.
    pub tgid: u32,
    /// Process start.
    pub start: u64,
    /// Root of its process tree.
    pub tree: u32,
    /// Remote address.
    pub addr: String,
    /// Remote port.
    pub port: u16,
    /// Name of the destination when the event carries one.
    pub name: Option<String>,
}

/// One ledger input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerInput {
    /// A credential was read.
    Use(Access),
    /// A credential was opened for writing: a modification by this process, not a use.
    Write(Access),
    /// An outbound connection (the ledger decides whether it follows a use).
    Contact(Contact),
}

fn actor(p: &Process) -> Actor {
    Actor {
        identity: p
            .identity
            .clone()
            .unwrap_or_else(|| crate::enrich::identity::derived_identity(p)),
        tgid: p.tgid,
        start: p.start,
        tree: tree_root(p),
        exe: if p.exe.is_empty() {
            p.comm.clone()
        } else {
            p.exe.clone()
        },
        parent_exe: p.parent_exe.clone(),
        user: p.user.clone(),
        uid: p.uid,
        pod_uid: p.workload.pod_uid.clone(),
    }
}

/// The ledger input an event makes, if any. Cheap for every other event (a match on the kind).
pub(crate) fn classify(ev: &Event) -> Option<LedgerInput> {
    match ev.kind {
        Kind::CredOpen | Kind::CredRead | Kind::CredWrite => {
            let (p, f) = (ev.process.as_ref()?, ev.file.as_ref()?);
            // Another process's environment is no credential file with an owner or a rotation.
            if f.category == "environ" {
                return None;
            }
            // Another name of the same file (a hardlink), as the kernel resolved it; not the
            // caller's argument (relative, `..`, `/proc/self/fd/N`) nor a walk the kernel cut
            // short (`…/`).
            let name = f
                .resolved
                .as_ref()
                .filter(|n| n.starts_with('/') && **n != f.watched)
                .cloned();
            let a = Access {
                ts: ev.ts,
                path: f.watched.clone(),
                name,
                category: f.category.clone(),
                dev: f.dev,
                ino: f.ino,
                mtime: f.mtime,
                fingerprint: f.fingerprint.clone(),
                actor: actor(p),
            };
            Some(if ev.kind == Kind::CredWrite {
                LedgerInput::Write(Access {
                    // Taken at open, before the write: not what the writer wrote.
                    fingerprint: None,
                    ..a
                })
            } else {
                LedgerInput::Use(a)
            })
        }
        Kind::Connect => {
            let (p, n) = (ev.process.as_ref()?, ev.net.as_ref()?);
            let contact = n.direction == Direction::Outbound
                && match n.protocol {
                    Protocol::Tcp => {
                        matches!(n.outcome, Outcome::InProgress | Outcome::Established)
                    }
                    _ => n.outcome == Outcome::Sent,
                };
            contact.then(|| {
                LedgerInput::Contact(Contact {
                    ts: ev.ts,
                    identity: p
                        .identity
                        .clone()
                        .unwrap_or_else(|| crate::enrich::identity::derived_identity(p)),
                    tgid: p.tgid,
                    start: p.start,
                    tree: tree_root(p),
                    addr: n.dst_addr.clone(),
                    port: n.dst_port,
                    name: n.dst_name.clone(),
                })
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileInfo, NetInfo, Via};

    fn proc_() -> Process {
        Process {
            pid: 10,
            tgid: 10,
            ppid: 5,
            start: 7,
            uid: 1000,
            user: Some("alice".into()),
            comm: "cat".into(),
            exe: "/usr/bin/cat".into(),
            identity: Some("exe:/usr/bin/cat@alice".into()),
            ..Default::default()
        }
    }

    fn cred(kind: Kind, access: Option<&str>, category: &str) -> Event {
        Event {
            ts: 100,
            kind,
            process: Some(proc_()),
            exec: None,
            fork: None,
            exit: None,
            net: None,
            file: Some(FileInfo {
                watched: "/home/alice/.ssh/id_ed25519".into(),
                category: category.into(),
                path: Some("../.ssh/id_ed25519".into()),
                resolved: Some("/home/alice/.ssh/id_ed25519".into()),
                dev: 1,
                ino: 2,
                flags: None,
                access: access.map(Into::into),
                via: Via::Syscall,
                target_pid: None,
                mtime: Some(5),
                fingerprint: Some("hmac-sha256:aa".into()),
            }),
            loss: None,
        }
    }

    fn connect(protocol: Protocol, outcome: Outcome, direction: Direction) -> Event {
        Event {
            ts: 200,
            kind: Kind::Connect,
            process: Some(proc_()),
            exec: None,
            fork: None,
            exit: None,
            net: Some(NetInfo {
                protocol,
                family: 4,
                direction,
                src_addr: "0.0.0.0".into(),
                src_port: 0,
                dst_addr: "10.0.0.7".into(),
                dst_port: 22,
                outcome,
                error: None,
                conn: 1,
                dst_name: None,
                off_host: None,
                service: None,
            }),
            file: None,
            loss: None,
        }
    }

    #[test]
    fn reads_are_uses_and_writes_are_writes() {
        for access in [None, Some("read"), Some("read_write"), Some("path")] {
            let Some(LedgerInput::Use(a)) = classify(&cred(Kind::CredOpen, access, "ssh_key"))
            else {
                panic!("{access:?} is a use")
            };
            assert_eq!(a.path, "/home/alice/.ssh/id_ed25519");
            // The resolved name equals the watched path: no second name.
            assert_eq!(a.name, None);
            assert_eq!(a.actor.exe, "/usr/bin/cat");
            assert_eq!(a.fingerprint.as_deref(), Some("hmac-sha256:aa"));
            assert_eq!(a.actor.tree, 5);
            assert_eq!(a.actor.identity, "exe:/usr/bin/cat@alice");
        }
        let Some(LedgerInput::Write(w)) = classify(&cred(Kind::CredWrite, Some("write"), "cloud"))
        else {
            panic!("a cred_write is a write")
        };
        assert_eq!(
            w.fingerprint, None,
            "the content before the write is not the writer's"
        );
        assert!(matches!(
            classify(&cred(Kind::CredRead, None, "token")),
            Some(LedgerInput::Use(_))
        ));
        assert_eq!(classify(&cred(Kind::CredOpen, None, "environ")), None);
    }

    #[test]
    fn another_name_is_the_kernel_resolved_absolute_one() {
        let mut ev = cred(Kind::CredOpen, None, "ssh_key");
        let f = ev.file.as_mut().unwrap();
        f.resolved = Some("/srv/keys/alice-link".into());
        let Some(LedgerInput::Use(a)) = classify(&ev) else {
            panic!()
        };
        assert_eq!(a.name.as_deref(), Some("/srv/keys/alice-link"));
        ev.file.as_mut().unwrap().resolved = Some("…/tmp/x/key".into());
        let Some(LedgerInput::Use(a)) = classify(&ev) else {
            panic!()
        };
        assert_eq!(a.name, None);
    }

    #[test]
    fn outbound_tcp_connects_are_contacts() {
        let c = classify(&connect(
            Protocol::Tcp,
            Outcome::InProgress,
            Direction::Outbound,
        ));
        let Some(LedgerInput::Contact(c)) = c else {
            panic!("{c:?}")
        };
        assert_eq!((c.addr.as_str(), c.port, c.ts), ("10.0.0.7", 22, 200));
        assert!(classify(&connect(
            Protocol::Tcp,
            Outcome::Established,
            Direction::Outbound
        ))
        .is_some());
        for (p, o, d) in [
            (Protocol::Udp, Outcome::Associated, Direction::Outbound),
            (Protocol::Tcp, Outcome::Refused, Direction::Outbound),
            (Protocol::Tcp, Outcome::Established, Direction::Inbound),
        ] {
            assert_eq!(classify(&connect(p, o, d)), None, "{p:?} {o:?} {d:?}");
        }
        let mut exit = connect(Protocol::Tcp, Outcome::InProgress, Direction::Outbound);
        exit.kind = Kind::Exit;
        assert_eq!(classify(&exit), None);
    }
}
