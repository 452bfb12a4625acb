//! The credential ledger under the real agent (`detector run`, real kernel programs): reads by
//! different users in different cgroups, ownership and the findings, reach, a rotation by a
//! writer and a copy left behind, persistence across restarts, `kill -9` in the middle of
//! writes, a corrupt file set aside, a first-schema file migrated, and a full disk that turns
//! the ledger memory-only and back.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::{chown, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{actor_path, free_port, sh, Scratch};

fn detector() -> PathBuf {
    let p = actor_path().with_file_name("detector");
    assert!(p.exists(), "detector binary missing at {}", p.display());
    p
}

/// `detector run` as a child: stdout lines (alerts, inventory records) on a channel.
struct Agent {
    child: Option<Child>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    addr: String,
}

impl Agent {
    fn start(state: &Path, config: &Path, extra: &[&str]) -> Agent {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(detector())
            .arg("run")
            .arg("--state-dir")
            .arg(state)
            .arg("--config")
            .arg(config)
            .args(["--metrics-addr", &addr])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn detector run");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let mut a = Agent {
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
            addr,
        };
        // Up once the endpoint answers and the ledger has opened its file.
        let end = Instant::now() + Duration::from_secs(30);
        while !(a.get("/health").is_some() && a.log().contains("credential ledger")) {
            assert!(Instant::now() < end, "agent did not come up: {}", a.log());
            if let Some(c) = a.child.as_mut() {
                assert!(c.try_wait().unwrap().is_none(), "agent exited: {}", a.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(10))
            .send()
            .ok()?;
        let st = r.status().as_u16();
        Some((st, r.text().ok()?))
    }

    /// The running agent's record of `key` (`/inventory?show=`).
    fn show(&self, key: &str) -> Option<Value> {
        let q: String = form(&[("show", key)]);
        match self.get(&format!("/inventory?{q}")) {
            Some((200, body)) => Some(serde_json::from_str(&body).unwrap()),
            Some((404, _)) => None,
            other => panic!("/inventory?{q}: {other:?}\n{}", self.log()),
        }
    }

    /// Waits until the running agent's record of `key` satisfies `pred`.
    fn wait_record(&self, key: &str, d: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + d;
        loop {
            if let Some(r) = self.show(key) {
                if pred(&r) {
                    return r;
                }
                assert!(Instant::now() < end, "record of {key} never matched: {r:#}");
            } else {
                assert!(Instant::now() < end, "no record of {key}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every stdout document so far, and those arriving within `d`, until `pred` holds for one.
    fn wait_line(&mut self, d: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    fn stop(mut self) -> String {
        let mut c = self.child.take().unwrap();
        sh(&["kill", "-TERM", &c.id().to_string()]);
        let st = c.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(st.success(), "agent exit on SIGTERM: {st}\n{}", self.log());
        self.log()
    }

    fn kill9(mut self) -> String {
        let mut c = self.child.take().unwrap();
        sh(&["kill", "-KILL", &c.id().to_string()]);
        let _ = c.wait();
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd`, its output discarded; it must succeed.
fn quiet(cmd: &[&str]) {
    let st = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

fn form(kv: &[(&str, &str)]) -> String {
    kv.iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `detector inventory … --json` on the file: one JSON document per line (or one object).
fn inventory(state: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(detector())
        .arg("inventory")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detector inventory {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if args.first() == Some(&"show") {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A user made for the test (and its home), removed on drop.
struct User {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl User {
    fn new(tag: &str) -> User {
        let name = format!("dtl{tag}{}", std::process::id() % 100_000);
        let home = PathBuf::from(format!("/home/{name}"));
        let _ = Command::new("userdel").args(["-r", &name]).output();
        sh(&[
            "useradd",
            "-m",
            "-d",
            home.to_str().unwrap(),
            "-s",
            "/bin/sh",
            &name,
        ]);
        let out = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // Readable by the other test user: the non-owner read is a real read.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        User { name, uid, home }
    }

    /// A key in this user's ~/.ssh, owned by the user, readable by others.
    fn key(&self, content: &str) -> PathBuf {
        let dir = self.home.join(".ssh");
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("id_ed25519");
        std::fs::write(&key, content).unwrap();
        for p in [&dir, &key] {
            chown(p, Some(self.uid), Some(self.uid)).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        key
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// A cgroup made for the test (`/sys/fs/cgroup/<slice>/<unit>`), removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(slice: &str, unit: &str) -> Cgroup {
        let root = detector::sources::preflight::cgroup2_root()
            .expect("cgroup v2")
            .join(slice);
        let p = root.join(unit);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Cgroup(p)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Runs the actor (a copy at `actor`) as `uid` inside cgroup `cg`; returns its pid.
fn run_as(cg: &Cgroup, uid: u32, actor: &Path, args: &[&str]) -> u32 {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec setpriv --reuid={uid} --regid={uid} --clear-groups \"$0\" \"$@\"",
        cg.0.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(actor)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = out.id();
    let o = out.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "actor {args:?} as {uid}: {:?}",
        o.status
    );
    pid
}

fn actor_copy(s: &Scratch) -> PathBuf {
    let a = s.path("bin/actor");
    std::fs::create_dir_all(a.parent().unwrap()).unwrap();
    std::fs::copy(actor_path(), &a).unwrap();
    std::fs::set_permissions(s.path("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    a
}

fn config(s: &Scratch, extra: &str) -> PathBuf {
    s.file(
        "agent.yaml",
        &format!("ledger:\n  flush_interval: 200ms\n  reach_window: 5s\n{extra}"),
    )
}

/// The identities that used a credential, as (identity, owner, count), sorted; without other
/// agents' (other tests run agents concurrently, whose default watch list covers the test
/// users' keys: their fingerprinting reads are uses in this agent's ledger).
fn identities_of(r: &Value) -> Vec<(String, Value, u64)> {
    let mut v: Vec<(String, Value, u64)> = r["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| !u["identity"].as_str().unwrap().contains("/detector"))
        .map(|u| {
            (
                u["identity"].as_str().unwrap().to_string(),
                u["owner"].clone(),
                u["count"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn rule_for<'a>(rule: &'a str, key: &'a Path) -> impl Fn(&Value) -> bool + 'a {
    move |v: &Value| v["rule"]["id"] == rule && v["credential"]["watched"] == key.to_str().unwrap()
}

#[test]
fn reads_by_two_users_in_two_cgroups_their_findings_and_persistence_across_restarts() {
    let s = Scratch::new("ledger-users");
    let actor = actor_copy(&s);
    let (alice, bob) = (User::new("a"), User::new("b"));
    let key = alice.key("-----BEGIN OPENSSH PRIVATE KEY----- alice");
    let slice = format!("dtl-{}.slice", std::process::id());
    let (cga, cgb) = (
        Cgroup::new(&slice, "app-a.service"),
        Cgroup::new(&slice, "app-b.service"),
    );
    let (ida, idb) = ("unit:app-a.service", "unit:app-b.service");
    // An old token as well (mtime 120 days ago) for the rotation-policy finding.
    let token = s.file("srv/app/token", "not-a-real-token");
    sh(&["touch", "-d", "120 days ago", token.to_str().unwrap()]);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(s.path("srv"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.path("srv/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = s.path("state");
    let cfg = config(&s, "");
    let watch = [
        "--watch".to_string(),
        format!("{}=ssh_key", key.display()),
        "--watch".to_string(),
        format!("{}=token", token.display()),
    ];
    let watch: Vec<&str> = watch.iter().map(String::as_str).collect();
    let mut agent = Agent::start(&state, &cfg, &watch);
    let keys = key.to_str().unwrap();
    // Alice reads her key, in her cgroup; bob reads it, in his, then connects to two hosts.
    run_as(&cga, alice.uid, &actor, &["open", keys]);
    let port = free_port().to_string();
    let bob_pid = run_as(&cgb, bob.uid, &actor, &["fanout", keys, "2", &port]);
    let r = agent.wait_record(keys, Duration::from_secs(10), |r| {
        identities_of(r).len() == 2 && r["reach"].as_array().unwrap().len() == 2
    });
    assert_eq!(r["owner"], format!("user:{}", alice.name), "{r:#}");
    assert_eq!(r["owner_source"], "home");
    let ids = identities_of(&r);
    assert_eq!(ids[0], (ida.to_string(), Value::Bool(true), 1), "{r:#}");
    assert_eq!(ids[1].0, idb);
    assert_eq!(ids[1].1, Value::Bool(false));
    assert!(
        r["flags"]["shared"] == true && r["flags"]["non_owner"] == true,
        "{r:#}"
    );
    let bob_use = &r["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["identity"] == idb)
        .unwrap();
    assert_eq!(bob_use["last_process"]["user"], bob.name);
    assert_eq!(bob_use["last_process"]["tgid"], bob_pid);
    let mut reach: Vec<String> = r["reach"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{} {}:{}",
                x["identity"].as_str().unwrap(),
                x["addr"].as_str().unwrap(),
                x["port"]
            )
        })
        .collect();
    reach.sort();
    assert_eq!(
        reach,
        vec![
            format!("{idb} 127.0.0.2:{port}"),
            format!("{idb} 127.0.0.3:{port}")
        ]
    );
    // The findings, as alerts through the sinks.
    // (Other agents on the host read the key too, to fingerprint it: their own identities.)
    let is_non_owner = rule_for("ledger-credential-used-by-non-owner", &key);
    let non_owner = agent
        .wait_line(Duration::from_secs(5), |v| {
            is_non_owner(v) && v["identity"] == idb
        })
        .unwrap_or_else(|| panic!("no non-owner alert: {}", agent.log()));
    assert_eq!(non_owner["identity"], idb);
    assert_eq!(non_owner["rule"]["severity"], "high");
    assert_eq!(non_owner["attack"], serde_json::json!(["T1552.004"]));
    assert_eq!(non_owner["process"]["tgid"], bob_pid);
    assert_eq!(non_owner["group"]["owner"], format!("user:{}", alice.name));
    let shared = agent
        .wait_line(
            Duration::from_secs(5),
            rule_for("ledger-shared-credential", &key),
        )
        .expect("a shared-credential alert");
    assert_eq!(shared["group"]["identity_count"], "2");
    // The old token, read by alice's workload: past its 90-day rotation policy.
    run_as(&cga, alice.uid, &actor, &["open", token.to_str().unwrap()]);
    let old = agent
        .wait_line(
            Duration::from_secs(5),
            rule_for("ledger-credential-past-rotation", &token),
        )
        .unwrap_or_else(|| panic!("no past-rotation alert: {}", agent.log()));
    assert_eq!(old["group"]["policy_days"], "90");
    assert!(
        old["group"]["age_days"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 119
    );
    let log = agent.stop();
    assert!(log.contains("credential ledger open"), "{log}");

    // On disk: the same story, read while no agent runs.
    let disk = inventory(&state, &["show", keys]).remove(0);
    assert_eq!(identities_of(&disk), identities_of(&r));
    assert_eq!(disk["reach"].as_array().unwrap().len(), 2);
    // Of this test's credentials, the key is shared and the token is not (other programs on
    // the machine share credentials of their own under the default watch list).
    let shared: Vec<Value> = inventory(&state, &["--shared"])
        .into_iter()
        .map(|r| r["path"].clone())
        .collect();
    assert!(shared.contains(&Value::from(keys)), "{shared:?}");
    assert!(
        !shared.contains(&Value::from(token.to_str().unwrap())),
        "{shared:?}"
    );
    let by_bob = inventory(&state, &["--identity", idb]);
    assert_eq!(by_bob.len(), 1);
    // Other credentials of this machine may be stale as well (the default watch list covers
    // every home): the old token is among them, the fresh key is not.
    let stale: Vec<Value> = inventory(&state, &["--stale", "100"])
        .into_iter()
        .map(|r| r["path"].clone())
        .collect();
    assert!(
        stale.contains(&Value::from(token.to_str().unwrap())),
        "{stale:?}"
    );
    assert!(!stale.contains(&Value::from(keys)), "{stale:?}");

    // Restarted: the ledger carries on where it was, and does not alert again what it alerted.
    let mut agent = Agent::start(&state, &cfg, &watch);
    run_as(&cga, alice.uid, &actor, &["open", keys]);
    run_as(&cgb, bob.uid, &actor, &["open", keys]);
    let r = agent.wait_record(keys, Duration::from_secs(10), |r| {
        identities_of(r).iter().map(|x| x.2).sum::<u64>() >= 4
    });
    assert_eq!(identities_of(&r)[0].2, 2, "{r:#}");
    // Within repeat_after (7 days) of the first alerts: none again.
    std::thread::sleep(Duration::from_secs(1));
    agent.drain();
    assert!(
        !agent
            .seen
            .iter()
            .any(|v| is_non_owner(v) && v["identity"] == idb),
        "alerted again after a restart: {:?}",
        agent.seen
    );
    agent.stop();
    // On disk what the agent held: the identities and their counts. (The total of uses also
    // counts other agents' fingerprinting reads, which may land between the two looks.)
    let disk = inventory(&state, &["show", keys]).remove(0);
    assert_eq!(identities_of(&disk), identities_of(&r));
}

#[test]
fn a_rotation_names_its_writer_and_a_copy_left_behind_is_found() {
    let s = Scratch::new("ledger-rotation");
    let token = s.file("run/app/token", "token-v1");
    let copy = s.file("srv/batch/token.bak", "token-v1");
    let state = s.path("state");
    let cfg = config(&s, "");
    let watch = [
        "--watch".to_string(),
        format!("{}=token", token.display()),
        "--watch".to_string(),
        format!("{}=token", copy.display()),
    ];
    let watch: Vec<&str> = watch.iter().map(String::as_str).collect();
    let mut agent = Agent::start(&state, &cfg, &watch);
    let (tok, cp) = (token.to_str().unwrap(), copy.to_str().unwrap());
    // The app reads the token; a batch job reads a copy of it elsewhere: shared content.
    tests::actor(&["open", tok]);
    quiet(&["cat", cp]);
    let shared = agent
        .wait_line(Duration::from_secs(10), |v| {
            v["rule"]["id"] == "ledger-shared-credential" && v["group"]["copies"].is_string()
        })
        .unwrap_or_else(|| panic!("no shared alert: {}", agent.log()));
    assert!(
        shared["group"]["copies"].as_str().unwrap().contains(cp),
        "{shared}"
    );
    // A refresher rewrites the token in place; the app reads the new content.
    let (writer, _) = tests::actor(&["write", tok, "token-v2"]);
    std::thread::sleep(Duration::from_millis(300));
    tests::actor(&["open", tok]);
    let r = agent.wait_record(tok, Duration::from_secs(10), |r| r["rotations"] == 1);
    let ch = &r["changes"][0];
    assert_eq!(ch["kind"], "content", "{r:#}");
    assert_ne!(ch["old_fingerprint"], ch["new_fingerprint"]);
    assert!(
        ch["writer"]["exe"].as_str().unwrap().ends_with("/actor"),
        "{r:#}"
    );
    assert_eq!(r["writes"], 1);
    // The writer is no user of the token.
    assert!(r["identities"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["last_process"]["tgid"] != writer));
    // The batch job still reads the old content from its copy.
    quiet(&["cat", cp]);
    let stale = agent
        .wait_line(Duration::from_secs(10), |v| {
            v["rule"]["id"] == "ledger-stale-credential-copy"
        })
        .unwrap_or_else(|| panic!("no stale-copy alert: {}", agent.log()));
    assert_eq!(stale["credential"]["watched"], cp);
    assert_eq!(stale["group"]["copy_of"], tok);
    assert_eq!(stale["identity"], "exe:/usr/bin/cat@root");
    agent.stop();
    let copies = inventory(&state, &["--stale-copy"]);
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0]["path"], cp);
}

#[test]
fn kill_9_during_writes_loses_at_most_the_last_batch_and_never_corrupts() {
    let s = Scratch::new("ledger-kill9");
    let key = s.file("keys/flood.key", "flood");
    let state = s.path("state");
    let cfg = config(&s, "");
    let w = format!("{}=secret", key.display());
    let agent = Agent::start(&state, &cfg, &["--watch", &w]);
    let ks = key.to_str().unwrap();
    tests::actor(&["flood", ks, "300"]);
    let first = agent.wait_record(ks, Duration::from_secs(10), |r| {
        r["uses"].as_u64() >= Some(300)
    });
    // Writes go on (2,000 uses a second) while the agent is killed.
    let mut flood = Command::new(actor_path())
        .args(["paced", ks, "20000", "2000"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = agent.show(ks).unwrap()["uses"].as_u64().unwrap();
    assert!(before > 300, "uses were being written: {before}");
    // More than two flush intervals (200 ms) later, mid-stream: what the agent had then is on
    // disk whatever the kill interrupts.
    std::thread::sleep(Duration::from_millis(500));
    agent.kill9();
    let _ = flood.kill();
    let _ = flood.wait();
    let db = state.join("ledger.db");
    let conn = detector::ledger::store::open_read_only(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let disk = inventory(&state, &["show", ks]).remove(0);
    let kept = disk["uses"].as_u64().unwrap();
    assert!(kept >= first["uses"].as_u64().unwrap());
    assert!(
        kept >= before,
        "{kept} uses on disk, {before} seen 500 ms (2.5 batches) before the kill"
    );
    // The next run opens it as it is.
    let agent = Agent::start(&state, &cfg, &["--watch", &w]);
    tests::actor(&["open", ks]);
    agent.wait_record(ks, Duration::from_secs(10), |r| {
        r["uses"].as_u64() > Some(kept)
    });
    let log = agent.stop();
    assert!(!log.contains("not a usable ledger"), "{log}");
}

#[test]
fn a_corrupt_ledger_is_set_aside_in_one_sentence_and_a_first_schema_one_is_migrated() {
    let s = Scratch::new("ledger-bad");
    let key = s.file("keys/k", "k");
    let state = s.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("ledger.db");
    std::fs::write(&db, vec![0x5au8; 16384]).unwrap();
    let cfg = config(&s, "");
    let w = format!("{}=secret", key.display());
    let mut agent = Agent::start(&state, &cfg, &["--watch", &w]);
    let notice = agent
        .wait_line(Duration::from_secs(10), |v| {
            v["rule"]["id"] == "detector-ledger"
        })
        .unwrap_or_else(|| panic!("no notice: {}", agent.log()));
    assert_eq!(notice["group"]["state"], "set_aside", "{notice}");
    let sentence = notice["group"]["summary"].as_str().unwrap();
    assert!(sentence.contains("not an SQLite database"), "{sentence}");
    assert!(sentence.contains("moved it to"), "{sentence}");
    assert_eq!(
        sentence.matches(". ").count(),
        0,
        "one sentence: {sentence}"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("ledger.db.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        vec![0x5au8; 16384],
        "kept as it was"
    );
    // And the new ledger works.
    let ks = key.to_str().unwrap();
    tests::actor(&["open", ks]);
    agent.wait_record(ks, Duration::from_secs(10), |r| r["uses"] == 1);
    agent.stop();

    // A ledger of the first schema, left by an older agent: migrated, its rows kept.
    let state2 = s.path("state2");
    std::fs::create_dir_all(&state2).unwrap();
    {
        let c = detector::ledger::store::Store::create_at_version(&state2.join("ledger.db"), 1)
            .unwrap();
        // Yesterday: within the retention.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            - 86_400_000_000_000;
        c.execute_batch(&format!(
            "INSERT INTO credential (id, path, category, dev, ino, present, fingerprint,
                 first_seen, last_seen, last_used, uses, writes, rotations)
             VALUES (7, '{ks}', 'secret', 1, 1, 1, NULL, {t}, {t}, {t}, 41, 0, 0);
             INSERT INTO identity VALUES (1, 'unit:old.service');
             INSERT INTO program VALUES (1, '/opt/old');
             INSERT INTO usage VALUES (7, 1, {t}, {t}, 41, NULL, NULL, 9, 9, 1, NULL, 0);"
        ))
        .unwrap();
    }
    let agent = Agent::start(&state2, &cfg, &["--watch", &w]);
    tests::actor(&["open", ks]);
    let r = agent.wait_record(ks, Duration::from_secs(10), |r| r["uses"] == 42);
    assert!(
        identities_of(&r)
            .iter()
            .any(|u| u.0 == "unit:old.service" && u.2 == 41),
        "{r:#}"
    );
    let log = agent.stop();
    assert!(log.contains("credential ledger migrated"), "{log}");
}

/// A tmpfs of `size` mounted at `dir` for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_turns_the_ledger_memory_only_and_back_with_notices() {
    let s = Scratch::new("ledger-full");
    let state = s.path("state");
    let fs = Tmpfs::new(&state, "2m");
    let keys: Vec<PathBuf> = (0..40)
        .map(|i| s.file(&format!("keys/k{i:02}"), &format!("key {i}")))
        .collect();
    let cfg = config(&s, "");
    let w = format!("{}/keys/*=secret", s.0.display());
    let mut agent = Agent::start(&state, &cfg, &["--watch", &w]);
    let k0 = keys[0].to_str().unwrap();
    tests::actor(&["open", k0]);
    agent.wait_record(k0, Duration::from_secs(10), |r| r["uses"] == 1);
    std::thread::sleep(Duration::from_millis(600));
    // Fill the file system.
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}/fill", state.display()),
            "bs=4k",
        ])
        .stderr(Stdio::null())
        .status();
    // Many new rows: every key read by processes of several identities.
    for k in &keys {
        for tool in ["cat", "head", "tail", "wc"] {
            quiet(&[tool, k.to_str().unwrap()]);
        }
    }
    let notice = agent
        .wait_line(Duration::from_secs(15), |v| {
            v["rule"]["id"] == "detector-ledger" && v["group"]["state"] == "memory_only"
        })
        .unwrap_or_else(|| panic!("no memory-only notice: {}", agent.log()));
    assert!(
        notice["group"]["summary"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{notice}"
    );
    assert_eq!(notice["rule"]["severity"], "high");
    // The ledger still answers, from memory.
    let last = keys[39].to_str().unwrap();
    let r = agent.wait_record(last, Duration::from_secs(10), |r| {
        identities_of(r).len() == 4
    });
    assert_eq!(r["uses"], 4);
    let (_, metrics) = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("detector_ledger_memory_only 1"),
        "{metrics}"
    );
    // Space again: written back, and said so.
    std::fs::remove_file(state.join("fill")).unwrap();
    agent
        .wait_line(Duration::from_secs(20), |v| {
            v["rule"]["id"] == "detector-ledger" && v["group"]["state"] == "resumed"
        })
        .unwrap_or_else(|| panic!("no resumed notice: {}", agent.log()));
    agent.stop();
    let disk = inventory(&state, &["show", last]).remove(0);
    assert_eq!(identities_of(&disk).len(), 4);
    drop(fs);
}

#[test]
fn the_agent_exports_inventory_records_to_its_sinks() {
    let s = Scratch::new("ledger-export");
    let key = s.file("keys/exported", "k");
    let state = s.path("state");
    let out = s.path("inventory.ndjson");
    let cfg = config(
        &s,
        &format!(
            "  export: {{interval: 2s}}\nsinks:\n  - file: {{path: {}, format: ocsf}}\n",
            out.display()
        ),
    );
    let w = format!("{}=secret", key.display());
    let agent = Agent::start(&state, &cfg, &["--watch", &w]);
    tests::actor(&["open", key.to_str().unwrap()]);
    let end = Instant::now() + Duration::from_secs(15);
    let rec = loop {
        let docs: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if let Some(d) = docs.into_iter().find(|d| {
            d["class_uid"] == 5040
                && d["query_evidence"]["file"]["path"] == key.to_str().unwrap()
                && d["unmapped"]["uses"] == 1
        }) {
            break d;
        }
        assert!(Instant::now() < end, "no inventory record: {}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(rec["query_result_id"], 1);
    assert_eq!(
        rec["query_evidence"]["users"][0]["name"],
        "exe:".to_string() + actor_path().to_str().unwrap() + "@root"
    );
    agent.stop();
}
