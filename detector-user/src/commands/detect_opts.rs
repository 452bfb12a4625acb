//! Detection flags shared by `run` (and usable by other live commands): rules, identities,
//! baseline, and how the engine is built from them.

use std::{collections::BTreeSet, path::PathBuf};

use crate::{
    engine::{
        load::{load_identities, load_policy, load_rules},
        Engine, EngineOptions, IdMode,
    },
    enrich::identity::{IdentityConfig, IdentityResolver},
};

/// Detection flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DetectArgs {
    /// Extra rule files or directories (added to the embedded default pack).
    #[arg(long = "rules", value_name = "PATH")]
    pub(crate) rules: Vec<PathBuf>,
    /// Do not load the embedded default pack.
    #[arg(long)]
    pub(crate) no_default_rules: bool,
    /// Workload identities config (identities.yaml).
    #[arg(long, value_name = "FILE")]
    pub(crate) identities: Option<PathBuf>,
    /// Learned baseline of peers (from `detector learn`).
    #[arg(long, value_name = "FILE")]
    pub(crate) baseline: Option<PathBuf>,
    /// How late an event may arrive and still be placed exactly in its windows (e.g. `500ms`,
    /// at most 1h); alerts do not wait for it.
    #[arg(long, default_value = "500ms", value_parser = tolerance)]
    pub(crate) tolerance: std::time::Duration,
}

/// `--tolerance`: a duration of at most 1 h.
fn tolerance(s: &str) -> Result<std::time::Duration, String> {
    crate::input::value::duration_in(
        s,
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(3600),
    )
}

/// A complete detection set: what a SIGHUP reload swaps in as one piece.
pub(crate) struct Detection {
    /// The correlation engine with the loaded rules, policy and baseline.
    pub(crate) engine: Engine,
    /// Workload identity attribution.
    pub(crate) resolver: IdentityResolver,
    /// Ids of the loaded rules (what a reload reports as added/removed).
    pub(crate) rule_ids: BTreeSet<String>,
    /// How many identities are declared.
    pub(crate) identities: usize,
}

impl Detection {
    /// One line saying what changed from `old` to `self`: rule ids added and removed, and
    /// the identity count.
    pub(crate) fn changes_from(
        &self,
        old_rules: &BTreeSet<String>,
        old_identities: usize,
    ) -> String {
        let added: Vec<&str> = self
            .rule_ids
            .difference(old_rules)
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old_rules
            .difference(&self.rule_ids)
            .map(String::as_str)
            .collect();
        format!(
            "{} rules (added: [{}], removed: [{}]), identities {} -> {}",
            self.rule_ids.len(),
            added.join(", "),
            removed.join(", "),
            old_identities,
            self.identities
        )
    }
}

impl DetectArgs {
    /// Loads rules, identities and baseline; any error leaves nothing half-loaded.
    pub(crate) fn build(
        &self,
        ids: IdMode,
        host: &str,
    ) -> anyhow::Result<(Engine, IdentityResolver)> {
        let d = self.build_detection(ids, host)?;
        Ok((d.engine, d.resolver))
    }

    /// As [`DetectArgs::build`], also saying what was loaded; start-up and SIGHUP reload
    /// both come through here, so a reload validates exactly what start-up would.
    pub(crate) fn build_detection(&self, ids: IdMode, host: &str) -> anyhow::Result<Detection> {
        let rules = load_rules(&self.rules, self.no_default_rules)?;
        // Start-up and every reload: valid but ineffective parts of the rules, positioned.
        rules
            .warnings
            .iter()
            .for_each(|w| tracing::warn!("rules: {w}"));
        // identities.yaml read and parsed once: the engine's policy and the resolver get the
        // same value, so an edit racing a reload cannot leave them disagreeing.
        let config = match &self.identities {
            Some(p) => load_identities(p)?,
            None => IdentityConfig::default(),
        };
        let mut policy = load_policy(None, self.baseline.as_deref())?;
        policy.identities = config.clone();
        let opts = EngineOptions {
            reorder_tolerance: u64::try_from(self.tolerance.as_nanos()).unwrap_or(u64::MAX),
            ids,
            host: host.to_string(),
            ..Default::default()
        };
        let rule_ids = rules.rules.iter().map(|r| r.id.clone()).collect();
        let identities = config.len();
        Ok(Detection {
            engine: Engine::new(rules, policy, opts),
            resolver: IdentityResolver::new(config),
            rule_ids,
            identities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_added_and_removed_rules() {
        let args = DetectArgs {
            rules: vec![],
            no_default_rules: false,
            identities: None,
            baseline: None,
            tolerance: std::time::Duration::from_millis(500),
        };
        let d = args
            .build_detection(IdMode::Random, "h")
            .expect("default pack");
        let mut old = d.rule_ids.clone();
        let first = old.iter().next().cloned().expect("a default rule");
        old.remove(&first);
        old.insert("gone-rule".into());
        let s = d.changes_from(&old, 2);
        assert!(s.contains(&format!("added: [{first}]")), "{s}");
        assert!(s.contains("removed: [gone-rule]"), "{s}");
        assert!(s.contains("identities 2 -> 0"), "{s}");
    }

    /// `docs/identities.example.yaml` loads through the path `detector run` uses, and means
    /// what its comments say (so the example cannot rot).
    #[test]
    fn example_identities_load() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/identities.example.yaml");
        let args = DetectArgs {
            rules: vec![],
            no_default_rules: false,
            identities: Some(p),
            baseline: None,
            tolerance: std::time::Duration::from_millis(500),
        };
        let d = args
            .build_detection(IdMode::Random, "h")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(d.identities, 3);
        let cfg = d.resolver.shared_config();
        let proc_of = |exe: &str, user: &str, unit: Option<&str>| crate::event::Process {
            exe: exe.into(),
            user: Some(user.into()),
            workload: crate::event::Workload {
                unit: unit.map(str::to_string),
                ..Default::default()
            },
            ..Default::default()
        };
        let pay = proc_of("/opt/payments/bin/server", "svc-pay", None);
        assert_eq!(d.resolver.resolve(&pay), "spiffe://prod/payments");
        // Both keys of one selector must match.
        let other = proc_of("/opt/payments/bin/server", "nobody", None);
        assert_eq!(
            d.resolver.resolve(&other),
            "exe:/opt/payments/bin/server@nobody"
        );
        let batch = proc_of("/usr/bin/python3", "batch", Some("payments-batch.service"));
        assert_eq!(d.resolver.resolve(&batch), "spiffe://prod/batch");
        let k8s = crate::event::Process {
            workload: crate::event::Workload {
                pod_namespace: Some("prod".into()),
                pod_name: Some("api-7f9c".into()),
                container_name: Some("api".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(d.resolver.resolve(&k8s), "spiffe://prod/k8s/api");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        assert_eq!(cfg.service_name(ip("10.1.2.4"), 5432), Some("payments-db"));
        assert_eq!(cfg.service_name(ip("fd00::53"), 53), Some("internal-dns"));
        let pay_id = "spiffe://prod/payments";
        assert_eq!(cfg.peer_declared(pay_id, ip("10.20.0.5"), 8200), Some(true));
        assert_eq!(cfg.peer_declared(pay_id, ip("10.30.1.1"), 443), Some(true));
        assert_eq!(cfg.peer_declared(pay_id, ip("10.30.1.1"), 80), Some(false));
        assert_eq!(cfg.get(pay_id).and_then(|i| i.fan_out_budget), Some(20));
        // Ownership: the identity's own globs and the `credentials:` section both count.
        assert_eq!(cfg.owns(pay_id, "/etc/payments/tls/server.pem"), Some(true));
        assert_eq!(
            cfg.owns("spiffe://prod/batch", "/etc/payments/signing.key"),
            Some(true)
        );
        assert_eq!(
            cfg.owns("spiffe://prod/batch", "/etc/payments/tls/a.pem"),
            Some(false)
        );
        let decl = cfg
            .credential_decl("/etc/payments/signing.key")
            .expect("declared");
        assert_eq!(decl.contact.as_deref(), Some("payments-oncall@example.com"));
        assert_eq!(
            decl.rotate_every,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            cfg.declared_owners("/home/deploy/.ssh/id_ed25519"),
            vec!["unit:deploy-agent.service".to_string()]
        );
    }
}
