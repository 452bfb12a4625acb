//! Alert delivery (delivery issue): several sinks at once, each with its own bounded queue
//! (memory, or an on-disk spool) and its own task, so that a slow or unreachable sink never
//! blocks capture or the other sinks.
//!
//! Guarantees: a record leaves a sink's queue only after the sink accepted it (HTTP 2xx, a
//! complete write); deliveries retry with exponential backoff and jitter for ever; with a
//! spool, what is held survives a crash and a restart and is delivered first, in order; a
//! burst larger than the channel to a spooled sink's task spills to a second on-disk spool and
//! keeps its order (`<spool dir>/<sink>/overflow/`), so nothing is lost before the spool. When a queue is full
//! its policy (drop oldest / drop newest) applies, the drops are counted in
//! [`SinkStats`], logged, and announced in band by an alert with rule id
//! [`format::OVERFLOW_RULE_ID`] delivered through the same sink: nothing disappears
//! silently. A crash may repeat records delivered since the spool's last head update; every
//! alert carries a unique `id` for the receiver to dedup on.

pub mod file;
pub mod format;
pub mod http;
pub mod spool;
pub mod stdout;
pub mod syslog;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    config::{Format, OverflowPolicy, RetryConfig, SinkConfig},
    engine::Alert,
    ledger::query::InventoryRecord,
};
use spool::{MemQueue, Queue, Spool};

/// What sinks deliver: alerts, and the credential ledger's inventory records.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// An alert.
    Alert(Alert),
    /// A credential inventory record (periodic export).
    Inventory(InventoryRecord),
}

impl Item {
    /// The id receivers dedup on.
    pub fn id(&self) -> &str {
        match self {
            Item::Alert(a) => &a.id,
            Item::Inventory(r) => &r.id,
        }
    }

    /// The document in `format`.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        match self {
            Item::Alert(a) => format::encode(a, format),
            Item::Inventory(r) => format::encode_inventory(r, format),
        }
    }
}

/// One alert encoded for a sink: the id receivers dedup on, and the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The alert id.
    pub id: String,
    /// One JSON document, no trailing newline.
    pub body: Vec<u8>,
}

/// A boxed future (sinks are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivery and set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// I/O on the destination.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The spool's files.
    #[error("spool: {0}")]
    Spool(String),
    /// The receiver answered, but not with success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The request did not complete (connect, TLS, timeout).
    #[error("{0}")]
    Transport(String),
    /// The sink cannot be built (bad certificate, unreadable token file, …).
    #[error("{0}")]
    Setup(String),
}

/// A destination. `deliver` succeeds only when the whole batch was accepted; a failed batch is
/// retried whole (receivers dedup by id).
pub trait Sink: Send {
    /// Delivers a batch, in order.
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Counters of one sink (shared with the [`SinkSet`] and its owner).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Alerts accepted by the destination.
    pub delivered: AtomicU64,
    /// Failed delivery attempts.
    pub failures: AtomicU64,
    /// Alerts dropped (queue or spool full, or the channel to the sink's task full).
    pub dropped: AtomicU64,
    /// In-band overflow alerts delivered.
    pub overflow_notices: AtomicU64,
    /// Alerts held (queue or spool).
    pub queued: AtomicU64,
    /// Bytes held.
    pub queued_bytes: AtomicU64,
    /// Alerts found in the spool at start (left by a previous run).
    pub recovered: AtomicU64,
    /// Drops not yet announced in band (channel-full drops are added here by the sender).
    pending_notice: AtomicU64,
}

/// How long shutdown waits by default for sinks to deliver what they hold.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity of the channel from the capture loop to each sink's task.
const CHANNEL: usize = 16 * 1024;
/// Records held in memory by a sink without a spool.
const MEMORY_QUEUE: usize = 64 * 1024;
/// Spilled records moved into the spool per step (the capture loop waits for a step when it
/// spills at the same time).
const SPILL_STEP: usize = 4096;

enum Msg {
    Item(Arc<Item>),
    Flush(oneshot::Sender<()>),
    Shutdown(Instant),
    /// Reload replaced this sink: deliver what it holds until the instant, then hand the rest
    /// back.
    Retire(Instant, oneshot::Sender<Queue>),
}

/// Where [`SinkSet::send`] puts a spooled sink's alerts while the channel to its task is full:
/// a second spool, `<spool dir>/<sink>/overflow/`. While it holds anything every alert goes
/// there, so order is kept: the task first takes in what is still in the channel (older), then
/// moves the overflow into the sink's spool, and only once it is empty does `send` use the
/// channel again. Appends are plain writes (no fsync on the capture thread): they survive a
/// crash of the agent, and are fsynced when moved.
struct Spill {
    queue: Queue,
    /// Alerts go here, not to the channel.
    active: bool,
    format: Format,
    /// Why the last spill drop happened (for the notice).
    why: &'static str,
}

type SharedSpill = Arc<std::sync::Mutex<Spill>>;

fn lock_spill(s: &SharedSpill) -> std::sync::MutexGuard<'_, Spill> {
    // A panic mid-append leaves a spool whose next open cuts the torn tail: still usable.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

struct Handle {
    name: String,
    config: SinkConfig,
    tx: mpsc::Sender<Msg>,
    stats: Arc<SinkStats>,
    spill: Option<SharedSpill>,
    task: tokio::task::JoinHandle<()>,
}

/// Several sinks fed at once. The sinks run on a runtime of their own (two worker threads),
/// so that their I/O (fsync, blocking writes, TLS) never runs on the capture's thread.
pub struct SinkSet {
    rt: Option<tokio::runtime::Runtime>,
    sinks: Vec<Handle>,
}

impl Drop for SinkSet {
    fn drop(&mut self) {
        // Allowed inside an async context, unlike dropping the runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Everything a sink's task needs besides the sink itself.
pub struct SinkSpec {
    /// Name (logs, spool directory).
    pub name: String,
    /// Document format.
    pub format: Format,
    /// Records per delivery.
    pub batch: usize,
    /// Backoff.
    pub retry: RetryConfig,
    /// Host name for in-band alerts.
    pub host: String,
}

/// A sink built from its config, before its queue is opened.
struct Built {
    sink: Box<dyn Sink>,
    spool: Option<crate::config::SpoolConfig>,
    spec: SinkSpec,
}

fn build(c: &SinkConfig, host: &str) -> Result<Built, SinkError> {
    let (sink, spool, format, batch, retry): (Box<dyn Sink>, _, _, _, _) = match c {
        SinkConfig::Stdout(s) => (
            Box::new(stdout::StdoutSink::new()),
            None,
            s.format,
            1024,
            RetryConfig::default(),
        ),
        SinkConfig::File(f) => (
            Box::new(file::FileSink::open(
                f.path.clone(),
                f.max_bytes,
                f.max_files,
            )?),
            f.spool.clone(),
            f.format,
            1024,
            RetryConfig::default(),
        ),
        SinkConfig::Syslog(s) => (
            Box::new(syslog::SyslogSink::new(s, host)?),
            s.spool.clone(),
            s.format,
            s.batch.max_alerts,
            s.retry.clone(),
        ),
        SinkConfig::Http(h) => (
            Box::new(http::HttpSink::new(h, host)?),
            h.spool.clone(),
            h.format,
            h.batch.max_alerts,
            h.retry.clone(),
        ),
    };
    Ok(Built {
        sink,
        spool,
        spec: SinkSpec {
            name: c.name().to_string(),
            format,
            batch,
            retry,
            host: host.to_string(),
        },
    })
}

/// The sink's queue and, with a spool, its overflow spool.
fn open_queues(
    name: &str,
    spool: &Option<crate::config::SpoolConfig>,
) -> Result<(Queue, Option<Queue>), SinkError> {
    let Some(sp) = spool else {
        return Ok((
            Queue::Memory(MemQueue::new(MEMORY_QUEUE, OverflowPolicy::DropOldest)),
            None,
        ));
    };
    let dir = sp.dir.join(name);
    let mut main = Queue::Disk(Spool::open(&dir, sp.max_bytes, sp.on_full, sp.fsync)?);
    let mut over = Queue::Disk(Spool::open(
        &dir.join("overflow"),
        sp.max_bytes,
        sp.on_full,
        sp.fsync,
    )?);
    let moved = drop_moved_prefix(&mut main, &mut over)?;
    if moved > 0 {
        tracing::info!(sink = %name, alerts = moved, "spool: a crash interrupted a move from the overflow; the copies it left are dropped");
    }
    let held = main.len() + over.len();
    if held > 0 {
        tracing::info!(sink = %name, alerts = held, "spool: delivering what a previous run left");
    }
    Ok((main, Some(over)))
}

/// A crash between copying a step of the overflow into the spool and removing it from the
/// overflow leaves those records in both, the overflow's head equal to the spool's tail: drop
/// them from the overflow (so a restart does not deliver them twice). Returns how many.
fn drop_moved_prefix(main: &mut Queue, over: &mut Queue) -> Result<usize, SinkError> {
    let Some((_, first)) = over.peek(1)?.into_iter().next() else {
        return Ok(0);
    };
    let tail = main.tail(SPILL_STEP)?;
    let Some(pos) = tail.iter().position(|r| r.id == first.id) else {
        return Ok(0);
    };
    let n = tail.len() - pos;
    let head = over.peek(n)?;
    let same = head.len() == n && head.iter().zip(&tail[pos..]).all(|((_, a), b)| a == b);
    match head.last() {
        Some((seq, _)) if same => {
            over.commit(*seq)?;
            Ok(n)
        }
        _ => Ok(0),
    }
}

fn default_configs(configs: &[SinkConfig]) -> Vec<SinkConfig> {
    if configs.is_empty() {
        vec![SinkConfig::Stdout(Default::default())]
    } else {
        configs.to_vec()
    }
}

/// Moves every record of `from` to the end of `to` (a reload handing a sink's queue to a
/// successor with another queue); returns the records `to`'s bound dropped.
fn transfer(from: &mut Queue, to: &mut Queue) -> Result<u64, SinkError> {
    let mut dropped = 0;
    loop {
        let held = from.peek(SPILL_STEP)?;
        let Some(last) = held.last().map(|(s, _)| *s) else {
            return Ok(dropped);
        };
        for (_, r) in &held {
            dropped += to.push(r)?.dropped;
        }
        to.sync(true)?;
        from.commit(last)?;
    }
}

impl SinkSet {
    /// Builds the sinks of a config (none: stdout NDJSON).
    pub fn from_config(configs: &[SinkConfig], host: &str) -> Result<SinkSet, SinkError> {
        let mut set = SinkSet::empty()?;
        for c in default_configs(configs) {
            let b = build(&c, host)?;
            let (queue, overflow) = open_queues(&b.spec.name, &b.spool)?;
            set.add_with(b.sink, queue, overflow, b.spec, c, None);
        }
        Ok(set)
    }

    /// An empty set (add sinks with [`SinkSet::add`]).
    pub fn empty() -> Result<SinkSet, SinkError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("detector-sinks")
            .enable_all()
            .build()
            .map_err(|e| SinkError::Setup(format!("sink runtime: {e}")))?;
        Ok(SinkSet {
            rt: Some(rt),
            sinks: Vec::new(),
        })
    }

    /// Adds a sink with its queue and spawns its task.
    pub fn add(&mut self, sink: Box<dyn Sink>, queue: Queue, spec: SinkSpec) {
        let config = SinkConfig::Stdout(Default::default());
        self.add_with(sink, queue, None, spec, config, None);
    }

    fn add_with(
        &mut self,
        sink: Box<dyn Sink>,
        queue: Queue,
        overflow: Option<Queue>,
        spec: SinkSpec,
        config: SinkConfig,
        stats: Option<Arc<SinkStats>>,
    ) {
        let fresh = stats.is_none();
        let stats = stats.unwrap_or_default();
        let spilled = overflow.as_ref().map_or(0, Queue::len);
        if fresh {
            stats
                .recovered
                .store((queue.len() + spilled) as u64, Relaxed);
        }
        let spill = overflow.map(|q| {
            Arc::new(std::sync::Mutex::new(Spill {
                // What a previous run spilled is newer than its spool: keep spilling until the
                // task has moved it.
                active: !q.is_empty(),
                queue: q,
                format: spec.format,
                why: "",
            }))
        });
        let (tx, rx) = mpsc::channel(CHANNEL);
        let name = spec.name.clone();
        let fut = run_sink(sink, queue, spill.clone(), rx, spec, stats.clone());
        let task = match &self.rt {
            Some(rt) => rt.spawn(fut),
            None => return,
        };
        self.sinks.push(Handle {
            name,
            config,
            tx,
            stats,
            spill,
            task,
        });
    }

    /// Hands an alert to every sink without waiting. A spooled sink whose channel is full
    /// spills to its overflow spool (in order, see the module doc); a sink without a spool counts the alert as
    /// dropped and announces it in band later.
    pub fn send(&self, alert: Alert) {
        self.send_item(Item::Alert(alert));
    }

    /// Hands a credential inventory record to every sink, as [`SinkSet::send`] does an alert.
    pub fn send_inventory(&self, r: InventoryRecord) {
        self.send_item(Item::Inventory(r));
    }

    fn send_item(&self, item: Item) {
        let a = Arc::new(item);
        for h in &self.sinks {
            let Some(spill) = &h.spill else {
                if h.tx.try_send(Msg::Item(a.clone())).is_err() {
                    h.stats.dropped.fetch_add(1, Relaxed);
                    h.stats.pending_notice.fetch_add(1, Relaxed);
                    tracing::warn!(sink = %h.name, id = %a.id(), "sink channel full: record dropped (will be announced)");
                }
                continue;
            };
            let mut g = lock_spill(spill);
            if !g.active {
                match h.tx.try_send(Msg::Item(a.clone())) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        g.active = true;
                        tracing::warn!(sink = %h.name, "sink channel full: spilling to the overflow spool");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        h.stats.dropped.fetch_add(1, Relaxed);
                        tracing::error!(sink = %h.name, id = %a.id(), "sink task gone: record dropped");
                        continue;
                    }
                }
            }
            let r = Record {
                id: a.id().to_string(),
                body: a.encode(g.format),
            };
            let dropped = match g.queue.push(&r) {
                Ok(p) => {
                    if p.dropped > 0 {
                        g.why = match g.queue.policy() {
                            OverflowPolicy::DropOldest => "overflow spool full, dropped oldest",
                            OverflowPolicy::DropNewest => "overflow spool full, dropped newest",
                        };
                    }
                    p.dropped
                }
                Err(e) => {
                    g.why = "overflow spool write failed";
                    tracing::error!(sink = %h.name, id = %a.id(), "record dropped: {e}");
                    1
                }
            };
            if dropped > 0 {
                h.stats.dropped.fetch_add(dropped, Relaxed);
                h.stats.pending_notice.fetch_add(dropped, Relaxed);
            }
        }
    }

    /// Counters per sink name.
    pub fn stats(&self) -> Vec<(String, Arc<SinkStats>)> {
        self.sinks
            .iter()
            .map(|h| (h.name.clone(), h.stats.clone()))
            .collect()
    }

    /// Waits until every sink has queued (spooled) what was sent before this call.
    pub async fn flush(&self) {
        for h in &self.sinks {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(Msg::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Applies a new sink config (SIGHUP reload). Sinks whose config is unchanged keep running
    /// untouched. A changed sink stops taking alerts, delivers what it holds to its old
    /// destination for at most `grace`, and hands the rest (memory queue or spool) to its
    /// successor of the same name, which delivers it first; its counters carry on. A removed
    /// sink's spool stays on disk for a later run; what a removed sink's memory queue still
    /// holds is counted as dropped and logged. Every new sink is built before any running one
    /// is touched, so an invalid config (unreadable token file, bad certificate) changes
    /// nothing. Returns what changed, e.g. `["changed: file", "added: siem"]`.
    pub async fn reconfigure(
        &mut self,
        configs: &[SinkConfig],
        host: &str,
        grace: Duration,
    ) -> Result<Vec<String>, SinkError> {
        let configs = default_configs(configs);
        let mut keep: Vec<Option<usize>> = Vec::new();
        let mut used = vec![false; self.sinks.len()];
        for c in &configs {
            let same = (0..self.sinks.len()).find(|&i| !used[i] && self.sinks[i].config == *c);
            if let Some(i) = same {
                used[i] = true;
            }
            keep.push(same);
        }
        // Build every new sink and open its queues now, so that any error leaves the running
        // set as it was. Only a successor using its predecessor's spool directory opens it
        // later, once the predecessor has let go of it.
        let mut built = Vec::new();
        for (c, k) in configs.iter().zip(&keep) {
            if k.is_some() {
                built.push(None);
                continue;
            }
            let b = build(c, host)?;
            let reuses_spool = self.sinks.iter().enumerate().any(|(i, h)| {
                !used[i]
                    && h.name == b.spec.name
                    && spool_of(&h.config).is_some()
                    && spool_of(&h.config).map(|s| &s.dir) == b.spool.as_ref().map(|s| &s.dir)
            });
            let queues = if reuses_spool {
                None
            } else {
                Some(open_queues(&b.spec.name, &b.spool)?)
            };
            built.push(Some((b, queues)));
        }
        let mut old: Vec<Option<Handle>> = self.sinks.drain(..).map(Some).collect();
        // Retire the replaced and removed sinks; keep what they still hold, by name.
        let mut left: Vec<(String, SinkConfig, Arc<SinkStats>, Queue)> = Vec::new();
        for (i, slot) in old.iter_mut().enumerate() {
            if used[i] {
                continue;
            }
            let Some(h) = slot.take() else { continue };
            let (tx, rx) = oneshot::channel();
            let sent =
                h.tx.send(Msg::Retire(Instant::now() + grace, tx))
                    .await
                    .is_ok();
            let queue = if sent { rx.await.ok() } else { None };
            drop(h.spill);
            if let Err(e) = h.task.await {
                tracing::error!(sink = %h.name, "sink task failed: {e}");
            }
            match queue {
                Some(q) => left.push((h.name, h.config, h.stats, q)),
                None => tracing::error!(sink = %h.name, "retired sink handed nothing back"),
            }
        }
        let mut changes = Vec::new();
        for ((c, k), b) in configs.iter().zip(keep).zip(built) {
            if let Some(i) = k {
                if let Some(h) = old[i].take() {
                    self.sinks.push(h);
                }
                continue;
            }
            let Some((b, queues)) = b else { continue };
            let name = b.spec.name.clone();
            let prev = left
                .iter()
                .position(|(n, ..)| *n == name)
                .map(|i| left.swap_remove(i));
            changes.push(format!(
                "{}: {name}",
                if prev.is_some() { "changed" } else { "added" }
            ));
            let (queue, overflow, stats) = match (prev, queues) {
                (None, Some((q, o))) => (q, o, None),
                (Some((_, _, stats, mut oldq)), Some((mut q, o))) => {
                    match transfer(&mut oldq, &mut q) {
                        Ok(dropped) if dropped > 0 => {
                            stats.dropped.fetch_add(dropped, Relaxed);
                            stats.pending_notice.fetch_add(dropped, Relaxed);
                        }
                        Ok(_) => {}
                        // A spool keeps the rest on disk for a run that configures it again.
                        Err(e) => {
                            tracing::error!(sink = %name, left = oldq.len(), "handing over to the new sink: {e}")
                        }
                    }
                    (q, o, Some(stats))
                }
                (prev, None) => {
                    // The same spool directory: reopening recovers everything it holds.
                    let stats = prev.map(|(_, _, stats, oldq)| {
                        drop(oldq);
                        stats
                    });
                    match open_queues(&name, &b.spool) {
                        Ok((q, o)) => (q, o, stats),
                        Err(e) => {
                            tracing::error!(sink = %name, "reopening the spool: {e}; an in-memory queue until the next restart (the spool keeps what it holds)");
                            let q = Queue::Memory(MemQueue::new(
                                MEMORY_QUEUE,
                                OverflowPolicy::DropOldest,
                            ));
                            (q, None, stats)
                        }
                    }
                }
            };
            self.add_with(b.sink, queue, overflow, b.spec, c.clone(), stats);
        }
        for (name, _, stats, q) in left {
            changes.push(format!("removed: {name}"));
            match q {
                Queue::Disk(_) if !q.is_empty() => {
                    tracing::warn!(sink = %name, held = q.len(), "removed sink: its spool stays on disk for a run that configures it again")
                }
                Queue::Memory(_) if !q.is_empty() => {
                    stats.dropped.fetch_add(q.len() as u64, Relaxed);
                    tracing::error!(sink = %name, lost = q.len(), "removed sink: undelivered alerts (no spool) are lost")
                }
                _ => {}
            }
        }
        Ok(changes)
    }

    /// Stops intake, delivers what the sinks hold for at most `timeout`, syncs spools, and
    /// waits for the tasks. What a spool still holds is delivered by the next run; what a
    /// memory queue still holds is logged as lost.
    pub async fn shutdown(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for h in &self.sinks {
            let _ = h.tx.send(Msg::Shutdown(deadline)).await;
        }
        for h in self.sinks.drain(..) {
            if let Err(e) = h.task.await {
                tracing::error!(sink = %h.name, "sink task failed: {e}");
            }
        }
    }

    /// [`SinkSet::shutdown`] for callers outside any async runtime.
    pub fn shutdown_blocking(self, timeout: Duration) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("shutdown runtime: {e}");
                return;
            }
        };
        rt.block_on(self.shutdown(timeout));
    }
}

fn spool_of(c: &SinkConfig) -> Option<&crate::config::SpoolConfig> {
    match c {
        SinkConfig::Stdout(_) => None,
        SinkConfig::File(f) => f.spool.as_ref(),
        SinkConfig::Syslog(s) => s.spool.as_ref(),
        SinkConfig::Http(h) => h.spool.as_ref(),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Next backoff: doubled, capped, with ±50% jitter so that many agents do not retry in step.
fn backoff(prev: Option<Duration>, r: &RetryConfig) -> (Duration, Duration) {
    let base = match prev {
        None => r.initial,
        Some(p) => (p * 2).min(r.max),
    };
    let jitter = base.mul_f64(0.5 + fastrand::f64());
    (base, jitter.min(r.max))
}

struct Task {
    queue: Queue,
    spill: Option<SharedSpill>,
    spec: SinkSpec,
    stats: Arc<SinkStats>,
    /// Drops not yet announced (queue overflow), with the reason of the last one.
    why: &'static str,
    /// A reload replaced this sink: where to hand what it still holds.
    retire: Option<oneshot::Sender<Queue>>,
}

impl Task {
    /// Queues a record, counting what the queue's bound drops.
    fn hold(&mut self, r: &Record) {
        match self.queue.push(r) {
            Ok(p) if p.dropped > 0 => {
                self.why = match self.queue.policy() {
                    OverflowPolicy::DropOldest => "queue full, dropped oldest",
                    OverflowPolicy::DropNewest => "queue full, dropped newest",
                };
                self.stats.dropped.fetch_add(p.dropped, Relaxed);
                self.stats.pending_notice.fetch_add(p.dropped, Relaxed);
                tracing::warn!(sink = %self.spec.name, dropped = p.dropped, reason = self.why, "alerts dropped (will be announced)");
            }
            Ok(_) => {}
            Err(e) => {
                // The spool's disk failed: the alert cannot be held. Count and announce.
                self.why = "spool write failed";
                self.stats.dropped.fetch_add(1, Relaxed);
                self.stats.pending_notice.fetch_add(1, Relaxed);
                tracing::error!(sink = %self.spec.name, id = %r.id, "alert dropped: {e}");
            }
        }
    }

    fn accept(&mut self, msg: Msg, flushes: &mut Vec<oneshot::Sender<()>>) -> Option<Instant> {
        match msg {
            Msg::Item(a) => {
                let r = Record {
                    id: a.id().to_string(),
                    body: a.encode(self.spec.format),
                };
                self.hold(&r);
                None
            }
            Msg::Flush(ack) => {
                flushes.push(ack);
                None
            }
            Msg::Shutdown(d) => Some(d),
            Msg::Retire(d, tx) => {
                self.retire = Some(tx);
                Some(d)
            }
        }
    }

    /// True while `send` spills (the overflow spool holds alerts not yet moved).
    fn spilling(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| lock_spill(s).active)
    }

    /// Moves what `send` spilled into the queue, after what the channel still holds (older):
    /// one step, or (`all`) everything. Returns a deadline a message taken in asked for.
    fn unspill(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        flushes: &mut Vec<oneshot::Sender<()>>,
        all: bool,
    ) -> Option<Instant> {
        let spill = self.spill.clone()?;
        let mut g = lock_spill(&spill);
        if !g.active {
            return None;
        }
        let mut deadline = None;
        // Under the lock nothing is being sent, and nothing was sent to the channel since the
        // spill began: what is there now is all older than the overflow's first record.
        while let Ok(m) = rx.try_recv() {
            if let Some(d) = self.accept(m, flushes) {
                deadline = Some(d);
            }
        }
        loop {
            let held = match g.queue.peek(SPILL_STEP) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(sink = %self.spec.name, "overflow spool read: {e}");
                    break;
                }
            };
            let Some(last) = held.last().map(|(s, _)| *s) else {
                break;
            };
            for (_, r) in &held {
                self.hold(r);
            }
            // On disk in the spool before the overflow forgets them.
            if let Err(e) = self.queue.sync(true) {
                tracing::error!(sink = %self.spec.name, "spool sync: {e}");
            }
            if let Err(e) = g.queue.commit(last) {
                tracing::error!(sink = %self.spec.name, "overflow spool commit: {e}");
                break;
            }
            if !all {
                break;
            }
        }
        if g.queue.is_empty() {
            g.active = false;
            tracing::info!(sink = %self.spec.name, "overflow spool drained: back to the channel");
        }
        if !g.why.is_empty() {
            self.why = g.why;
        }
        deadline
    }

    fn after_intake(&mut self, flushes: &mut Vec<oneshot::Sender<()>>) {
        if let Err(e) = self.queue.sync(!flushes.is_empty()) {
            tracing::error!(sink = %self.spec.name, "spool sync: {e}");
        }
        let spilled = self.spill.as_ref().map_or((0, 0), |s| {
            let g = lock_spill(s);
            (g.queue.len() as u64, g.queue.bytes())
        });
        self.stats
            .queued
            .store(self.queue.len() as u64 + spilled.0, Relaxed);
        self.stats
            .queued_bytes
            .store(self.queue.bytes() + spilled.1, Relaxed);
        // Acknowledge flushes last: a caller woken by the ack reads these counters.
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }

    /// The next batch: a pending overflow notice first, then the oldest held records.
    fn batch(&mut self) -> Result<(Vec<Record>, Option<u64>, u64), SinkError> {
        let pending = self.stats.pending_notice.load(Relaxed);
        let mut out = Vec::new();
        if pending > 0 {
            let why = if self.why.is_empty() {
                "sink channel full"
            } else {
                self.why
            };
            let a =
                format::overflow_alert(&self.spec.name, pending, why, &self.spec.host, now_ns());
            out.push(Record {
                id: a.id.clone(),
                body: format::encode(&a, self.spec.format),
            });
        }
        let held = self.queue.peek(self.spec.batch)?;
        let last = held.last().map(|(s, _)| *s);
        out.extend(held.into_iter().map(|(_, r)| r));
        Ok((out, last, pending))
    }
}

async fn run_sink(
    mut sink: Box<dyn Sink>,
    queue: Queue,
    spill: Option<SharedSpill>,
    mut rx: mpsc::Receiver<Msg>,
    spec: SinkSpec,
    stats: Arc<SinkStats>,
) {
    let mut t = Task {
        queue,
        spill,
        spec,
        stats,
        why: "",
        retire: None,
    };
    let mut flushes = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut delay: Option<Duration> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut open = true;
    loop {
        // Intake: everything already waiting, without blocking.
        while open {
            match rx.try_recv() {
                Ok(m) => {
                    if let Some(d) = t.accept(m, &mut flushes) {
                        deadline = Some(d);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    deadline.get_or_insert_with(|| Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT);
                }
            }
        }
        if let Some(d) = t.unspill(&mut rx, &mut flushes, false) {
            deadline = Some(d);
        }
        t.after_intake(&mut flushes);
        let held = !t.queue.is_empty() || t.stats.pending_notice.load(Relaxed) > 0;
        let spilling = t.spilling();
        let work = held || spilling;
        // Retiring (reload) with a failing destination: hand over now rather than wait.
        if t.retire.is_some() && delay.is_some() {
            break;
        }
        if let Some(d) = deadline {
            if !work || Instant::now() >= d {
                break;
            }
        }
        if !held {
            if spilling {
                // Nothing to deliver yet: move the next step of the overflow.
                continue;
            }
            match rx.recv().await {
                Some(m) => {
                    if let Some(d) = t.accept(m, &mut flushes) {
                        deadline = Some(d);
                    }
                }
                None => {
                    open = false;
                    deadline.get_or_insert_with(Instant::now);
                }
            }
            continue;
        }
        // Backing off: keep taking alerts in, and wake at the retry time (or the deadline).
        if let Some(at) = retry_at {
            let until = match deadline {
                Some(d) => at.min(tokio::time::Instant::from_std(d)),
                None => at,
            };
            if tokio::time::Instant::now() < until {
                tokio::select! {
                    m = rx.recv(), if open => match m {
                        Some(m) => if let Some(d) = t.accept(m, &mut flushes) { deadline = Some(d) },
                        None => { open = false; deadline.get_or_insert_with(|| Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT); }
                    },
                    _ = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
        }
        let (batch, last_seq, notice) = match t.batch() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(sink = %t.spec.name, "spool read: {e}");
                let (_, j) = backoff(delay, &t.spec.retry);
                retry_at = Some(tokio::time::Instant::now() + j);
                continue;
            }
        };
        // Deliver while still taking alerts in, so a slow destination never fills the channel.
        let result = {
            let fut = sink.deliver(&batch);
            tokio::pin!(fut);
            let limit = deadline.map(tokio::time::Instant::from_std);
            loop {
                tokio::select! {
                    r = &mut fut => break Some(r),
                    _ = async { match limit { Some(l) => tokio::time::sleep_until(l).await, None => std::future::pending().await } } => break None,
                    m = rx.recv(), if open => match m {
                        Some(m) => if let Some(d) = t.accept(m, &mut flushes) { deadline = Some(d) },
                        None => { open = false; deadline.get_or_insert_with(|| Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT); }
                    },
                }
            }
        };
        match result {
            Some(Ok(())) => {
                let n = batch.len() as u64 - u64::from(notice > 0);
                if let Some(seq) = last_seq {
                    if let Err(e) = t.queue.commit(seq) {
                        tracing::error!(sink = %t.spec.name, "spool commit: {e}");
                    }
                }
                if notice > 0 {
                    t.stats.pending_notice.fetch_sub(notice, Relaxed);
                    t.stats.overflow_notices.fetch_add(1, Relaxed);
                }
                t.stats.delivered.fetch_add(n, Relaxed);
                if delay.is_some() {
                    tracing::info!(sink = %t.spec.name, "sink recovered");
                }
                delay = None;
                retry_at = None;
            }
            Some(Err(e)) => {
                let n = t.stats.failures.fetch_add(1, Relaxed) + 1;
                let (base, j) = backoff(delay, &t.spec.retry);
                // A long outage would flood the log: say it on failures 1, 2, 4, 8, …
                if n.is_power_of_two() {
                    tracing::warn!(sink = %t.spec.name, held = t.queue.len(), failures = n, retry_in = ?j, "delivery failed: {e}");
                }
                delay = Some(base);
                retry_at = Some(tokio::time::Instant::now() + j);
            }
            None => {} // deadline reached mid-delivery: the records stay held.
        }
    }
    if let Some(tx) = t.retire.take() {
        // Reload: the sender no longer feeds this sink; everything still in the channel or
        // the overflow goes to the successor, in order.
        while let Ok(m) = rx.try_recv() {
            let _ = t.accept(m, &mut flushes);
        }
        let _ = t.unspill(&mut rx, &mut flushes, true);
        t.after_intake(&mut flushes);
        if let Err(e) = t.queue.sync(true) {
            tracing::error!(sink = %t.spec.name, "spool sync: {e}");
        }
        tracing::info!(sink = %t.spec.name, held = t.queue.len(), "replaced by reload: handing over what it holds");
        if let Err(q) = tx.send(t.queue) {
            tracing::error!(sink = %t.spec.name, held = q.len(), "reload dropped the hand-over");
        }
        return;
    }
    if let Some(s) = &t.spill {
        if let Err(e) = lock_spill(s).queue.sync(true) {
            tracing::error!(sink = %t.spec.name, "overflow spool sync: {e}");
        }
    }
    if let Err(e) = t.queue.sync(true) {
        tracing::error!(sink = %t.spec.name, "spool sync: {e}");
    }
    let spilled = t.spill.as_ref().map_or(0, |s| lock_spill(s).queue.len());
    t.stats
        .queued
        .store((t.queue.len() + spilled) as u64, Relaxed);
    if !t.queue.is_empty() || spilled > 0 {
        match &t.queue {
            Queue::Disk(_) => {
                tracing::warn!(sink = %t.spec.name, held = t.queue.len() + spilled, "stopping with alerts spooled: the next run delivers them")
            }
            Queue::Memory(_) => {
                tracing::error!(sink = %t.spec.name, lost = t.queue.len(), "stopping with undelivered alerts (no spool configured): they are lost")
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
