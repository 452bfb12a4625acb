//! The `detector` binary end to end: `record` writes a recording `replay` can read, and every
//! environment problem gets its actionable error (or, for a missing hook, a warning and a run
//! with reduced coverage).

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use detector::event::{Event, Kind, RecordingHeader};
use tests::{actor_path, Scratch};

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(
        p.exists(),
        "detector binary missing at {} (cargo xtask test builds it)",
        p.display()
    );
    p
}

fn run_sh(script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits until the child's stderr has a line containing `marker` (the agent logs it once its
/// programs are attached), then keeps collecting stderr so `wait_with_output` still has it.
/// Attaching takes from 0.3 s to several seconds on a loaded machine: a fixed sleep raced.
fn wait_ready(child: &mut std::process::Child, marker: &str) {
    use std::io::{BufRead as _, BufReader};
    let err = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let want = marker.to_string();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if !seen && line.contains(&want) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("agent never logged `{marker}` within 60 s"));
}

#[test]
fn record_writes_a_replayable_recording() {
    let s = Scratch::new("cli-record");
    let secret = s.file("creds/id_test.key", "k");
    let out = s.path("rec.ndjson");
    let rec = Command::new(detector())
        .args([
            "record",
            "-o",
            out.to_str().unwrap(),
            "--duration",
            "3s",
            "--watch",
        ])
        .arg(format!("{}=ssh_key", secret.display()))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rec = rec;
    wait_ready(&mut rec, "recording");
    let (pid, _) = tests::actor(&["open", secret.to_str().unwrap()]);
    let o = rec.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header: RecordingHeader = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header.format, "detector-recording");
    let events: Vec<Event> = lines
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let e = events
        .iter()
        .find(|e| e.kind == Kind::CredOpen && e.process.as_ref().is_some_and(|p| p.tgid == pid))
        .expect("cred_open in the recording");
    let f = e.file.as_ref().unwrap();
    assert_eq!(
        (f.watched.as_str(), f.category.as_str()),
        (secret.to_str().unwrap(), "ssh_key")
    );
}

#[test]
fn unprivileged_run_says_what_it_needs() {
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(detector())
        .args(["record", "-o", "/dev/null", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs root or CAP_BPF"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_btf_is_named() {
    let o = Command::new(detector())
        .args([
            "record",
            "-o",
            "/dev/null",
            "--duration",
            "1s",
            "--btf",
            "/nonexistent/vmlinux",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no kernel BTF at /nonexistent/vmlinux"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unmounted_tracefs_is_mounted_by_the_agent() {
    // In a private mount namespace, so the rest of the machine keeps its tracefs.
    let o = run_sh(&format!(
        "unshare -m --propagation private sh -c 'umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; exec {} record -o /dev/null --duration 1s'",
        detector().display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("mounted tracefs"), "{}", stderr(&o));
}

#[test]
fn missing_cgroup2_is_named() {
    let o = run_sh(&format!(
        "unshare -m --propagation private sh -c 'for m in $(awk \"\\$3==\\\"cgroup2\\\"{{print \\$2}}\" /proc/mounts); do umount $m; done; exec {} record -o /dev/null --duration 1s'",
        detector().display()
    ));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no cgroup v2 hierarchy"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_hook_the_kernel_lacks_reduces_coverage_without_dying() {
    let s = Scratch::new("cli-nohook");
    let empty = s.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // Hide the io_uring tracepoints from the agent, as on a kernel built without them.
    let o = run_sh(&format!(
        "unshare -m --propagation private sh -c 'mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing; mount --bind {} /sys/kernel/tracing/events/io_uring && exec {} record -o /dev/null --duration 1s'",
        empty.display(),
        detector().display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("reduced coverage"), "{err}");
    assert!(err.contains("io_uring_submit_req"), "{err}");
    assert!(
        err.contains("this kernel has no tracepoint io_uring:io_uring_submit_req"),
        "{err}"
    );
}

#[test]
fn malformed_watch_list_is_a_positioned_error() {
    let s = Scratch::new("cli-badlist");
    let list = s.file("watch.list", "/etc/shadow shadow\nnot/absolute token\n");
    let o = Command::new(detector())
        .args([
            "record",
            "-o",
            "/dev/null",
            "--duration",
            "1s",
            "--watch-list",
        ])
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}:2:", list.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_raises_a_live_alert_for_key_read_then_ssh_fanout() {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("cli-run");
    let key = s.file(
        "home/.ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    );
    // Other hosts (a namespace's addresses): loopback is this host, which no fan-out counts.
    let net = tests::bench::TestNet::new("clirun", 5).expect("test network");
    let prefix = net.prefix();
    let state = s.path("state");
    let mut agent = Command::new(detector())
        .args(["run", "--state-dir", state.to_str().unwrap(), "--watch"])
        .arg(format!("{}=ssh_key", key.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until attached: the fingerprint key is created before capture starts, so poll
    // the kernel side by repeating the attack until an alert shows up.
    let stdout = agent.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut alert = None;
    // Any attempt's alert counts: on a loaded machine one may arrive after the next attempt
    // has started (and the later attempts then join its incident).
    let mut pids = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(700));
        let (pid, _) = tests::actor(&["fanout", key.to_str().unwrap(), "5", "22", &prefix]);
        pids.push(serde_json::Value::from(pid));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(1500)) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("alerts are JSON");
            if v["rule"]["id"] == "ssh-key-then-ssh-fanout" && pids.contains(&v["process"]["tgid"])
            {
                alert = Some(v);
                break;
            }
        }
        if alert.is_some() {
            break;
        }
    }
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let st = agent.wait().unwrap();
    let a = alert.expect("no ssh fan-out alert from detector run");
    assert_eq!(a["credential"]["watched"], key.to_str().unwrap());
    assert!(a["credential"]["fingerprint"]
        .as_str()
        .unwrap_or("")
        .starts_with("hmac-sha256:"));
    assert!(a["destination_count"].as_u64().unwrap_or(0) >= 3, "{a}");
    // The credential content never leaves the agent.
    assert!(!a.to_string().contains("BEGIN OPENSSH"));
    let mode = std::fs::metadata(state.join("fingerprint.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(st.success(), "agent exit on SIGTERM: {st}");
}

#[test]
fn live_learn_writes_the_peers_it_saw() {
    let s = Scratch::new("cli-learn");
    let out = s.path("baseline.yaml");
    let learn = Command::new(detector())
        .args(["learn", "--duration", "3s", "-o", out.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut learn = learn;
    wait_ready(&mut learn, "learning");
    tests::actor(&["udp-connect", "127.0.0.77", "5353"]);
    let o = learn.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("127.0.0.77:5353"), "{text}");
}

#[test]
fn run_events_streams_a_single_event_promptly() {
    // Regression: --events output sat in an 8 KiB buffer until enough events accumulated.
    use std::io::{BufRead as _, BufReader};
    let s = Scratch::new("cli-events");
    let mut agent = Command::new(detector())
        .args([
            "run",
            "--events",
            "--state-dir",
            s.path("state").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = agent.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut found = false;
    'outer: for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let (pid, _) = tests::actor(&["udp-connect", "127.0.0.1", "5399"]);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(700)) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("events are JSON");
            if v["kind"] == "connect" && v["process"]["tgid"] == pid {
                found = true;
                break 'outer;
            }
        }
    }
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let _ = agent.wait();
    assert!(found, "a lone connect event was not streamed within 700 ms");
}

/// `rules check` prints the loader's warnings positioned like errors (stderr) and counts them;
/// the set still loads.
#[test]
fn rules_check_prints_positioned_warnings() {
    let s = Scratch::new("cli-warn");
    let f = s.file(
        "mine.yaml",
        "lists:\n  spare: [/bin/true]\nrules:\n  - id: idle\n    title: I\n    severity: low\n    alert: false\n    condition: {kind: connect}\n  - id: a\n    title: A\n    severity: low\n    condition: {kind: connect}\n    exceptions:\n      - name: never\n        fields: [file.path]\n        values: [[/etc/x]]\n",
    );
    let o = Command::new(detector())
        .args(["rules", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let at = f.display();
    for want in [
        format!("warning: {at}:2:3: list `spare` is not used by any rule"),
        format!("warning: {at}:4:5: rule `idle` raises no alert"),
        format!("warning: {at}:15:18: exception on `file.path`, which connect events never have"),
    ] {
        assert!(err.lines().any(|l| l.starts_with(&want)), "{want}\n{err}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(", 3 warning(s): OK"), "{stdout}");
}
