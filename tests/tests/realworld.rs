//! Every shipped rule against the real programs it is about, under the real agent
//! (`detector run` with the default pack, no config unless the rule is about config): at least
//! one attack that must raise exactly the expected alerts, and one everyday use of the same
//! programs that must raise none.
//!
//! The programs are Debian's: OpenSSH's ssh and sshd, dnsmasq, glibc's resolver (python3,
//! curl), the shadow suite, nmap; hosts are addresses of network namespaces the tests make.
//! Alerts are attributed to a scenario by process ancestry (the agent's own fork events), so
//! other agents and workloads on the machine do not disturb the counts; a scenario's
//! "nothing" is checked after a barrier that proves the agent has seen everything before it.
//!
//! Not part of the kernel suite (`kernel.rs`), which also runs inside minimal QEMU guests
//! that have none of these programs.

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    actor_path, free_port,
    real::{
        aws, detector_path, dnsmasq, expect, resolv_conf, run_ok, sshd, summary, write_sdk, Daemon,
        Detector, Env, Lab, Pod, User, SSH_OPTS,
    },
    Scratch,
};

fn agent(s: &Scratch, extra: &[&str]) -> Detector {
    Detector::start(&detector_path(), &s.path("state"), extra)
}

/// Asserts the alerts raised under `root` are exactly `want` (rule, exe, count).
#[track_caller]
fn assert_alerts(d: &Detector, root: u32, want: &[(&str, &str, usize)]) -> Vec<Value> {
    let got = d.alerts_under(root);
    assert_eq!(summary(&got), expect(want), "alerts under {root}: {got:#?}");
    got
}

/// Like `assert_alerts`, for alerts that include the credential ledger's findings: the ledger
/// decides on its own thread after its next commit (`ledger.flush_interval`), so they may
/// follow the barrier by a moment; waits (at most 10 s) for `want`, then asserts.
#[track_caller]
fn assert_alerts_with_ledger(d: &Detector, root: u32, want: &[(&str, &str, usize)]) -> Vec<Value> {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end && summary(&d.alerts_under(root)) != expect(want) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A moment more: a finding that should not be there has its chance to show.
    std::thread::sleep(Duration::from_millis(500));
    assert_alerts(d, root, want)
}

/// A user's script in the lab's client namespace.
fn as_user(lab: &Lab, u: &User) -> Env {
    Env {
        netns: Some(lab.a.clone()),
        user: u.setpriv(),
        ..Default::default()
    }
}

/// Root in the lab's client namespace.
fn as_root(lab: &Lab) -> Env {
    Env {
        netns: Some(lab.a.clone()),
        ..Default::default()
    }
}

const PYTHON: &str = "/usr/bin/python3";

// HOSTS_REUSE: the agent caches a mount namespace's hosts file by the namespace's inode
// number and re-checks it at most every 5 s; the kernel hands a new namespace the number of
// one freed shortly before, so for up to 5 s a new namespace's connections can be named from
// a dead namespace's hosts file (or not named). Scenarios that rely on a hosts file of their
// own wait that long first.

// ---------------------------------------------------------------- ssh-key-then-ssh-fanout

#[test]
fn ssh_to_three_hosts_15_s_apart_is_one_fanout_alert() {
    let s = Scratch::new("rw-sshfan");
    let lab = Lab::new("sf", 3);
    let u = User::new("sf");
    let key = u.keygen();
    let hosts: Vec<String> = (0..3).map(|i| lab.host(i)).collect();
    let server = sshd(&lab, &s.path("sshd"), &hosts, &key);
    let d = agent(&s, &[]);
    // The OpenSSH client connects, then reads the key during authentication.
    let (pid, _) = as_user(&lab, &u).run(&format!(
        "n=0; for h in {}; do [ $n -gt 0 ] && sleep 15; n=1; ssh {SSH_OPTS} $h true || exit 1; done",
        hosts.join(" ")
    ));
    d.barrier();
    let a = assert_alerts(&d, pid, &[("ssh-key-then-ssh-fanout", "/usr/bin/ssh", 1)]);
    let mut dst: Vec<&str> = a[0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    dst.sort();
    let mut want: Vec<&str> = hosts.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(dst, want, "{}", a[0]);
    assert_eq!(
        a[0]["credential"]["watched"],
        u.home.join(".ssh/id_ed25519").to_str().unwrap()
    );
    // The server side (sshd checking the account, the sessions) raised nothing.
    assert_alerts(&d, server.pid(), &[]);
}

#[test]
fn interactive_ssh_sessions_and_repeated_hosts_raise_nothing() {
    let s = Scratch::new("rw-sshbenign");
    let lab = Lab::new("sb", 2);
    let u = User::new("sb");
    let key = u.keygen();
    // sshd on IPv4 only: the IPv6 address of the name is refused and ssh tries the next one.
    let server = sshd(&lab, &s.path("sshd"), &[lab.host(0), lab.host(1)], &key);
    let hosts = s.file(
        "hosts",
        &format!(
            "127.0.0.1 localhost\n{} web1.lab.test\n{} web1.lab.test\n",
            lab.host6(0),
            lab.host(0)
        ),
    );
    std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = agent(&s, &[]);
    let env = Env {
        hosts: Some(hosts),
        ..as_user(&lab, &u)
    };
    // A person: a session on web1, a copy from it, a command on it, then another host. (The
    // first 5 s: the agent keeps a mount namespace's hosts table for 5 s by the namespace's
    // inode number, which the kernel recycles; a namespace younger than that may be named
    // from a dead one's file — see HOSTS_REUSE.)
    let (pid, out) = env.run(&format!(
        "sleep 5; ssh {SSH_OPTS} web1.lab.test 'sleep 2; hostname' && sleep 3 && \
         scp {SSH_OPTS} web1.lab.test:/etc/hostname ~/copied && sleep 2 && \
         ssh {SSH_OPTS} web1.lab.test true && sleep 2 && ssh {SSH_OPTS} {} true",
        lab.host(1)
    ));
    assert!(!out.trim().is_empty(), "the session ran");
    d.barrier();
    assert_alerts(&d, pid, &[]);
    assert_alerts(&d, server.pid(), &[]);
}

// ------------------------------------------------------- machine-speed-credential-reuse

/// A lab with dnsmasq serving `api.lab.test` (4 A, 2 AAAA), `s3.lab.test`, and
/// `svc1…3.lab.test`, plus a user with AWS credentials.
struct Cloud {
    lab: Lab,
    dns: Daemon,
    user: User,
    env: Env,
    sdk: String,
}

fn cloud(s: &Scratch, tag: &str) -> Cloud {
    let lab = Lab::new(tag, 8);
    let mut names = String::new();
    for i in 1..=4 {
        names.push_str(&format!("{} api.lab.test\n", lab.host(i)));
    }
    for i in 1..=2 {
        names.push_str(&format!("{} api.lab.test\n", lab.host6(i)));
    }
    names.push_str(&format!("{} s3.lab.test\n", lab.host(5)));
    for i in 1..=3u8 {
        names.push_str(&format!("{} svc{i}.lab.test\n", lab.host(4 + i)));
    }
    let dns = dnsmasq(&lab, &s.path("dns"), &lab.host(0), &names);
    let resolv = resolv_conf(&s.0, &lab.host(0));
    let user = User::new(tag);
    user.write(".aws/credentials", &aws(&user.name), 0o600);
    let env = Env {
        resolv: Some(resolv),
        ..as_user(&lab, &user)
    };
    let sdk = write_sdk(s);
    Cloud {
        lab,
        dns,
        user,
        env,
        sdk,
    }
}

#[test]
fn credential_read_then_three_services_within_a_second_is_machine_speed_reuse() {
    let s = Scratch::new("rw-msreuse");
    let c = cloud(&s, "ms");
    let d = agent(&s, &[]);
    let (pid, _) = c.env.run(&format!(
        "{PYTHON} {} svc1.lab.test svc2.lab.test svc3.lab.test",
        c.sdk
    ));
    d.barrier();
    let a = assert_alerts(&d, pid, &[("machine-speed-credential-reuse", PYTHON, 1)]);
    let mut dst: Vec<&str> = a[0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    dst.sort();
    assert_eq!(
        dst,
        ["svc1.lab.test", "svc2.lab.test", "svc3.lab.test"],
        "hosts by name: {}",
        a[0]
    );
    assert_eq!(
        a[0]["credential"]["watched"],
        c.user.home.join(".aws/credentials").to_str().unwrap()
    );
    assert_alerts(&d, c.dns.pid(), &[]);
    drop(c.lab);
}

#[test]
fn cloud_cli_calls_to_names_with_several_addresses_raise_nothing() {
    let s = Scratch::new("rw-msbenign");
    let c = cloud(&s, "mb");
    c.user.write(
        ".netrc",
        "machine api.lab.test login svc password s3cr3t\n",
        0o600,
    );
    // A name with four addresses in the process's own hosts file (a container's, a CLI
    // sandbox's), as the agent reads it through /proc/<pid>/root.
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for i in 1..=4 {
        hosts.push_str(&format!("{} multi.hosts.test\n", c.lab.host(i)));
    }
    let hosts = s.file("hosts", &hosts);
    std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = agent(&s, &[]);
    let env = Env {
        hosts: Some(hosts),
        ..c.env.clone()
    };
    // CLI calls a few seconds apart: each reads the credential, resolves (A and AAAA
    // queries to the resolver, glibc's RFC 6724 sorting by UDP connect() to every address),
    // and tries every address of one name in turn (nothing listens).
    let (pid, _) = env.run(&format!(
        "sleep 5; {PYTHON} {sdk} api.lab.test && sleep 2 && \
         {PYTHON} {sdk} s3.lab.test api.lab.test && sleep 2 && \
         curl -s --netrc --max-time 3 https://api.lab.test/v1/ ; sleep 2 && \
         {PYTHON} {sdk} multi.hosts.test",
        sdk = c.sdk
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
    assert_alerts(&d, c.dns.pid(), &[]);
}

// ---------------------------------------------------------------- shadow and accounts

#[test]
fn account_administration_with_the_shadow_suite_raises_nothing() {
    let s = Scratch::new("rw-accounts");
    let d = agent(&s, &[]);
    let name = format!("dtsys{}", std::process::id());
    // What a package install does (adduser --system / useradd -r), and routine administration.
    let (pid, _) = Env::default().run(&format!(
        "set -e; useradd -r -s /usr/sbin/nologin -d /nonexistent {n}; usermod -c 'test daemon' {n}; \
         passwd -S {n} >/dev/null; chage -l {n} >/dev/null; echo '{n}:*' | chpasswd -e; \
         groupadd {n}x; groupmod -n {n}y {n}x; gpasswd -a {n} {n}y >/dev/null; groupdel {n}y; \
         pwck -r >/dev/null 2>&1 || true; grpck -r >/dev/null 2>&1 || true; \
         EDITOR=true vipw -s >/dev/null 2>&1; userdel {n}; \
         adduser --system --group --quiet --no-create-home {n}z; deluser --quiet --system {n}z; \
         groupdel {n}z 2>/dev/null || true",
        n = name
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

#[test]
fn a_script_reading_the_shadow_files_alerts() {
    let s = Scratch::new("rw-shadowread");
    let d = agent(&s, &[]);
    let (pid, _) = Env::default().run(&format!(
        "{PYTHON} -c 'open(\"/etc/shadow\").read()' && cat /etc/gshadow >/dev/null"
    ));
    d.barrier();
    assert_alerts(
        &d,
        pid,
        &[
            ("shadow-read-unexpected", PYTHON, 1),
            ("shadow-read-unexpected", "/usr/bin/cat", 1),
        ],
    );
}

/// The shadow suite replaces `/etc/shadow` by rename, and on ext4 the next file it writes,
/// `/etc/group+` (renamed to `/etc/group`), takes the freed inode number while the kernel
/// still holds it as a watched key: ordinary readers of `/etc/group` meanwhile must not become
/// readers of `/etc/shadow`, and a real read of it afterwards still alerts.
#[test]
fn readers_of_a_file_that_took_shadows_inode_number_raise_nothing() {
    let s = Scratch::new("rw-reused");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = agent(&s, &["--metrics-addr", &addr]);
    let name = format!("dtre{}x", std::process::id());
    let stop = s.path("stop");
    // Readers as tight as they come (`cat`, glibc's `getent`), beside user administration;
    // the script counts the rounds in which `/etc/group` took shadow's number.
    let (pid, out) = Env::default().run(&format!(
        "set -e; ( while [ ! -e {stop} ]; do cat /etc/group >/dev/null; getent group root >/dev/null; done ) & \
         taken=0; for i in $(seq 1 25); do old=$(stat -c %i /etc/shadow); useradd -r {name}$i; \
         [ \"$(stat -c %i /etc/group)\" = \"$old\" ] && taken=$((taken+1)); userdel {name}$i; done; \
         touch {stop}; wait; echo taken=$taken",
        stop = stop.display()
    ));
    let taken: u32 = out
        .trim()
        .rsplit("taken=")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    assert!(
        taken > 0,
        "/etc/group never took /etc/shadow's inode number: the scenario did not happen"
    );
    d.barrier();
    assert_alerts(&d, pid, &[]);
    let metrics = reqwest::blocking::get(format!("http://{addr}/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    let dropped = tests::bench::metric_sum(&metrics, "detector_reused_inode_matches_total");
    assert!(
        dropped > 0.0,
        "no reader hit a reused number in {taken} rounds: the test proved nothing"
    );
    // Still a shadow reader's alert when one reads it.
    let (pid, _) = Env::default().run("head -c 1 /etc/shadow >/dev/null");
    d.barrier();
    assert_alerts(&d, pid, &[("shadow-read-unexpected", "/usr/bin/head", 1)]);
}

#[test]
fn opening_shadow_to_append_outside_the_account_tools_alerts() {
    let s = Scratch::new("rw-shadowwrite");
    let d = agent(&s, &[]);
    // Opened for appending, nothing written: the file stays as it is.
    let (pid, _) = Env::default().run(&format!(
        ": >> /etc/shadow && {PYTHON} -c 'open(\"/etc/gshadow\", \"a\").close()'"
    ));
    d.barrier();
    assert_alerts(
        &d,
        pid,
        &[
            ("shadow-written-outside-account-tools", "/bin/sh", 1),
            ("shadow-written-outside-account-tools", PYTHON, 1),
        ],
    );
}

// ------------------------------------------------- credential writes, copies, ownership

#[test]
fn root_rewriting_a_users_credentials_alerts() {
    let s = Scratch::new("rw-credwrite");
    let u = User::new("cw");
    let creds = u.write(".aws/credentials", &aws(&u.name), 0o600);
    let d = agent(&s, &[]);
    let (pid, _) = Env::default().run(&format!(
        "printf '[default]\\naws_access_key_id = AKIAEVILEXAMPLE\\n' > {}",
        creds.display()
    ));
    d.barrier();
    let a = assert_alerts(
        &d,
        pid,
        &[("credential-modified-by-another-user", "/bin/sh", 1)],
    );
    assert_eq!(a[0]["credential"]["watched"], creds.to_str().unwrap());
}

#[test]
fn token_rotation_by_writers_and_readers_raises_nothing() {
    let s = Scratch::new("rw-rotation");
    let u = User::new("rt");
    let app = User::new("ra");
    u.write(".aws/credentials", &aws(&u.name), 0o600);
    let secrets = Path::new("/run/secrets").join(format!("dt-{}", std::process::id()));
    std::fs::create_dir_all(&secrets).unwrap();
    let token = secrets.join("token");
    std::fs::write(&token, "t0").unwrap();
    run_ok(Command::new("chown").arg(&app.name).arg(&token));
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sdk = write_sdk(&s);
    let d = agent(&s, &[]);
    // The owner refreshes its credentials in place (aws configure set, sso) and its SDK reads
    // them after each refresh.
    let (owner, _) = Env {
        user: u.setpriv(),
        ..Default::default()
    }
    .run(&format!(
        "for i in 1 2 3; do {PYTHON} -c \"import os; p=os.path.expanduser('~/.aws/credentials'); open(p, 'w').write('''{creds}'''.replace('EXAMPLE', 'EXAMPLE$i'))\" && {PYTHON} {sdk} && sleep 1; done",
        creds = aws(&u.name)
    ));
    // A vault-agent-like refresher (root) rewrites a token in place, then by atomic rename;
    // the application (another user) reads each version.
    let (refresher, _) = Env::default().run(&format!(
        "for i in 1 2 3; do printf 'token-%s' $i > {t}; setpriv {ap} cat {t} >/dev/null; sleep 1; done; \
         for i in 4 5; do printf 'token-%s' $i > {t}.tmp && chown {a} {t}.tmp && mv {t}.tmp {t}; sleep 1; setpriv {ap} cat {t} >/dev/null; done",
        t = token.display(),
        a = app.name,
        ap = app.setpriv().join(" ")
    ));
    d.barrier();
    assert_alerts(&d, owner, &[]);
    assert_alerts(&d, refresher, &[]);
    let _ = std::fs::remove_dir_all(&secrets);
    let _ = std::fs::remove_dir("/run/secrets");
}

#[test]
fn root_reading_a_users_key_alerts_and_the_owner_reading_it_does_not() {
    let s = Scratch::new("rw-nonowner");
    let u = User::new("no");
    u.keygen();
    let d = agent(&s, &[]);
    let (owner, _) = Env {
        user: u.setpriv(),
        ..Default::default()
    }
    .run("ssh-keygen -y -f ~/.ssh/id_ed25519 >/dev/null");
    let (root, _) = Env::default().run(&format!(
        "cat {}/.ssh/id_ed25519 >/dev/null",
        u.home.display()
    ));
    d.barrier();
    assert_alerts(&d, owner, &[]);
    assert_alerts_with_ledger(
        &d,
        root,
        &[
            ("ledger-credential-used-by-non-owner", "/usr/bin/cat", 1),
            ("ledger-shared-credential", "/usr/bin/cat", 1),
        ],
    );
}

#[test]
fn one_key_copied_to_a_second_workload_is_a_shared_fingerprint() {
    let s = Scratch::new("rw-sharedfp");
    let u1 = User::new("f1");
    let u2 = User::new("f2");
    // Two applications' deploy keys, outside any home (other agents on the machine watch the
    // homes and would read the copies to fingerprint them, adding identities of their own):
    // the second one is a copy of the first.
    let key = s.path("apps/one/deploy_key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let copy = s.path("apps/two/deploy_key");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&key, &copy).unwrap();
    for (k, u) in [(&key, &u1), (&copy, &u2)] {
        run_ok(Command::new("chown").arg(&u.name).arg(k));
    }
    let d = agent(
        &s,
        &[
            "--watch",
            &format!("{}/apps/*/deploy_key=ssh_key", s.0.display()),
        ],
    );
    let read = |u: &User, k: &Path| {
        Env {
            user: u.setpriv(),
            ..Default::default()
        }
        .run(&format!("ssh-keygen -y -f {} >/dev/null", k.display()))
        .0
    };
    let r1 = read(&u1, &key);
    d.barrier();
    let r2 = read(&u2, &copy);
    d.barrier();
    assert_alerts(&d, r1, &[]);
    assert_alerts_with_ledger(
        &d,
        r2,
        &[("ledger-shared-credential", "/usr/bin/ssh-keygen", 1)],
    );
}

#[test]
fn a_credential_unchanged_for_100_days_in_use_alerts_and_a_fresh_one_does_not() {
    let s = Scratch::new("rw-longlived");
    let u = User::new("ll");
    let old = u.write(".pgpass", "db.lab.test:5432:app:app:s3cr3t\n", 0o600);
    run_ok(
        Command::new("touch")
            .args(["-m", "-d", "100 days ago"])
            .arg(&old),
    );
    u.write(".netrc", "machine api.lab.test login a password b\n", 0o600);
    let d = agent(&s, &[]);
    let env = Env {
        user: u.setpriv(),
        ..Default::default()
    };
    let (fresh, _) = env.run("cat ~/.netrc >/dev/null");
    let (stale, _) = env.run("cat ~/.pgpass >/dev/null");
    d.barrier();
    assert_alerts(&d, fresh, &[]);
    assert_alerts_with_ledger(
        &d,
        stale,
        &[("ledger-credential-past-rotation", "/usr/bin/cat", 1)],
    );
}

// ------------------------------------------------------------ environ and io_uring

#[test]
fn reading_another_process_environment_alerts() {
    let s = Scratch::new("rw-environ");
    let d = agent(&s, &[]);
    let (pid, _) =
        Env::default().run("sleep 30 & p=$!; sleep 0.2; cat /proc/$p/environ >/dev/null; kill $p");
    d.barrier();
    assert_alerts(
        &d,
        pid,
        &[("proc-environ-of-other-process", "/usr/bin/cat", 1)],
    );
}

#[test]
fn a_process_reading_its_own_environment_and_ps_raise_nothing() {
    let s = Scratch::new("rw-environbenign");
    let d = agent(&s, &[]);
    let (pid, _) = Env::default().run(
        "cat /proc/self/environ >/dev/null; tr '\\0' '\\n' < /proc/$$/environ >/dev/null; \
         ps -ef >/dev/null; ls /proc/1/ >/dev/null",
    );
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

/// The test actor, copied where another user can execute it.
fn actor_for_users(s: &Scratch) -> String {
    let p = s.path("bin/actor");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::copy(actor_path(), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

#[test]
fn io_uring_access_to_a_credential_alerts() {
    let s = Scratch::new("rw-uring");
    let u = User::new("iu");
    u.write(".aws/credentials", &aws(&u.name), 0o600);
    let actor = actor_for_users(&s);
    let d = agent(&s, &[]);
    let (pid, _) = Env {
        user: u.setpriv(),
        ..Default::default()
    }
    .run(&format!("{actor} uring-open ~/.aws/credentials"));
    d.barrier();
    assert_alerts(&d, pid, &[("credential-access-via-io-uring", &actor, 1)]);
}

#[test]
fn io_uring_reads_of_other_files_and_plain_reads_of_credentials_raise_nothing() {
    let s = Scratch::new("rw-uringbenign");
    let u = User::new("ib");
    u.write(".aws/credentials", &aws(&u.name), 0o600);
    let actor = actor_for_users(&s);
    let d = agent(&s, &[]);
    let (pid, _) = Env {
        user: u.setpriv(),
        ..Default::default()
    }
    .run(&format!(
        "{actor} uring-open /etc/hostname && {actor} uring-open /etc/os-release && {actor} open ~/.aws/credentials"
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

// --------------------------------------------------------------- network rules

#[test]
fn an_nmap_connect_scan_of_one_host_is_a_port_sweep() {
    let s = Scratch::new("rw-sweep");
    let lab = Lab::new("ps", 1);
    let d = agent(&s, &[]);
    let (pid, _) = as_root(&lab).run(&format!(
        "nmap -sT -Pn -n --max-retries 0 -p 1-100 {} >/dev/null",
        lab.host(0)
    ));
    d.barrier();
    assert_alerts(&d, pid, &[("port-sweep", "/usr/bin/nmap", 1)]);
}

#[test]
fn a_client_trying_a_few_ports_and_retrying_one_raises_nothing() {
    let s = Scratch::new("rw-sweepbenign");
    let lab = Lab::new("pb", 1);
    let d = agent(&s, &[]);
    let h = lab.host(0);
    let (pid, _) = as_root(&lab).run(&format!(
        "for p in 80 443 8080 8443 9090; do curl -s --max-time 1 http://{h}:$p/ ; done; \
         for i in $(seq 1 25); do curl -s --max-time 1 http://{h}:8080/health ; done; true"
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

fn identities(s: &Scratch, yaml: &str) -> String {
    s.file("identities.yaml", yaml).display().to_string()
}

#[test]
fn contacting_more_hosts_than_the_identity_budget_alerts() {
    let s = Scratch::new("rw-budget");
    let lab = Lab::new("fb", 5);
    let u = User::new("fb");
    let ids = identities(
        &s,
        &format!(
            "identities:\n  - name: batch-{0}\n    match: {{user: {0}}}\n    fan_out_budget: 3\n",
            u.name
        ),
    );
    let d = agent(&s, &["--identities", &ids]);
    let hosts: Vec<String> = (0..5).map(|i| lab.host(i)).collect();
    let (pid, _) = as_user(&lab, &u).run(&format!(
        "for h in {}; do curl -s --max-time 1 http://$h/ ; done; true",
        hosts.join(" ")
    ));
    d.barrier();
    let a = assert_alerts(&d, pid, &[("service-fan-out-burst", "/usr/bin/curl", 1)]);
    assert_eq!(a[0]["identity"], format!("batch-{}", u.name), "{}", a[0]);
}

#[test]
fn hosts_within_the_budget_and_one_name_with_several_addresses_raise_nothing() {
    let s = Scratch::new("rw-budgetbenign");
    let c = cloud(&s, "bb");
    let ids = identities(
        &s,
        &format!(
            "identities:\n  - name: batch-{0}\n    match: {{user: {0}}}\n    fan_out_budget: 3\n",
            c.user.name
        ),
    );
    let d = agent(&s, &["--identities", &ids]);
    // Two hosts by address, and api.lab.test (4 A, 2 AAAA, all tried): three hosts.
    let (pid, _) = c.env.run(&format!(
        "curl -s --max-time 1 http://{}/ ; curl -s --max-time 1 http://{}/ ; \
         curl -s --max-time 3 http://api.lab.test/ ; {PYTHON} {} api.lab.test",
        c.lab.host(6),
        c.lab.host(7),
        c.sdk
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

fn baseline(s: &Scratch, identity: &str, peers: &[String]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    s.file(
        "baseline.yaml",
        &format!("baseline:\n  \"{identity}\": [{}]\n", list.join(", ")),
    )
    .display()
    .to_string()
}

#[test]
fn a_peer_outside_the_learned_baseline_alerts_once() {
    let s = Scratch::new("rw-firstseen");
    let lab = Lab::new("fs", 2);
    let u = User::new("fs");
    let base = baseline(
        &s,
        &format!("exe:/usr/bin/curl@{}", u.name),
        &[format!("{}:80", lab.host(0))],
    );
    let d = agent(&s, &["--baseline", &base]);
    let (pid, _) = as_user(&lab, &u).run(&format!(
        "curl -s --max-time 1 http://{a}/ ; curl -s --max-time 1 http://{b}/ ; curl -s --max-time 1 http://{b}/x ; true",
        a = lab.host(0),
        b = lab.host(1)
    ));
    d.barrier();
    let a = assert_alerts(&d, pid, &[("first-seen-peer", "/usr/bin/curl", 1)]);
    assert_eq!(
        a[0]["destinations"][0],
        format!("{}:80", lab.host(1)),
        "{}",
        a[0]
    );
}

#[test]
fn baseline_peers_and_a_resolver_raise_nothing() {
    let s = Scratch::new("rw-firstseenbenign");
    let c = cloud(&s, "fn");
    // As `detector learn` records them: the resolver and every address of the name.
    let mut peers: Vec<String> = (1..=4).map(|i| format!("{}:443", c.lab.host(i))).collect();
    peers.extend((1..=2).map(|i| format!("[{}]:443", c.lab.host6(i))));
    peers.push(format!("{}:53", c.lab.host(0)));
    let base = baseline(&s, &format!("exe:{PYTHON}@{}", c.user.name), &peers);
    let d = agent(&s, &["--baseline", &base]);
    // glibc also makes a UDP association with every address to sort them (no contact); the
    // SDK then tries each address in turn.
    let (pid, _) = c.env.run(&format!("{PYTHON} {} api.lab.test", c.sdk));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

// ------------------------------------------------------------------ Kubernetes

#[test]
fn a_pod_token_appearing_late_read_from_the_host_then_api_servers_alerts() {
    let s = Scratch::new("rw-k8s");
    let lab = Lab::new("k8", 3);
    let d = agent(&s, &[]);
    // Scheduled after the agent started: the directories did not exist. The agent watches
    // them from the moment they appear, but a file is matched only once the agent has added
    // it (measured: a read within 1-25 ms of the creation can be missed); a host process
    // that notices the new pod reads its token a moment later.
    let pod = Pod::new(1);
    std::thread::sleep(Duration::from_millis(500));
    let apis: Vec<String> = (0..3).map(|i| lab.host(i)).collect();
    // Three API servers, more than a second apart (so that this is not also
    // machine-speed-credential-reuse).
    let (pid, _) = as_root(&lab).run(&format!(
        "T=$(cat {}/token); for h in {}; do curl -sk --max-time 1 -H \"Authorization: Bearer $T\" https://$h:6443/api ; sleep 1.2; done; true",
        pod.vol.display(),
        apis.join(" ")
    ));
    d.barrier();
    assert_alerts_with_ledger(
        &d,
        pid,
        &[
            ("k8s-token-then-apiserver", "/usr/bin/curl", 1),
            ("ledger-credential-used-by-non-owner", "/usr/bin/cat", 1),
        ],
    );
}

#[test]
fn a_pod_using_its_own_token_raises_nothing() {
    let s = Scratch::new("rw-k8sbenign");
    let lab = Lab::new("kb", 1);
    let d = agent(&s, &[]);
    let mut pod = Pod::new(2);
    let cg = pod.cgroup();
    // The agent maps a cgroup id to its path by walking the hierarchy at most once a second.
    std::thread::sleep(Duration::from_millis(2100));
    // The container: in the pod's cgroup, its token where every pod sees it.
    let env = Env {
        cgroup: Some(cg),
        pre: Some(format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && mount --bind {} /run/secrets/kubernetes.io/serviceaccount",
            pod.vol.display()
        )),
        ..as_root(&lab)
    };
    let (pid, _) = env.run(&format!(
        "T=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); curl -sk --max-time 1 -H \"Authorization: Bearer $T\" https://{}:6443/api ; true",
        lab.host(0)
    ));
    d.barrier();
    assert_alerts(&d, pid, &[]);
}

// --------------------------------------------------------------- cloud metadata

fn metadata_server(lab: &Lab, s: &Scratch) -> Daemon {
    lab.add_b_address("169.254.169.254");
    s.file(
        "imds/latest/meta-data/iam/security-credentials/app-role",
        "{\"AccessKeyId\": \"ASIAEXAMPLE\"}",
    );
    let mut c = Lab::in_ns(&lab.b);
    c.args([
        PYTHON,
        "-m",
        "http.server",
        "--bind",
        "169.254.169.254",
        "80",
        "--directory",
    ])
    .arg(s.path("imds"));
    let d = Daemon::start(c, s.path("imds.log"));
    // http.server logs nothing at start; wait for the port.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !run_ok(Lab::in_ns(&lab.b).args(["ss", "-ltn"])).contains("169.254.169.254:80") {
        assert!(
            std::time::Instant::now() < end,
            "metadata server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

const IMDS: &str = "curl -s --max-time 2 http://169.254.169.254/latest/meta-data/iam/security-credentials/app-role >/dev/null";

#[test]
fn a_web_app_fetching_instance_credentials_alerts() {
    let s = Scratch::new("rw-imds");
    let lab = Lab::new("md", 1);
    let _server = metadata_server(&lab, &s);
    let u = User::new("md");
    let d = agent(&s, &[]);
    let (pid, _) = as_user(&lab, &u).run(IMDS);
    d.barrier();
    assert_alerts(
        &d,
        pid,
        &[("cloud-metadata-unexpected-identity", "/usr/bin/curl", 1)],
    );
}

#[test]
fn an_identity_that_declares_the_metadata_service_raises_nothing() {
    let s = Scratch::new("rw-imdsbenign");
    let lab = Lab::new("mn", 1);
    let _server = metadata_server(&lab, &s);
    let u = User::new("mn");
    let ids = identities(
        &s,
        &format!(
            "identities:\n  - name: backup-{0}\n    match: {{user: {0}}}\n    peers: [\"169.254.169.254:80\"]\n",
            u.name
        ),
    );
    let d = agent(&s, &["--identities", &ids]);
    let (pid, _) = as_user(&lab, &u).run(IMDS);
    d.barrier();
    assert_alerts(&d, pid, &[]);
}
