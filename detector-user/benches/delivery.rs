//! Delivery throughput (alerts/s) per sink kind, each against a real local receiver:
//! `cargo bench -p detector-user --bench delivery`. Under `cargo test --all-targets` it does a
//! small smoke run.
//!
//! Each figure is N alerts handed to a SinkSet of one sink, until the receiver has all of them
//! (file: until the shutdown flush returns).

use std::{
    io::Read as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use detector::{config::AgentConfig, engine::Alert, sinks::SinkSet};

fn alert(n: u64) -> Alert {
    let v = serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "rule": {"id": "ssh-key-then-ssh-fanout", "title": "SSH key read then SSH fan-out", "severity": "high"},
        "attack": ["T1552.004", "T1021.004"], "host": "web-1",
        "process": {"tgid": 4242, "start": 99, "exe": "/usr/bin/ssh", "argv": ["ssh", "10.0.0.7"], "uid": 0},
        "credential": {"watched": "/root/.ssh/id_ed25519", "category": "ssh_key"},
        "group": {"process.tgid": "4242"}, "destinations": ["10.0.0.7:22", "10.0.0.8:22", "10.0.0.9:22"],
        "destination_count": 3, "count": 4, "first_seen": 1u64, "last_seen": 2u64, "evidence": [],
        "suppressed": 0, "loss_overlap": false
    });
    serde_json::from_value(v).expect("bench alert")
}

/// Counts alert ids (`id="` in the structured data) arriving over syslog TCP.
fn tcp_counter(count: Arc<AtomicU64>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 1 << 16];
                let mut carry = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    carry.extend_from_slice(&buf[..n]);
                    let pat: &[u8] = b"id=\"";
                    let mut found = 0;
                    let mut last = 0;
                    for i in 0..carry.len().saturating_sub(pat.len() - 1) {
                        if &carry[i..i + pat.len()] == pat {
                            found += 1;
                            last = i + pat.len();
                        }
                    }
                    count.fetch_add(found, Relaxed);
                    carry.drain(..last.max(carry.len().saturating_sub(pat.len())));
                }
            });
        }
    });
    port
}

fn run(kind: &str, yaml: &str, n: u64, count: Option<Arc<AtomicU64>>) {
    let cfg = AgentConfig::parse(yaml, std::path::Path::new("bench.yaml")).expect("config");
    let set = SinkSet::from_config(&cfg.sinks, "bench").expect("sinks");
    let t0 = Instant::now();
    for i in 0..n {
        set.send(alert(i));
    }
    if let Some(c) = &count {
        let end = Instant::now() + Duration::from_secs(120);
        while c.load(Relaxed) < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    set.shutdown_blocking(Duration::from_secs(60));
    let dt = t0.elapsed();
    let got = count.map(|c| c.load(Relaxed)).unwrap_or(n);
    println!(
        "{kind:<34} {n:>7} alerts  {:>9.0} alerts/s  (received {got})",
        n as f64 / dt.as_secs_f64()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 50_000 } else { 200 };
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().display();
    run(
        "file (ndjson)",
        &format!("sinks:\n  - file: {{path: {p}/a.ndjson, max_bytes: 10000000}}\n"),
        n,
        None,
    );
    run(
        "file (ocsf)",
        &format!("sinks:\n  - file: {{path: {p}/b.ndjson, format: ocsf, max_bytes: 10000000}}\n"),
        n,
        None,
    );
    let c = Arc::new(AtomicU64::new(0));
    let port = tcp_counter(c.clone());
    run(
        "syslog tcp",
        &format!("sinks:\n  - syslog: {{transport: tcp, address: '127.0.0.1:{port}'}}\n"),
        n,
        Some(c.clone()),
    );
    let c = Arc::new(AtomicU64::new(0));
    let port = tcp_counter(c.clone());
    run(
        "syslog tcp + spool (fsync always)",
        &format!("sinks:\n  - syslog: {{transport: tcp, address: '127.0.0.1:{port}', spool: {{dir: {p}/sp1}}}}\n"),
        n,
        Some(c),
    );
}
