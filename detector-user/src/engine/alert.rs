//! The alert the engine emits (one JSON object per line), documented by
//! `docs/alert.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Severity of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parses the YAML spelling.
    pub(crate) fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// Which rule fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
}

/// The process the alert is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertProcess {
    /// Process id.
    pub tgid: u32,
    /// Process start (boot-time ns): with `tgid`, the process key.
    pub start: u64,
    /// Executable.
    pub exe: String,
    /// Bounded argv, secrets redacted.
    pub argv: Vec<String>,
    /// User name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Real uid.
    pub uid: u32,
}

/// The credential involved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertCredential {
    /// Watched path.
    pub watched: String,
    /// Category.
    pub category: String,
    /// Keyed fingerprint, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The incident an alert belongs to when it covers more than one group of its correlation:
/// groups keyed by process tree share events (a connect joins the tree of every ancestor that
/// read a credential), so the firings of such groups whose evidence overlaps are one incident,
/// reported once — in one alert when they fire on the same event, else by an update carrying
/// the same incident id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertIncident {
    /// The incident's id: the `id` of its first alert, carried by every update.
    pub id: String,
    /// 0 for the incident's first alert, n for its n-th update (each update describes the
    /// whole incident as known then).
    pub revision: u32,
    /// Roots of the process trees (the groups' `process.tree`) merged into the incident,
    /// ascending.
    pub trees: Vec<u32>,
    /// Every process of the incident's evidence events (readers and connectors of every
    /// tree), in order of first appearance, bounded.
    pub processes: Vec<AlertProcess>,
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique id (UUID; derived deterministically in replay).
    pub id: String,
    /// The rule.
    pub rule: AlertRule,
    /// MITRE ATT&CK technique ids.
    pub attack: Vec<String>,
    /// Host the events came from.
    pub host: String,
    /// Workload identity of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The process whose event completed the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<AlertProcess>,
    /// The credential involved (latest credential event of the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<AlertCredential>,
    /// The group-by values that identify the window (field path → value).
    pub group: BTreeMap<String, String>,
    /// Distinct destinations (`addr:port`, or service names), bounded.
    pub destinations: Vec<String>,
    /// Exact number of distinct destinations in the window.
    pub destination_count: u64,
    /// Service names (the `services` section of identities.yaml) of the destinations,
    /// distinct, sorted, bounded like `destinations`. Omitted when none has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Names the destinations were resolved from (`net.dst_name`: a DNS answer seen on the
    /// host, or the hosts file), distinct, sorted, bounded. Omitted when none has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_names: Vec<String>,
    /// Number of matched events in the window.
    pub count: u64,
    /// Timestamp of the first event of the window (ns since the Unix epoch).
    pub first_seen: u64,
    /// Timestamp of the last event of the window.
    pub last_seen: u64,
    /// Bounded evidence: the window's first and latest events.
    pub evidence: Vec<Event>,
    /// Evidence events of the window no longer held by the engine's bounded evidence ring
    /// (a busy host): `evidence` lists the rest. Counts, destinations and the credential stay
    /// exact. Omitted when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evidence_dropped: u64,
    /// Alerts of this rule and group suppressed since the previous one.
    pub suppressed: u64,
    /// True when the kernel reported lost records inside the window: the picture may be
    /// incomplete (more destinations, an unseen credential read).
    pub loss_overlap: bool,
    /// Set when the alert covers several groups of its correlation (one incident), or is an
    /// update of an incident; omitted for an alert that is its own incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<AlertIncident>,
}

// serde's skip_serializing_if takes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

const SECRET_WORDS: &[&str] = &["pass", "secret", "token", "key", "auth", "cred", "pwd"];

fn secretish(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| l.contains(w))
}

/// Redacts secrets in an argv: values of flags named like secrets (`--password x`,
/// `--token=x`, `-p x` for database clients), `NAME=value` with a secret-like name, and
/// `user:password@` in URLs. Paths of key files (`-i ~/.ssh/id_rsa`) stay: they are evidence,
/// not secrets.
pub(crate) fn redact_argv(argv: &[String], max: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len().min(max));
    let mut redact_next = false;
    for a in argv.iter().take(max) {
        if redact_next {
            out.push("[REDACTED]".to_string());
            redact_next = false;
            continue;
        }
        if let Some((k, _)) = a.split_once('=') {
            if secretish(k) {
                out.push(format!("{k}=[REDACTED]"));
                continue;
            }
        }
        if a.starts_with('-') && (secretish(a) || a == "-p") && !a.contains('=') && a != "-i" {
            redact_next = a != "--key-file" && !a.ends_with("-file");
            out.push(a.clone());
            continue;
        }
        if let Some(i) = a.find("://") {
            let rest = &a[i + 3..];
            if let Some(at) = rest.find('@') {
                if let Some(colon) = rest[..at].find(':') {
                    out.push(format!(
                        "{}{}:[REDACTED]{}",
                        &a[..i + 3],
                        &rest[..colon],
                        &rest[at..]
                    ));
                    continue;
                }
            }
        }
        out.push(a.clone());
    }
    if argv.len() > max {
        out.push(format!("[{} more]", argv.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_argv(&v(&["mysql", "-p", "hunter2", "-u", "root"]), 16),
            v(&["mysql", "-p", "[REDACTED]", "-u", "root"])
        );
        assert_eq!(
            redact_argv(
                &v(&["x", "--token=abc", "API_KEY=zzz", "--password", "p"]),
                16
            ),
            v(&[
                "x",
                "--token=[REDACTED]",
                "API_KEY=[REDACTED]",
                "--password",
                "[REDACTED]"
            ])
        );
        assert_eq!(
            redact_argv(&v(&["curl", "https://bob:pw@h/x"]), 16),
            v(&["curl", "https://bob:[REDACTED]@h/x"])
        );
        assert_eq!(
            redact_argv(&v(&["ssh", "-i", "/root/.ssh/id_rsa", "h"]), 16),
            v(&["ssh", "-i", "/root/.ssh/id_rsa", "h"])
        );
        assert_eq!(
            redact_argv(&v(&["a", "b", "c"]), 2),
            v(&["a", "b", "[1 more]"])
        );
    }
}

#[cfg(test)]
mod schema_tests {
    /// The schema lists exactly the fields the struct serializes, so the two cannot drift.
    #[test]
    fn schema_matches_struct() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/alert.schema.json")).unwrap();
        let props: std::collections::BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let alert = super::Alert {
            id: String::new(),
            rule: super::AlertRule {
                id: String::new(),
                title: String::new(),
                severity: super::Severity::Low,
            },
            attack: vec![],
            host: String::new(),
            identity: Some(String::new()),
            process: Some(super::AlertProcess {
                tgid: 0,
                start: 0,
                exe: String::new(),
                argv: vec![],
                user: Some(String::new()),
                uid: 0,
            }),
            credential: Some(super::AlertCredential {
                watched: String::new(),
                category: String::new(),
                fingerprint: None,
            }),
            group: Default::default(),
            destinations: vec![],
            destination_count: 0,
            services: vec![String::new()],
            destination_names: vec![String::new()],
            count: 1,
            first_seen: 0,
            last_seen: 0,
            evidence: vec![],
            evidence_dropped: 1,
            suppressed: 0,
            loss_overlap: false,
            incident: Some(super::AlertIncident {
                id: String::new(),
                revision: 1,
                trees: vec![1],
                processes: vec![],
            }),
        };
        let v = serde_json::to_value(&alert).unwrap();
        let keys: std::collections::BTreeSet<String> =
            v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, props);
        for r in schema["required"].as_array().unwrap() {
            assert!(keys.contains(r.as_str().unwrap()));
        }
        let pkeys: std::collections::BTreeSet<String> =
            v["process"].as_object().unwrap().keys().cloned().collect();
        let sp: std::collections::BTreeSet<String> = schema["properties"]["process"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(pkeys, sp);
        let ikeys: std::collections::BTreeSet<String> =
            v["incident"].as_object().unwrap().keys().cloned().collect();
        let si: std::collections::BTreeSet<String> = schema["properties"]["incident"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(ikeys, si);
    }
}
