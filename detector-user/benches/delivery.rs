//! Delivery throughput (alerts/s) per sink kind, each against a real local receiver:
//! `cargo bench -p detector-user --bench delivery`. Under `cargo test --all-targets` it does a
//! small smoke run.
//!
//! Each figure is N alerts handed to a SinkSet of one sink, paced to at most 8 K in flight,
//! until the receiver has all of them (file: until the sink wrote them all; syslog UDP: until
//! the sink sent them all, with what the receiver got reported beside). The kinds run in
//! interleaved rounds; the median round is reported.

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

/// Counts alert ids arriving as syslog UDP datagrams (one alert each), with a 64 MiB receive
/// buffer so that the counter, not the kernel, is what falls behind if anything does.
fn udp_counter(count: Arc<AtomicU64>) -> u16 {
    use std::os::fd::AsRawFd as _;
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let size: libc::c_int = 64 << 20;
    // SAFETY: a valid socket fd and a c_int option value of the right size. SO_RCVBUFFORCE
    // (root) lifts the rmem_max cap; without root SO_RCVBUF gives what the limit allows.
    unsafe {
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            if libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
            {
                break;
            }
        }
    }
    let port = s.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let pat: &[u8] = b"id=\"";
        while let Ok(n) = s.recv(&mut buf) {
            if buf[..n].windows(pat.len()).any(|w| w == pat) {
                count.fetch_add(1, Relaxed);
            }
        }
    });
    port
}

/// How the sender is paced so that the figure is sustained throughput, not burst absorption.
#[derive(Clone, Copy)]
enum Pace {
    /// At most 8 K alerts beyond what the receiver counted.
    Receiver,
    /// At most 8 K alerts beyond what the sink delivered (file: written; UDP: handed to the
    /// network, which has no flow control, so the receiver's count cannot pace; what it got
    /// is reported beside the rate).
    Sent,
}

/// One measurement: alerts/s and alerts received.
fn run(yaml: &str, n: u64, count: Option<Arc<AtomicU64>>, pace: Pace) -> (f64, u64) {
    let cfg = AgentConfig::parse(yaml, std::path::Path::new("bench.yaml")).expect("config");
    let set = SinkSet::from_config(&cfg.sinks, "bench").expect("sinks");
    let delivered = set.stats()[0].1.clone();
    let done = |c: &Option<Arc<AtomicU64>>| match pace {
        Pace::Receiver => c.as_ref().map_or(u64::MAX, |c| c.load(Relaxed)),
        Pace::Sent => delivered.delivered.load(Relaxed),
    };
    let t0 = Instant::now();
    for i in 0..n {
        set.send(alert(i));
        // Keep at most 8 K alerts in flight (a burst would measure the overflow spool).
        if i % 1024 == 1023 {
            let end = Instant::now() + Duration::from_secs(60);
            while done(&count) + 8192 < i + 1 && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let end = Instant::now() + Duration::from_secs(120);
    while done(&count) < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    set.shutdown_blocking(Duration::from_secs(60));
    let dt = t0.elapsed();
    if count.is_some() && matches!(pace, Pace::Sent) {
        // Datagrams in flight on loopback.
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = count.map_or_else(|| delivered.delivered.load(Relaxed), |c| c.load(Relaxed));
    (n as f64 / dt.as_secs_f64(), got)
}

/// A sink config, the receiver's counter (if any) and the pacing.
type Setup = (String, Option<Arc<AtomicU64>>, Pace);

struct Case {
    kind: &'static str,
    /// Builds the config for round `r` (fresh files, receivers, spool dirs per round).
    make: Box<dyn Fn(usize) -> Setup>,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, rounds): (u64, usize) = if full { (50_000, 3) } else { (200, 1) };
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().to_path_buf();
    let mut cases: Vec<Case> = Vec::new();
    let p = dir.clone();
    cases.push(Case {
        kind: "file (ndjson)",
        make: Box::new(move |r| {
            (
                format!(
                    "sinks:\n  - file: {{path: {}/a{r}.ndjson, max_bytes: 10000000}}\n",
                    p.display()
                ),
                None,
                Pace::Sent,
            )
        }),
    });
    let p = dir.clone();
    cases.push(Case {
        kind: "file (ocsf)",
        make: Box::new(move |r| {
            (
                format!("sinks:\n  - file: {{path: {}/b{r}.ndjson, format: ocsf, max_bytes: 10000000}}\n", p.display()),
                None,
                Pace::Sent,
            )
        }),
    });
    cases.push(Case {
        kind: "syslog tcp",
        make: Box::new(|_| {
            let c = Arc::new(AtomicU64::new(0));
            let port = tcp_counter(c.clone());
            (
                format!("sinks:\n  - syslog: {{transport: tcp, address: '127.0.0.1:{port}'}}\n"),
                Some(c),
                Pace::Receiver,
            )
        }),
    });
    cases.push(Case {
        kind: "syslog udp",
        make: Box::new(|_| {
            let c = Arc::new(AtomicU64::new(0));
            let port = udp_counter(c.clone());
            (
                format!("sinks:\n  - syslog: {{transport: udp, address: '127.0.0.1:{port}'}}\n"),
                Some(c),
                Pace::Sent,
            )
        }),
    });
    let p = dir.clone();
    cases.push(Case {
        kind: "syslog tcp + spool (fsync always)",
        make: Box::new(move |r| {
            let c = Arc::new(AtomicU64::new(0));
            let port = tcp_counter(c.clone());
            (
                format!("sinks:\n  - syslog: {{transport: tcp, address: '127.0.0.1:{port}', spool: {{dir: {}/sp{r}}}}}\n", p.display()),
                Some(c),
                Pace::Receiver,
            )
        }),
    });
    for (kind, flavor) in [
        ("http generic (batch 100)", "generic"),
        ("http splunk_hec (batch 100)", "splunk_hec"),
        ("http elastic (batch 100)", "elastic"),
    ] {
        cases.push(Case {
            kind,
            make: Box::new(move |_| {
                let c = Arc::new(AtomicU64::new(0));
                let port = http_counter(c.clone());
                (
                    format!("sinks:\n  - http: {{url: 'http://127.0.0.1:{port}/', flavor: {flavor}, batch: {{max_alerts: 100}}}}\n"),
                    Some(c),
                    Pace::Receiver,
                )
            }),
        });
    }
    // Interleaved rounds (A B C … A B C …): a load change hits every kind alike; the median of
    // the rounds is reported.
    let mut results: Vec<Vec<(f64, u64)>> = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            let (yaml, count, pace) = (c.make)(r);
            results[i].push(run(&yaml, n, count, pace));
        }
    }
    for (c, rs) in cases.iter().zip(&mut results) {
        rs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rates: Vec<String> = rs.iter().map(|(r, _)| format!("{r:.0}")).collect();
        let (median, _) = rs[rs.len() / 2];
        let got: Vec<String> = rs.iter().map(|(_, g)| g.to_string()).collect();
        println!(
            "{:<34} {n:>7} alerts  median {median:>9.0} alerts/s  (rounds: {})  received: {}",
            c.kind,
            rates.join(", "),
            got.join(", ")
        );
    }
}
