//! Alert encodings: native (the alert as is, docs/alert.schema.json) and OCSF 1.x Detection
//! Finding (class 2004, docs in shared reference; validated by a third-party validator in the
//! integration tests). The credential ledger's inventory records: native (the record as is,
//! docs/ledger.md) and OCSF 1.5 Live Evidence Info (class 5040, query type File): the
//! Discovery class for "a file present on this host and what is known of it". File Query
//! (5007) said exactly that but is deprecated since 1.5 in favour of 5040; Device, User and
//! Software Inventory Info (5001, 5003, 5020) describe a device, a person's account or a
//! package, not a credential file and the workloads that use it.

use serde_json::{json, Map, Value};

use crate::{
    config::Format,
    engine::{
        alert::{AlertProcess, Severity},
        Alert,
    },
    event::Event,
    ledger::query::InventoryRecord,
    notice::agent_alert,
};

/// OCSF schema version the output follows.
pub(crate) const OCSF_VERSION: &str = "1.5.0";

/// Rule id of the in-band alert that announces alerts a sink had to drop.
pub(crate) const OVERFLOW_RULE_ID: &str = "detector-spool-overflow";

/// Rule id of the in-band alert that records each SIGHUP reload, successful or not.
pub(crate) const RELOAD_RULE_ID: &str = "detector-reload";

/// Encodes one alert as a single-line JSON document (no trailing newline).
pub fn encode(alert: &Alert, format: Format) -> Vec<u8> {
    let v = match format {
        // Serializing our own plain structs cannot fail; an empty object would still be
        // valid JSON should that ever change.
        Format::Native => return serde_json::to_vec(alert).unwrap_or_else(|_| b"{}".to_vec()),
        Format::Ocsf => ocsf(alert),
    };
    serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec())
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn file_obj(path: &str) -> Value {
    // type_id 1 = Regular File.
    json!({"name": basename(path), "path": path, "type_id": 1, "type": "Regular File"})
}

fn process_obj(
    tgid: u32,
    start: u64,
    exe: &str,
    argv: &[String],
    user: Option<&str>,
    uid: u32,
) -> Value {
    let mut p = Map::new();
    p.insert("pid".into(), json!(tgid));
    // The kernel's process key (tgid, boot-time start) as the OCSF process uid.
    p.insert("uid".into(), json!(format!("{tgid}:{start}")));
    if !exe.is_empty() {
        p.insert("name".into(), json!(basename(exe)));
        p.insert("file".into(), file_obj(exe));
    }
    if !argv.is_empty() {
        p.insert("cmd_line".into(), json!(argv.join(" ")));
    }
    let mut u = Map::new();
    u.insert("uid".into(), json!(uid.to_string()));
    if let Some(n) = user {
        u.insert("name".into(), json!(n));
    }
    p.insert("user".into(), Value::Object(u));
    Value::Object(p)
}

fn alert_process(p: &AlertProcess) -> Value {
    process_obj(p.tgid, p.start, &p.exe, &p.argv, p.user.as_deref(), p.uid)
}

/// One OCSF evidence per enriched event: the process, and the file or the destination.
fn evidence(e: &Event) -> Option<Value> {
    let mut ev = Map::new();
    if let Some(p) = &e.process {
        ev.insert(
            "process".into(),
            process_obj(p.tgid, p.start, &p.exe, &p.argv, p.user.as_deref(), p.uid),
        );
    }
    if let Some(f) = &e.file {
        let path = f
            .resolved
            .as_deref()
            .or(f.path.as_deref())
            .unwrap_or(&f.watched);
        ev.insert("file".into(), file_obj(path));
    }
    if let Some(n) = &e.net {
        let mut dst = json!({"ip": n.dst_addr, "port": n.dst_port});
        if let Some(h) = &n.dst_name {
            dst["hostname"] = json!(h);
        }
        if let Some(s) = &n.service {
            dst["svc_name"] = json!(s);
        }
        ev.insert("dst_endpoint".into(), dst);
        if !n.src_addr.is_empty() {
            ev.insert(
                "src_endpoint".into(),
                json!({"ip": n.src_addr, "port": n.src_port}),
            );
        }
    }
    if ev.is_empty() {
        return None;
    }
    ev.insert("name".into(), json!(e.kind.as_str()));
    Some(Value::Object(ev))
}

/// `T1021.004` → technique T1021 with sub-technique T1021.004.
fn attack(t: &str) -> Value {
    match t.split_once('.') {
        Some((base, _)) => json!({"technique": {"uid": base}, "sub_technique": {"uid": t}}),
        None => json!({"technique": {"uid": t}}),
    }
}

/// The OCSF Detection Finding for an alert: activity 1 (Create), or 2 (Update) for an update
/// of an incident — `finding_info.uid` is then the incident's id (its first alert's), so a
/// SIEM that keeps findings by uid updates the one finding; `metadata.uid` is each record's own
/// id.
pub fn ocsf(a: &Alert) -> Value {
    let (sev_id, sev) = severity_id(a.rule.severity);
    let mut evidences: Vec<Value> = a.evidence.iter().filter_map(evidence).collect();
    if evidences.is_empty() {
        // Alerts without event evidence (e.g. in-band notices) still carry what they know.
        let mut ev = Map::new();
        if let Some(p) = &a.process {
            ev.insert("process".into(), alert_process(p));
        }
        if let Some(c) = &a.credential {
            ev.insert("file".into(), file_obj(&c.watched));
        }
        if !ev.is_empty() {
            evidences.push(Value::Object(ev));
        }
    }
    let mut unmapped = Map::new();
    unmapped.insert("group".into(), json!(a.group));
    unmapped.insert("destinations".into(), json!(a.destinations));
    unmapped.insert("destination_count".into(), json!(a.destination_count));
    unmapped.insert("suppressed".into(), json!(a.suppressed));
    unmapped.insert("loss_overlap".into(), json!(a.loss_overlap));
    if a.evidence_dropped > 0 {
        unmapped.insert("evidence_dropped".into(), json!(a.evidence_dropped));
    }
    if let Some(i) = &a.identity {
        unmapped.insert("identity".into(), json!(i));
    }
    if let Some(c) = &a.credential {
        unmapped.insert("credential".into(), json!(c));
    }
    if !a.services.is_empty() {
        unmapped.insert("services".into(), json!(a.services));
    }
    if !a.destination_names.is_empty() {
        unmapped.insert("destination_names".into(), json!(a.destination_names));
    }
    let update = a.incident.as_ref().is_some_and(|i| i.revision > 0);
    let (activity_id, activity) = if update { (2, "Update") } else { (1, "Create") };
    if let Some(i) = &a.incident {
        // The processes are in `evidences`; the trees and revision have no OCSF attribute.
        unmapped.insert(
            "incident".into(),
            json!({"id": i.id, "revision": i.revision, "trees": i.trees}),
        );
    }
    let finding_uid = a.incident.as_ref().map_or(&a.id, |i| &i.id);
    let mut finding_info = json!({
        "uid": finding_uid,
        "title": a.rule.title,
        "analytic": {"type_id": 1, "type": "Rule", "uid": a.rule.id, "name": a.rule.title},
        "first_seen_time": ms(a.first_seen),
        "last_seen_time": ms(a.last_seen),
        "related_events_count": a.count,
    });
    if !a.attack.is_empty() {
        finding_info["attacks"] = Value::Array(a.attack.iter().map(|t| attack(t)).collect());
    }
    if update {
        finding_info["modified_time"] = json!(ms(a.last_seen));
    }
    let mut v = json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": ms(a.last_seen),
        "start_time": ms(a.first_seen),
        "end_time": ms(a.last_seen),
        "count": a.count,
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "message": a.rule.title,
        "metadata": {
            "uid": a.id,
            "version": OCSF_VERSION,
            "profiles": ["host"],
            "product": {
                "name": "detector",
                "vendor_name": "detector",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "finding_info": finding_info,
        // type_id 0 = Unknown: the agent does not classify its host.
        "device": {"hostname": a.host, "type_id": 0, "type": "Unknown"},
        "unmapped": unmapped,
    });
    if !evidences.is_empty() {
        v["evidences"] = Value::Array(evidences);
    }
    v
}

/// Encodes one inventory record as a single-line JSON document.
pub fn encode_inventory(r: &InventoryRecord, format: Format) -> Vec<u8> {
    match format {
        Format::Native => serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec()),
        Format::Ocsf => serde_json::to_vec(&inventory_ocsf(r)).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// The OCSF Live Evidence Info (5040, activity 1 Query, query type 2 File) for an inventory
/// record: the credential as `query_evidence.file` (keyed fingerprint as a hash of algorithm
/// 99 Other), the identities that used it as `query_evidence.users`, the rest (owner, uses,
/// reach, rotations, findings) in `unmapped`.
pub(crate) fn inventory_ocsf(r: &InventoryRecord) -> Value {
    let c = &r.credential;
    let mut file = match file_obj(&c.path) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    file.insert("uid".into(), json!(format!("{}:{}", c.dev, c.ino)));
    if let Some(m) = c.mtime {
        file.insert("modified_time".into(), json!(ms(m)));
    }
    if let Some(fp) = &c.fingerprint {
        let (alg, value) = fp.split_once(':').unwrap_or(("keyed", fp));
        file.insert(
            "hashes".into(),
            json!([{
                "algorithm_id": 99,
                "algorithm": format!("{} (keyed per host)", alg.to_ascii_uppercase()),
                "value": value,
            }]),
        );
    }
    let users: Vec<Value> = c
        .identities
        .iter()
        .map(|u| {
            let mut user = Map::new();
            user.insert("name".into(), json!(u.identity));
            // 99 Other: a workload identity, not a person's account.
            user.insert("type_id".into(), json!(99));
            user.insert("type".into(), json!("Workload identity"));
            user.insert("uid".into(), json!(u.last_process.uid.to_string()));
            Value::Object(user)
        })
        .collect();
    let mut evidence = Map::new();
    evidence.insert("query_type_id".into(), json!(2));
    evidence.insert("query_type".into(), json!("File"));
    evidence.insert("file".into(), Value::Object(file));
    if !users.is_empty() {
        evidence.insert("users".into(), Value::Array(users));
    }
    let (result_id, result) = if c.present {
        (1, "Exists")
    } else {
        (3, "Does not exist")
    };
    let mut unmapped = serde_json::to_value(c).unwrap_or_default();
    if let Value::Object(m) = &mut unmapped {
        // Carried by the OCSF attributes above.
        for k in ["path", "dev", "ino", "mtime", "fingerprint", "present"] {
            m.remove(k);
        }
    }
    json!({
        "activity_id": 1,
        "activity_name": "Query",
        "category_uid": 5,
        "category_name": "Discovery",
        "class_uid": 5040,
        "class_name": "Live Evidence Info",
        "type_uid": 504001,
        "type_name": "Live Evidence Info: Query",
        "time": ms(r.time),
        "severity_id": 1,
        "severity": "Informational",
        "query_result_id": result_id,
        "query_result": result,
        "message": format!(
            "credential {} ({}): {} identities, {} uses, owner {}",
            c.path,
            c.category,
            c.identities.len(),
            c.uses,
            c.owner.as_deref().unwrap_or("unknown")
        ),
        "metadata": {
            "uid": r.id,
            "version": OCSF_VERSION,
            "profiles": ["host"],
            "product": {
                "name": "detector",
                "vendor_name": "detector",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "device": {"hostname": r.host, "type_id": 0, "type": "Unknown"},
        "query_evidence": Value::Object(evidence),
        "unmapped": unmapped,
    })
}

/// The in-band alert announcing that sink `sink` dropped `dropped` alerts (`why`).
pub fn overflow_alert(sink: &str, dropped: u64, why: &str, host: &str, now_ns: u64) -> Alert {
    let mut group = std::collections::BTreeMap::new();
    group.insert("sink".to_string(), sink.to_string());
    group.insert("dropped".to_string(), dropped.to_string());
    group.insert("reason".to_string(), why.to_string());
    let mut a = agent_alert(
        OVERFLOW_RULE_ID,
        format!("sink {sink} dropped {dropped} alerts ({why})"),
        Severity::High,
        group,
        host,
        now_ns,
    );
    a.count = dropped.max(1);
    a
}

/// The in-band alert recording a SIGHUP reload: `ok` is its outcome, `summary` what changed
/// (or the positioned error that kept the previous set running).
pub(crate) fn reload_alert(ok: bool, summary: &str, host: &str, now_ns: u64) -> Alert {
    let outcome = if ok { "success" } else { "failure" };
    let mut group = std::collections::BTreeMap::new();
    group.insert("outcome".to_string(), outcome.to_string());
    group.insert("summary".to_string(), summary.to_string());
    agent_alert(
        RELOAD_RULE_ID,
        format!("reload {outcome}: {summary}"),
        Severity::Info,
        group,
        host,
        now_ns,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::alert::{AlertCredential, AlertProcess, AlertRule};

    /// A realistic alert for tests (SSH key read then SSH fan-out).
    pub(crate) fn sample_alert(n: u64) -> Alert {
        let ev: Vec<Event> = serde_json::from_value(json!([
            {"ts": 1_700_000_000_000_000_000u64, "kind": "cred_read",
             "process": {"pid": 42, "tgid": 42, "ppid": 1, "start": 5, "uid": 0, "gid": 0,
                         "comm": "cat", "exe": "/usr/bin/cat", "argv": ["cat", "/root/.ssh/id_rsa"],
                         "ancestors": [], "cgroup_id": 1, "mntns": 1, "netns": 1, "workload": {}},
             "file": {"watched": "/root/.ssh/id_rsa", "category": "ssh_key", "dev": 1, "ino": 2, "via": "syscall"}},
            {"ts": 1_700_000_001_000_000_000u64, "kind": "connect",
             "process": {"pid": 43, "tgid": 43, "ppid": 1, "start": 6, "uid": 0, "gid": 0,
                         "comm": "ssh", "exe": "/usr/bin/ssh", "argv": ["ssh", "10.0.0.7"],
                         "ancestors": [], "cgroup_id": 1, "mntns": 1, "netns": 1, "workload": {}},
             "net": {"protocol": "tcp", "family": 2, "direction": "outbound", "src_addr": "10.0.0.1",
                     "src_port": 40000, "dst_addr": "10.0.0.7", "dst_port": 22, "outcome": "established", "sock": 1}}
        ]))
        .unwrap_or_else(|e| panic!("sample events: {e}"));
        Alert {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            rule: AlertRule {
                id: "ssh-key-then-fanout".into(),
                title: "SSH key read then SSH fan-out".into(),
                severity: Severity::High,
            },
            attack: vec!["T1552.004".into(), "T1021".into()],
            host: "web-1".into(),
            identity: Some("unit:sshd.service".into()),
            process: Some(AlertProcess {
                tgid: 43,
                start: 6,
                exe: "/usr/bin/ssh".into(),
                argv: vec!["ssh".into(), "10.0.0.7".into()],
                user: Some("root".into()),
                uid: 0,
            }),
            credential: Some(AlertCredential {
                watched: "/root/.ssh/id_rsa".into(),
                category: "ssh_key".into(),
                fingerprint: None,
            }),
            group: [("process.tgid".to_string(), "43".to_string())].into(),
            destinations: vec!["10.0.0.7:22".into()],
            destination_count: 1,
            services: vec![],
            destination_names: vec![],
            count: 2,
            first_seen: 1_700_000_000_000_000_000,
            last_seen: 1_700_000_001_000_000_000,
            evidence: ev,
            evidence_dropped: 0,
            suppressed: 0,
            loss_overlap: false,
            incident: None,
        }
    }

    #[test]
    fn native_is_the_alert() {
        let a = sample_alert(1);
        let back: Alert = serde_json::from_slice(&encode(&a, Format::Native)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn ocsf_fields() {
        let a = sample_alert(1);
        let v: Value = serde_json::from_slice(&encode(&a, Format::Ocsf)).unwrap();
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["type_uid"], 200401);
        assert_eq!(v["category_uid"], 2);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["time"], 1_700_000_001_000u64);
        assert_eq!(v["finding_info"]["uid"], a.id);
        assert_eq!(v["finding_info"]["analytic"]["type_id"], 1);
        assert_eq!(v["finding_info"]["analytic"]["uid"], "ssh-key-then-fanout");
        assert_eq!(
            v["finding_info"]["attacks"][0]["sub_technique"]["uid"],
            "T1552.004"
        );
        assert_eq!(v["finding_info"]["attacks"][0]["technique"]["uid"], "T1552");
        assert_eq!(v["finding_info"]["attacks"][1]["technique"]["uid"], "T1021");
        assert_eq!(v["finding_info"]["first_seen_time"], 1_700_000_000_000u64);
        assert_eq!(v["device"]["hostname"], "web-1");
        assert_eq!(v["metadata"]["product"]["name"], "detector");
        assert_eq!(v["metadata"]["version"], OCSF_VERSION);
        let ev = v["evidences"].as_array().unwrap();
        assert_eq!(ev[0]["file"]["path"], "/root/.ssh/id_rsa");
        assert_eq!(ev[0]["process"]["pid"], 42);
        assert_eq!(ev[1]["dst_endpoint"]["ip"], "10.0.0.7");
        assert_eq!(ev[1]["dst_endpoint"]["port"], 22);
    }

    /// A credential's inventory record: alice's key, used by her ssh and by bob's cat.
    pub(crate) fn sample_inventory() -> InventoryRecord {
        use crate::ledger::{input, model::Model, policy::Policy, query};
        let pol = Policy::new(
            &crate::config::LedgerConfig::default(),
            std::sync::Arc::new(crate::enrich::identity::IdentityConfig::default()),
        );
        let mut m = Model::new();
        let mut out = Vec::new();
        let t0 = 1_780_000_000_000_000_000u64;
        for (i, (who, exe, user, uid)) in [
            ("exe:/usr/bin/ssh@alice", "/usr/bin/ssh", "alice", 1000),
            ("exe:/usr/bin/cat@bob", "/usr/bin/cat", "bob", 1001),
        ]
        .into_iter()
        .enumerate()
        {
            let actor = input::Actor {
                identity: who.into(),
                tgid: 100 + i as u32,
                start: 1,
                tree: 90,
                exe: exe.into(),
                parent_exe: None,
                user: Some(user.into()),
                uid,
                pod_uid: None,
            };
            m.apply_use(
                &input::Access {
                    ts: t0 + i as u64,
                    path: "/home/alice/.ssh/id_ed25519".into(),
                    name: None,
                    category: "ssh_key".into(),
                    dev: 2049,
                    ino: 77,
                    mtime: Some(t0 - 86_400_000_000_000),
                    fingerprint: Some("hmac-sha256:00112233445566778899aabbccddeeff".into()),
                    actor: actor.clone(),
                },
                &pol,
                &mut out,
            );
            m.apply_contact(
                &input::Contact {
                    ts: t0 + 5,
                    identity: actor.identity.clone(),
                    tgid: actor.tgid,
                    start: actor.start,
                    tree: actor.tree,
                    addr: "10.0.0.7".into(),
                    port: 22,
                    name: None,
                },
                &pol,
            );
        }
        let summary = pol.summary();
        let recs = query::Records::new(&m, &summary, t0 + 10);
        let rec = recs
            .list(&query::Filter::default())
            .pop()
            .unwrap_or_else(|| panic!("a record"));
        InventoryRecord::new(rec, "web-1", t0 + 10)
    }

    #[test]
    fn inventory_records_native_and_ocsf() {
        let r = sample_inventory();
        let back: InventoryRecord =
            serde_json::from_slice(&encode_inventory(&r, Format::Native)).unwrap();
        assert_eq!(back.credential.path, r.credential.path);
        assert_eq!(back.record, "credential_inventory");
        let v: Value = serde_json::from_slice(&encode_inventory(&r, Format::Ocsf)).unwrap();
        assert_eq!(v["class_uid"], 5040);
        assert_eq!(v["type_uid"], 504001);
        assert_eq!(v["category_uid"], 5);
        assert_eq!(v["query_result_id"], 1);
        let e = &v["query_evidence"];
        assert_eq!(e["query_type_id"], 2);
        assert_eq!(e["file"]["path"], "/home/alice/.ssh/id_ed25519");
        assert_eq!(e["file"]["uid"], "2049:77");
        assert_eq!(e["file"]["hashes"][0]["algorithm_id"], 99);
        assert_eq!(
            e["file"]["hashes"][0]["value"],
            "00112233445566778899aabbccddeeff"
        );
        assert_eq!(e["users"].as_array().unwrap().len(), 2);
        assert_eq!(v["unmapped"]["owner"], "user:alice");
        assert_eq!(v["unmapped"]["flags"]["shared"], true);
        assert_eq!(v["unmapped"]["reach"][0]["addr"], "10.0.0.7");
        assert!(v["unmapped"].get("path").is_none());
    }

    /// An incident's update is an OCSF Update of the incident's finding; names and services
    /// of destinations go to the endpoint's `hostname` and `svc_name`.
    #[test]
    fn ocsf_incident_update_and_names() {
        let mut a = sample_alert(2);
        if let Some(n) = a.evidence[1].net.as_mut() {
            n.dst_name = Some("b.internal".into());
            n.service = Some("metrics-b".into());
        }
        a.services = vec!["metrics-b".into()];
        a.destination_names = vec!["b.internal".into()];
        let v = ocsf(&a);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["finding_info"]["uid"], a.id);
        assert_eq!(v["evidences"][1]["dst_endpoint"]["hostname"], "b.internal");
        assert_eq!(v["evidences"][1]["dst_endpoint"]["svc_name"], "metrics-b");
        assert_eq!(v["unmapped"]["services"][0], "metrics-b");
        assert_eq!(v["unmapped"]["destination_names"][0], "b.internal");
        a.incident = Some(crate::engine::alert::AlertIncident {
            id: "00000000-0000-4000-8000-000000000001".into(),
            revision: 1,
            trees: vec![600, 602],
            processes: vec![],
        });
        let v = ocsf(&a);
        assert_eq!(v["activity_id"], 2);
        assert_eq!(v["activity_name"], "Update");
        assert_eq!(v["type_uid"], 200402);
        assert_eq!(v["type_name"], "Detection Finding: Update");
        assert_eq!(
            v["finding_info"]["uid"],
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(v["metadata"]["uid"], a.id);
        assert_eq!(v["finding_info"]["modified_time"], 1_700_000_001_000u64);
        assert_eq!(v["unmapped"]["incident"]["trees"][1], 602);
        // The first alert of an incident of two groups is still a Create.
        a.incident.as_mut().unwrap().revision = 0;
        assert_eq!(ocsf(&a)["activity_id"], 1);
    }

    #[test]
    fn reload_alert_carries_outcome_and_summary() {
        let a = reload_alert(false, "r.yaml:3:5: unknown field", "h", 1);
        assert_eq!(a.rule.id, RELOAD_RULE_ID);
        assert_eq!(a.rule.severity, Severity::Info);
        assert_eq!(a.group["outcome"], "failure");
        assert_eq!(a.group["summary"], "r.yaml:3:5: unknown field");
        let v = ocsf(&a);
        assert_eq!(v["finding_info"]["analytic"]["uid"], RELOAD_RULE_ID);
    }

    #[test]
    fn overflow_alert_is_an_alert() {
        let a = overflow_alert("siem", 7, "spool full, drop_oldest", "h", 1);
        assert_eq!(a.rule.id, OVERFLOW_RULE_ID);
        assert_eq!(a.group["dropped"], "7");
        let v: Value = serde_json::from_slice(&encode(&a, Format::Ocsf)).unwrap();
        assert_eq!(v["finding_info"]["analytic"]["uid"], OVERFLOW_RULE_ID);
    }
}
