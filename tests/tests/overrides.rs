//! Tuning shipped rules without forking them (`overrides:`), through the real binary:
//! `detector rules check|test` on the embedded pack plus a user file, `detector replay` of a
//! live recording with and without the overrides (the same events judged both ways), and a
//! live `detector run --config` whose `run.rules` file disables a rule and raises a threshold
//! (and, after a SIGHUP without it, the rule alerts again).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use tests::{actor_path, Link, Scratch};

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The override file the tests use: the environ rule disabled, machine-speed reuse raised from
/// three hosts to five, and the user's own cases for the raised threshold.
const TUNING: &str = "overrides:
  - rule: proc-environ-of-other-process
    enabled: false
  - rule: machine-speed-credential-reuse
    correlation:
      condition: {gte: 5}
tests:
  - rule: machine-speed-credential-reuse
    processes:
      sh: {pid: 40, tgid: 40, ppid: 30, start: 1, uid: 0, gid: 0, comm: sh, exe: /bin/sh, cgroup_id: 1, ancestors: [30, 1]}
      cat: {pid: 41, tgid: 41, ppid: 40, start: 2, uid: 0, gid: 0, comm: cat, exe: /usr/bin/cat, cgroup_id: 1, ancestors: [40, 30, 1]}
    defaults:
      net: {protocol: tcp, family: 4, direction: outbound, src_addr: 0.0.0.0, src_port: 0, dst_port: 22, outcome: in_progress, conn: 1, off_host: true}
      file: {watched: /root/.ssh/id_ed25519, category: ssh_key, dev: 1, ino: 2, via: syscall}
    cases:
      - name: five hosts after a read
        expect: 1
        events:
          - {ts: 1000ms, kind: cred_open, process: cat, file: {}}
          - {ts: 1100ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.1}}
          - {ts: 1150ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.2}}
          - {ts: 1200ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.3}}
          - {ts: 1250ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.4}}
          - {ts: 1300ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.5}}
      - name: four hosts after a read are below the raised threshold
        expect: 0
        events:
          - {ts: 1000ms, kind: cred_open, process: cat, file: {}}
          - {ts: 1100ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.1}}
          - {ts: 1150ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.2}}
          - {ts: 1200ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.3}}
          - {ts: 1250ms, kind: connect, process: sh, net: {dst_addr: 10.0.0.4}}
";

#[test]
fn rules_check_and_test_on_the_pack_plus_a_user_file() {
    let s = Scratch::new("ovr-cli");
    let tuning = s.file("tuning.yaml", TUNING);
    let o = Command::new(detector())
        .args(["rules", "check"])
        .arg(&tuning)
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "(1 disabled: proc-environ-of-other-process at {}:3:14), 2 override(s),",
            tuning.display()
        )),
        "{text}"
    );

    let o = Command::new(detector())
        .args(["rules", "test"])
        .arg(&tuning)
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    // The pack's cases of the disabled rule are skipped, those of the raised rule that now
    // come out differently are the override's effect, and the user's own cases pass.
    assert!(
        text.lines()
            .any(|l| l.starts_with("SKIP proc-environ-of-other-process / ")
                && l.contains(&format!("disabled at {}:3:14", tuning.display()))),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("CHANGED machine-speed-credential-reuse / ")
                && l.contains(&format!(
                    "as the override at {}:4:5 makes it",
                    tuning.display()
                ))
        ),
        "{text}"
    );
    assert!(
        text.contains("PASS machine-speed-credential-reuse / five hosts after a read"),
        "{text}"
    );
    assert!(
        text.contains(
            "PASS machine-speed-credential-reuse / four hosts after a read are below the raised threshold"
        ),
        "{text}"
    );
    assert!(text.contains(" 0 failed, "), "{text}");

    // A user case that the override breaks is a failure (exit 1).
    let wrong = s.file(
        "wrong.yaml",
        &TUNING.replace("        expect: 0\n", "        expect: 1\n"),
    );
    let o = Command::new(detector())
        .args(["rules", "test"])
        .arg(&wrong)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL machine-speed-credential-reuse / four hosts after a read"),
        "{text}"
    );
}

#[test]
fn bad_overrides_are_positioned_errors() {
    let s = Scratch::new("ovr-bad");
    let bad = s.file(
        "bad.yaml",
        "overrides:\n  - rule: no-such-rule\n    enabled: false\n  - rule: machine-speed-credential-reuse\n    correlation: {group-by: [process.identity]}\n  - rule: bb-cred-access\n    enabled: false\n",
    );
    let other = s.file(
        "other.yaml",
        "overrides:\n  - rule: port-sweep\n    suppress: 1h\n",
    );
    let again = s.file(
        "zz-again.yaml",
        "overrides:\n  - rule: port-sweep\n    suppress: 2h\n",
    );
    let o = Command::new(detector())
        .args(["rules", "check"])
        .args([&bad, &other, &again])
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let b = bad.display();
    for want in [
        format!("{b}:2:11: override of unknown rule `no-such-rule`"),
        format!("{b}:5:19: `correlation.group-by` cannot be overridden"),
        format!("{b}:7:14: `bb-cred-access` is disabled, but the enabled correlation"),
        format!(
            "{}:3:5: `suppress` of rule `port-sweep` is already overridden at {}:3:5",
            again.display(),
            other.display()
        ),
    ] {
        assert!(text.lines().any(|l| l.starts_with(&want)), "{want}\n{text}");
    }
    assert!(text.contains("no rules loaded"), "{text}");
}

/// A copy of the pack is still a copy: every rule a duplicate, as before overrides existed.
#[test]
fn a_copied_pack_still_reports_every_duplicate() {
    let s = Scratch::new("ovr-copy");
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let copy = s.path("rules");
    std::fs::create_dir_all(&copy).unwrap();
    let mut ids = 0;
    for e in std::fs::read_dir(&pack).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            ids += text.lines().filter(|l| l.starts_with("  - id: ")).count();
            std::fs::write(copy.join(p.file_name().unwrap()), text).unwrap();
        }
    }
    assert!(ids > 10, "{ids} rules in the pack?");
    let o = Command::new(detector())
        .args(["rules", "check"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let dups = text
        .lines()
        .filter(|l| l.contains(": duplicate rule id `") && l.contains("use `overrides:`"))
        .count();
    assert_eq!(dups, ids, "{text}");
}

/// Hosts for fan-outs: `count` addresses 10.<net>.0.2… in the link's second namespace (on its
/// loopback: the first namespace reaches them over the veth, and nothing listens, so each
/// connect is refused at once).
fn hosts(link: &Link, net: u8, count: u8) -> Vec<String> {
    (0..count)
        .map(|i| {
            let a = format!("10.{net}.0.{}", 10 + i);
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
            a
        })
        .collect()
}

/// A shell in the link's first namespace that reads `key` (with `cat`) and connects to each
/// host's port 22 from the shell itself; returns the shell's pid.
fn fanout(link: &Link, key: &Path, hosts: &[String]) -> u32 {
    let script = r#"key=$1; shift
cat "$key" > /dev/null
for h in "$@"; do { : > "/dev/tcp/$h/22"; } 2>/dev/null; done
exit 0"#;
    let o = Command::new("ip")
        .args(["netns", "exec", &link.a.0, "bash", "-c", script, "fanout"])
        .arg(key)
        .args(hosts)
        .spawn()
        .unwrap();
    let pid = o.id();
    let st = o.wait_with_output().unwrap().status;
    assert!(st.success(), "fan-out script: {st}");
    pid
}

/// A private copy of `cat` reads the environment of the test process (another process):
/// `proc-environ-of-other-process` is about this. Its own executable keeps its alerts apart
/// from any other `cat` on the machine (the rule is suppressed per identity and executable).
fn read_environ(s: &Scratch) -> u32 {
    let cat = s.path("envcat");
    if !cat.exists() {
        std::fs::copy("/bin/cat", &cat).unwrap();
    }
    let c = Command::new(&cat)
        .arg(format!("/proc/{}/environ", std::process::id()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = c.id();
    assert!(c.wait_with_output().unwrap().status.success());
    pid
}

fn alerts_of(lines: &str) -> Vec<serde_json::Value> {
    lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v.get("rule").is_some())
        .collect()
}

/// Alerts of `rule` about the process tree rooted at `root` (the fan-out shell: its `cat`'s
/// tree) or about process `pid`.
fn about(alerts: &[serde_json::Value], rule: &str, pid: u32) -> usize {
    alerts
        .iter()
        .filter(|a| {
            a["rule"]["id"] == rule
                && (a["process"]["tgid"] == pid
                    || a["group"]["process.tree"].as_str() == Some(pid.to_string().as_str()))
        })
        .count()
}

/// The same live recording replayed with and without the overrides: the disabled rule's alert
/// and the three-host fan-out's go away, the five-host fan-out still alerts.
#[test]
fn replay_of_a_recording_with_and_without_overrides() {
    let s = Scratch::new("ovr-replay");
    let key = s.file("keys/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----");
    let tuning = s.file("tuning.yaml", TUNING);
    let link = Link::new("ovr", 231);
    let three = hosts(&link, 231, 3);
    let five: Vec<String> = (0..5).map(|i| format!("10.231.0.{}", 20 + i)).collect();
    for a in &five {
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
    let rec = s.path("rec.ndjson");
    let mut child = Command::new(detector())
        .args([
            "record",
            "-o",
            rec.to_str().unwrap(),
            "--duration",
            "8s",
            "--watch",
        ])
        .arg(format!("{}=ssh_key", key.display()))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "recording");
    // Apart in time: the windows are one second.
    let small = fanout(&link, &key, &three);
    std::thread::sleep(Duration::from_millis(1500));
    let big = fanout(&link, &key, &five);
    let env = read_environ(&s);
    let st = child.wait().unwrap();
    assert!(st.success(), "record: {st}");

    let replay = |extra: &[&Path]| {
        let mut c = Command::new(detector());
        c.arg("replay").arg(&rec);
        for p in extra {
            c.arg("--rules").arg(p);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", out(&o));
        alerts_of(&String::from_utf8_lossy(&o.stdout))
    };
    let plain = replay(&[]);
    let msr = "machine-speed-credential-reuse";
    let env_rule = "proc-environ-of-other-process";
    assert_eq!(about(&plain, msr, small), 1, "{plain:#?}");
    assert_eq!(about(&plain, msr, big), 1, "{plain:#?}");
    assert_eq!(about(&plain, env_rule, env), 1, "{plain:#?}");
    let tuned = replay(&[&tuning]);
    assert_eq!(about(&tuned, msr, small), 0, "{tuned:#?}");
    assert_eq!(about(&tuned, msr, big), 1, "{tuned:#?}");
    assert_eq!(about(&tuned, env_rule, env), 0, "{tuned:#?}");
}

/// Waits (60 s at most) for a stderr line containing `marker`, then keeps draining stderr.
fn wait_for_line(child: &mut Child, marker: &str) {
    let err = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
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
        .unwrap_or_else(|_| panic!("no `{marker}` on stderr within 60 s"));
}

/// `detector run --config` with `run.rules: [tuning.yaml]`: the disabled rule's event is seen
/// (`--events`) but raises nothing, three hosts no longer alert and five do; after a SIGHUP
/// with the override file gone from the config, the same read alerts again.
#[test]
fn run_config_with_an_override_file_changes_what_alerts() {
    let s = Scratch::new("ovr-run");
    let key = s.file("keys/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----");
    let tuning = s.file("tuning.yaml", TUNING);
    let cfg = s.path("agent.yaml");
    let write_cfg = |rules: bool| {
        let r = if rules {
            format!("  rules: [{}]\n", tuning.display())
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "run:\n  state_dir: {}\n{r}sinks:\n  - stdout: {{format: native}}\n",
                s.path("state").display()
            ),
        )
        .unwrap();
    };
    write_cfg(true);
    let link = Link::new("ovq", 232);
    let three = hosts(&link, 232, 3);
    let five: Vec<String> = (0..5).map(|i| format!("10.232.0.{}", 20 + i)).collect();
    for a in &five {
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
    let mut child = Command::new(detector())
        .args([
            "run",
            "--events",
            "--config",
            cfg.to_str().unwrap(),
            "--watch",
        ])
        .arg(format!("{}=ssh_key", key.display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    wait_for_line(&mut child, "capturing");
    let wait = |d: Duration, pred: &dyn Fn(&serde_json::Value) -> bool| -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if lines.lock().unwrap().iter().any(pred) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let msr = "machine-speed-credential-reuse";
    let env_rule = "proc-environ-of-other-process";
    let env = read_environ(&s);
    let small = fanout(&link, &key, &three);
    std::thread::sleep(Duration::from_millis(1500));
    let big = fanout(&link, &key, &five);
    assert!(
        wait(Duration::from_secs(10), &|v| v["rule"]["id"] == msr
            && v["group"]["process.tree"].as_str()
                == Some(big.to_string().as_str())),
        "five hosts raised no {msr}"
    );
    // Everything before the five-host alert has been judged by now (events are handled in
    // order): the environ read was seen, and neither it nor three hosts alerted.
    let seen = lines.lock().unwrap().clone();
    assert!(
        seen.iter().any(|v| v["kind"] == "cred_open"
            && v["process"]["tgid"] == env
            && v["file"]["category"] == "environ"),
        "the agent never saw the environ read"
    );
    let alerts: Vec<serde_json::Value> = seen
        .into_iter()
        .filter(|v| v.get("rule").is_some())
        .collect();
    assert_eq!(about(&alerts, env_rule, env), 0, "{alerts:#?}");
    assert_eq!(about(&alerts, msr, small), 0, "{alerts:#?}");

    // Without the override file the rule is back.
    write_cfg(false);
    tests::sh(&["kill", "-HUP", &child.id().to_string()]);
    assert!(
        wait(Duration::from_secs(10), &|v| v["rule"]["id"]
            == "detector-reload"
            && v["group"]["outcome"] == "success"
            && v["group"]["summary"].as_str().is_some_and(
                |x| x.contains("added: [proc-environ-of-other-process]")
            )),
        "no successful reload that re-adds the rule"
    );
    let again = read_environ(&s);
    assert!(
        wait(Duration::from_secs(10), &|v| v["rule"]["id"] == env_rule
            && v["process"]["tgid"] == again),
        "the environ rule did not alert once the override was gone"
    );
    tests::sh(&["kill", "-TERM", &child.id().to_string()]);
    assert!(child.wait().unwrap().success());
}
