//! Kernel records → enriched [`Event`]s: wall-clock time, the process as the table knows it,
//! cgroup path and workload, user names, and the watched credential behind a watch id.

use std::{hash::BuildHasher as _, net::IpAddr, time::Instant};

use detector_common::{kind, outcome, via, watch, FileEvent, Header, NetEvent};

use super::{
    accounts::Accounts,
    cgroup::CgroupResolver,
    k8s::{PodResolver, PodRoots},
    names::{Names, Scope},
    process::ProcessTable,
    reused::{resolved_path, ReuseFilter},
};
use crate::{
    event::{
        Direction, Event, ExecInfo, ExitInfo, FileInfo, ForkInfo, Kind, LossInfo, NetInfo, Outcome,
        Process, Protocol, Via,
    },
    sources::{
        decode::{argv, cstr, Record},
        watchlist::WatchList,
    },
};

/// Maps kernel records to events.
pub(crate) struct Enricher {
    /// Process table.
    pub(crate) procs: ProcessTable,
    cgroups: CgroupResolver,
    pods: PodResolver,
    accounts: Accounts,
    /// Names of destinations (DNS answers, hosts file) and this host's addresses.
    pub(crate) names: Names,
    /// Key of the opaque connection ids (random per run: ids pair a connect with its outcome
    /// and never disclose the kernel address of the socket).
    conn_key: std::collections::hash_map::RandomState,
    /// wall-clock ns − boot-time ns, measured once at start.
    boot_to_wall: i128,
    /// Drops kernel matches of a watched file's inode number taken by another file.
    pub(crate) reused: ReuseFilter,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// errno name for the common connect failures.
fn errno_name(e: u32) -> String {
    match e as i32 {
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::ECONNABORTED => "ECONNABORTED".into(),
        0 => "unknown".into(),
        n => format!("errno {n}"),
    }
}

/// An address as text and its family (4 or 6). An IPv4-mapped IPv6 address (a dual-stack
/// socket talking IPv4) is shown as the IPv4 address it is, so that rules on IPv4 addresses
/// and networks see it: `::ffff:169.254.169.254` is the metadata service.
fn addr(family: u16, b: &[u8; 16]) -> (String, u8) {
    if family == 10 {
        let v6 = std::net::Ipv6Addr::from(*b);
        match v6.to_ipv4_mapped() {
            Some(v4) => (v4.to_string(), 4),
            None => (v6.to_string(), 6),
        }
    } else {
        (
            std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            4,
        )
    }
}

/// Whether open flags mean the credential is being written rather than read: write-only, or
/// truncated. (`O_RDWR` alone reads it too: a use.)
fn writes(flags: u32) -> bool {
    let acc = flags & libc::O_ACCMODE as u32;
    flags & libc::O_PATH as u32 == 0
        && (acc == libc::O_WRONLY as u32
            || (acc == libc::O_RDWR as u32 && flags & libc::O_TRUNC as u32 != 0))
}

fn access(flags: u32) -> &'static str {
    if flags & libc::O_PATH as u32 != 0 {
        return "path";
    }
    match flags & libc::O_ACCMODE as u32 {
        x if x == libc::O_WRONLY as u32 => "write",
        x if x == libc::O_RDWR as u32 => "read_write",
        _ => "read",
    }
}

impl Enricher {
    /// An enricher with a process table seeded from /proc.
    pub(crate) fn new(cgroup_root: std::path::PathBuf, seed: bool) -> Self {
        let mut procs = ProcessTable::new(65_536);
        if seed {
            procs.seed_from_proc();
        }
        Self {
            procs,
            cgroups: CgroupResolver::new(cgroup_root),
            pods: PodResolver::new(PodRoots::default()),
            accounts: Accounts::default(),
            names: Names::default(),
            conn_key: std::collections::hash_map::RandomState::new(),
            boot_to_wall: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
            reused: ReuseFilter::default(),
        }
    }

    /// Wall-clock ns of a boot-time ns.
    pub(crate) fn wall(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.boot_to_wall).max(0) as u64
    }

    fn process(&mut self, h: &Header) -> Process {
        let comm = cstr(&h.comm);
        let (exe, argv, ppid, start) = match self.procs.get_or_load(h.tgid, h.start_ns) {
            Some(p) => (
                p.exe.clone(),
                p.argv.clone(),
                if h.ppid != 0 { h.ppid } else { p.ppid },
                if h.start_ns != 0 {
                    h.start_ns
                } else {
                    p.start_ns
                },
            ),
            None => (String::new(), Vec::new(), h.ppid, h.start_ns),
        };
        let cgroup = self.cgroups.path(h.cgroup_id);
        let mut workload = cgroup
            .as_deref()
            .map(super::cgroup::workload)
            .unwrap_or_default();
        self.pods.annotate(&mut workload);
        Process {
            pid: h.pid,
            tgid: h.tgid,
            ppid,
            start,
            uid: h.uid,
            gid: h.gid,
            user: self.accounts.user(h.uid, Instant::now()),
            group: self.accounts.group(h.gid, Instant::now()),
            comm,
            exe,
            argv,
            parent_exe: self.procs.exe_of(ppid).map(str::to_string),
            ancestors: self.procs.ancestors(ppid),
            cgroup_id: h.cgroup_id,
            cgroup,
            mntns: h.mntns,
            netns: h.netns,
            workload,
            identity: None,
        }
    }

    fn empty(&self, ts: u64, kind: Kind) -> Event {
        Event {
            ts: self.wall(ts),
            kind,
            process: None,
            exec: None,
            fork: None,
            exit: None,
            net: None,
            file: None,
            loss: None,
        }
    }

    /// One record → one event (`None` for records that carry nothing to report).
    pub(crate) fn enrich(&mut self, r: &Record, watch_list: &WatchList) -> Option<Event> {
        match r {
            Record::Exec(e) => {
                let filename = cstr(&e.filename);
                let args = argv(&e.args, e.args_len as usize);
                // The table learns the new image first so the event's process shows it.
                let exe = if filename.starts_with('/') {
                    filename.clone()
                } else {
                    std::fs::read_link(format!("/proc/{}/exe", e.hdr.tgid))
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| filename.clone())
                };
                self.procs.on_exec(
                    e.hdr.tgid,
                    e.hdr.start_ns,
                    e.hdr.ppid,
                    exe,
                    args.clone(),
                    e.hdr.cgroup_id,
                );
                let mut ev = self.empty(e.hdr.ts_ns, Kind::Exec);
                ev.process = Some(self.process(&e.hdr));
                ev.exec = Some(ExecInfo {
                    filename,
                    argv: args,
                    argv_truncated: e.args_total > e.args_len,
                });
                Some(ev)
            }
            Record::Fork(f) => {
                self.procs.on_fork(
                    f.hdr.tgid,
                    f.hdr.start_ns,
                    f.child_tgid,
                    f.child_start_ns,
                    f.hdr.cgroup_id,
                );
                let mut ev = self.empty(f.hdr.ts_ns, Kind::Fork);
                ev.process = Some(self.process(&f.hdr));
                ev.fork = Some(ForkInfo {
                    child_tgid: f.child_tgid,
                    child_start: f.child_start_ns,
                });
                Some(ev)
            }
            Record::Exit(x) => {
                let mut ev = self.empty(x.hdr.ts_ns, Kind::Exit);
                ev.process = Some(self.process(&x.hdr));
                let status = x.exit_code as i32;
                let sig = status & 0x7f;
                ev.exit = Some(if sig == 0 {
                    ExitInfo {
                        code: Some((status >> 8) & 0xff),
                        signal: None,
                    }
                } else {
                    ExitInfo {
                        code: None,
                        signal: Some(sig),
                    }
                });
                self.procs.on_exit(x.hdr.tgid, x.hdr.start_ns);
                Some(ev)
            }
            Record::Net(n) => Some(self.net(n)),
            Record::File(f) => self.file(f, watch_list),
            Record::Dns(d) => {
                let len = (d.len as usize).min(d.payload.len());
                self.names.learn_answer(&d.payload[..len], Instant::now());
                None
            }
            Record::Loss {
                ts_ns,
                cpu,
                count,
                total,
            } => {
                let mut ev = self.empty(*ts_ns, Kind::Loss);
                ev.loss = Some(LossInfo {
                    cpu: *cpu,
                    count: *count,
                    total: *total,
                });
                Some(ev)
            }
        }
    }

    fn net(&mut self, n: &NetEvent) -> Event {
        let k = match n.hdr.kind {
            // A connected UDP socket's first datagram: a contact, like an unconnected send.
            kind::CONNECT | kind::UDP_SEND => Kind::Connect,
            kind::CONNECT_RESULT => Kind::ConnectResult,
            _ => Kind::Accept,
        };
        let mut ev = self.empty(n.hdr.ts_ns, k);
        if n.hdr.tgid != 0 {
            ev.process = Some(self.process(&n.hdr));
        }
        let ((src_addr, _), src_port, (dst_addr, family), dst_port) = (
            addr(n.family, &n.saddr),
            n.sport,
            addr(n.family, &n.daddr),
            n.dport,
        );
        let now = Instant::now();
        let scope = Scope {
            mntns: n.hdr.mntns,
            tgid: n.hdr.tgid,
        };
        let (dst_name, off_host) = match dst_addr.parse::<IpAddr>() {
            Ok(ip) => (
                self.names
                    .name_of(ip, scope, now)
                    .map(|(n, _)| n.to_string()),
                Some(!self.names.is_local(ip, now)),
            ),
            Err(_) => (None, None),
        };
        ev.net = Some(NetInfo {
            protocol: match n.protocol {
                6 => Protocol::Tcp,
                17 => Protocol::Udp,
                _ => Protocol::Other,
            },
            family,
            direction: if k == Kind::Accept {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            // For an accept, "src" is our side (the listener) and "dst" the remote peer.
            src_addr,
            src_port,
            dst_addr,
            dst_port,
            outcome: match n.outcome {
                outcome::IN_PROGRESS => Outcome::InProgress,
                outcome::ESTABLISHED => Outcome::Established,
                outcome::REFUSED => Outcome::Refused,
                outcome::ASSOCIATED => Outcome::Associated,
                outcome::SENT => Outcome::Sent,
                _ => Outcome::Failed,
            },
            error: (n.outcome == outcome::REFUSED || n.outcome == outcome::FAILED)
                .then(|| errno_name(n.errno)),
            conn: self.conn_key.hash_one(n.sock),
            dst_name,
            off_host,
            service: None,
        });
        ev
    }

    fn file(&mut self, f: &FileEvent, watch_list: &WatchList) -> Option<Event> {
        let (watched, category, mtime) = if f.watch_id == watch::PROC_ENVIRON {
            (
                format!("/proc/{}/environ", f.target_pid),
                "environ".to_string(),
                None,
            )
        } else {
            match watch_list.get(f.watch_id) {
                Some(w) if self.reused.drops(f, w) => return None,
                Some(w) => (
                    w.path.display().to_string(),
                    w.category.clone(),
                    u64::try_from(w.mtime).ok().map(|s| s * 1_000_000_000),
                ),
                // Removed from the list after the kernel matched it: still a credential access.
                None => (
                    format!("<watch id {}>", f.watch_id),
                    "other".to_string(),
                    None,
                ),
            }
        };
        let opened = f.hdr.kind == kind::FILE_OPEN;
        let k = match (opened, writes(f.flags)) {
            (true, true) => Kind::CredWrite,
            (true, false) => Kind::CredOpen,
            (false, _) => Kind::CredRead,
        };
        let mut ev = self.empty(f.hdr.ts_ns, k);
        ev.process = Some(self.process(&f.hdr));
        let path = (f.path_len > 0).then(|| cstr(&f.path));
        let resolved = resolved_path(f);
        ev.file = Some(FileInfo {
            watched,
            category,
            path,
            resolved,
            dev: f.dev,
            ino: f.ino,
            flags: opened.then_some(f.flags),
            access: opened.then(|| access(f.flags).to_string()),
            via: match f.via {
                via::IO_URING => Via::IoUring,
                via::FILEMAP => Via::Filemap,
                _ => Via::Syscall,
            },
            target_pid: (f.target_pid != 0).then_some(f.target_pid),
            mtime,
            fingerprint: None,
        });
        Some(ev)
    }
}
