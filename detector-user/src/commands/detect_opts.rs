//! Detection flags shared by `run` (and usable by other live commands): rules, identities,
//! baseline, and how the engine is built from them.

use std::{collections::BTreeSet, path::PathBuf};

use crate::{
    engine::{
        load::{load_policy, load_rules},
        Engine, EngineOptions, IdMode,
    },
    enrich::identity::{IdentityConfig, IdentityResolver},
};

/// Detection flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Extra rule files or directories (added to the embedded default pack).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the embedded default pack.
    #[arg(long)]
    pub no_default_rules: bool,
    /// Workload identities config (identities.yaml).
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Learned baseline of peers (from `detector learn`).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// How late an event may arrive and still be placed exactly in its windows (e.g. `500ms`,
    /// at most 1h); alerts do not wait for it.
    #[arg(long, default_value = "500ms", value_parser = tolerance)]
    pub tolerance: std::time::Duration,
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
pub struct Detection {
    /// The correlation engine with the loaded rules, policy and baseline.
    pub engine: Engine,
    /// Workload identity attribution.
    pub resolver: IdentityResolver,
    /// Ids of the loaded rules (what a reload reports as added/removed).
    pub rule_ids: BTreeSet<String>,
    /// How many identities are declared.
    pub identities: usize,
}

impl Detection {
    /// One line saying what changed from `old` to `self`: rule ids added and removed, and
    /// the identity count.
    pub fn changes_from(&self, old_rules: &BTreeSet<String>, old_identities: usize) -> String {
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
    pub fn build(&self, ids: IdMode, host: &str) -> anyhow::Result<(Engine, IdentityResolver)> {
        let d = self.build_detection(ids, host)?;
        Ok((d.engine, d.resolver))
    }

    /// As [`DetectArgs::build`], also saying what was loaded; start-up and SIGHUP reload
    /// both come through here, so a reload validates exactly what start-up would.
    pub fn build_detection(&self, ids: IdMode, host: &str) -> anyhow::Result<Detection> {
        let rules = load_rules(&self.rules, self.no_default_rules)?;
        // Start-up and every reload: valid but ineffective parts of the rules, positioned.
        rules
            .warnings
            .iter()
            .for_each(|w| tracing::warn!("rules: {w}"));
        let policy = load_policy(self.identities.as_deref(), self.baseline.as_deref())?;
        let config = match &self.identities {
            Some(p) => crate::engine::load::load_identities(p)?,
            None => IdentityConfig::default(),
        };
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
}
