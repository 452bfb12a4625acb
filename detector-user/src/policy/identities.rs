//! Workload identities: who a process is, in the words of the operator's `identities.yaml`
//! (or derived when there is no config), what credentials it owns, which peers it may contact
//! and its fan-out budget; plus the `services` section naming remote addresses.
//!
//! ```yaml
//! identities:
//!   - name: spiffe://prod/payments
//!     match:                      # a selector map, or a list of them (any may match)
//!       exe: /opt/payments/bin/*  # glob
//!       user: svc-pay             # or uid: 1001
//!       unit: payments.service    # systemd unit; also cgroup (glob), container_id, pod_uid,
//!                                 # k8s_namespace, pod_name, container_name (globs)
//!     credentials: [/etc/payments/*.key]
//!     peers: [payments-db, 10.0.0.0/8:5432]
//!     fan_out_budget: 50
//! services:
//!   payments-db: [10.1.2.3:5432]
//! credentials:                    # owners of credentials (the credential ledger's inventory)
//!   - path: /etc/payments/*.key   # glob over watched paths
//!     owner: spiffe://prod/payments   # identity name(s), declared or derived
//!     contact: payments-oncall@example.com   # who answers for it (free text)
//!     rotate_every: 30d           # overrides the ledger's per-category rotation policy
//! ```
//!
//! A credential is owned by every identity whose `credentials:` globs match it and by the
//! `owner`s of every `credentials:` entry that matches it; without any, ownership is derived
//! from the path ([`derived_owner`]): a home-directory file belongs to that user, a kubelet pod
//! directory's token to that pod.
//!
//! The first identity (in file order) whose selector matches wins. Without a match the
//! identity is derived: `unit:<unit>`, `pod:<namespace>/<pod>/<container>`, `container:<id12>`,
//! `pod:<uid>`, else
//! `exe:<exe>@<user|uid>` — stable across restarts, so the default rules work without config.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use crate::event::Process;
use crate::input::excerpt;
use crate::input::yaml::{self, Node, PosError};

/// An address pattern: a network with an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddrPattern {
    /// Network (a single address is a /32 or /128).
    pub(crate) net: IpNet,
    /// Port, when the pattern has one.
    pub(crate) port: Option<u16>,
}

impl AddrPattern {
    /// Parses `10.0.0.0/8`, `10.0.0.1`, `10.0.0.1:443`, `10.0.0.0/8:443`, `[::1]:443`, `::1`.
    pub(crate) fn parse(s: &str) -> Option<AddrPattern> {
        let net_of = |a: &str| -> Option<IpNet> {
            a.parse::<IpNet>()
                .ok()
                .or_else(|| a.parse::<IpAddr>().ok().map(IpNet::from))
        };
        if let Some(net) = net_of(s) {
            return Some(AddrPattern { net, port: None });
        }
        let (a, p) = s.rsplit_once(':')?;
        let a = a.trim_start_matches('[').trim_end_matches(']');
        Some(AddrPattern {
            net: net_of(a)?,
            port: Some(p.parse().ok()?),
        })
    }

    /// True when `addr:port` falls in the pattern.
    pub(crate) fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.net.contains(&addr) && self.port.is_none_or(|p| p == port)
    }
}

#[derive(Clone, Debug, Default)]
struct Selector {
    exe: Option<GlobMatcher>,
    user: Option<String>,
    uid: Option<u32>,
    unit: Option<String>,
    cgroup: Option<GlobMatcher>,
    container_id: Option<String>,
    pod_uid: Option<String>,
    k8s_namespace: Option<GlobMatcher>,
    pod_name: Option<GlobMatcher>,
    container_name: Option<GlobMatcher>,
}

impl Selector {
    fn matches(&self, p: &Process) -> bool {
        self.exe.as_ref().is_none_or(|g| g.is_match(&p.exe))
            && self
                .user
                .as_ref()
                .is_none_or(|u| p.user.as_deref() == Some(u.as_str()))
            && self.uid.is_none_or(|u| u == p.uid)
            && self
                .unit
                .as_ref()
                .is_none_or(|u| p.workload.unit.as_deref() == Some(u.as_str()))
            && self
                .cgroup
                .as_ref()
                .is_none_or(|g| p.cgroup.as_deref().is_some_and(|c| g.is_match(c)))
            && self.container_id.as_ref().is_none_or(|c| {
                p.workload
                    .container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(c.as_str()))
            })
            && self
                .pod_uid
                .as_ref()
                .is_none_or(|u| p.workload.pod_uid.as_deref() == Some(u.as_str()))
            && glob_opt(&self.k8s_namespace, &p.workload.pod_namespace)
            && glob_opt(&self.pod_name, &p.workload.pod_name)
            && glob_opt(&self.container_name, &p.workload.container_name)
    }
}

/// An absent selector matches anything; a present one needs a value that matches it.
fn glob_opt(g: &Option<GlobMatcher>, v: &Option<String>) -> bool {
    g.as_ref()
        .is_none_or(|g| v.as_deref().is_some_and(|v| g.is_match(v)))
}

/// One configured identity.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// Name (SPIFFE ids allowed).
    pub(crate) name: String,
    selectors: Vec<Selector>,
    credentials: Vec<GlobMatcher>,
    peers: Vec<AddrPattern>,
    /// Maximum distinct destinations in the fan-out window before the fan-out rule fires.
    pub(crate) fan_out_budget: Option<u32>,
}

/// One entry of the `credentials:` section: who owns the credentials a glob matches, who
/// answers for them, and how often they must be rotated.
#[derive(Clone, Debug)]
pub(crate) struct CredentialDecl {
    matcher: GlobMatcher,
    /// Owning identities (names, declared or derived).
    pub(crate) owners: Vec<String>,
    /// Who answers for the credential (free text: a team, an address).
    pub(crate) contact: Option<String>,
    /// Rotation policy for these credentials (overrides the per-category one).
    pub(crate) rotate_every: Option<Duration>,
}

/// Where a credential glob comes from.
#[derive(Clone, Copy, Debug)]
enum GlobOwner {
    /// `identities[i].credentials`.
    Identity(usize),
    /// `credentials[i]`.
    Decl(usize),
}

/// Every credential glob of the file in one set, matched at once: the ledger asks who owns a
/// credential on every use, and a file can declare thousands.
#[derive(Clone, Debug)]
struct CredentialIndex {
    set: GlobSet,
    /// Per glob of `set`, in file order (identities first, then the `credentials:` section).
    owners: Vec<GlobOwner>,
}

/// The parsed `identities.yaml`.
#[derive(Clone, Debug, Default)]
pub struct IdentityConfig {
    identities: Vec<Identity>,
    by_name: HashMap<String, usize>,
    services: Vec<(String, Vec<AddrPattern>)>,
    credentials: Vec<CredentialDecl>,
    index: Option<CredentialIndex>,
}

fn glob(n: &Node) -> Result<GlobMatcher, PosError> {
    let s = n.as_str()?;
    Glob::new(s)
        .map(|g| g.compile_matcher())
        .map_err(|e| PosError::new(&n.pos, format!("bad glob {}: {}", excerpt(s), e.kind())))
}

fn addrs(n: &Node) -> Result<Vec<AddrPattern>, PosError> {
    n.as_seq_or_one()
        .into_iter()
        .map(|a| {
            let s = a.as_scalar_string()?;
            AddrPattern::parse(&s).ok_or_else(|| {
                PosError::new(
                    &a.pos,
                    format!(
                        "bad address {} (want CIDR or IP, optionally :port)",
                        excerpt(&s)
                    ),
                )
            })
        })
        .collect()
}

impl IdentityConfig {
    /// How many identities are declared (a reload reports it).
    pub(crate) fn len(&self) -> usize {
        self.identities.len()
    }

    /// The first declared identity (in file order) whose selector matches `p`.
    pub(crate) fn declared_identity(&self, p: &Process) -> Option<&str> {
        self.identities
            .iter()
            .find(|id| id.selectors.iter().any(|s| s.matches(p)))
            .map(|id| id.name.as_str())
    }

    /// Parses an identities file; every problem names `file:line:col`.
    pub fn parse(file: &str, src: &str) -> Result<IdentityConfig, PosError> {
        let docs = yaml::parse_with(file, src, &crate::input::IDENTITIES)?;
        one_document(&docs)?;
        match docs.first() {
            Some(root) => IdentityConfig::from_node(root),
            None => Ok(IdentityConfig::default()),
        }
    }

    /// Builds from an already parsed YAML node (rule tests embed identities).
    pub(crate) fn from_node(root: &Node) -> Result<IdentityConfig, PosError> {
        let mut cfg = IdentityConfig::default();
        if root.value == yaml::Value::Null {
            return Ok(cfg);
        }
        let f = root.fields(&["identities", "services", "credentials"])?;
        if let Some(s) = f.get("services") {
            for (name, _, v) in s.as_map()? {
                cfg.services.push((name.to_string(), addrs(v)?));
            }
        }
        if let Some(c) = f.get("credentials") {
            if c.value != yaml::Value::Null {
                for item in c.as_seq()? {
                    cfg.credentials.push(credential_decl(item)?);
                }
            }
        }
        // Peers may name identities declared later: resolve names in a second pass.
        let mut pending: Vec<(usize, Vec<&Node>)> = Vec::new();
        for item in f
            .get("identities")
            .map(|n| n.as_seq())
            .transpose()?
            .unwrap_or(&[])
        {
            let g = item.fields(&["name", "match", "credentials", "peers", "fan_out_budget"])?;
            let name_node = g.req("name")?;
            let name = name_node.as_str()?.to_string();
            let mut selectors = Vec::new();
            for m in g.req("match")?.as_seq_or_one() {
                let s = m.fields(&[
                    "exe",
                    "user",
                    "uid",
                    "unit",
                    "cgroup",
                    "container_id",
                    "pod_uid",
                    "k8s_namespace",
                    "pod_name",
                    "container_name",
                ])?;
                let uid = match s.get("uid") {
                    Some(n) => Some(
                        u32::try_from(n.as_i64()?)
                            .map_err(|_| PosError::new(&n.pos, "uid out of range"))?,
                    ),
                    None => None,
                };
                let string = |k: &str| -> Result<Option<String>, PosError> {
                    s.get(k).map(|n| n.as_scalar_string()).transpose()
                };
                selectors.push(Selector {
                    exe: s.get("exe").map(glob).transpose()?,
                    user: string("user")?,
                    uid,
                    unit: string("unit")?,
                    cgroup: s.get("cgroup").map(glob).transpose()?,
                    container_id: string("container_id")?,
                    pod_uid: string("pod_uid")?,
                    k8s_namespace: s.get("k8s_namespace").map(glob).transpose()?,
                    pod_name: s.get("pod_name").map(glob).transpose()?,
                    container_name: s.get("container_name").map(glob).transpose()?,
                });
            }
            let credentials = g
                .get("credentials")
                .map(|n| n.as_seq_or_one().into_iter().map(glob).collect())
                .transpose()?
                .unwrap_or_default();
            let fan_out_budget = match g.get("fan_out_budget") {
                Some(n) => Some(
                    u32::try_from(n.as_i64()?)
                        .map_err(|_| PosError::new(&n.pos, "fan_out_budget out of range"))?,
                ),
                None => None,
            };
            if cfg
                .by_name
                .insert(name.clone(), cfg.identities.len())
                .is_some()
            {
                return Err(PosError::new(
                    &name_node.pos,
                    format!("duplicate identity {}", excerpt(&name)),
                ));
            }
            pending.push((
                cfg.identities.len(),
                g.get("peers")
                    .map(|n| n.as_seq_or_one())
                    .unwrap_or_default(),
            ));
            cfg.identities.push(Identity {
                name,
                selectors,
                credentials,
                peers: Vec::new(),
                fan_out_budget,
            });
        }
        for (idx, peers) in pending {
            let mut out = Vec::new();
            for p in peers {
                let s = p.as_scalar_string()?;
                if let Some(a) = AddrPattern::parse(&s) {
                    out.push(a);
                } else if let Some((_, a)) = cfg.services.iter().find(|(n, _)| *n == s) {
                    out.extend(a.iter().cloned());
                } else if cfg.by_name.contains_key(&s) {
                    // An identity named as a peer: reachable through a service of that name
                    // when one is declared; otherwise it names no remote address.
                } else {
                    return Err(PosError::new(
                        &p.pos,
                        format!(
                            "unknown peer {}: not an address, a service or an identity",
                            excerpt(&s)
                        ),
                    ));
                }
            }
            cfg.identities[idx].peers = out;
        }
        cfg.index = cfg.credential_index();
        Ok(cfg)
    }

    fn credential_index(&self) -> Option<CredentialIndex> {
        let mut b = GlobSetBuilder::new();
        let mut owners = Vec::new();
        for (i, id) in self.identities.iter().enumerate() {
            for g in &id.credentials {
                b.add(g.glob().clone());
                owners.push(GlobOwner::Identity(i));
            }
        }
        for (i, d) in self.credentials.iter().enumerate() {
            b.add(d.matcher.glob().clone());
            owners.push(GlobOwner::Decl(i));
        }
        match b.build() {
            Ok(set) => Some(CredentialIndex { set, owners }),
            // Each glob compiled alone already; a set that does not is matched one by one.
            Err(e) => {
                tracing::warn!("credential globs: {e}; matching them one by one");
                None
            }
        }
    }

    /// Who a credential glob matching `watched` belongs to, in file order.
    fn glob_owners(&self, watched: &str) -> Vec<GlobOwner> {
        match &self.index {
            Some(ix) => ix
                .set
                .matches(watched)
                .into_iter()
                .filter_map(|i| ix.owners.get(i).copied())
                .collect(),
            None => {
                let mut v = Vec::new();
                for (i, id) in self.identities.iter().enumerate() {
                    if id.credentials.iter().any(|g| g.is_match(watched)) {
                        v.push(GlobOwner::Identity(i));
                    }
                }
                for (i, d) in self.credentials.iter().enumerate() {
                    if d.matcher.is_match(watched) {
                        v.push(GlobOwner::Decl(i));
                    }
                }
                v
            }
        }
    }

    /// The identity named `name`, if configured.
    pub(crate) fn get(&self, name: &str) -> Option<&Identity> {
        self.by_name.get(name).map(|&i| &self.identities[i])
    }

    /// Whether the `services` section names any address (alerts look names up only then).
    pub(crate) fn has_services(&self) -> bool {
        !self.services.is_empty()
    }

    /// Service name of a remote address, from the `services` section.
    pub fn service_name(&self, addr: IpAddr, port: u16) -> Option<&str> {
        self.services
            .iter()
            .find(|(_, pats)| pats.iter().any(|p| p.matches(addr, port)))
            .map(|(n, _)| n.as_str())
    }

    /// Whether `identity` owns the credential `watched`: `None` when no identity declares it
    /// (ownership unknown), else whether `identity` is among the declaring ones (identities'
    /// `credentials:` globs and the owners of matching `credentials:` entries).
    pub fn owns(&self, identity: &str, watched: &str) -> Option<bool> {
        let mut declared = false;
        for o in self.glob_owners(watched) {
            match o {
                GlobOwner::Identity(i) => {
                    if self.identities[i].name == identity {
                        return Some(true);
                    }
                    declared = true;
                }
                GlobOwner::Decl(i) => {
                    let d = &self.credentials[i];
                    if d.owners.iter().any(|o| o == identity) {
                        return Some(true);
                    }
                    declared |= !d.owners.is_empty();
                }
            }
        }
        declared.then_some(false)
    }

    /// The identities declared to own `watched`, in file order (identities first, then
    /// `credentials:` entries), without repeats; empty when none is declared.
    pub(crate) fn declared_owners(&self, watched: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for o in self.glob_owners(watched) {
            let names: &[String] = match o {
                GlobOwner::Identity(i) => std::slice::from_ref(&self.identities[i].name),
                GlobOwner::Decl(i) => &self.credentials[i].owners,
            };
            for n in names {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// The first `credentials:` entry matching `watched` (contact, rotation policy).
    pub(crate) fn credential_decl(&self, watched: &str) -> Option<&CredentialDecl> {
        self.glob_owners(watched).into_iter().find_map(|o| match o {
            GlobOwner::Decl(i) => self.credentials.get(i),
            GlobOwner::Identity(_) => None,
        })
    }

    /// Whether `identity` declares `addr:port` as a peer: `None` when the identity is not
    /// configured or declares no peers (nothing to compare with).
    pub fn peer_declared(&self, identity: &str, addr: IpAddr, port: u16) -> Option<bool> {
        let id = self.get(identity)?;
        if id.peers.is_empty() {
            return None;
        }
        Some(id.peers.iter().any(|p| p.matches(addr, port)))
    }
}

fn credential_decl(item: &Node) -> Result<CredentialDecl, PosError> {
    let g = item.fields(&["path", "owner", "contact", "rotate_every"])?;
    let path_node = g.req("path")?;
    let owners = match g.get("owner") {
        Some(n) => n
            .as_seq_or_one()
            .into_iter()
            .map(|o| o.as_scalar_string())
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let rotate_every = match g.get("rotate_every") {
        Some(n) => {
            let s = n.as_scalar_string()?;
            let d = humantime::parse_duration(&s)
                .map_err(|e| PosError::new(&n.pos, format!("bad duration `{s}`: {e}")))?;
            if d.is_zero() {
                return Err(PosError::new(&n.pos, "rotate_every must be > 0"));
            }
            Some(d)
        }
        None => None,
    };
    if owners.is_empty() && g.get("contact").is_none() && rotate_every.is_none() {
        return Err(PosError::new(
            &item.pos,
            "a credentials entry needs `owner`, `contact` or `rotate_every`",
        ));
    }
    Ok(CredentialDecl {
        matcher: glob(path_node)?,
        owners,
        contact: g.get("contact").map(|n| n.as_scalar_string()).transpose()?,
        rotate_every,
    })
}

/// The user whose home a path is in (`/home/alice/.ssh/id_rsa` → alice, `/root/…` → root).
pub(crate) fn home_user(path: &str) -> Option<&str> {
    if path.starts_with("/root/") {
        return Some("root");
    }
    let rest = path.strip_prefix("/home/")?;
    let (user, tail) = rest.split_once('/')?;
    (!user.is_empty() && !tail.is_empty()).then_some(user)
}

/// The owner of a credential no identity declares, from its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DerivedOwner<'a> {
    /// A file in this user's home directory.
    User(&'a str),
    /// A service-account token in the kubelet's directory of the pod with this uid.
    Pod(&'a str),
    /// A service-account token at the in-pod path: each pod sees its own there.
    MountingPod,
}

impl DerivedOwner<'_> {
    /// Whether a process (its user name, uid and pod uid) is the owner.
    pub(crate) fn owns(&self, user: Option<&str>, uid: u32, pod_uid: Option<&str>) -> bool {
        match *self {
            DerivedOwner::User(u) => match user {
                Some(name) => name == u,
                None => u == "root" && uid == 0,
            },
            DerivedOwner::Pod(p) => pod_uid == Some(p),
            DerivedOwner::MountingPod => pod_uid.is_some(),
        }
    }

    /// As the ledger names it: `user:alice`, `pod:<uid>`, `pod:(mounting pod)`.
    pub(crate) fn principal(&self) -> String {
        match self {
            DerivedOwner::User(u) => format!("user:{u}"),
            DerivedOwner::Pod(p) => format!("pod:{p}"),
            DerivedOwner::MountingPod => "pod:(mounting pod)".to_string(),
        }
    }
}

/// Derived ownership of a credential when no identity declares it: home-directory files belong
/// to that user; a pod's service-account token belongs to processes of that pod.
pub(crate) fn derived_owner<'a>(watched: &'a str, category: &str) -> Option<DerivedOwner<'a>> {
    if let Some(u) = home_user(watched) {
        return Some(DerivedOwner::User(u));
    }
    if category == "k8s_token" {
        if let Some(rest) = watched.strip_prefix("/var/lib/kubelet/pods/") {
            return Some(DerivedOwner::Pod(
                rest.split('/').next().unwrap_or_default(),
            ));
        }
        if watched.starts_with("/var/run/secrets/") || watched.starts_with("/run/secrets/") {
            return Some(DerivedOwner::MountingPod);
        }
    }
    None
}

/// Refuses a second YAML document (it would otherwise be ignored in silence).
fn one_document(docs: &[Node]) -> Result<(), PosError> {
    match docs.get(1) {
        Some(d) => Err(PosError::new(
            &d.pos,
            "a second YAML document: this file is one document",
        )),
        None => Ok(()),
    }
}

/// Peers learned per identity (`detector learn`), readable and editable YAML:
///
/// ```yaml
/// baseline:
///   unit:payments.service: [10.1.2.3:5432, 10.1.2.4:5432]
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// identity → its peers.
    pub(crate) peers: HashMap<String, Peers>,
}

/// One identity's learned peers: the entries as written (`addr:port`, bare `addr` for any
/// port, or a network), and the same parsed once, so that a lookup on every connect is a hash
/// probe rather than parsing every entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Peers {
    text: HashSet<String>,
    /// Single addresses, with their port (`None`: any port).
    exact: HashSet<(IpAddr, Option<u16>)>,
    /// Networks wider than one address, sorted.
    nets: Vec<AddrPattern>,
}

impl Peers {
    /// Adds an entry (`10.0.0.1:22`, `[fd00::1]:443`, `10.0.0.1`, `10.0.0.0/8:443`); one that
    /// is no address pattern is kept as written (a file that fails to load says which).
    pub(crate) fn insert(&mut self, entry: String) {
        if self.text.contains(&entry) {
            return;
        }
        if let Some(p) = AddrPattern::parse(&entry) {
            if p.net.prefix_len() == p.net.max_prefix_len() {
                self.exact.insert((p.net.addr(), p.port));
            } else {
                // Kept sorted: two lists with the same entries are equal whatever their order
                // (the baseline's write-then-read round trip sorts them; the fuzzer found it).
                let i = self
                    .nets
                    .partition_point(|q| (q.net, q.port) < (p.net, p.port));
                self.nets.insert(i, p);
            }
        }
        self.text.insert(entry);
    }

    /// The entries as written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &String> {
        self.text.iter()
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether `entry` is listed as written.
    #[cfg(test)]
    pub(crate) fn contains(&self, entry: &str) -> bool {
        self.text.contains(entry)
    }

    /// Whether `addr:port` is among the peers.
    pub(crate) fn knows(&self, addr: IpAddr, port: u16) -> bool {
        self.exact.contains(&(addr, Some(port)))
            || self.exact.contains(&(addr, None))
            || self.nets.iter().any(|p| p.matches(addr, port))
    }
}

impl Baseline {
    /// Parses a baseline file.
    pub fn parse(file: &str, src: &str) -> Result<Baseline, PosError> {
        let docs = yaml::parse_with(file, src, &crate::input::BASELINE)?;
        one_document(&docs)?;
        match docs.first() {
            Some(root) => Baseline::from_node(root),
            None => Ok(Baseline::default()),
        }
    }

    /// Builds from an already parsed YAML node.
    pub(crate) fn from_node(root: &Node) -> Result<Baseline, PosError> {
        let mut b = Baseline::default();
        let f = root.fields(&["baseline"])?;
        if let Some(m) = f.get("baseline") {
            if m.value == yaml::Value::Null {
                return Ok(b);
            }
            for (id, _, peers) in m.as_map()? {
                let set = b.peers.entry(id.to_string()).or_default();
                // `id:` with nothing after it: an identity with no peers, as `[]`.
                if peers.value == yaml::Value::Null {
                    continue;
                }
                for p in peers.as_seq_or_one() {
                    let s = p.as_scalar_string()?;
                    if AddrPattern::parse(&s).is_none() {
                        return Err(PosError::new(
                            &p.pos,
                            format!("bad peer address {}", excerpt(&s)),
                        ));
                    }
                    set.insert(s);
                }
            }
        }
        Ok(b)
    }

    /// Renders as YAML, identities and peers sorted so that diffs stay readable.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# Peers observed per workload identity (detector learn). Edit freely: a peer\n\
             # listed here is no longer \"first seen\" for that identity.\nbaseline:\n",
        );
        let mut ids: Vec<_> = self.peers.iter().collect();
        ids.sort_by(|a, b| a.0.cmp(b.0));
        for (id, peers) in ids {
            let mut p: Vec<_> = peers.iter().collect();
            p.sort();
            // An identity without peers stays one (`[]`, not an empty value).
            if p.is_empty() {
                out.push_str(&format!("  {}: []\n", crate::input::yaml_quote(id)));
                continue;
            }
            out.push_str(&format!("  {}:\n", crate::input::yaml_quote(id)));
            for peer in p {
                out.push_str(&format!("    - {}\n", crate::input::yaml_quote(peer)));
            }
        }
        out
    }

    /// Whether the baseline knows `identity` and, if so, whether `addr:port` is among its
    /// peers (`addr` parsed; an address that does not parse is no known peer).
    pub(crate) fn knows(&self, identity: &str, addr: Option<IpAddr>, port: u16) -> Option<bool> {
        let peers = self.peers.get(identity)?;
        Some(addr.is_some_and(|a| peers.knows(a, port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: the same networks in another order were a different baseline, so
    /// a written baseline read back differed from the one written.
    #[test]
    fn peers_equal_whatever_the_order_and_round_trip() {
        let a = "baseline:\n  u:\n    - \"fd00:1::/64:5432\"\n    - \"fd00:1::/64\"\n    - \"10.1.0.0/16:5\"\n";
        let b = "baseline:\n  u:\n    - \"10.1.0.0/16:5\"\n    - \"fd00:1::/64\"\n    - \"fd00:1::/64:5432\"\n";
        let (a, b) = match (Baseline::parse("a", a), Baseline::parse("b", b)) {
            (Ok(a), Ok(b)) => (a, b),
            other => panic!("{other:?}"),
        };
        assert_eq!(a, b);
        let back = Baseline::parse("back", &a.to_yaml()).map_err(|e| e.to_string());
        assert_eq!(back, Ok(a));
    }
}
