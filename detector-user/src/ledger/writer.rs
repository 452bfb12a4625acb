//! The ledger's thread: takes inputs from a bounded channel (the capture loop never waits for
//! it), applies them to the in-memory [`Model`] at once (findings go out immediately), and
//! commits what changed to the [`Store`] in batches: at least every `flush_interval`, or after
//! `batch_inputs` inputs. When a write fails (a full disk), the ledger carries on in memory,
//! says so in band once, retries every few seconds, and says so again when it is back.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};

use super::{
    findings,
    input::LedgerInput,
    model::{Finding, Id, Model, WatchedCredential},
    policy::Policy,
    query::{Filter, InventoryRecord, Records},
    store::{self, Store},
};
use crate::{config::LedgerConfig, engine::alert::Severity, engine::Alert};

/// How often a ledger that could not write tries again.
const RETRY: Duration = Duration::from_secs(5);
/// Housekeeping (retention, retirement check) at most every this much input time (and at
/// least four times per retirement threshold).
const HOUSEKEEPING_NS: u64 = 60_000_000_000;
/// Inventory records handed to the sinks per tick during an export.
const EXPORT_PER_TICK: usize = 1000;
/// The first export happens at most this long after start.
const FIRST_EXPORT_NS: u64 = 300_000_000_000;

/// Messages to the ledger's thread.
// Nearly every message is an input: boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// An input from an event.
    Input(LedgerInput),
    /// The inputs of a batch of events (counted in `LedgerStats::queued`).
    Inputs(Vec<LedgerInput>),
    /// The watch list now, at time `now` (ns).
    Watched(Vec<WatchedCredential>, u64),
    /// The time (ns): periodic work.
    Tick(u64),
    /// A new policy (identities reloaded).
    Policy(Box<Policy>),
}

/// What the ledger asks the agent to deliver.
#[derive(Debug)]
pub enum Out {
    /// A finding or a notice.
    Alert(Box<Alert>),
    /// An inventory record (periodic export).
    Inventory(Box<InventoryRecord>),
}

/// A question or a control message to the ledger's thread, on a channel of its own that is
/// never full (the `/inventory` endpoint, SIGHUP reloads).
pub(crate) enum Ctl {
    /// Records passing the filter, as a JSON array.
    List(Box<Filter>, tokio::sync::oneshot::Sender<Vec<u8>>),
    /// One credential's record as JSON (`None` when there is no such credential).
    Show(String, tokio::sync::oneshot::Sender<Option<Vec<u8>>>),
    /// A new policy (identities reloaded).
    Policy(Box<Policy>),
}

/// Counters shared with the metrics.
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Inputs applied.
    pub(crate) inputs: AtomicU64,
    /// Inputs dropped because `ledger.queue` inputs were waiting already.
    pub dropped: AtomicU64,
    /// Inputs sent and not yet applied.
    pub(crate) queued: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Rows written.
    pub rows: AtomicU64,
    /// Credentials held.
    pub(crate) credentials: AtomicU64,
    /// Bytes the database uses (at the last housekeeping).
    pub(crate) db_bytes: AtomicU64,
    /// Writes failing: memory only.
    pub(crate) memory_only: AtomicBool,
    /// Nanoseconds spent committing batches (wall clock).
    pub commit_ns: AtomicU64,
    /// CPU nanoseconds the ledger's thread spent committing batches.
    pub commit_cpu_ns: AtomicU64,
    /// CPU nanoseconds of housekeeping (retention, retirement check; its commits included).
    pub housekeeping_cpu_ns: AtomicU64,
    /// CPU nanoseconds building inventory records for export.
    pub export_cpu_ns: AtomicU64,
}

/// CPU time of the calling thread (ns).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The writer's state.
pub struct Writer {
    path: PathBuf,
    store: Option<Store>,
    /// Why writes are failing, while they are.
    failing: Option<String>,
    retry_at: Instant,
    model: Model,
    pol: Policy,
    cfg: LedgerConfig,
    host: String,
    out: tokio::sync::mpsc::UnboundedSender<Out>,
    stats: Arc<LedgerStats>,
    since_flush: usize,
    last_flush: Instant,
    /// Time of the latest tick (ns).
    clock: u64,
    next_housekeeping: u64,
    next_export: u64,
    export: VecDeque<Id>,
    found: Vec<Finding>,
}

impl Writer {
    /// Opens the store (moving a bad file aside, saying so) and loads the ledger. Without a
    /// usable store the ledger runs in memory only, and says so.
    pub fn open(
        path: PathBuf,
        pol: Policy,
        cfg: LedgerConfig,
        host: String,
        out: tokio::sync::mpsc::UnboundedSender<Out>,
        stats: Arc<LedgerStats>,
    ) -> Writer {
        let mut w = Writer {
            path,
            store: None,
            failing: None,
            retry_at: Instant::now(),
            model: Model::new(),
            pol,
            cfg,
            host,
            out,
            stats,
            since_flush: 0,
            last_flush: Instant::now(),
            clock: 0,
            next_housekeeping: 0,
            next_export: 0,
            export: VecDeque::new(),
            found: Vec::new(),
        };
        w.open_store();
        w
    }

    fn now_wall() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn notice(&self, state: &str, sentence: &str, severity: Severity) {
        let now = if self.clock > 0 {
            self.clock
        } else {
            Self::now_wall()
        };
        let _ = self.out.send(Out::Alert(Box::new(findings::notice(
            state, sentence, severity, &self.host, now,
        ))));
    }

    fn open_store(&mut self) {
        let t0 = Instant::now();
        let opened = Store::open(&self.path).map(|(s, o)| {
            let m = s.load();
            (s, o, m)
        });
        let (store, opened, model) = match opened {
            Ok((s, o, Ok(m))) => (s, o, m),
            Ok((s, _, Err(e))) if e.is_corrupt() => {
                // Damage the quick check did not see: set it aside as well, then start anew.
                drop(s);
                let reason = e.to_string();
                match store::set_aside(&self.path).and_then(|to| {
                    let (s, mut o) = Store::open(&self.path)?;
                    o.set_aside = Some((to, reason));
                    let m = s.load()?;
                    Ok((s, o, m))
                }) {
                    Ok(x) => x,
                    Err(e) => return self.unavailable(&e.to_string()),
                }
            }
            Ok((_, _, Err(e))) | Err(e) => return self.unavailable(&e.to_string()),
        };
        if let Some((to, reason)) = &opened.set_aside {
            let s = format!(
                "{} was not a usable ledger ({reason}); moved it to {} and started a new one",
                self.path.display(),
                to.display()
            );
            tracing::error!("{s}");
            self.notice("set_aside", &s, Severity::Medium);
        }
        if opened.migrated {
            tracing::info!(
                from = opened.found_version,
                to = store::SCHEMA_VERSION,
                "credential ledger migrated"
            );
        }
        tracing::info!(
            path = %self.path.display(),
            credentials = model.credentials.len(),
            rows = model.rows(),
            ms = t0.elapsed().as_millis() as u64,
            "credential ledger open"
        );
        self.model = model;
        self.model.apply_policy(&self.pol);
        let mut store = store;
        if let Err(e) = store.save_policy(&self.pol.summary()) {
            tracing::warn!("credential ledger: recording the policy: {e}");
        }
        self.store = Some(store);
    }

    fn unavailable(&mut self, why: &str) {
        let s = format!(
            "cannot open {} ({why}); keeping the ledger in memory only until restart",
            self.path.display()
        );
        tracing::error!("{s}");
        self.stats.memory_only.store(true, Relaxed);
        self.notice("unavailable", &s, Severity::High);
    }

    /// Applies one message.
    pub fn handle(&mut self, m: Msg) {
        match m {
            Msg::Input(i) => self.input(&i),
            Msg::Inputs(v) => {
                for i in &v {
                    self.input(i);
                }
                self.stats.queued.fetch_sub(v.len() as u64, Relaxed);
            }
            Msg::Watched(list, now) => {
                self.model.apply_watched(&list, now, &self.pol);
                self.since_flush += list.len();
            }
            Msg::Tick(now) => self.tick(now),
            Msg::Policy(p) => {
                self.pol = *p;
                self.model.apply_policy(&self.pol);
                if let Some(s) = self.store.as_mut() {
                    if let Err(e) = s.save_policy(&self.pol.summary()) {
                        tracing::warn!("credential ledger: recording the policy: {e}");
                    }
                }
            }
        }
        self.stats
            .credentials
            .store(self.model.credentials.len() as u64, Relaxed);
    }

    fn input(&mut self, i: &LedgerInput) {
        self.stats.inputs.fetch_add(1, Relaxed);
        self.since_flush += 1;
        match i {
            LedgerInput::Use(a) => self.model.apply_use(a, &self.pol, &mut self.found),
            LedgerInput::Write(a) => self.model.apply_write(a, &self.pol),
            LedgerInput::Contact(c) => self.model.apply_contact(c, &self.pol),
        }
        self.emit_findings();
    }

    fn emit_findings(&mut self) {
        for f in self.found.drain(..) {
            let a = findings::alert(&self.model, &f, &self.host);
            let _ = self.out.send(Out::Alert(Box::new(a)));
        }
    }

    fn tick(&mut self, now: u64) {
        self.clock = self.clock.max(now);
        let now = self.clock;
        self.model.prune_windows(now, self.pol.reach_window_ns);
        if now >= self.next_housekeeping {
            let every = (self.pol.unused_after_ns / 4).clamp(1_000_000_000, HOUSEKEEPING_NS);
            self.next_housekeeping = now.saturating_add(every);
            let c = thread_cpu_ns();
            self.housekeeping(now);
            self.stats
                .housekeeping_cpu_ns
                .fetch_add(thread_cpu_ns().saturating_sub(c), Relaxed);
        }
        let every = u64::try_from(self.cfg.export.interval.as_nanos()).unwrap_or(u64::MAX);
        if every > 0 {
            if self.next_export == 0 {
                self.next_export = now.saturating_add(every.min(FIRST_EXPORT_NS));
            } else if now >= self.next_export {
                self.next_export = now.saturating_add(every);
                self.export = self.model.credentials.keys().copied().collect();
            }
        }
        if !self.export.is_empty() {
            let c = thread_cpu_ns();
            let summary = self.pol.summary();
            let recs = Records::new(&self.model, &summary, now);
            for _ in 0..EXPORT_PER_TICK {
                let Some(id) = self.export.pop_front() else {
                    break;
                };
                if let Some(c) = self.model.credentials.get(&id) {
                    let r = InventoryRecord::new(recs.record(c), &self.host, now);
                    let _ = self.out.send(Out::Inventory(Box::new(r)));
                }
            }
            self.stats
                .export_cpu_ns
                .fetch_add(thread_cpu_ns().saturating_sub(c), Relaxed);
        }
    }

    /// Retention (time, then size) and the retirement check.
    fn housekeeping(&mut self, now: u64) {
        let max_age = u64::try_from(self.cfg.retention.max_age.as_nanos()).unwrap_or(u64::MAX);
        let dropped = self.model.expire(now.saturating_sub(max_age));
        if dropped > 0 {
            tracing::info!(
                rows = dropped,
                "credential ledger: retention dropped detail older than {:?}",
                self.cfg.retention.max_age
            );
        }
        self.model.judge_unused(now, &self.pol, &mut self.found);
        self.emit_findings();
        self.flush();
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let bytes = store.bytes().unwrap_or(0);
        self.stats.db_bytes.store(bytes, Relaxed);
        let max = self.cfg.retention.max_bytes;
        if bytes > max {
            // Down to 80 % of the bound, oldest detail first.
            let fraction = 1.0 - 0.8 * max as f64 / bytes as f64;
            let n = self.model.shed(fraction);
            tracing::warn!(
                bytes,
                max,
                rows = n,
                "credential ledger: over its size bound, dropped the oldest detail (counts kept)"
            );
            self.flush();
            if let Some(s) = self.store.as_ref() {
                if let Err(e) = s.reclaim() {
                    tracing::warn!("credential ledger: reclaiming space: {e}");
                }
                self.stats.db_bytes.store(s.bytes().unwrap_or(0), Relaxed);
            }
        }
    }

    /// Commits what changed, when due.
    pub fn maybe_flush(&mut self) {
        if self.since_flush >= self.cfg.batch_inputs
            || (!self.model.dirty.is_empty()
                && self.last_flush.elapsed() >= self.cfg.flush_interval)
        {
            self.flush();
        }
    }

    /// Time until the next commit is due (or a long wait when nothing waits).
    pub(crate) fn next_due(&self) -> Duration {
        if self.model.dirty.is_empty() {
            return Duration::from_secs(1);
        }
        let due = self
            .cfg
            .flush_interval
            .saturating_sub(self.last_flush.elapsed());
        if self.failing.is_some() {
            return due.max(self.retry_at.saturating_duration_since(Instant::now()));
        }
        due
    }

    /// Commits what changed now.
    pub fn flush(&mut self) {
        self.since_flush = 0;
        self.last_flush = Instant::now();
        if self.model.dirty.is_empty() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if self.failing.is_some() && Instant::now() < self.retry_at {
            return;
        }
        let dirty = std::mem::take(&mut self.model.dirty);
        let (t0, c0) = (Instant::now(), thread_cpu_ns());
        match store.save(&self.model, &dirty) {
            Ok(()) => {
                self.stats.batches.fetch_add(1, Relaxed);
                self.stats.rows.fetch_add(dirty.len() as u64, Relaxed);
                self.stats
                    .commit_ns
                    .fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
                self.stats
                    .commit_cpu_ns
                    .fetch_add(thread_cpu_ns().saturating_sub(c0), Relaxed);
                if let Some(was) = self.failing.take() {
                    self.stats.memory_only.store(false, Relaxed);
                    let s = format!(
                        "writing to {} again after it failed ({was}); everything held in memory meanwhile is saved",
                        self.path.display()
                    );
                    tracing::info!("{s}");
                    self.notice("resumed", &s, Severity::Info);
                }
            }
            Err(e) => {
                // Nothing of the batch was written: keep it for the next try.
                self.model.dirty = dirty;
                self.retry_at = Instant::now() + RETRY;
                if self.failing.is_none() {
                    let why = if e.is_disk_full() {
                        "disk full".to_string()
                    } else {
                        e.to_string()
                    };
                    let s = format!(
                        "cannot write {} ({why}); continuing in memory only, retrying every {}s",
                        self.path.display(),
                        RETRY.as_secs()
                    );
                    tracing::error!("{s}");
                    self.notice("memory_only", &s, Severity::High);
                    self.stats.memory_only.store(true, Relaxed);
                    self.failing = Some(why);
                }
            }
        }
    }

    /// Answers a question from the `/inventory` endpoint, or applies a new policy.
    pub(crate) fn answer(&mut self, c: Ctl) {
        let c = match c {
            Ctl::Policy(p) => return self.handle(Msg::Policy(p)),
            other => other,
        };
        let now = if self.clock > 0 {
            self.clock
        } else {
            Self::now_wall()
        };
        let summary = self.pol.summary();
        let recs = Records::new(&self.model, &summary, now);
        match c {
            Ctl::List(f, tx) => {
                let body = serde_json::to_vec(&recs.list(&f)).unwrap_or_default();
                let _ = tx.send(body);
            }
            Ctl::Show(key, tx) => {
                let body = recs
                    .show(&key)
                    .map(|r| serde_json::to_vec(&r).unwrap_or_default());
                let _ = tx.send(body);
            }
            Ctl::Policy(_) => {}
        }
    }

    /// The model (benchmarks and tests).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The thread's loop: until the input channel closes, then a last commit. Runs at nice 10:
    /// bookkeeping yields the CPU to capture, detection and delivery.
    pub(crate) fn run(mut self, rx: Receiver<Msg>, ctl: Receiver<Ctl>) {
        // SAFETY: gettid and setpriority have no memory effects; with PRIO_PROCESS and a
        // thread id, Linux sets this thread's nice value only. Raising it needs no privilege.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10)
        };
        if rc != 0 {
            tracing::debug!(
                "credential ledger: nice 10: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut ctl = ctl;
        loop {
            crossbeam_channel::select! {
                recv(rx) -> m => match m {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                },
                recv(ctl) -> c => match c {
                    Ok(c) => self.answer(c),
                    // Nobody asks any more: stop watching this channel.
                    Err(_) => ctl = crossbeam_channel::never(),
                },
                default(self.next_due()) => {}
            }
            self.maybe_flush();
        }
        self.flush();
        if self.failing.is_some() {
            tracing::error!(
                rows = self.model.dirty.len(),
                "credential ledger: stopping with changes it could not write (lost)"
            );
        }
    }
}

/// A cloneable handle for questions to the ledger (the metrics endpoint holds one).
#[derive(Clone)]
pub(crate) struct LedgerQuery {
    pub(crate) ctl: Sender<Ctl>,
}

impl LedgerQuery {
    /// Records passing `f`, as a JSON array.
    pub(crate) async fn list(&self, f: Filter) -> Option<Vec<u8>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ctl.send(Ctl::List(Box::new(f), tx)).ok()?;
        rx.await.ok()
    }

    /// One credential's record as JSON.
    pub(crate) async fn show(&self, key: String) -> Option<Option<Vec<u8>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ctl.send(Ctl::Show(key, tx)).ok()?;
        rx.await.ok()
    }
}
