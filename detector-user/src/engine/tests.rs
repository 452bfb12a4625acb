//! Window, grouping, suppression, bounding and ordering tests of the engine.

use proptest::prelude::*;

use super::*;
use crate::event::*;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn proc_(tgid: u32, ppid: u32, id: &str) -> Process {
    Process {
        pid: tgid,
        tgid,
        ppid,
        start: 1,
        uid: 1000,
        user: Some("alice".into()),
        comm: "x".into(),
        exe: "/usr/bin/x".into(),
        identity: Some(id.into()),
        ..Default::default()
    }
}

fn connect(ts: u64, p: Process, dst: &str, port: u16) -> Event {
    Event {
        ts,
        kind: Kind::Connect,
        process: Some(p),
        exec: None,
        fork: None,
        exit: None,
        net: Some(NetInfo {
            protocol: Protocol::Tcp,
            family: 4,
            direction: Direction::Outbound,
            src_addr: "0.0.0.0".into(),
            src_port: 0,
            dst_addr: dst.into(),
            dst_port: port,
            outcome: Outcome::InProgress,
            error: None,
            conn: ts,
            dst_name: None,
            off_host: None,
            service: None,
        }),
        file: None,
        loss: None,
    }
}

fn cred(ts: u64, p: Process, watched: &str) -> Event {
    Event {
        ts,
        kind: Kind::CredOpen,
        process: Some(p),
        exec: None,
        fork: None,
        exit: None,
        net: None,
        file: Some(FileInfo {
            watched: watched.into(),
            category: "ssh_key".into(),
            path: None,
            resolved: None,
            dev: 1,
            ino: 2,
            flags: None,
            access: None,
            via: Via::Syscall,
            target_pid: None,
            mtime: None,
            fingerprint: Some("hmac-sha256:00".into()),
        }),
        loss: None,
    }
}

fn loss(ts: u64) -> Event {
    Event {
        ts,
        kind: Kind::Loss,
        process: None,
        exec: None,
        fork: None,
        exit: None,
        net: None,
        file: None,
        loss: Some(LossInfo {
            cpu: 0,
            count: 5,
            total: 5,
        }),
    }
}

const BASE: &str = "rules:
  - id: conn
    title: conn
    severity: info
    alert: false
    condition: {kind: connect}
  - id: credr
    title: cred
    severity: info
    alert: false
    condition: {kind: [cred_open, cred_read]}
";

fn engine(corr: &str, opts: EngineOptions) -> Engine {
    let src = format!("{BASE}  - id: c\n    title: C\n    severity: high\n    suppress: 0s\n    correlation: {corr}\n");
    let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap_or_else(|e| panic!("{e:?}"));
    Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(1),
            reorder_tolerance: 0,
            ..opts
        },
    )
}

fn run(e: &mut Engine, evs: &[Event]) -> Vec<Alert> {
    let mut out = Vec::new();
    for ev in evs {
        e.process(ev, &mut out);
    }
    e.finish(&mut out);
    out
}

fn count(corr: &str, evs: &[Event]) -> usize {
    run(&mut engine(corr, EngineOptions::default()), evs).len()
}

#[test]
fn event_count_window_edges_inclusive() {
    let c = "{type: event_count, rules: [conn], group-by: [process.identity], timespan: 1s, condition: {gte: 3}}";
    let p = || proc_(10, 2, "a");
    // Third event exactly 1 s after the first: inside (inclusive window).
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "10.0.0.1", 1),
                connect(S / 2, p(), "10.0.0.1", 1),
                connect(S, p(), "10.0.0.1", 1)
            ]
        ),
        1
    );
    // One ns later: the first has slid out.
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "10.0.0.1", 1),
                connect(S / 2, p(), "10.0.0.1", 1),
                connect(S + 1, p(), "10.0.0.1", 1)
            ]
        ),
        0
    );
}

#[test]
fn event_count_groups_are_separate() {
    let c = "{type: event_count, rules: [conn], group-by: [process.identity], timespan: 1s, condition: {gte: 2}}";
    assert_eq!(
        count(
            c,
            &[
                connect(0, proc_(10, 2, "a"), "10.0.0.1", 1),
                connect(1, proc_(11, 2, "b"), "10.0.0.1", 1)
            ]
        ),
        0
    );
    assert_eq!(
        count(
            c,
            &[
                connect(0, proc_(10, 2, "a"), "10.0.0.1", 1),
                connect(1, proc_(11, 2, "a"), "10.0.0.1", 1)
            ]
        ),
        1
    );
}

#[test]
fn value_count_counts_distinct_and_slides() {
    let c = "{type: value_count, rules: [conn], group-by: [process.identity], field: net.dst_addr, timespan: 1s, condition: {gte: 3}}";
    let p = || proc_(10, 2, "a");
    // Repeats of one destination do not count.
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "10.0.0.1", 1),
                connect(1, p(), "10.0.0.1", 1),
                connect(2, p(), "10.0.0.2", 1),
                connect(3, p(), "10.0.0.2", 1)
            ]
        ),
        0
    );
    let evs = [
        connect(0, p(), "10.0.0.1", 1),
        connect(10, p(), "10.0.0.2", 1),
        connect(S + 5, p(), "10.0.0.3", 1),
    ];
    // The first destination slid out before the third arrived.
    assert_eq!(count(c, &evs), 0);
    // A destination seen again inside the window keeps counting even after its first sighting slid out.
    let evs = [
        connect(0, p(), "10.0.0.1", 1),
        connect(S / 2, p(), "10.0.0.1", 1),
        connect(S / 2 + 1, p(), "10.0.0.2", 1),
        connect(S + 2, p(), "10.0.0.3", 1),
    ];
    let a = run(&mut engine(c, EngineOptions::default()), &evs);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].destination_count, 3);
    assert_eq!(a[0].destinations, vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(a[0].first_seen, S / 2);
    assert_eq!(a[0].last_seen, S + 2);
}

#[test]
fn value_count_lt_and_range_conditions() {
    let c = "{type: value_count, rules: [conn], field: net.dst_port, timespan: 1s, condition: {gt: 1, lte: 2}}";
    let p = || proc_(10, 2, "a");
    let a = run(
        &mut engine(c, EngineOptions::default()),
        &[
            connect(0, p(), "h", 1),
            connect(1, p(), "h", 2),
            connect(2, p(), "h", 3),
        ],
    );
    assert_eq!(a.len(), 1, "fires at 2 distinct, not at 3");
    assert_eq!(a[0].count, 2);
}

#[test]
fn temporal_any_order() {
    let c = "{type: temporal, rules: [credr, conn], group-by: [process.identity], timespan: 1s}";
    let p = || proc_(10, 2, "a");
    assert_eq!(
        count(
            c,
            &[connect(0, p(), "h", 1), cred(S, p(), "/root/.ssh/id_rsa")]
        ),
        1
    );
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "h", 1),
                cred(S + 1, p(), "/root/.ssh/id_rsa")
            ]
        ),
        0
    );
    assert_eq!(
        count(c, &[connect(0, p(), "h", 1), connect(5, p(), "h", 1)]),
        0
    );
}

#[test]
fn temporal_with_field_counts_the_last_rules_values_in_either_order() {
    // ssh connects first and reads the key during authentication: the read may come after.
    let c = "{type: temporal, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 60s, condition: {gte: 3}}";
    let ssh = |n: u32| Process {
        ancestors: vec![50, 1],
        ..proc_(60 + n, 50, "a")
    };
    let session = |n: u32, t: u64, host: &str| {
        vec![
            connect(t, ssh(n), host, 22),
            cred(t + 30 * MS, ssh(n), "/root/.ssh/id_rsa"),
        ]
    };
    let mut evs = session(0, 0, "10.0.0.1");
    evs.extend(session(1, 15 * S, "10.0.0.2"));
    evs.extend(session(2, 30 * S, "10.0.0.3"));
    // The third host's connect completes it (no suppression here: the read after it, still in
    // the window, fires again).
    assert_eq!(count(c, &evs[..5]), 1);
    assert_eq!(count(c, &evs), 2);
    // Two hosts, or three over more than the window: nothing.
    assert_eq!(count(c, &evs[..4]), 0);
    let mut slow = session(0, 0, "10.0.0.1");
    slow.extend(session(1, 40 * S, "10.0.0.2"));
    slow.extend(session(2, 80 * S, "10.0.0.3"));
    assert_eq!(count(c, &slow), 0);
    // One host three times is one value.
    let mut same = session(0, 0, "10.0.0.1");
    same.extend(session(1, S, "10.0.0.1"));
    same.extend(session(2, 2 * S, "10.0.0.1"));
    assert_eq!(count(c, &same), 0);
    // Three hosts without the read: the other rule never matched.
    let bare: Vec<Event> = (0..3)
        .map(|i| connect(i * S, ssh(i as u32), &format!("10.0.0.{i}"), 22))
        .collect();
    assert_eq!(count(c, &bare), 0);
    // Without `field`, temporal still counts rules (two rules matched: fires).
    let plain = "{type: temporal, rules: [credr, conn], group-by: [process.tree], timespan: 60s}";
    assert_eq!(count(plain, &evs[..2]), 1);
}

#[test]
fn temporal_ordered_requires_order_and_counts_distinct_tail() {
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 1s, condition: {gte: 3}}";
    let reader = proc_(100, 50, "a");
    let child = |n: u32| Process {
        ancestors: vec![100, 50],
        ..proc_(200 + n, 100, "b")
    };
    let hosts = |t0: u64| {
        (0..3)
            .map(|i| connect(t0 + i as u64 * MS, child(i), &format!("10.0.0.{i}"), 22))
            .collect::<Vec<_>>()
    };
    // Read, then three hosts from a child within 1 s.
    let mut evs = vec![cred(0, reader.clone(), "/root/.ssh/id_rsa")];
    evs.extend(hosts(10 * MS));
    assert_eq!(count(c, &evs), 1);
    // Connects before the read do not count.
    let mut evs = hosts(0);
    evs.push(cred(10 * MS, reader.clone(), "/root/.ssh/id_rsa"));
    assert_eq!(count(c, &evs), 0);
    // An unrelated tree does not join.
    let mut evs = vec![cred(0, reader.clone(), "/root/.ssh/id_rsa")];
    evs.extend((0..3).map(|i| connect(MS + i, proc_(900, 800, "z"), &format!("10.0.0.{i}"), 22)));
    assert_eq!(count(c, &evs), 0);
    // The last connect exactly 1 s after the read is in; 1 ns later is out.
    let mut evs = vec![
        cred(0, reader.clone(), "/root/.ssh/id_rsa"),
        connect(1, child(0), "10.0.0.1", 22),
        connect(2, child(1), "10.0.0.2", 22),
    ];
    evs.push(connect(S, child(2), "10.0.0.3", 22));
    assert_eq!(count(c, &evs), 1);
    let n = evs.len();
    evs[n - 1].ts = S + 1;
    assert_eq!(count(c, &evs), 0);
}

#[test]
fn sibling_in_same_tree_joins() {
    // `cat key` and `ssh host` both children of one shell (tgid 50).
    let c =
        "{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], timespan: 1s}";
    let cat = Process {
        ancestors: vec![50, 1],
        ..proc_(60, 50, "a")
    };
    let ssh = Process {
        ancestors: vec![50, 1],
        ..proc_(61, 50, "a")
    };
    assert_eq!(
        count(
            c,
            &[
                cred(0, cat, "/root/.ssh/id_rsa"),
                connect(5, ssh, "10.0.0.1", 22)
            ]
        ),
        1
    );
}

#[test]
fn out_of_order_within_tolerance_is_reordered() {
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.identity], timespan: 1s}";
    let p = || proc_(10, 2, "a");
    // The read (ts 100 ms) arrives after the connect (ts 200 ms): reordered with tolerance.
    let evs = [
        connect(200 * MS, p(), "h", 1),
        cred(100 * MS, p(), "/root/.ssh/id_rsa"),
        connect(900 * MS, p(), "x", 1),
    ];
    let mut e = engine(
        c,
        EngineOptions {
            reorder_tolerance: 0,
            ..Default::default()
        },
    );
    e.opts.reorder_tolerance = 500 * MS;
    let a = run(&mut e, &evs);
    // Once at the first connect, again at the second (suppression is off in these tests).
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].first_seen, a[0].last_seen), (100 * MS, 200 * MS));
    assert_eq!(e.stats().late, 0);
    // Without tolerance the read is late: counted and placed at the release point.
    let mut e = engine(c, EngineOptions::default());
    let a = run(&mut e, &evs[..2]);
    assert_eq!(e.stats().late, 1);
    assert_eq!(
        a.len(),
        0,
        "a late read cannot precede a connect already released"
    );
}

/// An engine with a tolerance (the `engine` helper's is 0).
fn tolerant(corr: &str, tolerance: u64) -> Engine {
    let mut e = engine(corr, EngineOptions::default());
    e.opts.reorder_tolerance = tolerance;
    e
}

#[test]
fn alert_is_emitted_by_the_completing_push() {
    // With a 500 ms tolerance nothing waits for it: the second connect's own `process` call
    // returns the alert, with no later event, flush or finish.
    let c = "{type: event_count, rules: [conn], timespan: 1s, condition: {gte: 2}}";
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(S, proc_(1, 0, "a"), "h", 1), &mut out);
    assert!(out.is_empty());
    e.process(&connect(S + MS, proc_(1, 0, "a"), "h", 1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].first_seen, out[0].last_seen), (S, S + MS));
    // Owned events (replay) likewise.
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process_owned(connect(S, proc_(1, 0, "a"), "h", 1), &mut out);
    e.process_owned(connect(S + MS, proc_(1, 0, "a"), "h", 1), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn late_event_within_tolerance_completes_its_window() {
    let c = "{type: value_count, rules: [conn], field: net.dst_addr, timespan: 300ms, condition: {gte: 3}}";
    let p = || proc_(1, 0, "a");
    // 1.0 s and 1.2 s arrive, then 0.95 s (late by 250 ms): the window [0.9 s, 1.2 s] holds
    // three destinations, and the late event's own push emits the alert for it.
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(1000 * MS, p(), "10.0.0.1", 1), &mut out);
    e.process(&connect(1200 * MS, p(), "10.0.0.2", 1), &mut out);
    assert!(out.is_empty());
    e.process(&connect(950 * MS, p(), "10.0.0.3", 1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].first_seen, out[0].last_seen), (950 * MS, 1200 * MS));
    assert_eq!(out[0].destination_count, 3);
    assert_eq!(
        out[0].destinations,
        vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    );
    assert_eq!(e.stats().late, 0);
    // 1.4 s instead of 1.2 s: no window of 300 ms holds all three (windows stay exact).
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(1000 * MS, p(), "10.0.0.1", 1), &mut out);
    e.process(&connect(1400 * MS, p(), "10.0.0.2", 1), &mut out);
    e.process(&connect(950 * MS, p(), "10.0.0.3", 1), &mut out);
    e.finish(&mut out);
    assert!(out.is_empty());
    assert_eq!(e.stats().late, 0);
    // Beyond the tolerance: counted late and placed at its edge (0.6 s), where it completes
    // [0.6 s, 1.1 s] of a 500 ms window.
    let c = "{type: value_count, rules: [conn], field: net.dst_addr, timespan: 500ms, condition: {gte: 3}}";
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(1000 * MS, p(), "10.0.0.1", 1), &mut out);
    e.process(&connect(1100 * MS, p(), "10.0.0.2", 1), &mut out);
    e.process(&connect(100 * MS, p(), "10.0.0.3", 1), &mut out);
    assert_eq!(e.stats().late, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].first_seen, 600 * MS);
}

#[test]
fn event_exactly_on_window_edge() {
    let c = "{type: event_count, rules: [conn], timespan: 1s, condition: {gte: 2}}";
    let p = || proc_(1, 0, "a");
    for (first, second, expect) in [
        // In order: exactly `timespan` apart is inside, 1 ns more is out.
        (0, S, 1),
        (0, S + 1, 0),
        // The earlier one arriving second (late, within the tolerance): same answer.
        (S, 0, 1),
        (S + 1, 0, 0),
    ] {
        let mut e = tolerant(c, 2 * S);
        let mut out = Vec::new();
        e.process(&connect(S + first, p(), "h", 1), &mut out);
        e.process(&connect(S + second, p(), "h", 1), &mut out);
        assert_eq!(out.len(), expect, "{first} then {second}");
        e.finish(&mut out);
        assert_eq!(out.len(), expect);
    }
}

#[test]
fn destinations_are_complete_when_the_ring_no_longer_holds_the_events() {
    // The connects wait for the read; by the time it arrives, a one-event ring holds none of
    // them. Their destinations are still all listed (the count and the list agree).
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 1s, condition: {gte: 3}}";
    let child = |n: u32| Process {
        ancestors: vec![100, 50],
        ..proc_(200 + n, 100, "b")
    };
    let mut e = tolerant(c, 500 * MS);
    e.ring = Ring::new(1);
    let mut out = Vec::new();
    for (i, dst) in ["10.0.0.3", "10.0.0.1", "10.0.0.2"].iter().enumerate() {
        e.process(&connect((120 + i as u64) * MS, child(0), dst, 22), &mut out);
    }
    e.process(
        &cred(100 * MS, proc_(100, 50, "a"), "/root/.ssh/id_rsa"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination_count, 3);
    assert_eq!(
        out[0].destinations,
        vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    );
}

#[test]
fn credential_stays_while_its_event_is_evidence_twice() {
    // A credential read matches two steps, so it is the group's evidence twice; when one copy
    // makes room for a later event, the alert still names the credential.
    let src = format!(
        "{BASE}  - id: fp\n    title: fp\n    severity: info\n    alert: false\n    condition: {{kind: cred_open, file.fingerprint: {{exists: true}}}}\n  - id: c\n    title: C\n    severity: high\n    suppress: 0s\n    correlation: {{type: temporal, rules: [credr, fp, conn], group-by: [process.identity], timespan: 10s}}\n"
    );
    let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap_or_else(|e| panic!("{e:?}"));
    let mut e = Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(1),
            max_evidence: 2,
            ..Default::default()
        },
    );
    let p = proc_(100, 1, "a");
    let out = run(
        &mut e,
        &[
            cred(S, p.clone(), "/root/.ssh/id_rsa"),
            connect(2 * S, p, "10.0.0.1", 22),
        ],
    );
    assert_eq!(out.len(), 1);
    let c = out[0].credential.as_ref().map(|c| c.watched.as_str());
    assert_eq!(c, Some("/root/.ssh/id_rsa"));
}

#[test]
fn temporal_ordered_out_of_order_arrival() {
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 1s, condition: {gte: 2}}";
    let reader = proc_(100, 50, "a");
    let child = |n: u32| Process {
        ancestors: vec![100, 50],
        ..proc_(200 + n, 100, "b")
    };
    // Two connects from the reader's child arrive before the read they follow in time: they
    // wait, and the read's own push completes the chain.
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(120 * MS, child(0), "10.0.0.1", 22), &mut out);
    e.process(&connect(130 * MS, child(1), "10.0.0.2", 22), &mut out);
    assert!(out.is_empty());
    e.process(
        &cred(100 * MS, reader.clone(), "/root/.ssh/id_rsa"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!((a.first_seen, a.last_seen), (100 * MS, 130 * MS));
    assert_eq!(a.destinations, vec!["10.0.0.1", "10.0.0.2"]);
    assert_eq!(a.evidence.len(), 3);
    assert!(a.credential.is_some());
    // The alert is the one an in-order run gives (same id: same ordinal, key and window).
    let mut sorted = tolerant(c, 500 * MS);
    let mut out2 = Vec::new();
    sorted.process(
        &cred(100 * MS, reader.clone(), "/root/.ssh/id_rsa"),
        &mut out2,
    );
    sorted.process(&connect(120 * MS, child(0), "10.0.0.1", 22), &mut out2);
    sorted.process(&connect(130 * MS, child(1), "10.0.0.2", 22), &mut out2);
    assert_eq!(out2.len(), 1);
    assert_eq!(out2[0], out[0]);
    // Connects earlier in time than the read never count, whatever the arrival order.
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    e.process(&connect(80 * MS, child(0), "10.0.0.1", 22), &mut out);
    e.process(&connect(90 * MS, child(1), "10.0.0.2", 22), &mut out);
    e.process(
        &cred(100 * MS, reader.clone(), "/root/.ssh/id_rsa"),
        &mut out,
    );
    e.finish(&mut out);
    assert!(out.is_empty());
    // Waiting connects of another tree do not join.
    let mut e = tolerant(c, 500 * MS);
    let mut out = Vec::new();
    for i in 0..2 {
        let other = Process {
            ancestors: vec![900, 1],
            ..proc_(901 + i, 900, "z")
        };
        e.process(
            &connect(120 * MS + u64::from(i), other, "10.0.0.9", 22),
            &mut out,
        );
    }
    e.process(&cred(100 * MS, reader, "/root/.ssh/id_rsa"), &mut out);
    e.finish(&mut out);
    assert!(out.is_empty());
}

#[test]
fn non_monotone_condition_is_decided_after_the_tolerance() {
    // `lte` can turn false when an event is added: the window ending at each event is decided
    // only once event time is `tolerance` past it.
    let c = "{type: value_count, rules: [conn], field: net.dst_port, timespan: 1s, condition: {gt: 1, lte: 2}}";
    let p = || proc_(1, 0, "a");
    let mut e = tolerant(c, 100 * MS);
    let mut out = Vec::new();
    e.process(&connect(0, p(), "h", 1), &mut out);
    e.process(&connect(10 * MS, p(), "h", 2), &mut out);
    e.process(&connect(20 * MS, p(), "h", 3), &mut out);
    assert!(out.is_empty());
    e.flush(109 * MS, &mut out);
    assert!(out.is_empty());
    e.flush(110 * MS, &mut out);
    assert_eq!(out.len(), 1, "the window ending at 10 ms holds two ports");
    assert_eq!(out[0].count, 2);
    e.finish(&mut out);
    assert_eq!(out.len(), 1, "the window ending at 20 ms holds three");
    // A late event inside the 10 ms window (arriving within the tolerance) makes that one
    // three; the window ending at the late event itself (0 and 5 ms) holds two.
    let mut e = tolerant(c, 100 * MS);
    let mut out = Vec::new();
    e.process(&connect(0, p(), "h", 1), &mut out);
    e.process(&connect(10 * MS, p(), "h", 2), &mut out);
    e.process(&connect(5 * MS, p(), "h", 3), &mut out);
    e.finish(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].first_seen, out[0].last_seen), (0, 5 * MS));
}

#[test]
fn suppression_counts_repeats() {
    let src = format!("{BASE}  - id: c\n    title: C\n    severity: high\n    suppress: 10s\n    correlation: {{type: event_count, rules: [conn], group-by: [process.identity], timespan: 1s}}\n");
    let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap();
    let mut e = Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            reorder_tolerance: 0,
            ..Default::default()
        },
    );
    let p = || proc_(10, 2, "a");
    let a = run(
        &mut e,
        &[
            connect(0, p(), "h", 1),
            connect(S, p(), "h", 1),
            connect(2 * S, p(), "h", 1),
            connect(10 * S, p(), "h", 1),
        ],
    );
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].suppressed, a[1].suppressed), (0, 2));
    assert_eq!(e.stats().suppressed, 2);
    assert_ne!(a[0].id, a[1].id);
}

#[test]
fn group_cap_evicts_lru_and_counts() {
    let c = "{type: event_count, rules: [conn], group-by: [process.tgid], timespan: 10s, condition: {gte: 2}}";
    let mut e = engine(
        c,
        EngineOptions {
            max_groups: 2,
            ..Default::default()
        },
    );
    let a = run(
        &mut e,
        &[
            connect(0, proc_(1, 0, "a"), "h", 1),
            connect(1, proc_(2, 0, "a"), "h", 1),
            connect(2, proc_(3, 0, "a"), "h", 1),
            connect(3, proc_(1, 0, "a"), "h", 1),
        ],
    );
    assert_eq!(e.stats().evicted_groups, 2);
    assert!(e.live_groups() <= 2);
    assert_eq!(a.len(), 0, "tgid 1's first event was evicted");
}

#[test]
fn entry_cap_drops_oldest() {
    let c = "{type: event_count, rules: [conn], timespan: 10s, condition: {gte: 100}}";
    let mut e = engine(
        c,
        EngineOptions {
            max_entries: 10,
            ..Default::default()
        },
    );
    let evs: Vec<Event> = (0..20)
        .map(|i| connect(i, proc_(1, 0, "a"), "h", 1))
        .collect();
    assert_eq!(run(&mut e, &evs).len(), 0);
    assert_eq!(e.stats().dropped_entries, 10);
}

#[test]
fn credential_survives_evidence_ring_eviction() {
    // Credential reads, then noise from another identity that pushes them out of a 2-event
    // evidence ring, then the fan-out: the alert still names the (latest) credential.
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.identity], \
             field: net.dst_addr, timespan: 10s, condition: {gte: 3}}";
    let a = || proc_(10, 2, "a");
    let mut evs = vec![
        cred(0, a(), "/root/.ssh/id_rsa"),
        cred(1, a(), "/root/.aws/credentials"),
    ];
    evs.extend((0..5).map(|i| connect(10 + i, proc_(20, 2, "b"), "10.9.9.9", 22)));
    evs.extend((0..3).map(|i| connect(100 + i, a(), &format!("10.0.0.{i}"), 22)));
    let small = run(
        &mut engine(
            c,
            EngineOptions {
                evidence_events: 2,
                ..Default::default()
            },
        ),
        &evs,
    );
    let full = run(&mut engine(c, EngineOptions::default()), &evs);
    assert_eq!((small.len(), full.len()), (1, 1));
    let (s, f) = (&small[0], &full[0]);
    assert!(s.evidence.iter().all(|e| e.file.is_none()));
    assert!(f.evidence.iter().any(|e| e.file.is_some()));
    let cr = s.credential.as_ref().map(|c| c.watched.as_str());
    assert_eq!(cr, Some("/root/.aws/credentials"));
    assert_eq!(s.credential, f.credential);
    assert_eq!(f.evidence_dropped, 0);
    assert_eq!(
        s.evidence_dropped as usize,
        f.evidence.len() - s.evidence.len()
    );
    assert!(s.evidence_dropped >= 2);
    // Everything else is as with a ring large enough.
    let strip = |a: &Alert| Alert {
        evidence: vec![],
        evidence_dropped: 0,
        ..a.clone()
    };
    assert_eq!(strip(s), strip(f));
    let json = serde_json::to_value(f).unwrap_or_default();
    assert!(json.get("evidence_dropped").is_none());
}

#[test]
fn recycled_copies_change_nothing() {
    // `process` copies matched events into buffers recycled from events the (tiny) ring let
    // go; `process_owned` copies nothing. Same alerts, evidence included.
    let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.identity], \
             field: net.dst_addr, timespan: 10s, condition: {gte: 2}}";
    let mut evs = Vec::new();
    for i in 0..40u32 {
        let id = ["a", "bb", "a-longer-identity"][i as usize % 3];
        let p = Process {
            argv: (0..i % 5).map(|k| format!("arg{k}-{i}")).collect(),
            ..proc_(10 + i % 4, 2, id)
        };
        let t = u64::from(i) * MS;
        evs.push(if i % 4 == 0 {
            cred(t, p, &format!("/root/.ssh/id_{i}"))
        } else {
            connect(t, p, &format!("10.0.{}.{}", i % 3, i), 22)
        });
    }
    let opts = || EngineOptions {
        evidence_events: 3,
        ..Default::default()
    };
    let copied = run(&mut engine(c, opts()), &evs);
    let mut e = engine(c, opts());
    let mut owned = Vec::new();
    for ev in &evs {
        e.process_owned(ev.clone(), &mut owned);
    }
    e.finish(&mut owned);
    assert!(copied.len() > 3);
    assert_eq!(copied, owned);
}

#[test]
fn loss_inside_window_is_flagged() {
    let c = "{type: event_count, rules: [conn], timespan: 1s, condition: {gte: 2}}";
    let p = || proc_(10, 2, "a");
    let a = run(
        &mut engine(c, EngineOptions::default()),
        &[connect(0, p(), "h", 1), loss(5), connect(10, p(), "h", 1)],
    );
    assert!(a[0].loss_overlap);
    let a = run(
        &mut engine(c, EngineOptions::default()),
        &[loss(0), connect(5, p(), "h", 1), connect(10, p(), "h", 1)],
    );
    assert!(!a[0].loss_overlap);
}

#[test]
fn max_gap_expresses_machine_speed() {
    let c = "{type: event_count, rules: [conn], timespan: 10s, max_gap: 50ms, condition: {gte: 3}}";
    let p = || proc_(10, 2, "a");
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "h", 1),
                connect(10 * MS, p(), "h", 1),
                connect(20 * MS, p(), "h", 1)
            ]
        ),
        1
    );
    assert_eq!(
        count(
            c,
            &[
                connect(0, p(), "h", 1),
                connect(2 * S, p(), "h", 1),
                connect(4 * S, p(), "h", 1)
            ]
        ),
        0
    );
}

#[test]
fn event_rule_alerts_and_derived_ids_are_deterministic() {
    let src = "rules:\n  - id: e\n    title: E\n    severity: low\n    attack: [T1046]\n    condition: {kind: connect, net.dst_port: 22}\n";
    let mk = || {
        Engine::new(
            RuleSet::load(&[("t".into(), src.into())]).unwrap(),
            Policy::default(),
            EngineOptions {
                ids: IdMode::Derived(7),
                host: "h1".into(),
                ..Default::default()
            },
        )
    };
    let evs = [
        connect(0, proc_(1, 0, "a"), "10.0.0.1", 22),
        connect(1, proc_(1, 0, "a"), "10.0.0.1", 80),
    ];
    let (a, b) = (run(&mut mk(), &evs), run(&mut mk(), &evs));
    assert_eq!(a.len(), 1);
    assert_eq!(a, b);
    assert_eq!(a[0].host, "h1");
    assert_eq!(a[0].attack, vec!["T1046"]);
    assert_eq!(a[0].destinations, vec!["10.0.0.1:22"]);
}

proptest! {
    /// For any arrival order within the tolerance, value_count fires iff some inclusive
    /// window of `span` holds ≥ k distinct values, and never reports more distinct values than
    /// the window holds.
    #[test]
    fn value_count_matches_brute_force(
        mut pts in proptest::collection::vec((0u64..2_000, 0u8..6), 1..40),
        k in 1i64..5,
        arrival in 0u8..3,
        keys in proptest::collection::vec(any::<u64>(), 40),
    ) {
        let span = 300u64;
        let c = format!("{{type: value_count, rules: [conn], field: net.dst_port, timespan: {span}ns, condition: {{gte: {k}}}}}");
        let mut e = engine(&c, EngineOptions::default());
        e.opts.reorder_tolerance = 2_000;
        pts.sort();
        let mut evs: Vec<Event> = pts.iter().map(|&(t, v)| connect(t, proc_(1, 0, "a"), "h", v as u16)).collect();
        match arrival {
            // In time order, reversed, or any permutation.
            0 => {}
            1 => evs.reverse(),
            _ => {
                let mut order: Vec<(u64, Event)> = keys.iter().copied().zip(evs).collect();
                order.sort_by_key(|(k, _)| *k);
                evs = order.into_iter().map(|(_, ev)| ev).collect();
            }
        }
        let alerts = run(&mut e, &evs);
        prop_assert_eq!(e.stats().late, 0);
        // Brute force over windows ending at each event (in ts order, ties in arrival order).
        let mut expect = false;
        for (i, &(t, _)) in pts.iter().enumerate() {
            let d: HashSet<u8> = pts[..=i].iter().filter(|(u, _)| *u + span >= t).map(|&(_, v)| v).collect();
            if d.len() as i64 >= k { expect = true; }
        }
        prop_assert_eq!(!alerts.is_empty(), expect);
        for a in &alerts {
            prop_assert!(a.last_seen - a.first_seen <= span);
            prop_assert!(a.destination_count as i64 >= k);
        }
    }

    /// temporal_ordered: any arrival order within the tolerance decides like time order
    /// (distinct timestamps, so ties cannot reorder steps).
    #[test]
    fn temporal_ordered_any_arrival_order(
        pts in proptest::collection::vec((0u64..30, any::<bool>(), 0u8..4), 1..24),
        keys in proptest::collection::vec(any::<u64>(), 24),
    ) {
        let c = "{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 1000ns, condition: {gte: 2}}";
        let reader = proc_(100, 50, "a");
        let child = Process { ancestors: vec![100, 50], ..proc_(201, 100, "b") };
        let mut evs: Vec<Event> = pts
            .iter()
            .enumerate()
            .map(|(i, &(t, is_read, h))| {
                let ts = t * 100 + i as u64;
                if is_read {
                    cred(ts, reader.clone(), "/root/.ssh/id_rsa")
                } else {
                    connect(ts, child.clone(), &format!("10.0.0.{h}"), 22)
                }
            })
            .collect();
        evs.sort_by_key(|e| e.ts);
        let mut sorted = engine(c, EngineOptions::default());
        sorted.opts.reorder_tolerance = 300_000;
        let expect = !run(&mut sorted, &evs).is_empty();
        let mut order: Vec<(u64, Event)> = keys.iter().copied().zip(evs).collect();
        order.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Event> = order.into_iter().map(|(_, ev)| ev).collect();
        let mut e = engine(c, EngineOptions::default());
        e.opts.reorder_tolerance = 300_000;
        let got = run(&mut e, &shuffled);
        prop_assert_eq!(e.stats().late, 0);
        prop_assert_eq!(!got.is_empty(), expect);
        for a in &got {
            prop_assert!(a.last_seen - a.first_seen <= 1000);
            prop_assert!(a.destination_count >= 2);
        }
    }

    /// A busy group keeps only a lower bound of its distinct values (`Group::lb`): every
    /// decision, alert and held-back repeat is still exactly the brute-force one, while the
    /// window fills far past the condition, drains below it and fills again.
    #[test]
    fn value_count_lower_bound_decides_exactly(
        phases in proptest::collection::vec((1usize..150, 0u8..3, 1u64..6), 1..8),
        vals in proptest::collection::vec(0u16..200, 1200),
        k in 1i64..12,
        suppress in 0u64..3,
    ) {
        let span = 400u64;
        let supp = [0, 150, 5_000][suppress as usize];
        let src = format!("{BASE}  - id: c\n    title: C\n    severity: high\n    suppress: {supp}ns\n    correlation: {{type: value_count, rules: [conn], group-by: [process.identity], field: net.dst_port, timespan: {span}ns, condition: {{gte: {k}}}}}\n");
        let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap();
        let mut e = Engine::new(rules, Policy::default(), EngineOptions { ids: IdMode::Derived(1), reorder_tolerance: 0, ..Default::default() });
        // Phases of many values, of few (repeats) and quiet ones.
        let mut t = 0;
        let mut vals = vals.into_iter();
        let mut pts: Vec<(u64, u16)> = Vec::new();
        for (len, mode, g) in phases {
            for v in vals.by_ref().take(len) {
                t += if mode == 2 { g * 60 } else { g };
                pts.push((t, if mode == 1 { v % 3 } else { v }));
            }
        }
        let evs: Vec<Event> = pts.iter().map(|&(t, v)| connect(t, proc_(1, 0, "a"), "h", v)).collect();
        let got: Vec<(u64, u64, u64)> = run(&mut e, &evs).iter().map(|a| (a.last_seen, a.suppressed, a.destination_count)).collect();
        let mut expect = Vec::new();
        let (mut last, mut held, mut total) = (None::<u64>, 0, 0);
        for (i, &(t, _)) in pts.iter().enumerate() {
            let d: HashSet<u16> = pts[..=i].iter().filter(|(u, _)| *u + span >= t).map(|&(_, v)| v).collect();
            if (d.len() as i64) < k { continue; }
            if last.is_some_and(|l| t < l + supp) { held += 1; total += 1; continue; }
            expect.push((t, held, d.len() as u64));
            (last, held) = (Some(t), 0);
        }
        prop_assert_eq!(got, expect);
        prop_assert_eq!(e.stats().suppressed, total);
    }

    /// temporal_ordered reuses the chain found for an earlier event while its first step is
    /// in the window (`Group::chain`): alerts and held-back repeats are exactly the
    /// brute-force ones (earliest chain: the first read in the window, then distinct hosts).
    #[test]
    fn temporal_ordered_known_chain_decides_exactly(
        pts in proptest::collection::vec((1u64..60, 0u8..10, 0u8..8), 1..300),
        suppress in 0u64..3,
    ) {
        let span = 1_000u64;
        let supp = [0, 700, 50_000][suppress as usize];
        let src = format!("{BASE}  - id: c\n    title: C\n    severity: high\n    suppress: {supp}ns\n    correlation: {{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: {span}ns, condition: {{gte: 3}}}}\n");
        let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap();
        let mut e = Engine::new(rules, Policy::default(), EngineOptions { ids: IdMode::Derived(1), reorder_tolerance: 0, ..Default::default() });
        let reader = proc_(100, 50, "a");
        let child = Process { ancestors: vec![100, 50], ..proc_(201, 100, "b") };
        let mut t = 0;
        // (ts, is a read, host)
        let evs: Vec<(u64, bool, u8)> = pts.iter().map(|&(g, kind, h)| { t += g; (t, kind == 0, h) }).collect();
        let input: Vec<Event> = evs.iter().map(|&(t, read, h)| if read {
            cred(t, reader.clone(), "/root/.ssh/id_rsa")
        } else {
            connect(t, child.clone(), &format!("10.0.0.{h}"), 22)
        }).collect();
        let got: Vec<(u64, u64)> = run(&mut e, &input).iter().map(|a| (a.last_seen, a.suppressed)).collect();
        let mut expect = Vec::new();
        let (mut last, mut held) = (None::<u64>, 0);
        for (i, &(t, ..)) in evs.iter().enumerate() {
            // Every event whose window holds a chain decides it (a read too).
            let win: Vec<&(u64, bool, u8)> = evs[..=i].iter().filter(|(u, ..)| *u + span >= t).collect();
            let Some(first) = win.iter().position(|(_, r, _)| *r) else { continue };
            let hosts: HashSet<u8> = win[first..].iter().filter(|(_, r, _)| !r).map(|&&(_, _, h)| h).collect();
            if hosts.len() < 3 { continue; }
            if last.is_some_and(|l| t < l + supp) { held += 1; continue; }
            expect.push((t, held));
            (last, held) = (Some(t), 0);
        }
        prop_assert_eq!(got, expect);
    }

    /// Event counts in a reported window never exceed what the window can hold.
    #[test]
    fn event_count_window_bounds(ts in proptest::collection::vec(0u64..10_000, 1..60)) {
        let c = "{type: event_count, rules: [conn], timespan: 1us, condition: {gte: 1}}";
        let mut ts = ts; ts.sort();
        let evs: Vec<Event> = ts.iter().map(|&t| connect(t, proc_(1, 0, "a"), "h", 1)).collect();
        let alerts = run(&mut engine(c, EngineOptions::default()), &evs);
        prop_assert_eq!(alerts.len(), ts.len());
        for (i, a) in alerts.iter().enumerate() {
            // Events released so far (equal timestamps release in arrival order).
            let inwin = ts[..=i].iter().filter(|&&t| t + 1_000 >= a.last_seen).count() as u64;
            prop_assert_eq!(a.count, inwin);
        }
    }
}

/// Sigma `aliases`: one group key over differently named fields — here the destination a
/// process connected to and the peer an inbound connection came from.
#[test]
fn aliases_join_different_fields_of_different_rules() {
    let src = "rules:
  - id: out
    title: out
    severity: info
    condition: {kind: connect}
  - id: inb
    title: in
    severity: info
    condition: {kind: accept}
  - id: c
    title: C
    severity: high
    suppress: 0s
    correlation:
      type: temporal
      rules: [out, inb]
      group-by: [peer]
      aliases:
        peer: {out: net.dst_addr, inb: net.src_addr}
      timespan: 1s
";
    let rules = RuleSet::load(&[("t.yaml".into(), src.into())]).unwrap_or_else(|e| panic!("{e:?}"));
    let accept = |ts: u64, from: &str| {
        let mut e = connect(ts, proc_(20, 2, "srv"), "10.0.0.9", 22);
        e.kind = Kind::Accept;
        if let Some(n) = e.net.as_mut() {
            n.direction = Direction::Inbound;
            n.src_addr = from.into();
        }
        e
    };
    let run_with = |evs: &[Event]| {
        let mut e = Engine::new(
            RuleSet::load(&[("t.yaml".into(), src.into())]).unwrap_or_else(|e| panic!("{e:?}")),
            Policy::default(),
            EngineOptions {
                ids: IdMode::Derived(1),
                reorder_tolerance: 0,
                ..EngineOptions::default()
            },
        );
        run(&mut e, evs)
            .into_iter()
            .filter(|a| a.rule.id == "c")
            .collect::<Vec<_>>()
    };
    // Same address on both sides: joined.
    let hits = run_with(&[
        connect(0, proc_(10, 2, "a"), "10.0.0.5", 22),
        accept(S / 2, "10.0.0.5"),
    ]);
    assert_eq!(hits.len(), 1);
    // The alert names the group by the first rule's field.
    assert_eq!(
        hits[0].group.get("net.dst_addr").map(String::as_str),
        Some("10.0.0.5")
    );
    // Different addresses: no join.
    assert!(run_with(&[
        connect(0, proc_(10, 2, "a"), "10.0.0.5", 22),
        accept(S / 2, "10.0.0.6"),
    ])
    .is_empty());
    // Sigma default `generate: false`: the referenced rules raise no alerts of their own.
    assert!(rules.rules.iter().take(2).all(|r| !r.alert));
}

#[test]
fn generate_true_lets_referenced_rules_alert() {
    let src = "rules:
  - id: out
    title: out
    severity: info
    condition: {kind: connect}
  - id: c
    title: C
    severity: high
    correlation: {type: event_count, rules: [out], timespan: 1s, condition: {gte: 2}, generate: true}
";
    let rules = RuleSet::load(&[("t.yaml".into(), src.into())]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(rules.rules[0].alert);
    let bad = src.replace(
        "condition: {kind: connect}",
        "alert: false\n    condition: {kind: connect}",
    );
    let e = RuleSet::load(&[("t.yaml".into(), bad)]).unwrap_err();
    assert!(e[0].msg.contains("generate: true"), "{e:?}");
    assert_eq!(e[0].pos.line, 7, "{e:?}");
}

#[test]
fn a_group_is_two_cache_lines() {
    // Nearly every connect touches a group no recent event did: its size is the miss count.
    assert_eq!(std::mem::size_of::<super::Group>(), 128);
}

/// Time near the end of `u64`: the default fan-out rule fires once for a burst stamped
/// `u64::MAX` and suppression holds every repeat back (sums that saturated there let 1 of 52
/// and 29 of 80 repeats through).
#[test]
fn suppression_holds_at_the_end_of_time() {
    for (n, ts) in [(52u64, u64::MAX), (80, u64::MAX), (80, u64::MAX - 3 * S)] {
        let rules = load::load_rules(&[], false).unwrap();
        let mut e = Engine::new(rules, Policy::default(), EngineOptions::default());
        let mut out = Vec::new();
        for i in 0..n {
            let dst = format!("10.0.{}.{}", i / 200, i % 200 + 1);
            e.process(&connect(ts, proc_(7, 1, "svc"), &dst, 443), &mut out);
        }
        e.finish(&mut out);
        let fan: Vec<_> = out
            .iter()
            .filter(|a| a.rule.id == "service-fan-out-burst")
            .collect();
        assert_eq!(fan.len(), 1, "{n} connects at {ts}: {fan:?}");
    }
    assert!(held_back(u64::MAX, 10, u64::MAX));
    assert!(held_back(u64::MAX - 5, 10, u64::MAX));
    assert!(!held_back(u64::MAX - 10, 10, u64::MAX));
    assert!(held_back(5, 10, 0) && !held_back(0, 10, 10));
}

/// The incident: a shell (600, child of 500) whose `cat` reads a key, and a subshell
/// (602) whose own `cat` reads it too and whose children connect to three hosts. The connects
/// join the shell's tree and the subshell's: two groups, one incident.
mod incidents {
    use super::*;

    fn p(tgid: u32, ppid: u32, ancestors: &[u32], exe: &str) -> Process {
        Process {
            ancestors: ancestors.to_vec(),
            exe: exe.into(),
            start: u64::from(tgid),
            ..proc_(tgid, ppid, "exe:/bin/sh@alice")
        }
    }

    fn cat_in_shell() -> Process {
        p(601, 600, &[600, 500, 1], "/usr/bin/cat")
    }
    fn cat_in_subshell() -> Process {
        p(603, 602, &[602, 600, 500, 1], "/usr/bin/cat")
    }
    fn nc(i: u32) -> Process {
        p(604 + i, 602, &[602, 600, 500, 1], "/usr/bin/nc")
    }

    fn fanout_engine(tolerance: u64) -> Engine {
        let src = format!(
            "{BASE}  - id: fan\n    title: Fan\n    severity: critical\n    suppress: 10m\n    correlation: {{type: temporal_ordered, rules: [credr, conn], group-by: [process.tree], field: net.dst_addr, timespan: 1s, condition: {{gte: 3}}}}\n"
        );
        let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap_or_else(|e| panic!("{e:?}"));
        Engine::new(
            rules,
            Policy::default(),
            EngineOptions {
                ids: IdMode::Derived(7),
                reorder_tolerance: tolerance,
                ..Default::default()
            },
        )
    }

    fn tgids(a: &Alert) -> Vec<u32> {
        let inc = a.incident.as_ref().expect("incident");
        inc.processes.iter().map(|p| p.tgid).collect()
    }

    #[test]
    fn groups_firing_on_one_event_are_one_alert() {
        let evs = [
            cred(1000 * MS, cat_in_shell(), "/home/alice/.ssh/id_ed25519"),
            cred(1010 * MS, cat_in_subshell(), "/home/alice/.ssh/id_ed25519"),
            connect(1100 * MS, nc(0), "10.0.0.1", 22),
            connect(1200 * MS, nc(1), "10.0.0.2", 22),
            connect(1300 * MS, nc(2), "10.0.0.3", 22),
        ];
        let mut e = fanout_engine(0);
        let out = run(&mut e, &evs);
        assert_eq!(out.len(), 1, "{out:#?}");
        let a = &out[0];
        let inc = a.incident.as_ref().expect("an incident of two groups");
        assert_eq!(inc.id, a.id);
        assert_eq!(inc.revision, 0);
        assert_eq!(inc.trees, vec![600, 602]);
        assert_eq!(tgids(a), vec![601, 603, 604, 605, 606]);
        // Both reads and the three shared connects, each once.
        assert_eq!(a.count, 5);
        assert_eq!(a.destination_count, 3);
        assert_eq!(a.destinations, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(a.evidence.len(), 5);
        assert_eq!(a.first_seen, 1000 * MS);
        assert_eq!(a.last_seen, 1300 * MS);
        assert_eq!(a.process.as_ref().map(|p| p.tgid), Some(606));
        // The group that fired first names the alert's group (an event tries its own tree
        // first, then its ancestors').
        assert_eq!(a.group["process.tree"], "602");
        assert_eq!(e.stats().alerts, 1);
        assert_eq!(e.stats().merged, 1);
        // Stats show `merged` only when something merged.
        let s = serde_json::to_value(e.stats()).unwrap();
        assert_eq!(s["merged"], 1);
        let mut quiet = fanout_engine(0);
        let _ = run(&mut quiet, &evs[..2]);
        assert!(serde_json::to_value(quiet.stats())
            .unwrap()
            .get("merged")
            .is_none());
    }

    /// The subshell's group completes one connect later than the shell's: the incident's alert
    /// is out already, so the second firing is an update of it (same incident id, revision 1),
    /// describing the whole incident.
    #[test]
    fn a_later_firing_of_another_group_updates_the_incident() {
        let evs = [
            cred(1000 * MS, cat_in_shell(), "/home/alice/.ssh/id_ed25519"),
            connect(1100 * MS, nc(0), "10.0.0.1", 22),
            cred(1150 * MS, cat_in_subshell(), "/home/alice/.ssh/id_rsa"),
            connect(1200 * MS, nc(1), "10.0.0.2", 22),
            connect(1300 * MS, nc(2), "10.0.0.3", 22),
            connect(1400 * MS, nc(3), "10.0.0.4", 22),
        ];
        let out = run(&mut fanout_engine(0), &evs);
        assert_eq!(out.len(), 2, "{out:#?}");
        let (first, update) = (&out[0], &out[1]);
        assert!(
            first.incident.is_none(),
            "the first alert is its own incident yet"
        );
        assert_eq!(first.count, 4);
        let inc = update.incident.as_ref().unwrap();
        assert_eq!(inc.id, first.id);
        assert_ne!(update.id, first.id);
        assert_eq!(inc.revision, 1);
        assert_eq!(inc.trees, vec![600, 602]);
        assert_eq!(tgids(update), vec![601, 604, 603, 605, 606, 607]);
        // 2 reads + 4 connects, 4 hosts, over both windows; the second credential shows.
        assert_eq!(update.count, 6);
        assert_eq!(update.destination_count, 4);
        assert_eq!(update.first_seen, 1000 * MS);
        assert_eq!(update.last_seen, 1400 * MS);
        assert_eq!(
            update.credential.as_ref().map(|c| c.watched.as_str()),
            Some("/home/alice/.ssh/id_rsa")
        );
    }

    /// Groups that share no event are separate incidents: two unrelated shells.
    #[test]
    fn groups_without_shared_events_stay_apart() {
        let other = |tgid: u32, ppid: u32| p(tgid, ppid, &[ppid, 1], "/usr/bin/nc");
        let mut evs = vec![
            cred(1000 * MS, cat_in_shell(), "/k"),
            cred(1000 * MS, p(701, 700, &[700, 1], "/usr/bin/cat"), "/k"),
        ];
        for i in 0..3u32 {
            let ts = (1100 + 100 * u64::from(i)) * MS;
            evs.push(connect(ts, other(610 + i, 600), &format!("10.0.0.{i}"), 22));
            evs.push(connect(ts, other(710 + i, 700), &format!("10.0.1.{i}"), 22));
        }
        let out = run(&mut fanout_engine(0), &evs);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|a| a.incident.is_none()));
    }

    /// Arrival order within the tolerance does not change the incident: one alert for both
    /// groups when they complete on the same event, whatever order the rest arrived in.
    #[test]
    fn merging_does_not_depend_on_arrival_order() {
        let evs = [
            cred(1000 * MS, cat_in_shell(), "/k"),
            cred(1010 * MS, cat_in_subshell(), "/k"),
            connect(1100 * MS, nc(0), "10.0.0.1", 22),
            connect(1200 * MS, nc(1), "10.0.0.2", 22),
            connect(1300 * MS, nc(2), "10.0.0.3", 22),
        ];
        // Every order where the last connect comes last (it completes both windows).
        let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0], [2, 3, 0, 1]];
        for o in orders {
            let mut shuffled: Vec<Event> = o.iter().map(|&i| evs[i].clone()).collect();
            shuffled.push(evs[4].clone());
            let out = run(&mut fanout_engine(500 * MS), &shuffled);
            assert_eq!(out.len(), 1, "{o:?}: {out:#?}");
            assert_eq!(
                out[0].incident.as_ref().unwrap().trees,
                vec![600, 602],
                "{o:?}"
            );
            assert_eq!(out[0].count, 5, "{o:?}");
        }
    }

    /// The shipped rule, as the issue saw it: one alert, naming both trees.
    #[test]
    fn the_pack_reports_the_shell_and_subshell_once() {
        let rules = crate::engine::load::load_rules(&[], false).unwrap();
        let mut e = Engine::new(rules, Policy::default(), EngineOptions::default());
        let evs = [
            cred(1000 * MS, cat_in_shell(), "/home/alice/.ssh/id_ed25519"),
            cred(1010 * MS, cat_in_subshell(), "/home/alice/.ssh/id_ed25519"),
            connect(1100 * MS, nc(0), "10.0.0.1", 22),
            connect(1200 * MS, nc(1), "10.0.0.2", 22),
            connect(1300 * MS, nc(2), "10.0.0.3", 22),
        ];
        let out = run(&mut e, &evs);
        let msr: Vec<&Alert> = out
            .iter()
            .filter(|a| a.rule.id == "machine-speed-credential-reuse")
            .collect();
        assert_eq!(msr.len(), 1, "{out:#?}");
        assert_eq!(msr[0].incident.as_ref().unwrap().trees, vec![600, 602]);
    }
}

/// `services: {metrics-b: [10.213.0.11:9100]}`: a first-seen-peer alert to that address names
/// the service (and the name the address was resolved from) in the alert and its evidence.
#[test]
fn service_and_destination_names_reach_the_alert() {
    let ids = "identities:
  - name: scraper
    match: {exe: /usr/bin/prometheus}
    peers: [metrics-a]
services:
  metrics-a: [10.213.0.10:9100]
  metrics-b: [10.213.0.11:9100]
";
    let policy = Policy {
        identities: crate::policy::identities::IdentityConfig::parse("identities.yaml", ids)
            .unwrap(),
        ..Default::default()
    };
    let rules = crate::engine::load::load_rules(&[], false).unwrap();
    let mut e = Engine::new(rules, policy, EngineOptions::default());
    let p = Process {
        exe: "/usr/bin/prometheus".into(),
        ..proc_(900, 1, "scraper")
    };
    let mut named = connect(1000 * MS, p.clone(), "10.213.0.11", 9100);
    if let Some(n) = named.net.as_mut() {
        n.dst_name = Some("node-b.metrics.internal".into());
    }
    let evs = [
        connect(900 * MS, p.clone(), "10.213.0.10", 9100),
        named,
        connect(1100 * MS, p, "10.213.0.12", 9100),
    ];
    let out = run(&mut e, &evs);
    let fsp: Vec<&Alert> = out
        .iter()
        .filter(|a| a.rule.id == "first-seen-peer")
        .collect();
    assert_eq!(fsp.len(), 2, "{out:#?}");
    let b = fsp[0];
    assert_eq!(b.destinations, ["10.213.0.11:9100"]);
    assert_eq!(b.services, ["metrics-b"]);
    assert_eq!(b.destination_names, ["node-b.metrics.internal"]);
    let n = b.evidence[0].net.as_ref().unwrap();
    assert_eq!(n.service.as_deref(), Some("metrics-b"));
    assert_eq!(n.dst_name.as_deref(), Some("node-b.metrics.internal"));
    let j = serde_json::to_value(b).unwrap();
    assert_eq!(j["services"][0], "metrics-b");
    assert_eq!(j["evidence"][0]["net"]["service"], "metrics-b");
    // An address no service names: nothing added, the fields absent.
    let c = fsp[1];
    assert!(c.services.is_empty() && c.destination_names.is_empty());
    let j = serde_json::to_value(c).unwrap();
    assert!(j.get("services").is_none() && j["evidence"][0]["net"].get("service").is_none());
}

/// Golden derived ids: an event rule's alert and a correlation's, under a fixed seed (ids hash
/// the alert's rendered group with `keys::alert_group_hash`). A change of hash
/// algorithm, of how keys are fed to it or of the id derivation changes these and must be
/// deliberate (docs/alerts.md says when ids changed).
#[test]
fn derived_alert_ids_are_pinned() {
    let src = format!(
        "{BASE}  - id: e\n    title: E\n    severity: low\n    group-by: [process.identity, net.dst_port]\n    condition: {{kind: connect}}\n  - id: c\n    title: C\n    severity: high\n    suppress: 0s\n    correlation: {{type: value_count, rules: [conn], group-by: [process.identity], field: net.dst_addr, timespan: 10s, condition: {{gte: 2}}}}\n"
    );
    let rules = RuleSet::load(&[("t.yaml".into(), src)]).unwrap_or_else(|e| panic!("{e:?}"));
    let mut e = Engine::new(
        rules,
        Policy::default(),
        EngineOptions {
            ids: IdMode::Derived(1),
            reorder_tolerance: 0,
            ..EngineOptions::default()
        },
    );
    let p = proc_(100, 1, "web");
    let evs = [
        connect(1_000_000_000, p.clone(), "10.0.0.1", 22),
        connect(1_100_000_000, p, "10.0.0.2", 22),
    ];
    let got: Vec<(String, String)> = run(&mut e, &evs)
        .into_iter()
        .map(|a| (a.rule.id, a.id))
        .collect();
    let want: Vec<(String, String)> = [
        ("e", "1139717f-0ffc-807f-8346-c25efbe75add"),
        ("c", "9711b6c7-97e3-8959-a32a-e97cb8010df4"),
    ]
    .iter()
    .map(|(r, i)| (r.to_string(), i.to_string()))
    .collect();
    assert_eq!(got, want);
}
