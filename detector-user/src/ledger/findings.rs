//! The ledger's findings as alerts (through the same sinks and formats as the engine's), and
//! its in-band notices about itself (`detector-ledger`: a file set aside, memory-only on a full
//! disk and back, inputs dropped).
//!
//! | rule id | finding | severity | ATT&CK |
//! |---|---|---|---|
//! | `ledger-shared-credential` | used by two or more identities (here or through a copy) | high | T1550, T1552.001 |
//! | `ledger-credential-used-by-non-owner` | used by an identity that does not own it | high | T1552.004 (SSH keys), T1528 (service-account tokens), else T1552.001 |
//! | `ledger-stale-credential-copy` | content a rotation replaced, still read from a copy | high | T1552.001, T1550 |
//! | `ledger-credential-past-rotation` | in use while older than its rotation policy | low | – (governance) |
//! | `ledger-unused-credential` | no use for the retirement threshold | info | – (governance) |

use std::collections::BTreeMap;

use crate::{
    engine::alert::{Alert, AlertCredential, AlertProcess, AlertRule, Severity},
    event::Event,
    notice::agent_alert,
};

use super::model::{Finding, FindingKind, Model};

/// Rule id of the ledger's in-band notices about itself.
pub(crate) const LEDGER_RULE_ID: &str = "detector-ledger";

/// Destinations listed in a finding's alert.
const MAX_DESTINATIONS: usize = 16;

/// Rule id of a finding kind.
pub(crate) fn rule_id(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Shared => "ledger-shared-credential",
        FindingKind::NonOwner => "ledger-credential-used-by-non-owner",
        FindingKind::PastRotation => "ledger-credential-past-rotation",
        FindingKind::StaleCopy => "ledger-stale-credential-copy",
        FindingKind::Unused => "ledger-unused-credential",
    }
}

/// Title of a finding kind.
pub(crate) fn title(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Shared => "Credential used by two or more workload identities",
        FindingKind::NonOwner => "Credential used by an identity that does not own it",
        FindingKind::PastRotation => "Credential in use past its rotation policy",
        FindingKind::StaleCopy => {
            "Credential content replaced by a rotation still read from a copy"
        }
        FindingKind::Unused => "Credential no workload used: a retirement candidate",
    }
}

/// Severity of a finding kind.
pub(crate) fn severity(k: FindingKind) -> Severity {
    match k {
        FindingKind::Shared | FindingKind::NonOwner | FindingKind::StaleCopy => Severity::High,
        FindingKind::PastRotation => Severity::Low,
        FindingKind::Unused => Severity::Info,
    }
}

/// ATT&CK techniques of a finding about a credential of `category`.
pub(crate) fn attack(k: FindingKind, category: &str) -> Vec<String> {
    let v: &[&str] = match k {
        FindingKind::Shared | FindingKind::StaleCopy => &["T1550", "T1552.001"],
        FindingKind::NonOwner => match category {
            "ssh_key" => &["T1552.004"],
            "k8s_token" => &["T1528", "T1552.001"],
            _ => &["T1552.001"],
        },
        FindingKind::PastRotation | FindingKind::Unused => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// The alert of a finding, with what the ledger knows of the credential.
pub(crate) fn alert(m: &Model, f: &Finding, host: &str) -> Alert {
    let c = m.credentials.get(&f.credential);
    let mut group: BTreeMap<String, String> = f.facts.clone();
    group.insert("ledger.finding".into(), f.kind.as_str().into());
    group.insert("ledger.credential_id".into(), f.credential.to_string());
    let mut destinations = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    if let Some(c) = c {
        if let Some(o) = &c.owner {
            group.entry("owner".into()).or_insert_with(|| o.clone());
        }
        if let Some(ct) = &c.contact {
            group.insert("contact".into(), ct.clone());
        }
        let users: Vec<&str> = m
            .users_of(c.id)
            .iter()
            .filter_map(|i| m.identities.get(*i))
            .collect();
        group.insert("used_by".into(), users.join(", "));
        for &iid in m.users_of(c.id) {
            for &did in m.reach_of(c.id, iid) {
                if let Some(d) = m.destinations.get(&did) {
                    let s = match &d.name {
                        Some(n) => format!("{n} ({})", dst(&d.addr, d.port)),
                        None => dst(&d.addr, d.port),
                    };
                    if let Some(n) = &d.name {
                        if names.len() < MAX_DESTINATIONS {
                            names.insert(n.clone());
                        }
                    }
                    if seen.insert(s.clone()) && destinations.len() < MAX_DESTINATIONS {
                        destinations.push(s);
                    }
                }
            }
        }
    }
    let category = c.map(|c| c.category.as_str()).unwrap_or_default();
    Alert {
        id: uuid::Uuid::new_v4().to_string(),
        rule: AlertRule {
            id: rule_id(f.kind).into(),
            title: title(f.kind).into(),
            severity: severity(f.kind),
        },
        attack: attack(f.kind, category),
        host: host.to_string(),
        identity: f.identity.clone(),
        process: f.actor.as_ref().map(|a| AlertProcess {
            tgid: a.tgid,
            start: a.start,
            exe: a.exe.clone(),
            argv: Vec::new(),
            user: a.user.clone(),
            uid: a.uid,
        }),
        credential: c.map(|c| AlertCredential {
            watched: c.path.clone(),
            category: c.category.clone(),
            fingerprint: c.fingerprint.clone(),
        }),
        group,
        destination_count: seen.len() as u64,
        destinations,
        // The ledger's destinations are addresses; services are named by the engine's rules.
        services: Vec::new(),
        destination_names: names.into_iter().collect(),
        // A finding is about one credential: its own incident.
        incident: None,
        count: c.map_or(1, |c| c.uses.max(1)),
        first_seen: c.map_or(f.ts, |c| c.first_seen.min(f.ts)),
        last_seen: f.ts,
        evidence: Vec::<Event>::new(),
        evidence_dropped: 0,
        suppressed: f.suppressed,
        loss_overlap: false,
    }
}

fn dst(addr: &str, port: u16) -> String {
    crate::engine::fields::dst_string(addr, port)
}

/// An in-band notice about the ledger itself: `state` (`set_aside`, `memory_only`,
/// `resumed`, `inputs_dropped`, `unavailable`) and one sentence.
pub(crate) fn notice(
    state: &str,
    sentence: &str,
    severity: Severity,
    host: &str,
    now: u64,
) -> Alert {
    let mut group = BTreeMap::new();
    group.insert("state".to_string(), state.to_string());
    group.insert("summary".to_string(), sentence.to_string());
    agent_alert(
        LEDGER_RULE_ID,
        format!("credential ledger: {sentence}"),
        severity,
        group,
        host,
        now,
    )
}
