//! SinkSet behaviour against real receivers: a hyper HTTP server on 127.0.0.1 that is down,
//! slow, then restarted; a spool reopened by a second SinkSet; overflow notices.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http_body_util::BodyExt as _;
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::set::open_queues;
use super::*;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::{AgentConfig, FsyncPolicy, SinkConfig};

/// What the receiver saw: alert ids in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn ids(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for id in self.ids() {
            *m.entry(id).or_insert(0) += 1;
        }
        m
    }
}

/// A real HTTP server taking generic JSON batches; answers after `delay`.
struct Server {
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(addr: SocketAddr, seen: Seen, delay: Duration) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            tokio::time::sleep(delay).await;
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            if let (Some(arr), Ok(mut s)) = (v.as_array(), seen.0.lock()) {
                                for a in arr {
                                    s.push(a["id"].as_str().unwrap_or("?").to_string());
                                }
                            }
                            Ok::<_, hyper::Error>(Response::new(http_body_util::Full::new(
                                hyper::body::Bytes::from_static(b"{}"),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Server { task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(yaml: &str) -> Vec<SinkConfig> {
    AgentConfig::parse(yaml, std::path::Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .sinks
}

fn alert(n: u64) -> Alert {
    format::tests::sample_alert(n)
}

async fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(tokio::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stat(set: &SinkSet, f: impl Fn(&SinkStats) -> &AtomicU64) -> u64 {
    f(&set.stats()[0].1).load(Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_down_then_slow_then_restarted_gets_every_alert_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let sinks = config(&format!(
        "sinks:\n  - http:\n      url: http://{addr}/ingest\n      timeout: 2s\n      batch: {{max_alerts: 7}}\n      retry: {{initial: 20ms, max: 200ms}}\n      spool: {{dir: {}}}\n",
        d.path().display()
    ));
    let set = SinkSet::from_config(&sinks, "h").unwrap();
    // Down: nothing listens.
    for i in 0..40 {
        set.send(alert(i));
    }
    wait_until("failures while down", Duration::from_secs(10), || {
        stat(&set, |s| &s.failures) >= 2
    })
    .await;
    assert_eq!(stat(&set, |s| &s.delivered), 0);
    // Slow (but within the timeout).
    let seen = Seen::default();
    let srv = Server::start(addr, seen.clone(), Duration::from_millis(300)).await;
    for i in 40..60 {
        set.send(alert(i));
    }
    wait_until("some delivered while slow", Duration::from_secs(20), || {
        seen.ids().len() >= 14
    })
    .await;
    // Restarted.
    srv.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 60..80 {
        set.send(alert(i));
    }
    let srv = Server::start(addr, seen.clone(), Duration::ZERO).await;
    wait_until("all 80 delivered", Duration::from_secs(30), || {
        seen.counts().len() >= 80
    })
    .await;
    set.shutdown(Duration::from_secs(5)).await;
    srv.stop();
    let counts = seen.counts();
    let want: Vec<String> = (0..80).map(|i| alert(i).id).collect();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        {
            let mut w = want.clone();
            w.sort();
            w
        },
        "every alert, by id"
    );
    // The receiver aborted mid-request only between batches it had answered, and the agent
    // did not crash, so nothing may repeat.
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicates: {dup:?}");
    // In order.
    assert_eq!(seen.ids(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_a_restart_and_delivers_in_order() {
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let yaml = format!(
        "sinks:\n  - http:\n      name: siem\n      url: http://{addr}/\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}}}\n",
        d.path().display()
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    for i in 0..25 {
        set.send(alert(i));
    }
    set.flush().await;
    assert_eq!(stat(&set, |s| &s.queued), 25);
    set.shutdown(Duration::from_millis(200)).await;
    let seg_mode = std::fs::read_dir(d.path().join("siem"))
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777;
            // Files 0600; the overflow spool's directory 0700.
            (mode, if m.is_dir() { 0o700 } else { 0o600 })
        })
        .collect::<Vec<_>>();
    assert!(seg_mode.iter().all(|(m, want)| m == want), "{seg_mode:?}");
    let seen = Seen::default();
    let srv = Server::start(addr, seen.clone(), Duration::ZERO).await;
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    assert_eq!(stat(&set, |s| &s.recovered), 25);
    set.send(alert(25));
    wait_until("26 delivered", Duration::from_secs(10), || {
        seen.ids().len() >= 26
    })
    .await;
    set.shutdown(Duration::from_secs(2)).await;
    srv.stop();
    assert_eq!(seen.ids(), (0..26).map(|i| alert(i).id).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_by_policy_counts_and_announces_in_band() {
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let one = format::encode(&alert(0), crate::config::Format::Native).len() as u64;
    // Room for about 5 alerts.
    let max = (one + 8 + 40) * 5;
    let yaml = format!(
        "sinks:\n  - http:\n      url: http://{addr}/\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}, max_bytes: {max}, on_full: drop_oldest}}\n",
        d.path().display()
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    for i in 0..20 {
        set.send(alert(i));
    }
    set.flush().await;
    let dropped = stat(&set, |s| &s.dropped);
    let held = stat(&set, |s| &s.queued);
    assert_eq!(dropped + held, 20);
    assert!(dropped >= 10, "{dropped}");
    let seen = Seen::default();
    let srv = Server::start(addr, seen.clone(), Duration::ZERO).await;
    wait_until("notice and held delivered", Duration::from_secs(10), || {
        seen.ids().len() as u64 > held
    })
    .await;
    set.shutdown(Duration::from_secs(2)).await;
    srv.stop();
    let ids = seen.ids();
    // The notice first (it is not one of ours), then the newest `held` alerts in order.
    let ours: Vec<String> = (20 - held..20).map(|i| alert(i).id).collect();
    assert_eq!(&ids[1..], &ours[..]);
    assert!(!ours.contains(&ids[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_notice_names_the_count() {
    // Drop-newest with a real server receiving the notice body.
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let b2 = bodies.clone();
    let one = format::encode(&alert(0), crate::config::Format::Native).len() as u64;
    let yaml = format!(
        "sinks:\n  - http:\n      url: http://{addr}/\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}, max_bytes: {}, on_full: drop_newest, fsync: never}}\n",
        d.path().display(),
        // The spool's floor (4 KiB) is the smallest accepted size: a few alerts.
        ((one + 60) * 3).max(crate::config::MAX_BYTES_RANGE.0)
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    for i in 0..10 {
        set.send(alert(i));
    }
    set.flush().await;
    assert_eq!(stat(&set, |s| &s.dropped), 7);
    // Listening only now: a batch sent before the drops (while the task was still taking the
    // alerts in) must not be accepted ahead of the notice.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let srv = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let b2 = b2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let b2 = b2.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        if let (Ok(Value::Array(a)), Ok(mut b)) =
                            (serde_json::from_slice::<Value>(&body), b2.lock())
                        {
                            b.extend(a);
                        }
                        Ok::<_, hyper::Error>(Response::new(http_body_util::Full::new(
                            hyper::body::Bytes::new(),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    wait_until("4 documents", Duration::from_secs(10), || {
        bodies.lock().map(|b| b.len() >= 4).unwrap_or(false)
    })
    .await;
    set.shutdown(Duration::from_secs(2)).await;
    srv.abort();
    let b = bodies.lock().unwrap().clone();
    assert_eq!(b[0]["rule"]["id"], format::OVERFLOW_RULE_ID);
    assert_eq!(b[0]["group"]["dropped"], "7");
    assert_eq!(b[0]["group"]["reason"], "queue full, dropped newest");
    assert_eq!(b[1]["id"], alert(0).id);
    assert_eq!(b.len(), 4);
}

#[test]
fn spool_fsync_policy_parses() {
    let c = config("sinks:\n  - syslog: {transport: unix, spool: {dir: /x, fsync: never}}\n");
    let SinkConfig::Syslog(s) = &c[0] else {
        panic!()
    };
    assert_eq!(s.spool.as_ref().map(|s| s.fsync), Some(FsyncPolicy::Never));
}

#[test]
fn one_slow_sink_does_not_hold_up_another() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("a.ndjson");
    // The HTTP sink points at a port nobody listens on, with long backoff.
    let addr = free_port();
    let yaml = format!(
        "sinks:\n  - http:\n      url: http://{addr}/\n      retry: {{initial: 10s, max: 10s}}\n  - file:\n      path: {}\n",
        f.display()
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    for i in 0..100 {
        set.send(alert(i));
    }
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = std::fs::read_to_string(&f)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n == 100 {
            break;
        }
        assert!(std::time::Instant::now() < end, "file sink got {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = set.stats();
    assert_eq!(st[1].1.delivered.load(Relaxed), 100);
    assert_eq!(st[0].1.delivered.load(Relaxed), 0);
    set.shutdown_blocking(Duration::from_millis(100));
}

/// Every id of `0..n` exactly once and in order.
fn assert_all_once_in_order(seen: &Seen, n: u64) {
    let ids = seen.ids();
    let counts = seen.counts();
    let dup = counts.values().filter(|c| **c > 1).count();
    assert_eq!(dup, 0, "{dup} ids repeated");
    assert_eq!(ids.len() as u64, n, "received {} of {n}", ids.len());
    let want: Vec<String> = (0..n).map(|i| alert(i).id).collect();
    let first_bad = ids.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "out of order at {first_bad:?}");
}

#[tokio::test]
async fn alert_flood_to_a_slow_spooled_sink_spills_to_disk_and_loses_nothing() {
    const N: u64 = 100_000;
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let seen = Seen::default();
    // Slow: every POST of 500 takes 20 ms more, so a burst overflows the 16 K channel.
    let srv = Server::start(addr, seen.clone(), Duration::from_millis(20)).await;
    let yaml = format!(
        "sinks:\n  - http:\n      name: siem\n      url: http://{addr}/\n      batch: {{max_alerts: 500}}\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}, fsync: never}}\n",
        d.path().display()
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    // Both workers of the sinks' runtime are held during the burst, so the sink's task cannot
    // drain its channel meanwhile and the burst overflows it whatever the build's speed (an
    // optimized build otherwise moved alerts to the spool as fast as they came, never spilled,
    // and failed the "it did spill" check below).
    struct Hold(Arc<std::sync::Barrier>);
    impl Drop for Hold {
        fn drop(&mut self) {
            self.0.wait();
        }
    }
    let held = Arc::new(std::sync::Barrier::new(3));
    let freed = Arc::new(std::sync::Barrier::new(3));
    if let Some(rt) = &set.rt {
        for _ in 0..2 {
            let (h, f) = (held.clone(), freed.clone());
            rt.spawn(async move {
                h.wait();
                f.wait();
            });
        }
    }
    held.wait();
    // Released at the end of this block, or if an assertion in it fails.
    let hold = Hold(freed);
    // One burst from the caller's thread, as from the capture loop.
    for i in 0..N {
        set.send(alert(i));
    }
    assert_eq!(stat(&set, |s| &s.dropped), 0);
    // The burst did spill: the overflow spool was used.
    assert!(
        d.path().join("siem/overflow/head").exists()
            || std::fs::read_dir(d.path().join("siem/overflow"))
                .unwrap()
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "seg")),
        "the overflow spool was never used"
    );
    drop(hold);
    wait_until("all delivered", Duration::from_secs(120), || {
        seen.ids().len() as u64 >= N
    })
    .await;
    set.shutdown(Duration::from_secs(5)).await;
    srv.stop();
    assert_all_once_in_order(&seen, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_flood_while_the_sink_is_down_survives_a_crash_and_arrives_once_in_order() {
    const N: u64 = 100_000;
    let d = tempfile::tempdir().unwrap();
    let addr = free_port();
    let yaml = format!(
        "sinks:\n  - http:\n      name: siem\n      url: http://{addr}/\n      batch: {{max_alerts: 500}}\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}, fsync: never}}\n",
        d.path().display()
    );
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    for i in 0..N {
        set.send(alert(i));
    }
    // What `send` took is on disk (spool or overflow) once the channel is through.
    set.flush().await;
    assert_eq!(stat(&set, |s| &s.dropped), 0);
    assert_eq!(stat(&set, |s| &s.delivered), 0);
    // A crash: no shutdown, the tasks just stop (the runtime is dropped).
    drop(set);
    let seen = Seen::default();
    let srv = Server::start(addr, seen.clone(), Duration::ZERO).await;
    let set = SinkSet::from_config(&config(&yaml), "h").unwrap();
    assert_eq!(stat(&set, |s| &s.recovered), N);
    wait_until(
        "all delivered after the restart",
        Duration::from_secs(120),
        || seen.ids().len() as u64 >= N,
    )
    .await;
    set.shutdown(Duration::from_secs(5)).await;
    srv.stop();
    assert_all_once_in_order(&seen, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_hands_a_changed_sinks_spool_to_its_successor_and_leaves_the_rest_alone() {
    let d = tempfile::tempdir().unwrap();
    let (down, up) = (free_port(), free_port());
    let file = d.path().join("kept.ndjson");
    let yaml = |addr: SocketAddr, spool: &str| {
        format!(
            "sinks:\n  - file: {{name: kept, path: {}}}\n  - http:\n      name: siem\n      url: http://{addr}/\n      retry: {{initial: 20ms, max: 100ms}}\n      spool: {{dir: {}}}\n",
            file.display(),
            d.path().join(spool).display()
        )
    };
    let mut set = SinkSet::from_config(&config(&yaml(down, "sp1")), "h").unwrap();
    for i in 0..30 {
        set.send(alert(i));
    }
    set.flush().await;
    let kept_stats = set.stats()[0].1.clone();
    // A broken new config (a CA file that does not exist) changes nothing.
    let bad = yaml(up, "sp1").replace(
        "      retry:",
        "      tls: {ca_file: /nonexistent/ca.pem}\n      retry:",
    );
    let bad = bad.replace(&format!("http://{up}"), &format!("https://{up}"));
    assert!(set
        .reconfigure(&config(&bad), "h", Duration::from_secs(1))
        .await
        .is_err());
    assert_eq!(set.stats().len(), 2);
    // The SIEM moved; same spool directory: the new sink reopens the spool.
    let seen = Seen::default();
    let srv = Server::start(up, seen.clone(), Duration::ZERO).await;
    let changes = set
        .reconfigure(&config(&yaml(up, "sp1")), "h", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(changes, vec!["changed: siem"]);
    assert!(
        Arc::ptr_eq(&set.stats()[0].1, &kept_stats),
        "unchanged sink rebuilt"
    );
    for i in 30..40 {
        set.send(alert(i));
    }
    wait_until("40 at the new address", Duration::from_secs(10), || {
        seen.ids().len() >= 40
    })
    .await;
    // Another spool directory, receiver down again: the held alerts move to the new spool.
    srv.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 40..50 {
        set.send(alert(i));
    }
    set.flush().await;
    let changes = set
        .reconfigure(&config(&yaml(up, "sp2")), "h", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(changes, vec!["changed: siem"]);
    let srv = Server::start(up, seen.clone(), Duration::ZERO).await;
    wait_until("50 delivered", Duration::from_secs(10), || {
        seen.counts().len() >= 50
    })
    .await;
    set.shutdown(Duration::from_secs(2)).await;
    srv.stop();
    let mut ids = seen.ids();
    ids.dedup();
    assert_eq!(ids, (0..50).map(|i| alert(i).id).collect::<Vec<_>>());
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert_eq!(lines, 50, "the unchanged file sink got every alert once");
}

#[test]
fn a_move_from_the_overflow_cut_by_a_crash_is_not_delivered_twice() {
    let d = tempfile::tempdir().unwrap();
    let sp: crate::config::SpoolConfig = crate::input::de::from_str(
        "test.yaml",
        &format!("{{dir: {}, fsync: never}}", d.path().display()),
        &crate::input::CONFIG,
    )
    .unwrap();
    let rec = |i: u64| {
        let a = alert(i);
        Record {
            id: a.id.clone(),
            body: format::encode(&a, crate::config::Format::Native),
        }
    };
    {
        // The spool got 0..10 (the last step, 7..10, copied from the overflow), the crash came
        // before the overflow forgot 7..10.
        let (mut main, over) = open_queues("s", &Some(sp.clone())).unwrap();
        let mut over = over.unwrap();
        for i in 0..10 {
            main.push(&rec(i)).unwrap();
        }
        for i in 7..20 {
            over.push(&rec(i)).unwrap();
        }
        main.sync(true).unwrap();
        over.sync(true).unwrap();
    }
    let (mut main, over) = open_queues("s", &Some(sp.clone())).unwrap();
    let mut over = over.unwrap();
    let ids = |q: &mut Queue| -> Vec<String> {
        q.peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.id)
            .collect()
    };
    assert_eq!(
        ids(&mut main),
        (0..10).map(|i| alert(i).id).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&mut over),
        (10..20).map(|i| alert(i).id).collect::<Vec<_>>()
    );
    // No overlap: nothing dropped.
    drop((main, over));
    let (main, over) = open_queues("s", &Some(sp)).unwrap();
    assert_eq!((main.len(), over.unwrap().len()), (10, 10));
}
