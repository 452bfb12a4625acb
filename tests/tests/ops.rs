//! Operations of the live agent (`detector run`): SIGHUP reload keeps the last good rule set
//! on a broken edit and swaps in a fixed one, each reload announced in-band.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use tests::{actor_path, Scratch};

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
