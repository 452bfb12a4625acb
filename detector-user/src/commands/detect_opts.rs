//! Detection flags shared by `run` (and usable by other live commands): rules, identities,
//! baseline, and how the engine is built from them.

use std::path::PathBuf;

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
    /// Out-of-order tolerance (e.g. `500ms`).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub tolerance: std::time::Duration,
}

impl DetectArgs {
    /// Loads rules, identities and baseline; any error leaves nothing half-loaded.
    pub fn build(&self, ids: IdMode, host: &str) -> anyhow::Result<(Engine, IdentityResolver)> {
        let rules = load_rules(&self.rules, self.no_default_rules)?;
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
        Ok((
            Engine::new(rules, policy, opts),
            IdentityResolver::new(config),
        ))
    }
}
