//! Names of the hosts connections go to, and whether a destination is this host.
//!
//! A program resolves a name, then connects to one (or, refused, to each in turn) of its
//! addresses. The agent sees both halves: DNS answers received on the host (the kernel copies
//! UDP datagrams from port 53, `sources::decode::Record::Dns`) and the hosts file. Each
//! connection to an address a name resolved to carries that name, so alerts show names and
//! fan-out counts hosts, not addresses (the IPv6 and IPv4 addresses of one name tried in turn
//! are one host).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use simple_dns::{rdata::RData, Packet, PacketFlag};

/// How long a name stays attached to an address after its answer: the record's TTL, but at
/// least this (clients cache answers longer than their TTL: glibc's nscd, JVMs, HTTP pools).
const MIN_KEEP: Duration = Duration::from_secs(300);
/// At most this, whatever the TTL says.
const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);
/// Addresses remembered at most (the least recently answered are forgotten first).
const CAPACITY: usize = 65_536;
/// The hosts file and the local addresses are re-read at most this often.
const REFRESH: Duration = Duration::from_secs(5);

/// Where a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A DNS answer seen on the host.
    Dns,
    /// The hosts file.
    Hosts,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    until: Instant,
    seq: u64,
}

/// Counters for the metrics endpoint and tests.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameStats {
    /// DNS answers parsed.
    pub(crate) answers: u64,
    /// Datagrams from port 53 that were not a DNS answer we could parse (truncated, garbage).
    pub(crate) unparsed: u64,
    /// Addresses named from DNS answers.
    pub(crate) named: u64,
}

/// One hosts file, re-read when it changes.
#[derive(Debug, Default)]
struct HostsTable {
    names: HashMap<IpAddr, String>,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
}

/// Mount namespaces whose hosts file is kept at most (containers come and go).
const MAX_NAMESPACES: usize = 1024;

/// Address → name, from DNS answers and the hosts files; and this host's own addresses.
pub struct Names {
    dns: HashMap<IpAddr, Entry>,
    seq: u64,
    /// The agent's own hosts file (the host's).
    hosts_path: PathBuf,
    /// Hosts files by mount namespace (0: the agent's own): a container's `/etc/hosts`
    /// (Kubernetes `hostAliases`, Docker `--add-host`) names what its processes resolve.
    hosts: HashMap<u32, HostsTable>,
    local: Vec<IpAddr>,
    refreshed: Option<Instant>,
    /// Counters.
    pub(crate) stats: NameStats,
}

/// Whose hosts file applies to a connection: the process's mount namespace, read through
/// `/proc/<tgid>/root` (0 and 0: the agent's own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Mount namespace inode.
    pub(crate) mntns: u32,
    /// A process in it.
    pub(crate) tgid: u32,
}

impl Default for Names {
    fn default() -> Self {
        Self::new(PathBuf::from("/etc/hosts"))
    }
}

impl Names {
    /// Names from DNS answers and the hosts file at `hosts_path`.
    pub fn new(hosts_path: PathBuf) -> Self {
        Self {
            dns: HashMap::new(),
            seq: 0,
            hosts_path,
            hosts: HashMap::new(),
            local: Vec::new(),
            refreshed: None,
            stats: NameStats::default(),
        }
    }

    /// Learns the addresses a DNS answer gives. CNAME chains name the addresses by the name
    /// that was asked for (what the program resolved), not the chain's end.
    pub fn learn_answer(&mut self, payload: &[u8], now: Instant) {
        let Ok(p) = Packet::parse(payload) else {
            self.stats.unparsed += 1;
            return;
        };
        if !p.has_flags(PacketFlag::RESPONSE) {
            self.stats.unparsed += 1;
            return;
        }
        self.stats.answers += 1;
        let Some(asked) = p.questions.first().map(|q| q.qname.to_string()) else {
            return;
        };
        let asked = normalize(&asked);
        for rr in &p.answers {
            let ip = match &rr.rdata {
                RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
                RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
                _ => continue,
            };
            let keep = Duration::from_secs(rr.ttl.into()).clamp(MIN_KEEP, MAX_KEEP);
            self.insert(ip, asked.clone(), now + keep);
        }
    }

    fn insert(&mut self, ip: IpAddr, name: String, until: Instant) {
        if self.dns.len() >= CAPACITY && !self.dns.contains_key(&ip) {
            // Forget the oldest eighth in one pass rather than one entry per insert.
            let mut seqs: Vec<u64> = self.dns.values().map(|e| e.seq).collect();
            seqs.sort_unstable();
            let cut = seqs[seqs.len() / 8];
            self.dns.retain(|_, e| e.seq > cut);
        }
        self.seq += 1;
        self.stats.named += 1;
        self.dns.insert(
            ip,
            Entry {
                name,
                until,
                seq: self.seq,
            },
        );
    }

    /// The name `ip` was last resolved from, if the agent saw it: a DNS answer, else the hosts
    /// file of the connecting process's mount namespace.
    pub fn name_of(&mut self, ip: IpAddr, scope: Scope, now: Instant) -> Option<(&str, Source)> {
        let ip = ip.to_canonical();
        // Looked up twice: returning the first borrow on one branch only is beyond the
        // borrow checker.
        if self.dns.get(&ip).is_some_and(|e| e.until > now) {
            return self.dns.get(&ip).map(|e| (e.name.as_str(), Source::Dns));
        }
        self.hosts_of(scope, now)
            .get(&ip)
            .map(|n| (n.as_str(), Source::Hosts))
    }

    /// The hosts table of `scope`, re-read when its file changed (checked at most every
    /// [`REFRESH`]).
    fn hosts_of(&mut self, scope: Scope, now: Instant) -> &HashMap<IpAddr, String> {
        let (key, path) = if scope.mntns == 0 || scope.tgid == 0 {
            (0, self.hosts_path.clone())
        } else {
            (
                scope.mntns,
                PathBuf::from(format!("/proc/{}/root/etc/hosts", scope.tgid)),
            )
        };
        if !self.hosts.contains_key(&key) && self.hosts.len() >= MAX_NAMESPACES {
            self.hosts.retain(|k, _| *k == 0);
        }
        let t = self.hosts.entry(key).or_default();
        if t.checked
            .is_none_or(|c| now.saturating_duration_since(c) >= REFRESH)
        {
            t.checked = Some(now);
            use std::os::unix::fs::MetadataExt as _;
            // A process gone since (short-lived): keep what its namespace's file said.
            if let Ok(m) = std::fs::metadata(&path) {
                let stamp = m.modified().ok().map(|t| (t, m.ino()));
                if stamp != t.stamp {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        t.names = parse_hosts(&text);
                        t.stamp = stamp;
                    }
                }
            } else if key == 0 {
                t.names.clear();
                t.stamp = None;
            }
        }
        &t.names
    }

    /// Whether `ip` is this host: unspecified, loopback, or an address of one of its
    /// interfaces.
    pub(crate) fn is_local(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        if crate::engine::fields::is_this_host(ip) {
            return true;
        }
        self.refresh(now);
        self.local.contains(&ip)
    }

    /// Re-reads the local addresses, at most every [`REFRESH`].
    fn refresh(&mut self, now: Instant) {
        if self
            .refreshed
            .is_some_and(|t| now.saturating_duration_since(t) < REFRESH)
        {
            return;
        }
        self.refreshed = Some(now);
        if let Ok(ifs) = if_addrs::get_if_addrs() {
            self.local = ifs.into_iter().map(|i| i.ip().to_canonical()).collect();
        }
    }
}

/// Lower case, without the root's trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A hosts file: address → its first (canonical) name. Comments and malformed lines are
/// skipped; the first line naming an address wins, as the resolver reads it.
pub(crate) fn parse_hosts(text: &str) -> HashMap<IpAddr, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(addr), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        let ip = ip.to_canonical();
        // Loopback names (localhost, the host's own name) say nothing about a peer.
        if crate::engine::fields::is_this_host(ip) {
            continue;
        }
        out.entry(ip).or_insert_with(|| normalize(name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::{rdata, Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    fn answer(asked: &str, records: &[(&str, RData<'static>)], ttl: u32) -> Vec<u8> {
        let mut p = Packet::new_reply(7);
        p.questions.push(Question::new(
            Name::new_unchecked(asked).into_owned(),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for (name, rd) in records {
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked(name).into_owned(),
                CLASS::IN,
                ttl,
                rd.clone(),
            ));
        }
        p.build_bytes_vec().expect("build")
    }

    #[test]
    fn every_address_of_an_answer_is_named_by_the_name_asked_even_through_a_cname() {
        let mut n = Names::new(PathBuf::from("/nonexistent"));
        let now = Instant::now();
        let bytes = answer(
            "API.example.test.",
            &[
                (
                    "api.example.test",
                    RData::CNAME(rdata::CNAME(Name::new_unchecked("lb.example.net"))),
                ),
                (
                    "lb.example.net",
                    RData::A(rdata::A {
                        address: u32::from(Ipv4Addr::new(10, 1, 2, 3)),
                    }),
                ),
                (
                    "lb.example.net",
                    RData::AAAA(rdata::AAAA {
                        address: u128::from("fd00::7".parse::<Ipv6Addr>().unwrap()),
                    }),
                ),
            ],
            30,
        );
        n.learn_answer(&bytes, now);
        assert_eq!(n.stats.answers, 1);
        for ip in ["10.1.2.3", "fd00::7", "::ffff:10.1.2.3"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                n.name_of(ip, Scope::default(), now),
                Some(("api.example.test", Source::Dns)),
                "{ip}"
            );
        }
        // Kept past a short TTL (clients cache), forgotten after the floor.
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let later = now + Duration::from_secs(200);
        assert!(n.name_of(ip, Scope::default(), later).is_some());
        let gone = now + MIN_KEEP + Duration::from_secs(1);
        assert!(n.name_of(ip, Scope::default(), gone).is_none());
    }

    #[test]
    fn garbage_and_queries_teach_nothing() {
        let mut n = Names::new(PathBuf::from("/nonexistent"));
        let now = Instant::now();
        n.learn_answer(b"\x00\x01garbage", now);
        let mut q = Packet::new_query(1);
        q.questions.push(Question::new(
            Name::new_unchecked("x.test"),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        n.learn_answer(&q.build_bytes_vec().unwrap(), now);
        assert_eq!((n.stats.answers, n.stats.unparsed), (0, 2));
        // A truncated answer: the parser refuses it, nothing half-read is learned.
        let bytes = answer(
            "t.test",
            &[(
                "t.test",
                RData::A(rdata::A {
                    address: u32::from(Ipv4Addr::new(10, 9, 9, 9)),
                }),
            )],
            60,
        );
        n.learn_answer(&bytes[..bytes.len() - 3], now);
        assert!(n
            .name_of("10.9.9.9".parse().unwrap(), Scope::default(), now)
            .is_none());
    }

    #[test]
    fn hosts_file_names_addresses_but_not_loopback() {
        let h = parse_hosts(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# comment\n10.0.0.5 db.internal db # trailing\nfd00::5 db6.internal\n10.0.0.5 other\nbogus line\n",
        );
        assert_eq!(h.len(), 2);
        assert_eq!(h[&"10.0.0.5".parse::<IpAddr>().unwrap()], "db.internal");
        assert_eq!(h[&"fd00::5".parse::<IpAddr>().unwrap()], "db6.internal");
    }

    #[test]
    fn a_process_s_own_hosts_file_names_its_connections() {
        let dir = std::env::temp_dir().join(format!("names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host_file = dir.join("hosts");
        std::fs::write(&host_file, "10.7.0.1 from-host\n").unwrap();
        let mut n = Names::new(host_file);
        let now = Instant::now();
        let ip: IpAddr = "10.7.0.1".parse().unwrap();
        assert_eq!(
            n.name_of(ip, Scope::default(), now),
            Some(("from-host", Source::Hosts))
        );
        // This test process's own namespace, read through /proc/<pid>/root/etc/hosts: the
        // machine's file, which does not name 10.7.0.1.
        let me = Scope {
            mntns: 1,
            tgid: std::process::id(),
        };
        assert_eq!(n.name_of(ip, me, now), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_host_is_local_and_others_are_not() {
        let mut n = Names::new(PathBuf::from("/nonexistent"));
        let now = Instant::now();
        for ip in ["0.0.0.0", "::", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            assert!(n.is_local(ip.parse().unwrap(), now), "{ip}");
        }
        assert!(!n.is_local("192.0.2.1".parse().unwrap(), now));
    }
}
