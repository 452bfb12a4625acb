//! The deployment files: the systemd unit passes `systemd-analyze verify` and the DaemonSet
//! grants what the agent needs, and both agree with the capabilities the agent keeps.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use serde_json::Value;
use tests::actor_path;

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

/// `CAP_BPF` → `BPF`: the names Kubernetes uses.
fn short(c: &str) -> String {
    c.trim_start_matches("CAP_").to_string()
}

/// Capabilities the running agent keeps (it drops the rest once attached).
fn kept() -> BTreeSet<String> {
    detector::privs::KEPT
        .iter()
        .map(|c| short(&c.to_string()))
        .collect()
}

/// What start-up needs on top (load programs, attach tracepoints and cgroup hooks).
fn at_start() -> BTreeSet<String> {
    ["BPF", "PERFMON", "NET_ADMIN"]
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn systemd_unit_verifies_and_bounds_capabilities_to_what_the_agent_uses() {
    let text = std::fs::read_to_string(deploy("detector.service")).unwrap();
    let setting = |k: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k}= missing"))
            .to_string()
    };
    let bounding: BTreeSet<String> = setting("CapabilityBoundingSet")
        .split_whitespace()
        .map(short)
        .collect();
    let want: BTreeSet<String> = kept().union(&at_start()).cloned().collect();
    assert_eq!(bounding, want);
    assert_eq!(setting("AmbientCapabilities"), "");
    assert_eq!(setting("NoNewPrivileges"), "yes");
    assert_eq!(setting("ProtectSystem"), "strict");
    // The agent stats, watches and fingerprints credential files in home directories.
    assert_eq!(setting("ProtectHome"), "read-only");
    assert!(setting("ReadWritePaths").contains("/var/lib/detector"));
    assert_eq!(setting("ExecReload"), "/bin/kill -HUP $MAINPID");
    // systemd-analyze checks that the executable exists: point it at the one just built.
    let dir = tempdir();
    let unit = dir.join("detector.service");
    let detector = actor_path().with_file_name("detector");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/detector", detector.to_str().unwrap()),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("detector-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn daemonset_has_host_pid_explicit_capabilities_and_the_mounts_it_needs() {
    let text = std::fs::read_to_string(deploy("daemonset.yaml")).unwrap();
    let ds: Value = serde_norway::from_str(&text).expect("daemonset.yaml parses");
    assert_eq!(ds["kind"], "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let add: BTreeSet<String> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = kept().union(&at_start()).cloned().collect();
    assert_eq!(add, want);
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", "/etc/detector/agent.yaml"])
    );

    // Every mount has its volume; host paths are mounted where the agent (and the watch
    // list) expects them.
    let volumes: std::collections::BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let mut mounts = std::collections::BTreeMap::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let path = m["mountPath"].as_str().unwrap();
        let v = volumes
            .get(name)
            .unwrap_or_else(|| panic!("mount {name} has no volume"));
        if let Some(host) = v["hostPath"]["path"].as_str() {
            assert_eq!(host, path, "{name} is mounted where the host has it");
        }
        mounts.insert(path.to_string(), m["readOnly"] == true);
    }
    for (path, read_only) in [
        ("/sys/kernel/btf", true),
        ("/sys/kernel/tracing", true),
        ("/sys/fs/cgroup", true),
        ("/sys/fs/bpf", false),
        ("/var/lib/kubelet/pods", true),
        ("/etc/passwd", true),
        ("/home", true),
        ("/root", true),
        ("/var/lib/detector", false),
        ("/etc/detector", true),
    ] {
        assert_eq!(mounts.get(path), Some(&read_only), "mount {path}");
    }
    let config = volumes["config"];
    assert_eq!(config["configMap"]["name"], "detector-config");
}
