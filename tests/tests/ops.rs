//! Operations of the live agent (`detector run`): SIGHUP reload keeps the last good rule set
//! on a broken edit and swaps in a fixed one, each reload announced in-band.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use tests::{actor_path, free_port, Scratch};

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

/// `detector run` as a child: alerts (stdout lines) on a channel, stderr collected.
struct Running {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(detector())
            .arg("run")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn detector run");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first alert matching `pred` within `d`.
    fn alert(
        &self,
        d: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return Some(v),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Opens `key` from a fresh actor until rule `rule` alerts for that actor.
    fn fires(&self, rule: &str, key: &Path, tries: usize) -> bool {
        for _ in 0..tries {
            let (pid, _) = tests::actor(&["open", key.to_str().unwrap()]);
            if self
                .alert(Duration::from_millis(1500), |v| {
                    v["rule"]["id"] == rule && v["process"]["tgid"] == pid
                })
                .is_some()
            {
                return true;
            }
        }
        false
    }

    fn signal(&self, sig: &str) {
        tests::sh(&["kill", &format!("-{sig}"), &self.pid().to_string()]);
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let st = self.child.wait().expect("wait");
        // Give the reader thread a moment to see EOF.
        std::thread::sleep(Duration::from_millis(100));
        (st, self.stderr())
    }
}

fn rule(id: &str, key: &Path) -> String {
    format!(
        "rules:\n  - id: {id}\n    title: test rule {id}\n    severity: low\n    group-by: [process.tgid]\n    suppress: 1s\n    condition:\n      kind: [cred_open, cred_read]\n      file.watched: {}\n",
        key.display()
    )
}

#[test]
fn sighup_keeps_the_old_rules_on_a_broken_edit_and_swaps_in_a_fixed_one() {
    let s = Scratch::new("ops-reload");
    let key = s.file("home/.ssh/id_reload", "-----BEGIN OPENSSH PRIVATE KEY-----");
    let rules = s.file("rules.yaml", &rule("test-reload-old", &key));
    let state = s.path("state");
    let agent = Running::start(&[
        "--no-default-rules",
        "--rules",
        rules.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--watch",
        &format!("{}=ssh_key", key.display()),
    ]);
    assert!(
        agent.fires("test-reload-old", &key, 10),
        "the initial rule never fired: {}",
        agent.stderr()
    );

    // A broken edit: an unknown field on line 5.
    std::fs::write(
        &rules,
        "rules:\n  - id: test-reload-broken\n    title: broken\n    severity: low\n    colour: red\n    condition: {kind: cred_open}\n",
    )
    .unwrap();
    agent.signal("HUP");
    let fail = agent
        .alert(Duration::from_secs(5), |v| {
            v["rule"]["id"] == "detector-reload"
        })
        .unwrap_or_else(|| panic!("no reload alert: {}", agent.stderr()));
    assert_eq!(fail["rule"]["severity"], "info", "{fail}");
    assert_eq!(fail["group"]["outcome"], "failure", "{fail}");
    let summary = fail["group"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains(&format!("{}:5:", rules.display())),
        "the failure names the position: {fail}"
    );
    assert!(
        agent.fires("test-reload-old", &key, 3),
        "the old rule stopped firing after a failed reload"
    );

    // Fixed with a new rule.
    std::fs::write(&rules, rule("test-reload-new", &key)).unwrap();
    agent.signal("HUP");
    let ok = agent
        .alert(Duration::from_secs(5), |v| {
            v["rule"]["id"] == "detector-reload"
        })
        .unwrap_or_else(|| panic!("no reload alert: {}", agent.stderr()));
    assert_eq!(ok["group"]["outcome"], "success", "{ok}");
    let summary = ok["group"]["summary"].as_str().unwrap_or("");
    assert!(summary.contains("added: [test-reload-new]"), "{ok}");
    assert!(summary.contains("removed: [test-reload-old]"), "{ok}");
    assert!(
        agent.fires("test-reload-new", &key, 3),
        "the new rule does not fire after the reload"
    );
    let (st, err) = agent.stop();
    assert!(err.contains("reload failed"), "{err}");
    assert!(err.contains("reloaded"), "{err}");
    assert!(st.success(), "agent exit on SIGTERM: {st}\n{err}");
}

/// CapEff of every thread of `pid`.
fn cap_eff(pid: u32) -> Vec<u64> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .expect("CapEff line")
            .trim();
        v.push(u64::from_str_radix(hex, 16).unwrap());
    }
    v
}

#[test]
fn the_running_agent_keeps_only_the_capabilities_it_needs_and_still_detects() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let s = Scratch::new("ops-caps");
    // Another user's key in that user's 0700 home, read by that user: fingerprinting it needs
    // CAP_DAC_READ_SEARCH, its process's /proc/<pid>/exe CAP_SYS_PTRACE.
    let home = s.path("home-nobody");
    let key = s.file(
        "home-nobody/.ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    );
    for p in [&home, &home.join(".ssh"), &key] {
        chown(p, Some(65534), Some(65534)).unwrap();
        let mode = if p == &key { 0o600 } else { 0o700 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // An actor the other user can execute.
    let actor = s.path("bin/actor");
    std::fs::create_dir_all(actor.parent().unwrap()).unwrap();
    std::fs::copy(actor_path(), &actor).unwrap();
    let state = s.path("state");
    // Other hosts (a namespace's addresses): loopback is this host, which no fan-out counts.
    let net = tests::bench::TestNet::new("opscaps", 5).expect("test network");
    let prefix = net.prefix();
    let agent = Running::start(&[
        "--events",
        "--state-dir",
        state.to_str().unwrap(),
        "--watch",
        &format!("{}=ssh_key", key.display()),
    ]);
    let mut alert = None;
    // Any attempt's alert counts: on a loaded machine one may arrive after the next attempt
    // has started (and the later attempts then join its incident).
    let mut pids = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(700));
        let child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&actor)
            .args(["fanout", key.to_str().unwrap(), "5", "22", &prefix])
            .spawn()
            .unwrap();
        pids.push(serde_json::Value::from(child.id()));
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "actor as nobody: {:?}", out.status);
        alert = agent.alert(Duration::from_millis(1500), |v| {
            v["rule"]["id"] == "ssh-key-then-ssh-fanout" && pids.contains(&v["process"]["tgid"])
        });
        if alert.is_some() {
            break;
        }
    }
    // A relative exec name: the agent resolves it through /proc/<pid>/exe, while it lives.
    let sleeper = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["./actor", "sleep", "1500"])
        .current_dir(actor.parent().unwrap())
        .spawn()
        .unwrap();
    let spid = sleeper.id();
    let exec = agent.alert(Duration::from_secs(5), |v| {
        v["kind"] == "exec" && v["process"]["tgid"] == spid && v["exec"]["filename"] == "./actor"
    });
    let _ = sleeper.wait_with_output();
    // CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19), CAP_BPF (39), on every thread.
    let want: u64 = (1 << 2) | (1 << 19) | (1 << 39);
    let caps = cap_eff(agent.pid());
    let (st, err) = agent.stop();
    let a = alert.unwrap_or_else(|| panic!("no ssh fan-out alert after dropping caps: {err}"));
    assert!(
        a["credential"]["fingerprint"]
            .as_str()
            .unwrap_or("")
            .starts_with("hmac-sha256:"),
        "another user's key is fingerprinted: {a}"
    );
    assert!(
        exec.as_ref()
            .is_some_and(|e| e["process"]["exe"] == actor.to_str().unwrap()),
        "another user's /proc/<pid>/exe is read: {exec:?}"
    );
    assert!(caps.iter().all(|&c| c == want), "CapEff {caps:x?}: {err}");
    assert!(
        err.contains("CAP_BPF,CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE"),
        "the kept set is logged: {err}"
    );
    assert!(st.success(), "agent exit on SIGTERM: {st}\n{err}");
}

/// GET `url`: status and body; none while nothing listens.
fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().ok()?))
}

/// The value of the sample `name` (with its labels, exactly as exposed), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

#[test]
fn metrics_and_health_endpoint_and_detector_status() {
    let s = Scratch::new("ops-metrics");
    let key = s.file(
        "home/.ssh/id_metrics",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    );
    let rules = s.file("rules.yaml", &rule("test-metrics", &key));
    let state = s.path("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = Running::start(&[
        "--no-default-rules",
        "--rules",
        rules.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--watch",
        &format!("{}=ssh_key", key.display()),
        "--metrics-addr",
        &addr,
    ]);
    let end = Instant::now() + Duration::from_secs(15);
    let health = loop {
        if let Some(h) = get(&format!("http://{addr}/health")) {
            break h;
        }
        assert!(Instant::now() < end, "no endpoint: {}", agent.stderr());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.0, 200, "{}", health.1);
    let h: serde_json::Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(h["status"], "green", "{h}");
    let programs = h["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 17, "{h}");
    assert!(
        programs
            .iter()
            .all(|p| p["attached"] == true && p["required"] == true && p["hook"].is_string()),
        "{h}"
    );
    assert_eq!(h["attached"], 17, "{h}");

    let status = Command::new(detector())
        .args(["status", "--metrics-addr", &addr])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "detector status: {status:?}");
    assert!(
        out.contains("health: green (17 of 17 programs attached)"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  attached ")).count(),
        17,
        "{out}"
    );

    let scrape = || {
        let (st, text) = get(&format!("http://{addr}/metrics")).expect("scrape");
        assert_eq!(st, 200);
        text
    };
    let before = scrape();
    let exec0 = sample(&before, "detector_events_total{kind=\"exec\"}");
    let open0 = sample(&before, "detector_events_total{kind=\"cred_open\"}");
    assert!(
        agent.fires("test-metrics", &key, 10),
        "no alert: {}",
        agent.stderr()
    );
    // The loop updates the metrics before handing alerts to the sinks.
    let after = scrape();
    assert!(
        sample(&after, "detector_events_total{kind=\"exec\"}") > exec0,
        "{after}"
    );
    assert!(
        sample(&after, "detector_events_total{kind=\"cred_open\"}") > open0,
        "{after}"
    );
    assert!(
        sample(&after, "detector_alerts_total{rule=\"test-metrics\"}") >= 1.0,
        "{after}"
    );
    assert!(sample(&after, "detector_rule_evaluation_seconds_count") > 0.0);
    assert!(sample(&after, "detector_syscall_to_alert_seconds_count") >= 1.0);
    for q in ["0.5", "0.99", "0.999"] {
        for m in [
            "detector_rule_evaluation_seconds",
            "detector_syscall_to_alert_seconds",
        ] {
            let v = sample(&after, &format!("{m}{{quantile=\"{q}\"}}"));
            // Positive, and under a minute: a latency, not a clock mix-up.
            assert!(v > 0.0 && v < 60.0, "{m} p{q} = {v}\n{after}");
        }
    }
    assert!(after.contains("# TYPE detector_syscall_to_alert_seconds summary"));
    assert!(
        after.contains("detector_sink_queue_depth{sink=\"stdout\"}"),
        "{after}"
    );
    assert!(
        after.contains("detector_sink_retries_total{sink=\"stdout\"}"),
        "{after}"
    );
    assert!(after.contains("detector_program_attached{"), "{after}");
    // Ring-buffer fill, read from the map's positions at the scrape.
    let cap = sample(&after, "detector_ringbuf_capacity_bytes");
    assert_eq!(cap, 16.0 * 1024.0 * 1024.0, "{after}");
    let pending = sample(&after, "detector_ringbuf_pending_bytes");
    assert!(after.contains("detector_ringbuf_pending_bytes "), "{after}");
    assert!((0.0..=cap).contains(&pending), "{pending}");
    let ratio = sample(&after, "detector_ringbuf_fill_ratio");
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    // The consumer woke to some backlog at least once (it saw the actor's events).
    let max = sample(&after, "detector_ringbuf_pending_max_bytes");
    assert!(max > 0.0 && max <= cap, "{max}\n{after}");

    let (st, err) = agent.stop();
    assert!(st.success(), "agent exit on SIGTERM: {st}\n{err}");
    // Nobody listens any more: status says so and fails.
    let status = Command::new(detector())
        .args(["status", "--metrics-addr", &addr])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2), "{status:?}");
}

/// Alerts (NDJSON lines) in a file sink's file.
fn file_alerts(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits up to `d` for an alert in file `p` matching `pred`.
fn file_alert(
    p: &Path,
    d: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let end = Instant::now() + d;
    loop {
        if let Some(v) = file_alerts(p).into_iter().find(&pred) {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens `key` from a fresh actor until rule `rule` alerts for it in file `p`.
fn fires_in(p: &Path, rule: &str, key: &Path, tries: usize) -> bool {
    (0..tries).any(|_| {
        let (pid, _) = tests::actor(&["open", key.to_str().unwrap()]);
        file_alert(p, Duration::from_millis(1500), |v| {
            v["rule"]["id"] == rule && v["process"]["tgid"] == pid
        })
        .is_some()
    })
}

#[test]
fn sighup_switches_a_changed_file_sink_and_applies_a_new_watch_path() {
    let s = Scratch::new("ops-reload-sinks");
    let key1 = s.file("home/.ssh/id_before", "-----BEGIN OPENSSH PRIVATE KEY-----");
    let key2 = s.file("creds/token_after", "not-a-real-token");
    let rules = s.file(
        "rules.yaml",
        &format!(
            "{}{}",
            rule("test-watch-before", &key1),
            rule("test-watch-after", &key2).replacen("rules:\n", "", 1)
        ),
    );
    let (a, b) = (s.path("alerts-a.ndjson"), s.path("alerts-b.ndjson"));
    let list = s.file("watch.list", &format!("{} token\n", key2.display()));
    let cfg = s.path("agent.yaml");
    let cfg_state = s.path("state-from-config");
    let write_cfg = |path: &Path, watch: Option<&Path>| {
        // The edit also names another state dir, which `--state-dir` overrides: the reload
        // resolves flags over the config as start-up does, so nothing needs a restart.
        let run = match watch {
            Some(w) => format!(
                "run:\n  watch_list: {}\n  state_dir: {}\n  shutdown_timeout: 3s\n",
                w.display(),
                cfg_state.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &cfg,
            format!(
                "{run}sinks:\n  - file: {{name: alerts, path: {}}}\n",
                path.display()
            ),
        )
        .unwrap();
    };
    write_cfg(&a, None);
    let state = s.path("state");
    let agent = Running::start(&[
        "--no-default-rules",
        "--rules",
        rules.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--watch",
        &format!("{}=ssh_key", key1.display()),
    ]);
    assert!(
        fires_in(&a, "test-watch-before", &key1, 10),
        "no alert in the first file: {}",
        agent.stderr()
    );
    // Not watched yet.
    assert!(
        !fires_in(&a, "test-watch-after", &key2, 1),
        "an unwatched file raised an alert"
    );

    write_cfg(&b, Some(&list));
    agent.signal("HUP");
    let reload = file_alert(&b, Duration::from_secs(10), |v| {
        v["rule"]["id"] == "detector-reload"
    })
    .unwrap_or_else(|| panic!("no reload alert in the new file: {}", agent.stderr()));
    assert_eq!(reload["group"]["outcome"], "success", "{reload}");
    let summary = reload["group"]["summary"].as_str().unwrap_or("");
    assert!(summary.contains("changed: alerts"), "{summary}");
    assert!(summary.contains("watch list:"), "{summary}");
    assert!(summary.contains("shutdown_timeout 3s"), "{summary}");
    assert!(!summary.contains("need a restart"), "{summary}");
    assert!(
        fires_in(&b, "test-watch-after", &key2, 10),
        "the newly watched file raised nothing in the new file: {}",
        agent.stderr()
    );
    // The command-line pattern still applies.
    assert!(fires_in(&b, "test-watch-before", &key1, 5));
    let (st, err) = agent.stop();
    assert!(st.success(), "agent exit on SIGTERM: {st}\n{err}");
    // Before the reload in the old file, after it in the new one only. (Other agents on the
    // machine read the credentials of every home to fingerprint them: the ledger's findings
    // about their reads are theirs.)
    let old: Vec<serde_json::Value> = file_alerts(&a)
        .into_iter()
        .filter(|v| !tests::real::involves_an_agent(v))
        .collect();
    assert!(
        old.iter().all(|v| v["rule"]["id"] == "test-watch-before"),
        "{old:?}"
    );
    let new = file_alerts(&b);
    assert!(new.iter().any(|v| v["rule"]["id"] == "test-watch-after"));
    assert!(err.contains("reloaded"), "{err}");
}

#[test]
fn ring_buffer_fill_rises_while_the_consumer_is_stalled_and_falls_when_it_drains() {
    let mut agent = tests::Agent::start(tests::options(""));
    agent.pump(Duration::from_millis(200));
    let (_, cap) = agent
        .cap
        .source
        .ring_fill()
        .expect("ring-buffer positions mapped");
    assert_eq!(cap, 16 * 1024 * 1024);
    // Consumer stalled (nobody drains): 100 processes' exec/exit records pile up.
    for _ in 0..100 {
        Command::new("/bin/true").status().unwrap();
    }
    let (stalled, _) = agent.cap.source.ring_fill().unwrap();
    assert!(stalled > 0 && stalled <= cap, "pending {stalled} of {cap}");
    // Draining consumes them: what is pending right after is what arrived meanwhile.
    agent.pump(Duration::from_millis(100));
    let (after, _) = agent.cap.source.ring_fill().unwrap();
    assert!(
        after < stalled,
        "pending {after} after draining, {stalled} before"
    );
    assert!(
        agent.cap.source.stats.ring_pending_max >= stalled,
        "the wake-up saw the backlog: {} < {stalled}",
        agent.cap.source.stats.ring_pending_max
    );
}

#[test]
fn health_is_red_and_status_fails_naming_the_program_when_a_required_hook_is_missing() {
    let s = Scratch::new("ops-red");
    let empty = s.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let state = s.path("state");
    let addr = format!("127.0.0.1:{}", free_port());
    // Hide the io_uring tracepoints from the agent, as on a kernel built without them (its own
    // mount namespace: nothing else sees the change). `exec` keeps the agent's pid the child's.
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing; mount --bind {} /sys/kernel/tracing/events/io_uring && exec {} run --state-dir {} --metrics-addr {addr}",
            empty.display(),
            detector().display(),
            state.display()
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path("agent.err")).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(s.path("agent.err")).unwrap_or_default();
    let end = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        if let Some(h) = get(&format!("http://{addr}/health")) {
            break h;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "agent exited: {}",
            err()
        );
        assert!(Instant::now() < end, "no endpoint: {}", err());
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = Command::new(detector())
        .args(["status", "--metrics-addr", &addr])
        .output()
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let st = child.wait().unwrap();
    assert_eq!(code, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "red", "{h}");
    let missing: Vec<&serde_json::Value> = h["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attached"] == false)
        .collect();
    assert!(
        missing.iter().any(|p| p["program"]
            .as_str()
            .is_some_and(|n| n.contains("io_uring_submit_req"))
            && p["required"] == true),
        "{h}"
    );
    let out = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    assert!(out.contains("health: red"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("MISSING") && l.contains("io_uring_submit_req")),
        "{out}"
    );
    // The agent itself kept running with reduced coverage and stopped cleanly.
    assert!(st.success(), "{st}: {}", err());
}
