//! The identity resolver: names each process after the operator's `identities.yaml` (the
//! policy, parsed in [`crate::policy::identities`]) or, without a match, derives a name from
//! its workload ([`derived_identity`]).
//!
//! The policy types are re-exported here for the callers that resolve and read policy together.

use crate::event::Process;
pub use crate::policy::identities::*;
/// Assigns identity names to processes.
#[derive(Debug, Default)]
pub struct IdentityResolver {
    config: std::sync::Arc<IdentityConfig>,
}

impl IdentityResolver {
    /// A resolver over `config` (use `IdentityConfig::default()` for derived identities only).
    pub(crate) fn new(config: IdentityConfig) -> Self {
        IdentityResolver {
            config: std::sync::Arc::new(config),
        }
    }

    /// The configuration, shared (the credential ledger's writer holds it).
    pub(crate) fn shared_config(&self) -> std::sync::Arc<IdentityConfig> {
        self.config.clone()
    }

    /// The identity of `p`: the first configured identity whose selector matches, else derived.
    pub(crate) fn resolve(&self, p: &Process) -> String {
        match self.config.declared_identity(p) {
            Some(name) => name.to_string(),
            None => derived_identity(p),
        }
    }

    /// Sets `p.identity` (keeps an identity already set, e.g. by a recording) and returns it.
    pub fn apply<'a>(&self, p: &'a mut Process) -> &'a str {
        if p.identity.is_none() {
            p.identity = Some(self.resolve(p));
        }
        p.identity.as_deref().unwrap_or_default()
    }
}

/// The identity a process has without configuration.
pub(crate) fn derived_identity(p: &Process) -> String {
    if let Some(u) = &p.workload.unit {
        return format!("unit:{u}");
    }
    // A pod's readable name outlives container restarts (the container id changes each time).
    if let (Some(ns), Some(name)) = (&p.workload.pod_namespace, &p.workload.pod_name) {
        return match &p.workload.container_name {
            Some(c) => format!("pod:{ns}/{name}/{c}"),
            None => format!("pod:{ns}/{name}"),
        };
    }
    if let Some(c) = &p.workload.container_id {
        return format!("container:{}", &c[..c.len().min(12)]);
    }
    if let Some(u) = &p.workload.pod_uid {
        return format!("pod:{u}");
    }
    let exe = if p.exe.is_empty() { &p.comm } else { &p.exe };
    match &p.user {
        Some(u) => format!("exe:{exe}@{u}"),
        None => format!("exe:{exe}@{}", p.uid),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::event::Workload;

    const CFG: &str = "identities:\n  - name: spiffe://prod/pay\n    match:\n      exe: /opt/pay/*\n      user: svc\n    credentials: [/etc/pay/*.key]\n    peers: [db, 10.0.0.0/8:443]\n    fan_out_budget: 5\n  - name: web\n    match: [{unit: web.service}, {uid: 33}]\n    peers: [spiffe://prod/pay]\nservices:\n  db: [10.1.2.3:5432]\n";

    fn proc_(exe: &str, user: Option<&str>, uid: u32) -> Process {
        Process {
            exe: exe.into(),
            user: user.map(Into::into),
            uid,
            ..Default::default()
        }
    }

    #[test]
    fn selectors_and_derived() {
        let r = IdentityResolver::new(IdentityConfig::parse("i.yaml", CFG).unwrap());
        assert_eq!(
            r.resolve(&proc_("/opt/pay/srv", Some("svc"), 1)),
            "spiffe://prod/pay"
        );
        assert_eq!(
            r.resolve(&proc_("/opt/pay/srv", Some("bob"), 1)),
            "exe:/opt/pay/srv@bob"
        );
        assert_eq!(r.resolve(&proc_("/x", None, 33)), "web");
        let mut p = proc_("/usr/bin/x", None, 7);
        p.workload = Workload {
            unit: Some("cron.service".into()),
            ..Default::default()
        };
        assert_eq!(r.apply(&mut p), "unit:cron.service");
        assert_eq!(derived_identity(&proc_("/bin/y", None, 7)), "exe:/bin/y@7");
    }

    #[test]
    fn k8s_namespace_selector_and_pod_identity() {
        let cfg = "identities:
  - name: spiffe://cluster/ns/payments/sa/api
    match: {k8s_namespace: payments, container_name: api}
  - name: kube-system
    match: {k8s_namespace: 'kube-*'}
";
        let r = IdentityResolver::new(IdentityConfig::parse("i.yaml", cfg).unwrap());
        let pod = |ns: Option<&str>, name: &str, c: &str| {
            let mut p = proc_("/app", None, 1000);
            p.workload = Workload {
                container_id: Some("a".repeat(64)),
                pod_uid: Some("1234abcd-12ab-34cd-56ef-1234567890ab".into()),
                pod_namespace: ns.map(str::to_string),
                pod_name: Some(name.into()),
                container_name: Some(c.into()),
                ..Default::default()
            };
            p
        };
        assert_eq!(
            r.resolve(&pod(Some("payments"), "api-1", "api")),
            "spiffe://cluster/ns/payments/sa/api"
        );
        assert_eq!(
            r.resolve(&pod(Some("kube-system"), "dns-1", "dns")),
            "kube-system"
        );
        // Another namespace: derived from namespace/pod/container, not the container id.
        assert_eq!(
            r.resolve(&pod(Some("web"), "front-1", "nginx")),
            "pod:web/front-1/nginx"
        );
        // Namespace unknown: a namespace selector cannot match.
        assert_eq!(
            r.resolve(&pod(None, "api-1", "api")),
            format!("container:{}", "a".repeat(12))
        );
    }

    #[test]
    fn ownership_peers_services() {
        let c = IdentityConfig::parse("i.yaml", CFG).unwrap();
        assert_eq!(c.owns("spiffe://prod/pay", "/etc/pay/a.key"), Some(true));
        assert_eq!(c.owns("web", "/etc/pay/a.key"), Some(false));
        assert_eq!(c.owns("web", "/root/.ssh/id_rsa"), None);
        let db: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(c.peer_declared("spiffe://prod/pay", db, 5432), Some(true));
        assert_eq!(
            c.peer_declared("spiffe://prod/pay", "10.9.9.9".parse().unwrap(), 443),
            Some(true)
        );
        assert_eq!(
            c.peer_declared("spiffe://prod/pay", "10.9.9.9".parse().unwrap(), 80),
            Some(false)
        );
        assert_eq!(c.peer_declared("nobody", db, 5432), None);
        assert_eq!(c.service_name(db, 5432), Some("db"));
        assert_eq!(c.get("spiffe://prod/pay").unwrap().fan_out_budget, Some(5));
    }

    #[test]
    fn credential_owners_contacts_and_rotation() {
        let cfg = format!(
            "{CFG}credentials:\n  - path: /etc/pay/*.key\n    owner: [batch]\n    contact: pay-oncall@example.com\n    rotate_every: 30d\n  - path: /srv/shared/token\n    owner: web\n  - path: /etc/ssl/private/*\n    contact: pki team\n"
        );
        let c = IdentityConfig::parse("i.yaml", &cfg).unwrap();
        // Declared by an identity and by a credentials entry: both own it.
        assert_eq!(c.owns("spiffe://prod/pay", "/etc/pay/a.key"), Some(true));
        assert_eq!(c.owns("batch", "/etc/pay/a.key"), Some(true));
        assert_eq!(c.owns("web", "/etc/pay/a.key"), Some(false));
        assert_eq!(
            c.declared_owners("/etc/pay/a.key"),
            vec!["spiffe://prod/pay".to_string(), "batch".to_string()]
        );
        assert_eq!(c.owns("web", "/srv/shared/token"), Some(true));
        assert_eq!(c.owns("exe:/x@root", "/srv/shared/token"), Some(false));
        // A contact alone declares no owner.
        assert_eq!(c.owns("web", "/etc/ssl/private/site.key"), None);
        let d = c.credential_decl("/etc/pay/b.key").unwrap();
        assert_eq!(d.contact.as_deref(), Some("pay-oncall@example.com"));
        assert_eq!(d.rotate_every, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            c.credential_decl("/etc/ssl/private/x")
                .unwrap()
                .contact
                .as_deref(),
            Some("pki team")
        );
        for (bad, line, want) in [
            (
                "credentials:\n  - path: /x\n    rotate_every: soon\n",
                3,
                "bad duration",
            ),
            ("credentials:\n  - path: /x\n", 2, "needs `owner`"),
            (
                "credentials:\n  - path: /x\n    owner: a\n    colour: red\n",
                4,
                "unknown field",
            ),
            ("credentials:\n  - owner: a\n", 2, "path"),
        ] {
            let e = IdentityConfig::parse("i.yaml", bad).unwrap_err();
            assert_eq!(e.pos.line, line, "{bad}: {e}");
            assert!(e.msg.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn derived_owners() {
        let o = derived_owner("/home/alice/.ssh/id_rsa", "ssh_key").unwrap();
        assert_eq!(o.principal(), "user:alice");
        assert!(o.owns(Some("alice"), 1000, None));
        assert!(!o.owns(Some("bob"), 1001, None));
        let r = derived_owner("/root/.aws/credentials", "cloud").unwrap();
        assert!(r.owns(None, 0, None));
        assert!(!r.owns(None, 5, None));
        let p = derived_owner(
            "/var/lib/kubelet/pods/abc/volumes/kubernetes.io~projected/t/token",
            "k8s_token",
        )
        .unwrap();
        assert_eq!(p.principal(), "pod:abc");
        assert!(p.owns(None, 0, Some("abc")));
        assert!(!p.owns(None, 0, Some("def")));
        let m = derived_owner(
            "/run/secrets/kubernetes.io/serviceaccount/token",
            "k8s_token",
        );
        assert_eq!(m, Some(DerivedOwner::MountingPod));
        assert_eq!(derived_owner("/etc/shadow", "shadow"), None);
        assert_eq!(derived_owner("/run/secrets/db/password", "secret"), None);
    }

    #[test]
    fn config_errors_are_positioned() {
        let e = IdentityConfig::parse(
            "i.yaml",
            "identities:\n  - name: a\n    match: {exe: '[x'}\n",
        )
        .unwrap_err();
        assert_eq!((e.pos.line, e.msg.starts_with("bad glob")), (3, true));
        let e = IdentityConfig::parse(
            "i.yaml",
            "identities:\n  - name: a\n    match: {exe: x}\n    peers: [nope]\n",
        )
        .unwrap_err();
        assert_eq!(e.pos.line, 4);
        assert!(e.msg.contains("unknown peer"));
        let e = IdentityConfig::parse("i.yaml", "identities:\n  - name: a\n    matc: {}\n")
            .unwrap_err();
        assert!(e.msg.contains("unknown field `matc`"));
        let e =
            IdentityConfig::parse("i.yaml", "identities: []\n---\nidentities: []\n").unwrap_err();
        assert_eq!(
            (e.pos.line, e.msg.contains("second YAML document")),
            (3, true)
        );
    }

    #[test]
    fn baseline_roundtrip() {
        let mut b = Baseline::default();
        b.peers
            .entry("a b".into())
            .or_default()
            .insert("10.0.0.1:22".into());
        let y = b.to_yaml();
        assert_eq!(Baseline::parse("b", &y).unwrap(), b);
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(b.knows("a b", ip("10.0.0.1"), 22), Some(true));
        assert_eq!(b.knows("a b", ip("10.0.0.1"), 23), Some(false));
        assert_eq!(b.knows("c", ip("10.0.0.1"), 22), None);
        // Every entry form: address and port (IPv6 in brackets), any port, a network.
        let mut b = Baseline::default();
        let peers = b.peers.entry("x".into()).or_default();
        for e in [
            "[fd00::1]:443",
            "10.0.0.2",
            "10.1.0.0/16:5432",
            "fd00:1::/64",
        ] {
            peers.insert(e.into());
        }
        assert_eq!(Baseline::parse("b", &b.to_yaml()).unwrap(), b);
        for (addr, port, known) in [
            ("fd00::1", 443, true),
            ("fd00::1", 444, false),
            ("fd00::1:443", 443, false),
            ("10.0.0.2", 1, true),
            ("10.1.2.3", 5432, true),
            ("10.1.2.3", 5433, false),
            ("fd00:1::9", 7, true),
            ("10.0.0.3", 1, false),
        ] {
            assert_eq!(b.knows("x", ip(addr), port), Some(known), "{addr} {port}");
        }
        assert_eq!(b.knows("x", None, 443), Some(false));
        // Found by the baseline fuzz target: an identity without peers, and names with
        // characters a file may not hold raw, survive the round trip `detector learn` makes.
        let b = Baseline::parse(
            "b",
            "baseline:\n  a: []\n  \"\\u0085\\x07\\\"\": [10.0.0.1]\n  c:\n",
        )
        .unwrap();
        assert_eq!(b.peers.len(), 3);
        assert_eq!(Baseline::parse("b", &b.to_yaml()).unwrap(), b);
    }
}
