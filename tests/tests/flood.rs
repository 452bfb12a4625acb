//! Scaled-down versions of `cargo xtask bench flood` and `cargo xtask bench latency`, against
//! the real `detector run` binary with its default rules and a file sink.
//!
//! Flood: a 2,000-port `/dev/tcp` sweep by bash of a host in a test network namespace raises
//! `port-sweep`; then, with the agent stopped (SIGSTOP) and a 1 MiB ring, a 30,000-port sweep
//! of a second host overflows the ring: after SIGCONT the kernel's losses arrive in-band as
//! `loss` events (and on /metrics), and `port-sweep` still fires from what the ring held.
//!
//! Latency harness: 50 credential-reuse triggers, each in a fresh process tree, each get their
//! own `machine-speed-credential-reuse` alert, seen after the trigger's stamp.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use tests::{
    actor_path,
    bench::{
        match_alerts, metric_sum, metric_with, AgentRun, AlertTail, CredReuse, ScratchDir,
        SeenLine, TestNet,
    },
};

fn sweep(host: std::net::Ipv4Addr, ports: u32) -> u32 {
    let mut c = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for ((p=1;p<={ports};p++)); do exec 3<>/dev/tcp/{host}/$p; done 2>/dev/null; exit 0"
        ))
        .spawn()
        .expect("bash");
    let pid = c.id();
    assert!(c.wait().expect("bash").success());
    pid
}

fn port_sweep_alert(
    tail: &AlertTail,
    lines: &mut Vec<SeenLine>,
    pid: u32,
    wait: Duration,
) -> Option<serde_json::Value> {
    let end = Instant::now() + wait;
    loop {
        lines.extend(tail.take());
        let hit = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.line).ok())
            .find(|v| v["rule"]["id"] == "port-sweep" && v["process"]["tgid"] == pid);
        if hit.is_some() || Instant::now() > end {
            return hit;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn port_sweep_fires_and_kernel_losses_are_reported_in_band() {
    let detector = actor_path().with_file_name("detector");
    assert!(
        detector.exists(),
        "cargo xtask test builds the detector binary"
    );
    let net = TestNet::new("flood", 2).expect("test namespace");
    let dir = ScratchDir::new("flood-test").expect("scratch");
    let agent = AgentRun::start(
        &detector,
        &dir.0,
        &["--events".into(), "--ring-mib".into(), "1".into()],
    )
    .expect("detector run");
    let tail = AlertTail::start(&agent.alerts).expect("alert tail");
    let mut lines = Vec::new();

    // 1. An ordinary sweep: detected, every connect received.
    let pid = sweep(net.hosts[0], 2_000);
    let a = port_sweep_alert(&tail, &mut lines, pid, Duration::from_secs(15))
        .expect("no port-sweep alert for a 2,000-port sweep");
    assert_eq!(a["group"]["net.dst_addr"], net.hosts[0].to_string(), "{a}");
    assert!(a["destination_count"].as_u64().unwrap_or(0) >= 20, "{a}");
    // One connect event per port (plus whatever else the host does meanwhile); the alert can
    // come before the agent has drained the rest of the sweep, so poll.
    let end = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let m = agent.metrics().expect("metrics");
        let connects = metric_with(&m, "detector_events_total", "kind=\"connect\"").unwrap_or(0.0);
        if connects >= 2_000.0 {
            break m;
        }
        assert!(
            Instant::now() < end,
            "the sweep's connects were not all received: {connects}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost_before = metric_sum(&m, "detector_kernel_lost_total");

    // 2. The agent stopped while 30,000 connects (~60,000 records) go into a 1 MiB ring.
    agent.signal(libc::SIGSTOP);
    let pid = sweep(net.hosts[1], 30_000);
    agent.signal(libc::SIGCONT);
    let a = port_sweep_alert(&tail, &mut lines, pid, Duration::from_secs(15))
        .expect("no port-sweep alert from the records the ring held");
    assert_eq!(a["group"]["net.dst_addr"], net.hosts[1].to_string(), "{a}");
    // Losses are checked every 50 ms; give the agent time to report them.
    let end = Instant::now() + Duration::from_secs(10);
    let lost = loop {
        let m = agent.metrics().expect("metrics");
        let lost = metric_sum(&m, "detector_kernel_lost_total") - lost_before;
        if lost > 0.0 || Instant::now() > end {
            break lost;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        lost > 0.0,
        "an overflowing ring reported no loss on /metrics"
    );
    std::thread::sleep(Duration::from_millis(500));
    let total = metric_sum(
        &agent.metrics().expect("metrics"),
        "detector_kernel_lost_total",
    );
    let (_, st) = agent.stop().expect("stop");
    assert!(st.success(), "agent exit: {st}");
    // In band: `loss` events in the agent's event stream add up to what /metrics counted.
    let events = std::fs::read_to_string(dir.0.join("stdout.ndjson")).expect("events");
    let in_band: u64 = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "loss")
        .map(|v| v["loss"]["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        in_band as f64, total,
        "in-band loss events disagree with /metrics"
    );
    drop(net);
}

#[test]
fn every_credential_reuse_trigger_gets_its_own_alert() {
    let detector = actor_path().with_file_name("detector");
    assert!(
        detector.exists(),
        "cargo xtask test builds the detector binary"
    );
    let net = TestNet::new("lat", 3).expect("test namespace");
    let dir = ScratchDir::new("latency-test").expect("scratch");
    let cred = dir.0.join("bench.key");
    std::fs::write(&cred, "not a real secret\n").unwrap();
    let agent = AgentRun::start(
        &detector,
        &dir.0,
        &["--watch".into(), format!("{}=secret", cred.display())],
    )
    .expect("detector run");
    let tail = AlertTail::start(&agent.alerts).expect("alert tail");
    let mut trig = CredReuse::new(&cred, &net.hosts, 9).expect("trigger");
    let mut fired = Vec::new();
    while fired.len() < 50 {
        if let Some(f) = trig.fire().expect("trigger") {
            fired.push(f);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let trees: std::collections::HashSet<u32> = fired.iter().map(|f| f.tree).collect();
    assert_eq!(trees.len(), fired.len(), "process trees must be distinct");
    let end = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    let matched = loop {
        lines.extend(tail.take());
        let m = match_alerts(&fired, &lines, "machine-speed-credential-reuse");
        if m.iter().all(Option::is_some) || Instant::now() > end {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, st) = agent.stop().expect("stop");
    assert!(st.success(), "agent exit: {st}");
    let missing = matched.iter().filter(|m| m.is_none()).count();
    assert_eq!(missing, 0, "{missing} of 50 triggers got no alert");
    for (f, m) in fired.iter().zip(&matched) {
        let (seen, a) = m.as_ref().unwrap();
        assert!(*seen > f.stamp_ns, "alert seen before its trigger");
        assert_eq!(a["process"]["tgid"], f.pid, "{a}");
        assert_eq!(a["group"]["process.tree"], f.tree.to_string(), "{a}");
        assert!(a["destination_count"].as_u64().unwrap_or(0) >= 3, "{a}");
    }
}
