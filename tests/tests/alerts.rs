//! What an alert says, through the real binary: one alert per incident for real processes
//! under `detector run` (a shell and its subshell both read a key, the subshell fans out: two
//! process-tree groups, one alert naming both trees), and service and resolved names of the
//! destinations in `detector replay`'s alerts.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use tests::{actor_path, Link, Scratch};

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

/// The issue's incident, for real: `bash` reads the key with `cat`, then a subshell reads it
/// again with its own `cat` and connects to three hosts (in a network namespace this test
/// made) from the subshell itself, well within a second. The connects join the shell's tree
/// and the subshell's; `machine-speed-credential-reuse` must alert once, naming both.
#[test]
fn a_shell_and_its_subshell_are_one_incident_under_the_real_agent() {
    let s = Scratch::new("alerts-incident");
    let key = s.file("keys/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----");
    let link = Link::new("inc", 233);
    let hosts: Vec<String> = (0..3).map(|i| format!("10.233.0.{}", 10 + i)).collect();
    for a in &hosts {
        tests::sh(&[
            "ip",
            "-n",
            &link.b.0,
            "addr",
            "add",
            &format!("{a}/32"),
            "dev",
            "lo",
        ]);
    }
    let mut agent = Command::new(detector())
        .args([
            "run",
            "--state-dir",
            s.path("state").to_str().unwrap(),
            "--watch",
        ])
        .arg(format!("{}=ssh_key", key.display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let alerts = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let stdout = agent.stdout.take().unwrap();
    let sink = alerts.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
            sink.lock().unwrap().push(v);
        }
    });
    let err = agent.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if !seen && line.contains("capturing") {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the agent never started capturing");

    let script = r#"key=$1; shift
cat "$key" > /dev/null
(
  echo "$BASHPID"
  cat "$key" > /dev/null
  for h in "$@"; do { : > "/dev/tcp/$h/22"; } 2>/dev/null; done
)
exit 0"#;
    let child = Command::new("ip")
        .args(["netns", "exec", &link.a.0, "bash", "-c", script, "incident"])
        .arg(&key)
        .args(&hosts)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shell = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "script: {:?}", o.status);
    let subshell: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("the subshell's pid");
    assert_ne!(shell, subshell);

    let ours = |a: &serde_json::Value| {
        let trees: Vec<u64> = a["incident"]["trees"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        let group = a["group"]["process.tree"].as_str().unwrap_or_default();
        a["rule"]["id"] == "machine-speed-credential-reuse"
            && [shell, subshell]
                .iter()
                .any(|&p| group == p.to_string() || trees.contains(&u64::from(p)))
    };
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !alerts.lock().unwrap().iter().any(ours) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for a second alert, were there one, to come out.
    std::thread::sleep(Duration::from_secs(3));
    tests::sh(&["kill", "-TERM", &agent.id().to_string()]);
    assert!(agent.wait().unwrap().success());
    let got: Vec<serde_json::Value> = alerts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| ours(a))
        .cloned()
        .collect();
    assert_eq!(got.len(), 1, "one alert for the incident: {got:#?}");
    let a = &got[0];
    let mut want = [shell, subshell];
    want.sort();
    let trees: Vec<u64> = a["incident"]["trees"]
        .as_array()
        .unwrap_or_else(|| panic!("no incident trees: {a:#}"))
        .iter()
        .filter_map(|x| x.as_u64())
        .collect();
    assert_eq!(trees, want.map(u64::from), "{a:#}");
    assert_eq!(a["incident"]["id"], a["id"], "{a:#}");
    assert_eq!(a["incident"]["revision"], 0, "{a:#}");
    let procs = a["incident"]["processes"].as_array().unwrap();
    // Both readers (two `cat`s, one per tree) and the connecting subshell.
    let cats = procs.iter().filter(|p| p["exe"] == "/usr/bin/cat").count();
    assert_eq!(cats, 2, "{a:#}");
    assert!(procs.iter().any(|p| p["tgid"] == subshell), "{a:#}");
    assert_eq!(a["destination_count"], 3, "{a:#}");
}

/// `services: {metrics-b: [10.213.0.11:9100]}` in identities.yaml: a first-seen-peer alert
/// for 10.213.0.11:9100 names `metrics-b` (and the name the address was resolved from) in
/// the alert and its evidence, natively and in OCSF.
#[test]
fn service_names_reach_the_alert_and_its_evidence() {
    let s = Scratch::new("alerts-services");
    let ids = s.file(
        "identities.yaml",
        "identities:
  - name: scraper
    match: {exe: /usr/bin/prometheus}
    peers: [metrics-a]
services:
  metrics-a: [10.213.0.10:9100]
  metrics-b: [10.213.0.11:9100]
",
    );
    let ev = |ts: u64, addr: &str, name: Option<&str>| {
        let mut net = serde_json::json!({"protocol": "tcp", "family": 4, "direction": "outbound",
            "src_addr": "0.0.0.0", "src_port": 0, "dst_addr": addr, "dst_port": 9100,
            "outcome": "in_progress", "conn": ts, "off_host": true});
        if let Some(n) = name {
            net["dst_name"] = serde_json::json!(n);
        }
        serde_json::json!({"ts": ts, "kind": "connect",
            "process": {"pid": 900, "tgid": 900, "ppid": 1, "start": 5, "uid": 65534, "gid": 65534,
                        "comm": "prometheus", "exe": "/usr/bin/prometheus", "cgroup_id": 1},
            "net": net})
        .to_string()
    };
    let rec = s.file(
        "rec.ndjson",
        &[
            ev(1_700_000_000_000_000_000, "10.213.0.10", None),
            ev(
                1_700_000_001_000_000_000,
                "10.213.0.11",
                Some("node-b.metrics.internal"),
            ),
        ]
        .join("\n"),
    );
    let o = Command::new(detector())
        .args(["replay", rec.to_str().unwrap(), "--identities"])
        .arg(&ids)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fsp: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "first-seen-peer")
        .collect();
    assert_eq!(fsp.len(), 1, "{alerts:#?}");
    let a = fsp[0];
    assert_eq!(a["destinations"], serde_json::json!(["10.213.0.11:9100"]));
    assert_eq!(a["services"], serde_json::json!(["metrics-b"]), "{a:#}");
    assert_eq!(
        a["destination_names"],
        serde_json::json!(["node-b.metrics.internal"]),
        "{a:#}"
    );
    assert_eq!(a["evidence"][0]["net"]["service"], "metrics-b", "{a:#}");
    assert_eq!(
        a["evidence"][0]["net"]["dst_name"], "node-b.metrics.internal",
        "{a:#}"
    );
    // OCSF: the endpoint's svc_name and hostname.
    let alert: detector::engine::Alert = serde_json::from_value(a.clone()).unwrap();
    let v = detector::sinks::format::ocsf(&alert);
    assert_eq!(v["evidences"][0]["dst_endpoint"]["svc_name"], "metrics-b");
    assert_eq!(
        v["evidences"][0]["dst_endpoint"]["hostname"],
        "node-b.metrics.internal"
    );
}
