//! Unit tests of the ledger: the model and its findings (driven by input time), the store
//! (round trip, migration from the first schema, bad files set aside, batches), retention,
//! the records and filters, and the graph.

use std::{path::Path, sync::Arc, time::Duration};

use super::{
    input::{Access, Actor, Contact},
    model::{ChangeKind, Finding, FindingKind, Model, WatchedCredential, NS_PER_DAY},
    policy::Policy,
    query::{glob, Filter, Records},
    store::{self, Store, SCHEMA_VERSION},
};
use crate::{config::LedgerConfig, enrich::identity::IdentityConfig};

const S: u64 = 1_000_000_000;
/// A realistic epoch (2026) so that ages are days, not decades.
const T0: u64 = 1_780_000_000 * S;

fn policy(identities: &str) -> Policy {
    let cfg = IdentityConfig::parse("i.yaml", identities).expect("identities");
    let mut l = LedgerConfig::default();
    l.rotation
        .categories
        .insert("k8s_token".into(), Duration::from_secs(2 * 86_400));
    Policy::new(&l, Arc::new(cfg))
}

fn actor(identity: &str, tgid: u32, tree: u32, exe: &str, user: &str, uid: u32) -> Actor {
    Actor {
        identity: identity.into(),
        tgid,
        start: u64::from(tgid) * 10,
        tree,
        exe: exe.into(),
        parent_exe: Some("/usr/bin/bash".into()),
        user: Some(user.into()),
        uid,
        pod_uid: None,
    }
}

fn access(ts: u64, path: &str, category: &str, ino: u64, fp: Option<&str>, a: &Actor) -> Access {
    Access {
        ts,
        path: path.into(),
        name: None,
        category: category.into(),
        dev: 2049,
        ino,
        mtime: Some(T0 - 10 * NS_PER_DAY),
        fingerprint: fp.map(Into::into),
        actor: a.clone(),
    }
}

fn contact(ts: u64, a: &Actor, addr: &str, port: u16) -> Contact {
    Contact {
        ts,
        identity: a.identity.clone(),
        tgid: a.tgid,
        start: a.start,
        tree: a.tree,
        addr: addr.into(),
        port,
        name: None,
    }
}

fn kinds(f: &[Finding]) -> Vec<FindingKind> {
    f.iter().map(|f| f.kind).collect()
}

const ALICE_KEY: &str = "/home/alice/.ssh/id_ed25519";

#[test]
fn uses_identities_programs_and_owners() {
    let pol = policy("");
    let mut m = Model::new();
    let mut out = Vec::new();
    let alice = actor(
        "exe:/usr/bin/ssh@alice",
        100,
        90,
        "/usr/bin/ssh",
        "alice",
        1000,
    );
    m.apply_use(
        &access(T0, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &alice),
        &pol,
        &mut out,
    );
    m.apply_use(
        &access(T0 + S, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &alice),
        &pol,
        &mut out,
    );
    assert!(out.is_empty(), "the owner reading her key: {out:?}");
    let c = m.by_path(ALICE_KEY).expect("credential");
    assert_eq!(c.owner.as_deref(), Some("user:alice"));
    assert_eq!((c.uses, c.last_used), (2, Some(T0 + S)));
    assert_eq!(c.fingerprint.as_deref(), Some("fp:a"));
    let iid = m.identities.id("exe:/usr/bin/ssh@alice").unwrap();
    let u = &m.usage[&(c.id, iid)];
    assert_eq!((u.stat.count, u.owned), (2, Some(true)));
    assert_eq!(m.programs_of(c.id, iid).len(), 1);
    // Bob reads it: a non-owner, and now shared.
    let bob = actor(
        "exe:/usr/bin/cat@bob",
        200,
        190,
        "/usr/bin/cat",
        "bob",
        1001,
    );
    m.apply_use(
        &access(T0 + 2 * S, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &bob),
        &pol,
        &mut out,
    );
    assert_eq!(
        kinds(&out),
        vec![FindingKind::NonOwner, FindingKind::Shared]
    );
    assert_eq!(out[0].identity.as_deref(), Some("exe:/usr/bin/cat@bob"));
    assert_eq!(out[0].facts["owner"], "user:alice");
    assert_eq!(out[1].facts["identity_count"], "2");
    // Again within repeat_after: counted, not alerted.
    out.clear();
    m.apply_use(
        &access(T0 + 3 * S, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &bob),
        &pol,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    // After repeat_after: alerted again, with the occurrences suppressed meanwhile.
    // After repeat_after (7 days): alerted again, with the occurrences suppressed meanwhile;
    // shared is a state, alerted once per identity joining it.
    m.apply_use(
        &access(
            T0 + 2 * S + 7 * NS_PER_DAY,
            ALICE_KEY,
            "ssh_key",
            7,
            Some("fp:a"),
            &bob,
        ),
        &pol,
        &mut out,
    );
    assert_eq!(kinds(&out), vec![FindingKind::NonOwner]);
    assert_eq!(out[0].suppressed, 1);
    // Bounded programs per use.
    for i in 0..40 {
        let a = actor(
            "exe:/usr/bin/ssh@alice",
            100,
            90,
            &format!("/bin/p{i}"),
            "alice",
            1000,
        );
        m.apply_use(
            &access(T0 + 5 * S, ALICE_KEY, "ssh_key", 7, None, &a),
            &pol,
            &mut out,
        );
    }
    let c = m.by_path(ALICE_KEY).unwrap();
    assert_eq!(m.programs_of(c.id, iid).len(), super::model::MAX_PROGRAMS);
}

#[test]
fn declared_owners_and_exempt_daemons() {
    let pol = policy(
        "identities:\n  - name: payments\n    match: {exe: /opt/pay/*}\n    credentials: [/etc/pay/*.key]\ncredentials:\n  - path: /etc/pay/*.key\n    owner: batch\n    contact: pay-oncall\n",
    );
    let mut m = Model::new();
    let mut out = Vec::new();
    let pay = actor("payments", 10, 1, "/opt/pay/srv", "pay", 100);
    let batch = actor("batch", 11, 1, "/opt/batch", "batch", 101);
    let web = actor("web", 12, 1, "/usr/bin/php", "www-data", 33);
    m.apply_use(
        &access(T0, "/etc/pay/db.key", "secret", 5, None, &pay),
        &pol,
        &mut out,
    );
    assert!(out.is_empty());
    let c = m.by_path("/etc/pay/db.key").unwrap();
    assert_eq!(c.owner.as_deref(), Some("payments, batch"));
    assert_eq!(c.contact.as_deref(), Some("pay-oncall"));
    // A declared co-owner: shared (two identities), not a non-owner.
    m.apply_use(
        &access(T0 + S, "/etc/pay/db.key", "secret", 5, None, &batch),
        &pol,
        &mut out,
    );
    assert_eq!(kinds(&out), vec![FindingKind::Shared]);
    out.clear();
    m.apply_use(
        &access(T0 + 2 * S, "/etc/pay/db.key", "secret", 5, None, &web),
        &pol,
        &mut out,
    );
    // A third identity joins: a new fact.
    assert_eq!(
        kinds(&out),
        vec![FindingKind::NonOwner, FindingKind::Shared]
    );
    assert_eq!(out[1].facts["identity_count"], "3");
    out.clear();
    m.apply_use(
        &access(T0 + 3 * S, "/etc/pay/db.key", "secret", 5, None, &web),
        &pol,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    // sshd reading a user's key is not judged a non-owner.
    out.clear();
    let sshd = actor("unit:ssh.service", 13, 1, "/usr/sbin/sshd", "root", 0);
    m.apply_use(
        &access(T0, ALICE_KEY, "ssh_key", 7, None, &sshd),
        &pol,
        &mut out,
    );
    assert!(!kinds(&out).contains(&FindingKind::NonOwner), "{out:?}");
    // /etc/shadow: recorded, never judged.
    out.clear();
    for (i, a) in [&pay, &web, &sshd].into_iter().enumerate() {
        m.apply_use(
            &access(T0 + i as u64, "/etc/shadow", "shadow", 9, None, a),
            &pol,
            &mut out,
        );
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.users_of(m.by_path("/etc/shadow").unwrap().id).len(), 3);
}

#[test]
fn reach_after_a_use_and_just_before_it() {
    let pol = policy("services:\n  api: [10.0.0.9:443]\n");
    let mut m = Model::new();
    let mut out = Vec::new();
    let ssh = actor(
        "exe:/usr/bin/ssh@alice",
        100,
        90,
        "/usr/bin/ssh",
        "alice",
        1000,
    );
    // ssh connects first, then reads the key to authenticate.
    m.apply_contact(&contact(T0, &ssh, "10.0.0.7", 22), &pol);
    m.apply_use(
        &access(T0 + S / 10, ALICE_KEY, "ssh_key", 7, None, &ssh),
        &pol,
        &mut out,
    );
    // Then within the window, by the same identity and tree: reached.
    m.apply_contact(&contact(T0 + 5 * S, &ssh, "10.0.0.9", 443), &pol);
    // Same identity, another tree: not this credential's.
    let other_tree = actor(
        "exe:/usr/bin/ssh@alice",
        300,
        290,
        "/usr/bin/ssh",
        "alice",
        1000,
    );
    m.apply_contact(&contact(T0 + 6 * S, &other_tree, "10.0.0.8", 22), &pol);
    // Another identity in the same tree: not this credential's either.
    let curl = actor(
        "exe:/usr/bin/curl@alice",
        101,
        90,
        "/usr/bin/curl",
        "alice",
        1000,
    );
    m.apply_contact(&contact(T0 + 6 * S, &curl, "10.0.0.10", 80), &pol);
    // After the window: no.
    m.apply_contact(&contact(T0 + 11 * S, &ssh, "10.0.0.11", 22), &pol);
    // A connection of the same process long before the use: no.
    let late = actor(
        "exe:/usr/bin/ssh@alice",
        400,
        390,
        "/usr/bin/ssh",
        "alice",
        1000,
    );
    m.apply_contact(&contact(T0, &late, "10.0.0.12", 22), &pol);
    m.apply_use(
        &access(T0 + 3 * S, ALICE_KEY, "ssh_key", 7, None, &late),
        &pol,
        &mut out,
    );
    let cid = m.by_path(ALICE_KEY).unwrap().id;
    let iid = m.identities.id("exe:/usr/bin/ssh@alice").unwrap();
    let mut got: Vec<(String, u16, Option<String>)> = m
        .reach_of(cid, iid)
        .iter()
        .map(|d| {
            let d = &m.destinations[d];
            (d.addr.clone(), d.port, d.name.clone())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("10.0.0.7".into(), 22, None),
            ("10.0.0.9".into(), 443, Some("api".into()))
        ]
    );
    // Windows are pruned by time.
    m.prune_windows(T0 + 60 * S, pol.reach_window_ns);
    m.apply_contact(&contact(T0 + 61 * S, &ssh, "10.0.0.13", 22), &pol);
    assert_eq!(m.reach_of(cid, iid).len(), 2);
}

#[test]
fn rotations_writers_and_stale_copies() {
    let pol = policy("");
    let mut m = Model::new();
    let mut out = Vec::new();
    let app = actor("unit:app.service", 10, 1, "/opt/app", "app", 200);
    let refresher = actor(
        "unit:vault-agent.service",
        20,
        1,
        "/usr/bin/vault",
        "root",
        0,
    );
    let tok = "/run/secrets/app/token";
    m.apply_use(
        &access(T0, tok, "secret", 50, Some("fp:old"), &app),
        &pol,
        &mut out,
    );
    // A copy of the same content elsewhere, read by another workload: shared.
    let batch = actor("unit:batch.service", 30, 1, "/opt/batch", "batch", 300);
    m.apply_use(
        &access(
            T0 + S,
            "/srv/batch/token.bak",
            "secret",
            60,
            Some("fp:old"),
            &batch,
        ),
        &pol,
        &mut out,
    );
    assert_eq!(kinds(&out), vec![FindingKind::Shared]);
    assert!(out[0].facts["copies"].contains("/srv/batch/token.bak"));
    out.clear();
    // The refresher rewrites the token in place (same inode), then the app reads new content.
    m.apply_write(
        &access(T0 + 10 * S, tok, "secret", 50, None, &refresher),
        &pol,
    );
    m.apply_use(
        &access(T0 + 11 * S, tok, "secret", 50, Some("fp:new"), &app),
        &pol,
        &mut out,
    );
    let c = m.by_path(tok).unwrap().clone();
    assert_eq!((c.rotations, c.writes), (1, 1));
    let ch: Vec<_> = m.changes_of(c.id).cloned().collect();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].kind, ChangeKind::Content);
    assert_eq!(ch[0].old_fingerprint.as_deref(), Some("fp:old"));
    assert_eq!(ch[0].new_fingerprint.as_deref(), Some("fp:new"));
    assert_eq!(
        ch[0].writer.as_ref().map(|w| w.identity.as_str()),
        Some("unit:vault-agent.service")
    );
    assert!(out.is_empty(), "a writer is no user: {out:?}");
    // The batch job still reads the old content from its copy: a copy left behind.
    m.apply_use(
        &access(
            T0 + 12 * S,
            "/srv/batch/token.bak",
            "secret",
            60,
            Some("fp:old"),
            &batch,
        ),
        &pol,
        &mut out,
    );
    assert_eq!(kinds(&out), vec![FindingKind::StaleCopy]);
    assert_eq!(out[0].facts["copy_of"], tok);
    out.clear();
    // An atomic rename: another inode, then new content read.
    m.apply_write(
        &access(T0 + 20 * S, tok, "secret", 51, None, &refresher),
        &pol,
    );
    m.apply_use(
        &access(T0 + 21 * S, tok, "secret", 51, Some("fp:newer"), &app),
        &pol,
        &mut out,
    );
    let c = m.by_path(tok).unwrap();
    assert_eq!(
        c.rotations, 2,
        "the replacement and its content are one rotation"
    );
    let last = m.changes_of(c.id).last().unwrap();
    assert_eq!(last.kind, ChangeKind::Replaced);
    assert_eq!((last.old_ino, last.new_ino), (Some(50), Some(51)));
    assert_eq!(last.new_fingerprint.as_deref(), Some("fp:newer"));
    // The process that created the new inode is its writer.
    assert_eq!(
        last.writer.as_ref().map(|w| w.identity.as_str()),
        Some("unit:vault-agent.service")
    );
}

#[test]
fn past_rotation_per_category_and_retirement() {
    let pol = policy("credentials:\n  - path: /etc/app/*.pem\n    rotate_every: 5d\n");
    let mut m = Model::new();
    let mut out = Vec::new();
    let app = actor("app", 10, 1, "/opt/app", "app", 200);
    let mut a = access(T0, "/etc/app/token", "token", 1, None, &app);
    a.mtime = Some(T0 - 91 * NS_PER_DAY);
    m.apply_use(&a, &pol, &mut out);
    assert_eq!(kinds(&out), vec![FindingKind::PastRotation]);
    assert_eq!(out[0].facts["age_days"], "91");
    assert_eq!(out[0].facts["policy_days"], "90");
    out.clear();
    // A k8s token: 2 days by the category policy.
    let mut a = access(
        T0,
        "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~projected/t/token",
        "k8s_token",
        2,
        None,
        &app,
    );
    a.mtime = Some(T0 - 3 * NS_PER_DAY);
    m.apply_use(&a, &pol, &mut out);
    assert!(kinds(&out).contains(&FindingKind::PastRotation), "{out:?}");
    out.clear();
    // A declared policy: 5 days.
    let mut a = access(T0, "/etc/app/tls.pem", "secret", 3, None, &app);
    a.mtime = Some(T0 - 6 * NS_PER_DAY);
    m.apply_use(&a, &pol, &mut out);
    assert_eq!(kinds(&out), vec![FindingKind::PastRotation]);
    out.clear();
    // Retirement: watched but unused for 30 days.
    let w = |path: &str, ino| WatchedCredential {
        path: path.into(),
        category: "cloud".into(),
        dev: 2049,
        ino,
        mtime: Some(T0),
    };
    m.apply_watched(&[w("/root/.aws/credentials", 9)], T0, &pol);
    m.judge_unused(T0 + 29 * NS_PER_DAY, &pol, &mut out);
    assert!(out.is_empty(), "{out:?}");
    m.judge_unused(T0 + 31 * NS_PER_DAY, &pol, &mut out);
    let unused: Vec<_> = out
        .iter()
        .filter(|f| f.kind == FindingKind::Unused)
        .collect();
    assert!(unused
        .iter()
        .any(|f| m.credentials[&f.credential].path == "/root/.aws/credentials"));
    // Gone from the watch list: no longer present, no longer a candidate.
    out.clear();
    m.apply_watched(&[], T0 + 40 * NS_PER_DAY, &pol);
    assert!(!m.by_path("/root/.aws/credentials").unwrap().present);
    m.judge_unused(T0 + 80 * NS_PER_DAY, &pol, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

fn busy_model(pol: &Policy) -> Model {
    let mut m = Model::new();
    let mut out = Vec::new();
    let alice = actor(
        "exe:/usr/bin/ssh@alice",
        100,
        90,
        "/usr/bin/ssh",
        "alice",
        1000,
    );
    let bob = actor(
        "exe:/usr/bin/cat@bob",
        200,
        190,
        "/usr/bin/cat",
        "bob",
        1001,
    );
    m.apply_contact(&contact(T0, &alice, "10.0.0.7", 22), pol);
    m.apply_use(
        &access(T0 + 1, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &alice),
        pol,
        &mut out,
    );
    m.apply_use(
        &access(T0 + S, ALICE_KEY, "ssh_key", 7, Some("fp:a"), &bob),
        pol,
        &mut out,
    );
    m.apply_write(
        &access(T0 + 2 * S, ALICE_KEY, "ssh_key", 7, None, &alice),
        pol,
    );
    m.apply_use(
        &access(T0 + 3 * S, ALICE_KEY, "ssh_key", 8, Some("fp:b"), &alice),
        pol,
        &mut out,
    );
    m.apply_watched(
        &[
            WatchedCredential {
                path: "/root/.kube/config".into(),
                category: "kube".into(),
                dev: 2049,
                ino: 70,
                mtime: Some(T0 - 400 * NS_PER_DAY),
            },
            WatchedCredential {
                path: ALICE_KEY.into(),
                category: "ssh_key".into(),
                dev: 2049,
                ino: 8,
                mtime: Some(T0 - 10 * NS_PER_DAY),
            },
        ],
        T0 + 4 * S,
        pol,
    );
    m.judge_unused(T0 + 40 * NS_PER_DAY, pol, &mut out);
    m
}

fn records(m: &Model, now: u64) -> Vec<super::query::CredentialRecord> {
    let summary = super::policy::PolicySummary::default();
    Records::new(m, &summary, now).list(&Filter {
        include_gone: true,
        ..Default::default()
    })
}

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ledger-{name}-"))
        .tempdir()
        .expect("tempdir")
}

fn save(store: &mut Store, m: &mut Model) {
    let d = std::mem::take(&mut m.dirty);
    store.save(m, &d).expect("save");
}

#[test]
fn store_round_trip_is_the_same_ledger() {
    let pol = policy("");
    let dir = tmp("roundtrip");
    let path = dir.path().join("ledger.db");
    let mut m = busy_model(&pol);
    let (mut store, opened) = Store::open(&path).unwrap();
    assert_eq!((opened.found_version, opened.set_aside.clone()), (0, None));
    save(&mut store, &mut m);
    assert!(m.dirty.is_empty());
    drop(store);
    let (store, opened) = Store::open(&path).unwrap();
    assert_eq!(opened.found_version, SCHEMA_VERSION);
    let back = store.load().unwrap();
    let now = T0 + 41 * NS_PER_DAY;
    assert_eq!(records(&back, now), records(&m, now));
    assert_eq!(back.findings, m.findings);
    // The file is root's alone.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // Read-only, as `detector inventory` opens it, while the writer is open.
    let ro = store::open_read_only(&path).unwrap();
    assert_eq!(
        records(&store::load(&ro, &path).unwrap(), now),
        records(&m, now)
    );
    // The views answer.
    let shared: i64 = ro
        .query_row("SELECT count(*) FROM v_shared", [], |r| r.get(0))
        .unwrap();
    assert_eq!(shared, 1);
}

#[test]
fn a_first_schema_ledger_is_migrated_and_keeps_its_rows() {
    let dir = tmp("migrate");
    let path = dir.path().join("ledger.db");
    {
        let conn = Store::create_at_version(&path, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO credential (id, path, category, dev, ino, present, owner, owner_source,
                 fingerprint, mtime, first_seen, last_seen, last_used, uses, writes, rotations)
             VALUES (1, '/home/alice/.ssh/id_rsa', 'ssh_key', 2049, 7, 1, 'user:alice', 'home',
                 'fp:a', 1000, 2000, 3000, 3000, 5, 0, 0);
             INSERT INTO identity VALUES (1, 'exe:/usr/bin/ssh@alice');
             INSERT INTO program VALUES (1, '/usr/bin/ssh');
             INSERT INTO usage VALUES (1, 1, 2000, 3000, 5, 1, 'fp:a', 42, 9, 1, 'alice', 1000);
             INSERT INTO destination VALUES (1, '10.0.0.7', 22, NULL);
             INSERT INTO reach VALUES (1, 1, 1, 2500, 2500, 1);",
        )
        .unwrap();
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }
    // `detector inventory` reads it without changing it (migrated in memory).
    let ro = store::open_read_only(&path).unwrap();
    let m = store::load(&ro, &path).unwrap();
    assert_eq!(m.by_path("/home/alice/.ssh/id_rsa").unwrap().uses, 5);
    drop(ro);
    let v: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1, "reading never migrates the file");
    // The agent migrates it in place.
    let (store, opened) = Store::open(&path).unwrap();
    assert_eq!((opened.found_version, opened.migrated), (1, true));
    let m = store.load().unwrap();
    let c = m.by_path("/home/alice/.ssh/id_rsa").unwrap();
    assert_eq!((c.uses, c.dropped_uses, c.contact.clone()), (5, 0, None));
    let iid = m.identities.id("exe:/usr/bin/ssh@alice").unwrap();
    assert_eq!(m.usage[&(c.id, iid)].stat.count, 5);
    assert_eq!(m.reach_of(c.id, iid).len(), 1);
    let v: u32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

fn bad_file_is_set_aside(content: Option<&[u8]>, make: impl Fn(&Path), want: &str) {
    let dir = tmp("bad");
    let path = dir.path().join("ledger.db");
    match content {
        Some(c) => std::fs::write(&path, c).unwrap(),
        None => make(&path),
    }
    let before = std::fs::read(&path).unwrap();
    let (store, opened) = Store::open(&path).unwrap();
    let (to, reason) = opened
        .set_aside
        .clone()
        .unwrap_or_else(|| panic!("not set aside: {want}"));
    assert!(reason.contains(want), "{reason}");
    assert_eq!(std::fs::read(&to).unwrap(), before, "kept as it was");
    assert!(to.display().to_string().contains("ledger.db.bad-"));
    // A new, working ledger in its place.
    assert_eq!(store.load().unwrap().credentials.len(), 0);
    // Read-only openers get one sentence, not a reset.
    drop(store);
    std::fs::write(&path, [0x6au8; 8192]).unwrap();
    let e = store::open_read_only(&path).unwrap_err().to_string();
    assert!(e.contains("is not a usable ledger"), "{e}");
}

#[test]
fn corrupt_foreign_and_newer_files_are_set_aside_not_reset() {
    bad_file_is_set_aside(Some(&[0x42u8; 8192]), |_| {}, "not an SQLite database");
    bad_file_is_set_aside(
        None,
        |p| {
            let c = rusqlite::Connection::open(p).unwrap();
            c.execute_batch(
                "CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');",
            )
            .unwrap();
        },
        "another application's SQLite database",
    );
    bad_file_is_set_aside(
        None,
        |p| {
            let c = Store::create_at_version(p, SCHEMA_VERSION).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        },
        "written by a newer detector",
    );
    // A ledger with a damaged page: a real ledger, then bytes of one table page overwritten.
    bad_file_is_set_aside(
        None,
        |p| {
            let pol = policy("");
            let (mut s, _) = Store::open(p).unwrap();
            let mut m = busy_model(&pol);
            for i in 0..300 {
                let a = actor(&format!("id{i}"), i, i, "/bin/x", "u", i);
                let mut o = Vec::new();
                m.apply_use(
                    &access(
                        T0,
                        &format!("/run/secrets/s{i}"),
                        "secret",
                        u64::from(i),
                        None,
                        &a,
                    ),
                    &pol,
                    &mut o,
                );
            }
            save(&mut s, &mut m);
            s.reclaim().unwrap();
            drop(s);
            let mut bytes = std::fs::read(p).unwrap();
            // The b-tree headers of every page but the schema's.
            let page = 4096;
            for p in 1..bytes.len() / page {
                for b in &mut bytes[p * page..p * page + 12] {
                    *b = 0xa5;
                }
            }
            std::fs::write(p, bytes).unwrap();
        },
        "damaged",
    );
}

#[test]
fn a_failed_batch_writes_nothing_and_is_retried_whole() {
    let pol = policy("");
    let dir = tmp("retry");
    let path = dir.path().join("ledger.db");
    let (mut store, _) = Store::open(&path).unwrap();
    store.set_busy_timeout(Duration::from_millis(20));
    let mut m = busy_model(&pol);
    // Another connection holds the write lock: the batch fails, nothing of it is written.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let d = std::mem::take(&mut m.dirty);
    assert!(store.save(&m, &d).is_err());
    other.execute_batch("ROLLBACK").unwrap();
    let n: i64 = other
        .query_row("SELECT count(*) FROM credential", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    // The same batch, again: all of it.
    store.save(&m, &d).unwrap();
    drop(store);
    let (store, _) = Store::open(&path).unwrap();
    let now = T0 + 41 * NS_PER_DAY;
    assert_eq!(records(&store.load().unwrap(), now), records(&m, now));
}

#[test]
fn retention_by_age_and_size_keeps_counts() {
    let pol = policy("");
    let dir = tmp("retention");
    let path = dir.path().join("ledger.db");
    let (mut store, _) = Store::open(&path).unwrap();
    let mut m = Model::new();
    let mut out = Vec::new();
    // 200 identities use 50 credentials over 100 days, each reaching a destination.
    for day in 0..100u64 {
        for i in 0..200u32 {
            let a = actor(&format!("id{i}"), i + 1000, i + 1000, "/opt/x", "svc", 500);
            let cred = format!("/run/secrets/c{}", i % 50);
            let ts = T0 + day * NS_PER_DAY + u64::from(i) * S;
            m.apply_use(
                &access(ts, &cred, "secret", u64::from(i % 50), None, &a),
                &pol,
                &mut out,
            );
            m.apply_contact(
                &contact(ts + S, &a, &format!("10.1.{}.{}", day % 250, i % 250), 443),
                &pol,
            );
        }
        m.prune_windows(T0 + day * NS_PER_DAY + 300 * S, pol.reach_window_ns);
    }
    save(&mut store, &mut m);
    let total_uses: u64 = m.credentials.values().map(|c| c.uses).sum();
    assert_eq!(total_uses, 20_000);
    let reach_before = m.reach.len();
    // Time: drop detail older than 30 days.
    let now = T0 + 100 * NS_PER_DAY;
    let n = m.expire(now - 30 * NS_PER_DAY);
    assert!(n > 0);
    assert!(m.reach.len() < reach_before);
    assert!(m
        .reach
        .values()
        .all(|s| s.last_seen >= now - 30 * NS_PER_DAY));
    // The counts stay: uses per credential, and what was dropped.
    let total_after: u64 = m.credentials.values().map(|c| c.uses).sum();
    assert_eq!(total_after, 20_000);
    let dropped_reach: u64 = m.credentials.values().map(|c| c.dropped_reach).sum();
    let kept_reach: u64 = m.reach.values().map(|s| s.count).sum();
    assert_eq!(
        dropped_reach + kept_reach,
        20_000,
        "every contact counted, kept or dropped"
    );
    save(&mut store, &mut m);
    // Size: shed half of the detail, oldest first.
    let rows = m.usage.len() + m.reach.len() + m.programs_of_usage.len();
    let bytes_before = store.bytes().unwrap();
    m.shed(0.5);
    let after = m.usage.len() + m.reach.len() + m.programs_of_usage.len();
    assert!(after <= rows / 2 + 3, "{after} of {rows}");
    save(&mut store, &mut m);
    store.reclaim().unwrap();
    assert!(store.bytes().unwrap() < bytes_before, "pages given back");
    let kept: u64 = m.usage.values().map(|u| u.stat.count).sum();
    let dropped: u64 = m.credentials.values().map(|c| c.dropped_uses).sum();
    assert_eq!(kept + dropped, 20_000, "every use counted, kept or dropped");
    // The stored ledger says the same.
    drop(store);
    let (store, _) = Store::open(&path).unwrap();
    let back = store.load().unwrap();
    assert_eq!(records(&back, now), records(&m, now));
    // Credentials gone from the host and older than the retention are forgotten, counted.
    m.apply_watched(&[], now, &pol);
    m.expire(now + 1);
    assert!(m.credentials.is_empty());
    assert_eq!(m.dropped.credentials, 50);
    assert_eq!(m.dropped.uses, 20_000);
}

#[test]
fn filters_and_show() {
    let pol = policy("");
    let m = busy_model(&pol);
    let now = T0 + 41 * NS_PER_DAY;
    let summary = super::policy::PolicySummary::default();
    let r = Records::new(&m, &summary, now);
    let all = r.list(&Filter::default());
    assert_eq!(all.len(), 2);
    let paths = |f: Filter| -> Vec<String> { r.list(&f).into_iter().map(|x| x.path).collect() };
    assert_eq!(
        paths(Filter {
            shared: true,
            ..Default::default()
        }),
        vec![ALICE_KEY]
    );
    assert_eq!(
        paths(Filter {
            non_owner: true,
            ..Default::default()
        }),
        vec![ALICE_KEY]
    );
    assert_eq!(
        paths(Filter {
            unowned: true,
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        paths(Filter {
            stale_days: Some(100),
            ..Default::default()
        }),
        vec!["/root/.kube/config"]
    );
    assert_eq!(
        paths(Filter {
            unused_days: Some(30),
            ..Default::default()
        }),
        vec![ALICE_KEY, "/root/.kube/config"]
    );
    assert_eq!(
        paths(Filter {
            identity: Some(glob("exe:*@bob")),
            ..Default::default()
        }),
        vec![ALICE_KEY]
    );
    assert_eq!(
        paths(Filter {
            credential: Some(glob("/root/**")),
            ..Default::default()
        }),
        vec!["/root/.kube/config"]
    );
    let s = r.show(ALICE_KEY).unwrap();
    assert_eq!(s.identities.len(), 2);
    assert_eq!(s.reach.len(), 1);
    assert_eq!(s.reach[0].addr, "10.0.0.7");
    assert_eq!(s.rotations, 1);
    assert_eq!(s.changes[0].kind, ChangeKind::Replaced);
    assert_eq!(s.fingerprints.len(), 2);
    assert!(s.fingerprints[0].superseded.is_some());
    assert_eq!(r.show(&s.id.to_string()).unwrap().path, ALICE_KEY);
    assert!(r.show("/nope").is_none());
    // The SVG names every node.
    let svg = super::graph::svg(&all);
    for want in ["id_ed25519", "exe:/usr/bin/cat@bob", "10.0.0.7:22", "<svg"] {
        assert!(svg.contains(want), "{want}");
    }
    assert!(super::graph::svg(&[]).contains("no credential matches"));
}

#[test]
fn the_running_ledger_answers_queries_takes_reloads_and_commits_on_stop() {
    use crate::event::{Event, FileInfo, Kind, Process, Via};
    let dir = tmp("running");
    let path = dir.path().join("ledger.db");
    let cfg = LedgerConfig::default();
    let mut l =
        super::Ledger::start(&cfg, path.clone(), "h", Arc::new(IdentityConfig::default())).unwrap();
    let ev = Event {
        ts: T0,
        kind: Kind::CredOpen,
        process: Some(Process {
            tgid: 7,
            pid: 7,
            uid: 33,
            user: Some("www-data".into()),
            exe: "/usr/bin/php".into(),
            identity: Some("web".into()),
            ..Default::default()
        }),
        exec: None,
        fork: None,
        exit: None,
        net: None,
        file: Some(FileInfo {
            watched: "/etc/pay/db.key".into(),
            category: "secret".into(),
            path: None,
            resolved: None,
            dev: 1,
            ino: 2,
            flags: None,
            access: Some("read".into()),
            via: Via::Syscall,
            target_pid: None,
            mtime: None,
            fingerprint: None,
        }),
        loss: None,
    };
    l.observe(&ev);
    let q = l.query();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let show = |key: &str| -> serde_json::Value {
        let body = rt
            .block_on(q.show(key.to_string()))
            .expect("the ledger answers")
            .expect("the credential is there");
        serde_json::from_slice(&body).unwrap()
    };
    // Inputs and questions travel on two channels: wait for the use.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = rt.block_on(q.list(Filter::default())).expect("answers");
        if serde_json::from_slice::<serde_json::Value>(&r).unwrap()[0]["uses"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < end, "the use never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(show("/etc/pay/db.key")["owner"], serde_json::Value::Null);
    // A reload declares its owner.
    let ids = IdentityConfig::parse(
        "i.yaml",
        "credentials:\n  - path: /etc/pay/*\n    owner: payments\n",
    )
    .unwrap();
    l.set_identities(Arc::new(ids));
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while show("/etc/pay/db.key")["owner"] != "payments" {
        assert!(std::time::Instant::now() < end, "the reload never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stopping commits: the file has it.
    drop(q);
    let rest = l.stop();
    assert!(rest.is_empty(), "no finding: {rest:?}");
    let ro = store::open_read_only(&path).unwrap();
    let m = store::load(&ro, &path).unwrap();
    let c = m.by_path("/etc/pay/db.key").unwrap();
    assert_eq!((c.uses, c.owner.as_deref()), (1, Some("payments")));
}

/// Found by the soak: root read a developer's kubeconfig (shared: alerted for root); the
/// developer then rewrote it and read the new content, and was alerted as sharing it with
/// root, who never read the new content.
#[test]
fn after_a_rotation_sharing_counts_users_of_the_new_content() {
    let pol = policy("");
    let mut m = Model::new();
    let mut out = Vec::new();
    let kube = "/home/alice/.kube/config";
    let alice = actor(
        "exe:/usr/bin/python3@alice",
        100,
        90,
        "/usr/bin/python3",
        "alice",
        1000,
    );
    let root = actor("exe:/usr/bin/cat@root", 200, 190, "/usr/bin/cat", "root", 0);
    m.apply_use(
        &access(T0, kube, "kube", 8, Some("fp:a"), &alice),
        &pol,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    m.apply_use(
        &access(T0 + S, kube, "kube", 8, Some("fp:a"), &root),
        &pol,
        &mut out,
    );
    assert_eq!(
        kinds(&out),
        vec![FindingKind::NonOwner, FindingKind::Shared]
    );
    out.clear();
    // Rewritten by its owner (same inode, new content), then read by her.
    m.apply_use(
        &access(T0 + 60 * S, kube, "kube", 8, Some("fp:b"), &alice),
        &pol,
        &mut out,
    );
    assert!(
        out.is_empty(),
        "the owner alone uses the new content: {out:?}"
    );
    // Root reads the new content too: shared again, root's finding (already alerted, so held
    // back as suppressed within repeat_after), and alice is not alerted.
    m.apply_use(
        &access(T0 + 120 * S, kube, "kube", 8, Some("fp:b"), &root),
        &pol,
        &mut out,
    );
    assert!(
        out.iter()
            .all(|f| f.identity.as_deref() == Some(root.identity.as_str())),
        "{out:?}"
    );
}
