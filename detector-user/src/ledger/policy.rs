//! What the ledger decides with: ownership and services (identities.yaml), the rotation policy
//! per category, the windows and thresholds of the findings. Built from the agent config's
//! `ledger:` section ([`crate::config::LedgerConfig`]) and the identities in force.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{config::LedgerConfig, enrich::identity::IdentityConfig};

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The ledger's policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Owners, contacts, declared rotation policies, service names.
    pub(crate) identities: Arc<IdentityConfig>,
    /// Findings raised at all.
    pub(crate) findings: bool,
    /// Rotation policy per category (ns), and for categories not listed.
    pub(crate) rotation: Rotation,
    /// No use for this long: a retirement candidate (ns).
    pub(crate) unused_after_ns: u64,
    /// Connections this long after a use are reached with it (ns).
    pub(crate) reach_window_ns: u64,
    /// A finding already alerted is alerted again only after this long (ns).
    pub(crate) repeat_after_ns: u64,
    /// Executables whose reads are never judged as a non-owner's (credential daemons).
    pub(crate) exempt_exe: Vec<String>,
}

/// Rotation policy: the longest a credential may go without rotation while in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rotation {
    /// For categories not listed (ns).
    pub(crate) default_ns: u64,
    /// Per category (ns).
    pub(crate) per_category: BTreeMap<String, u64>,
}

impl Policy {
    /// From the config and the identities in force.
    pub fn new(cfg: &LedgerConfig, identities: Arc<IdentityConfig>) -> Policy {
        Policy {
            identities,
            findings: cfg.findings.enabled,
            rotation: Rotation {
                default_ns: ns(cfg.rotation.default),
                per_category: cfg
                    .rotation
                    .categories
                    .iter()
                    .map(|(k, v)| (k.clone(), ns(*v)))
                    .collect(),
            },
            unused_after_ns: ns(cfg.findings.unused_after),
            reach_window_ns: ns(cfg.reach_window),
            repeat_after_ns: ns(cfg.findings.repeat_after),
            exempt_exe: cfg.findings.exempt_exe.clone(),
        }
    }

    /// The rotation policy of `category` (ns).
    pub(crate) fn rotation_ns(&self, category: &str) -> u64 {
        self.rotation.rotation_ns(category)
    }

    /// What `detector inventory` needs to judge as the agent does (stored in the ledger).
    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            rotation: self.rotation.clone(),
            unused_after_ns: self.unused_after_ns,
            exempt_exe: self.exempt_exe.clone(),
        }
    }
}

impl Rotation {
    /// The policy of `category` (ns).
    pub(crate) fn rotation_ns(&self, category: &str) -> u64 {
        self.per_category
            .get(category)
            .copied()
            .unwrap_or(self.default_ns)
    }
}

/// The part of the policy the ledger file records, so that `detector inventory` flags
/// credentials as the agent that wrote it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// Rotation policy.
    pub(crate) rotation: Rotation,
    /// Retirement threshold (ns).
    pub(crate) unused_after_ns: u64,
    /// Executables never judged as non-owners.
    #[serde(default)]
    pub(crate) exempt_exe: Vec<String>,
}

impl Default for PolicySummary {
    fn default() -> Self {
        let d = LedgerConfig::default();
        Policy::new(&d, Arc::new(IdentityConfig::default())).summary()
    }
}
