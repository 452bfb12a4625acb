//! Alert delivery against real receivers: rsyslog (Debian's, started here with a private
//! config on a unix socket and loopback ports), the OCSF validator from PyPI, and the real
//! `detector` binary killed with SIGKILL while its spool holds alerts.
//!
//! `cargo xtask setup` installs rsyslog and the validator; these tests never skip.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use detector::{
    config::{AgentConfig, Format},
    engine::Alert,
    sinks::{format, SinkSet},
};
use tests::{actor_path, Scratch};

fn alert(n: u64) -> Alert {
    let v = serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "rule": {"id": "ssh-key-then-ssh-fanout", "title": "SSH key read then SSH fan-out", "severity": "high"},
        "attack": ["T1552.004", "T1021.004"],
        "host": "web-1",
        "identity": "unit:cron.service",
        "process": {"tgid": 4242, "start": 99, "exe": "/usr/bin/ssh", "argv": ["ssh", "10.0.0.7"], "user": "root", "uid": 0},
        "credential": {"watched": "/root/.ssh/id_ed25519", "category": "ssh_key"},
        "group": {"process.tgid": "4242"},
        "destinations": ["10.0.0.7:22", "10.0.0.8:22"],
        "destination_count": 2,
        "count": 3,
        "first_seen": 1_700_000_000_000_000_000u64,
        "last_seen": 1_700_000_002_000_000_000u64,
        "evidence": [
            {"ts": 1_700_000_000_000_000_000u64, "kind": "cred_open",
             "process": {"pid": 4241, "tgid": 4241, "ppid": 1, "start": 98, "uid": 0, "gid": 0,
                         "comm": "cat", "exe": "/usr/bin/cat", "argv": ["cat", "/root/.ssh/id_ed25519"],
                         "ancestors": [1], "cgroup_id": 1, "mntns": 1, "netns": 1, "workload": {}},
             "file": {"watched": "/root/.ssh/id_ed25519", "category": "ssh_key", "path": "/root/.ssh/id_ed25519",
                      "dev": 1, "ino": 2, "via": "syscall"}},
            {"ts": 1_700_000_002_000_000_000u64, "kind": "connect",
             "process": {"pid": 4242, "tgid": 4242, "ppid": 1, "start": 99, "uid": 0, "gid": 0,
                         "comm": "ssh", "exe": "/usr/bin/ssh", "argv": ["ssh", "10.0.0.8"],
                         "ancestors": [1], "cgroup_id": 1, "mntns": 1, "netns": 1, "workload": {}},
             "net": {"protocol": "tcp", "family": 2, "direction": "outbound", "src_addr": "10.0.0.1",
                     "src_port": 40000, "dst_addr": "10.0.0.8", "dst_port": 22, "outcome": "in_progress", "sock": 7}}
        ],
        "suppressed": 0,
        "loss_overlap": false
    });
    serde_json::from_value(v).unwrap_or_else(|e| panic!("test alert: {e}"))
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rsyslogd with a private config: a unix socket and 127.0.0.1 UDP/TCP inputs, each written
/// to its own file with the RFC 5424 fields we check.
fn rsyslog(s: &Scratch, udp: u16, tcp: u16) -> Proc {
    let d = s.0.display();
    std::fs::create_dir_all(s.path("rs-work")).unwrap();
    let conf = s.file(
        "rsyslog.conf",
        &format!(
            r#"global(workDirectory="{d}/rs-work" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
module(load="imtcp")
template(name="t" type="string" string="%protocol-version% %app-name% %msgid% %structured-data% %msg%\n")
ruleset(name="unix") {{ action(type="omfile" file="{d}/unix.log" template="t") }}
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="t") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="t") }}
input(type="imuxsock" Socket="{d}/log.sock" UseSpecialParser="off" Ruleset="unix")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp" rcvbufSize="8m")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
"#
        ),
    );
    let child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(s.path("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rsyslogd (cargo xtask setup installs rsyslog)");
    let p = Proc(child);
    let sock = s.path("log.sock");
    wait_for(
        "rsyslog's socket and ports",
        Duration::from_secs(10),
        || sock.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok(),
    );
    p
}

/// Ids in an rsyslog output file, checking that each line was parsed as RFC 5424.
fn syslog_ids(p: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .map(|l| {
            assert!(l.starts_with("1 detector "), "not parsed as RFC 5424: {l}");
            let i = l.find("id=\"").unwrap_or_else(|| panic!("no id: {l}")) + 4;
            let j = l[i..].find('"').unwrap() + i;
            // The message is the whole alert.
            let json = &l[l.find("] {").unwrap() + 2..];
            let a: Alert = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(a.id, l[i..j]);
            l[i..j].to_string()
        })
        .collect()
}

#[test]
fn rsyslog_receives_every_alert_over_unix_udp_and_tcp() {
    let s = Scratch::new("sinks-rsyslog");
    let (udp, tcp) = (free_port(true), free_port(false));
    let _rs = rsyslog(&s, udp, tcp);
    let yaml = format!(
        "sinks:\n  - syslog: {{name: u, transport: unix, socket: {}}}\n  - syslog: {{name: d, transport: udp, address: '127.0.0.1:{udp}'}}\n  - syslog: {{name: t, transport: tcp, address: '127.0.0.1:{tcp}', batch: {{max_alerts: 16}}}}\n",
        s.path("log.sock").display()
    );
    let cfg = AgentConfig::parse(&yaml, Path::new("t.yaml")).unwrap();
    let set = SinkSet::from_config(&cfg.sinks, "web-1").unwrap();
    let n = 200;
    for i in 0..n {
        set.send(alert(i));
        if i % 10 == 9 {
            // UDP has no flow control; a burst beyond the receiver's socket buffer would be
            // lost in the kernel, not by us (the receiver also gets a larger buffer).
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    set.shutdown_blocking(Duration::from_secs(10));
    let want: Vec<String> = (0..n).map(|i| alert(i).id).collect();
    for f in ["unix.log", "udp.log", "tcp.log"] {
        let p = s.path(f);
        wait_for(f, Duration::from_secs(10), || {
            syslog_ids(&p).len() >= n as usize
        });
        let got = syslog_ids(&p);
        assert_eq!(got, want, "{f}: every alert, once, in order");
    }
}

#[test]
fn rsyslog_tcp_restart_loses_nothing_with_a_spool() {
    let s = Scratch::new("sinks-rsyslog-restart");
    let (udp, tcp) = (free_port(true), free_port(false));
    let yaml = format!(
        "sinks:\n  - syslog: {{name: t, transport: tcp, address: '127.0.0.1:{tcp}', retry: {{initial: 50ms, max: 200ms}}, spool: {{dir: {}}}}}\n",
        s.path("spool").display()
    );
    let cfg = AgentConfig::parse(&yaml, Path::new("t.yaml")).unwrap();
    let set = SinkSet::from_config(&cfg.sinks, "web-1").unwrap();
    // Receiver down: alerts wait in the spool.
    for i in 0..30 {
        set.send(alert(i));
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = set.stats();
    assert!(st[0].1.failures.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let _rs = rsyslog(&s, udp, tcp);
    for i in 30..60 {
        set.send(alert(i));
    }
    let p = s.path("tcp.log");
    wait_for("60 alerts at rsyslog", Duration::from_secs(20), || {
        syslog_ids(&p).len() >= 60
    });
    set.shutdown_blocking(Duration::from_secs(5));
    let got: BTreeSet<String> = syslog_ids(&p).into_iter().collect();
    assert_eq!(got, (0..60).map(|i| alert(i).id).collect::<BTreeSet<_>>());
}

#[test]
fn ocsf_output_validates_against_the_ocsf_schema() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ocsf_validate.py");
    let mut docs = Vec::new();
    let mut a = alert(1);
    docs.push(format::encode(&a, Format::Ocsf));
    // An incident's update, with resolved names and service names of destinations.
    let mut u = alert(2);
    for e in &mut u.evidence {
        if let Some(n) = e.net.as_mut() {
            n.dst_name = Some("node-b.metrics.internal".into());
            n.service = Some("metrics-b".into());
        }
    }
    u.services = vec!["metrics-b".into()];
    u.destination_names = vec!["node-b.metrics.internal".into()];
    u.incident = Some(detector::engine::alert::AlertIncident {
        id: alert(1).id,
        revision: 1,
        trees: vec![600, 602],
        processes: u.process.clone().into_iter().collect(),
    });
    docs.push(format::encode(&u, Format::Ocsf));
    // Minimal alerts too: no evidence, no process, no ATT&CK ids, every severity.
    a.evidence.clear();
    a.attack.clear();
    a.process = None;
    for sev in ["info", "low", "medium", "critical"] {
        a.rule.severity = serde_json::from_value(serde_json::json!(sev)).unwrap();
        docs.push(format::encode(&a, Format::Ocsf));
    }
    docs.push(format::encode(
        &format::overflow_alert("siem", 3, "queue full, dropped oldest", "web-1", 1),
        Format::Ocsf,
    ));
    // Credential inventory records (Live Evidence Info, 5040): present and gone.
    for gone in [false, true] {
        docs.push(format::encode_inventory(
            &tests::sample_inventory(gone),
            Format::Ocsf,
        ));
    }
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (cargo xtask setup installs it and pydantic-ocsf)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for d in &docs {
            stdin.write_all(d).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "OCSF validation failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains(&format!("{} valid", docs.len())), "{so}");
    // The validator is not a rubber stamp: a document missing a required attribute fails.
    let mut bad: serde_json::Value = serde_json::from_slice(&docs[0]).unwrap();
    bad.as_object_mut().unwrap().remove("finding_info");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bad.to_string().as_bytes())
        .unwrap();
    assert!(!child.wait().unwrap().success());
}

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

/// Alert ids in a spool directory, by reading its frames (len u32 | crc u32 | id_len u16 | id
/// | body) the way the agent does, stopping at a torn tail.
fn spooled_ids(dir: &Path) -> Vec<String> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    segs.sort();
    let mut ids = Vec::new();
    for s in segs {
        let d = std::fs::read(&s).unwrap_or_default();
        let mut off = 0;
        while off + 10 <= d.len() {
            let len = u32::from_le_bytes(d[off..off + 4].try_into().unwrap()) as usize;
            if off + 8 + len > d.len() {
                break;
            }
            let p = &d[off + 8..off + 8 + len];
            let il = u16::from_le_bytes([p[0], p[1]]) as usize;
            ids.push(String::from_utf8_lossy(&p[2..2 + il]).into_owned());
            off += 8 + len;
        }
    }
    ids
}

/// A real HTTP receiver (Python's http.server) appending each POSTed batch's ids to a file.
fn http_receiver(s: &Scratch, port: u16) -> Proc {
    let script = s.file(
        "recv.py",
        &format!(
            r#"import json, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("{}", "a") as f:
            for a in json.loads(body):
                f.write(a["id"] + "\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#,
            s.path("received.txt").display()
        ),
    );
    let p = Proc(
        Command::new("python3")
            .arg(script)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for("HTTP receiver", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

#[test]
fn kill_9_with_a_non_empty_spool_then_restart_delivers_every_spooled_alert() {
    let s = Scratch::new("sinks-kill9");
    let key = s.file(
        "home/.ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    );
    // Other hosts (a namespace's addresses): loopback is this host, which no fan-out counts.
    let net = tests::bench::TestNet::new("snkkill", 5).expect("test network");
    let prefix = net.prefix();
    let port = free_port(false);
    let spool = s.path("spool");
    let cfg = s.file(
        "agent.yaml",
        &format!(
            "run:\n  state_dir: {}\nsinks:\n  - stdout: {{}}\n  - http:\n      name: siem\n      url: http://127.0.0.1:{port}/ingest\n      timeout: 2s\n      retry: {{initial: 100ms, max: 500ms}}\n      spool: {{dir: {}, fsync: always}}\n",
            s.path("state").display(),
            spool.display()
        ),
    );
    let start = |s: &Scratch| {
        Proc(
            Command::new(detector())
                .args(["run", "--config"])
                .arg(&cfg)
                .arg("--watch")
                .arg(format!("{}=ssh_key", key.display()))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(s.path("agent.err")).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    // Receiver down: the agent's alerts go to the spool.
    let mut agent = start(&s);
    let sdir = spool.join("siem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while spooled_ids(&sdir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alerts spooled; agent said: {}",
            std::fs::read_to_string(s.path("agent.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(700));
        tests::actor(&["fanout", key.to_str().unwrap(), "5", "22", &prefix]);
        std::thread::sleep(Duration::from_millis(800));
    }
    // SIGKILL: no chance to flush or to say goodbye.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let spooled = spooled_ids(&sdir);
    for e in std::fs::read_dir(&sdir).unwrap().flatten() {
        use std::os::unix::fs::PermissionsExt;
        let md = e.metadata().unwrap();
        let m = md.permissions().mode() & 0o777;
        // Files 0600; the overflow spool's directory 0700.
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{}", e.path().display());
    }
    // Receiver up, agent restarted: the spool drains first.
    let _recv = http_receiver(&s, port);
    let agent2 = start(&s);
    let recv = s.path("received.txt");
    let got = || -> BTreeSet<String> {
        std::fs::read_to_string(&recv)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    wait_for(
        "spooled alerts at the receiver",
        Duration::from_secs(30),
        || spooled.iter().all(|id| got().contains(id)),
    );
    let _ = Command::new("kill").arg(agent2.0.id().to_string()).status();
    // In order: the spooled ones arrive before anything the new run raised.
    let lines: Vec<String> = std::fs::read_to_string(&recv)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(&lines[..spooled.len()], &spooled[..]);
}

/// Set in the child of the flood test: `config path\nready marker path`.
const FLOOD_CHILD: &str = "DETECTOR_TEST_FLOOD_CHILD";
const FLOOD: u64 = 50_000;

/// The flood test's child: one burst of alerts into a spooled sink whose receiver is down (the
/// overflow spool takes what the channel cannot), everything handed over, then it waits for
/// its SIGKILL while its sink task is still moving the overflow into the spool.
fn flood_child(spec: &str) {
    let (cfg, ready) = spec.split_once('\n').unwrap();
    let cfg = AgentConfig::load(Path::new(cfg)).unwrap();
    let set = SinkSet::from_config(&cfg.sinks, "web-1").unwrap();
    // Built first: the burst is the sends alone, as from the capture loop.
    let alerts: Vec<Alert> = (0..FLOOD).map(alert).collect();
    for a in alerts {
        set.send(a);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(set.flush());
    std::fs::write(ready, "ready").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn alert_flood_spilled_to_disk_survives_kill_9_then_arrives_exactly_once_in_order() {
    if let Ok(spec) = std::env::var(FLOOD_CHILD) {
        flood_child(&spec);
        return;
    }
    let s = Scratch::new("sinks-flood-kill9");
    let port = free_port(false);
    let cfg = s.file(
        "sinks.yaml",
        &format!(
            "sinks:\n  - http:\n      name: siem\n      url: http://127.0.0.1:{port}/ingest\n      batch: {{max_alerts: 500}}\n      retry: {{initial: 50ms, max: 200ms}}\n      spool: {{dir: {}, fsync: never}}\n",
            s.path("spool").display()
        ),
    );
    let ready = s.path("ready");
    // This test binary again, as the process that floods and gets killed.
    let mut child = Proc(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "alert_flood_spilled_to_disk_survives_kill_9_then_arrives_exactly_once_in_order",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                FLOOD_CHILD,
                format!("{}\n{}", cfg.display(), ready.display()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.path("child.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the flood handed over", Duration::from_secs(120), || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "flooding child exited: {}",
            std::fs::read_to_string(s.path("child.err")).unwrap_or_default()
        );
        ready.exists()
    });
    let overflow = s.path("spool/siem/overflow");
    assert!(
        overflow.join("head").exists()
            || std::fs::read_dir(&overflow)
                .unwrap()
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "seg")),
        "the burst never spilled"
    );
    // SIGKILL: no flush, no goodbye, possibly mid-move from the overflow into the spool.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    // Receiver up, sinks restarted (here, from the same config).
    let _recv = http_receiver(&s, port);
    let cfg = AgentConfig::load(&cfg).unwrap();
    let set = SinkSet::from_config(&cfg.sinks, "web-1").unwrap();
    let recv = s.path("received.txt");
    let got = || -> Vec<String> {
        std::fs::read_to_string(&recv)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    wait_for("every flooded alert", Duration::from_secs(180), || {
        got().len() as u64 >= FLOOD
    });
    set.shutdown_blocking(Duration::from_secs(5));
    let ids = got();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates after the restart");
    let want: Vec<String> = (0..FLOOD).map(|i| alert(i).id).collect();
    assert_eq!(ids.len(), want.len());
    let first_bad = ids.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "out of order");
}
