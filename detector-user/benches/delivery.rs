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

/// A real HTTP/1.1 server (hyper) on loopback answering 200 to every POST and counting the
/// alert ids in the bodies (the same count for the generic, Splunk HEC and Elastic bodies:
/// `_bulk`'s action line says `"_id"`, which the pattern does not match).
fn http_counter(count: Arc<AtomicU64>) -> u16 {
    use http_body_util::BodyExt as _;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let count = count.clone();
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let pat: &[u8] = br#""id":"00000000-0000-4000-8000-"#;
                                let n = body.windows(pat.len()).filter(|w| *w == pat).count();
                                count.fetch_add(n as u64, Relaxed);
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(
                                        br#"{"errors":false,"items":[]}"#,
                                    )),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    port
}

fn run(kind: &str, yaml: &str, n: u64, count: Option<Arc<AtomicU64>>) {
    let cfg = AgentConfig::parse(yaml, std::path::Path::new("bench.yaml")).expect("config");
    let set = SinkSet::from_config(&cfg.sinks, "bench").expect("sinks");
    let t0 = Instant::now();
    for i in 0..n {
        set.send(alert(i));
        // Sustained throughput, not burst absorption: keep at most 8 K alerts in flight so the
        // 16 K channel to the sink never overflows (overflow drops are counted and announced,
        // which would make the figure meaningless).
        if let (Some(c), true) = (&count, i % 1024 == 1023) {
            let end = Instant::now() + Duration::from_secs(60);
            while c.load(Relaxed) + 8192 < i + 1 && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
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
    for flavor in ["generic", "splunk_hec", "elastic"] {
        let c = Arc::new(AtomicU64::new(0));
        let port = http_counter(c.clone());
        run(
            &format!("http {flavor} (batch 100)"),
            &format!("sinks:\n  - http: {{url: 'http://127.0.0.1:{port}/', flavor: {flavor}, batch: {{max_alerts: 100}}}}\n"),
            n,
            Some(c),
        );
    }
}
