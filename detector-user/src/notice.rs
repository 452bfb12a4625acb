//! Alerts the agent raises about itself (a sink's overflow, a reload, the ledger's health):
//! no process, credential or destinations, their facts in `group`. Below both the sinks and
//! the ledger, which both raise them.

use std::collections::BTreeMap;

use crate::engine::alert::{Alert, AlertRule, Severity};

/// An alert about the agent itself (no process, credential or destinations): its facts go in
/// `group`, which both formats carry.
pub(crate) fn agent_alert(
    rule_id: &str,
    title: String,
    severity: Severity,
    group: BTreeMap<String, String>,
    host: &str,
    now_ns: u64,
) -> Alert {
    Alert {
        id: uuid::Uuid::new_v4().to_string(),
        rule: AlertRule {
            id: rule_id.into(),
            title,
            severity,
        },
        attack: vec![],
        host: host.to_string(),
        identity: None,
        process: None,
        credential: None,
        group,
        destinations: vec![],
        destination_count: 0,
        services: vec![],
        destination_names: vec![],
        count: 1,
        first_seen: now_ns,
        last_seen: now_ns,
        evidence: vec![],
        evidence_dropped: 0,
        suppressed: 0,
        loss_overlap: false,
        incident: None,
    }
}
