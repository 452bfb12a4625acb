//! Alert delivery (delivery issue): several sinks at once, each with its own bounded queue
//! (memory, or an on-disk spool) and its own task, so that a slow or unreachable sink never
//! blocks capture or the other sinks.
//!
//! Guarantees: a record leaves a sink's queue only after the sink accepted it (HTTP 2xx, a
//! complete write); deliveries retry with exponential backoff and jitter for ever; with a
//! spool, what is held survives a crash and a restart and is delivered first, in order. When
//! a queue is full its policy (drop oldest / drop newest) applies, the drops are counted in
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
};
use spool::{MemQueue, Queue, Spool};

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

enum Msg {
    Alert(Arc<Alert>),
    Flush(oneshot::Sender<()>),
    Shutdown(Instant),
}

struct Handle {
    name: String,
    tx: mpsc::Sender<Msg>,
    stats: Arc<SinkStats>,
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

impl SinkSet {
    /// Builds the sinks of a config (none: stdout NDJSON).
    pub fn from_config(configs: &[SinkConfig], host: &str) -> Result<SinkSet, SinkError> {
        let default = [SinkConfig::Stdout(Default::default())];
        let configs = if configs.is_empty() {
            &default[..]
        } else {
            configs
        };
        let mut set = SinkSet::empty()?;
        for c in configs {
            let name = c.name().to_string();
            let in_memory = |policy| Queue::Memory(MemQueue::new(MEMORY_QUEUE, policy));
            let spooled = |sp: &Option<crate::config::SpoolConfig>| -> Result<Queue, SinkError> {
                Ok(match sp {
                    Some(sp) => {
                        let s =
                            Spool::open(&sp.dir.join(&name), sp.max_bytes, sp.on_full, sp.fsync)?;
                        if s.recovered.records > 0 {
                            tracing::info!(sink = %name, alerts = s.recovered.records, "spool: delivering what a previous run left");
                        }
                        Queue::Disk(s)
                    }
                    None => in_memory(OverflowPolicy::DropOldest),
                })
            };
            let (sink, queue, format, batch, retry): (
                Box<dyn Sink>,
                Queue,
                Format,
                usize,
                RetryConfig,
            ) = match c {
                SinkConfig::Stdout(s) => (
                    Box::new(stdout::StdoutSink::new()),
                    in_memory(OverflowPolicy::DropOldest),
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
                    in_memory(OverflowPolicy::DropOldest),
                    f.format,
                    1024,
                    RetryConfig::default(),
                ),
                SinkConfig::Syslog(s) => (
                    Box::new(syslog::SyslogSink::new(s, host)?),
                    spooled(&s.spool)?,
                    s.format,
                    s.batch.max_alerts,
                    s.retry.clone(),
                ),
                SinkConfig::Http(h) => (
                    Box::new(http::HttpSink::new(h, host)?),
                    spooled(&h.spool)?,
                    h.format,
                    h.batch.max_alerts,
                    h.retry.clone(),
                ),
            };
            set.add(
                sink,
                queue,
                SinkSpec {
                    name,
                    format,
                    batch,
                    retry,
                    host: host.to_string(),
                },
            );
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
        let stats = Arc::new(SinkStats::default());
        stats.recovered.store(queue.len() as u64, Relaxed);
        let (tx, rx) = mpsc::channel(CHANNEL);
        let name = spec.name.clone();
        let fut = run_sink(sink, queue, rx, spec, stats.clone());
        let task = match &self.rt {
            Some(rt) => rt.spawn(fut),
            None => return,
        };
        self.sinks.push(Handle {
            name,
            tx,
            stats,
            task,
        });
    }

    /// Hands an alert to every sink without waiting: a sink whose channel is full counts the
    /// alert as dropped and announces it in band later.
    pub fn send(&self, alert: Alert) {
        let a = Arc::new(alert);
        for h in &self.sinks {
            if h.tx.try_send(Msg::Alert(a.clone())).is_err() {
                h.stats.dropped.fetch_add(1, Relaxed);
                h.stats.pending_notice.fetch_add(1, Relaxed);
                tracing::warn!(sink = %h.name, id = %a.id, "sink channel full: alert dropped (will be announced)");
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
    spec: SinkSpec,
    stats: Arc<SinkStats>,
    /// Drops not yet announced (queue overflow), with the reason of the last one.
    why: &'static str,
}

impl Task {
    fn accept(&mut self, msg: Msg, flushes: &mut Vec<oneshot::Sender<()>>) -> Option<Instant> {
        match msg {
            Msg::Alert(a) => {
                let r = Record {
                    id: a.id.clone(),
                    body: format::encode(&a, self.spec.format),
                };
                match self.queue.push(&r) {
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
                None
            }
            Msg::Flush(ack) => {
                flushes.push(ack);
                None
            }
            Msg::Shutdown(d) => Some(d),
        }
    }

    fn after_intake(&mut self, flushes: &mut Vec<oneshot::Sender<()>>) {
        if let Err(e) = self.queue.sync(!flushes.is_empty()) {
            tracing::error!(sink = %self.spec.name, "spool sync: {e}");
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
        self.stats.queued.store(self.queue.len() as u64, Relaxed);
        self.stats.queued_bytes.store(self.queue.bytes(), Relaxed);
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
    mut rx: mpsc::Receiver<Msg>,
    spec: SinkSpec,
    stats: Arc<SinkStats>,
) {
    let mut t = Task {
        queue,
        spec,
        stats,
        why: "",
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
        t.after_intake(&mut flushes);
        let work = !t.queue.is_empty() || t.stats.pending_notice.load(Relaxed) > 0;
        if let Some(d) = deadline {
            if !work || Instant::now() >= d {
                break;
            }
        }
        if !work {
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
    if let Err(e) = t.queue.sync(true) {
        tracing::error!(sink = %t.spec.name, "spool sync: {e}");
    }
    t.stats.queued.store(t.queue.len() as u64, Relaxed);
    if !t.queue.is_empty() {
        match &t.queue {
            Queue::Disk(_) => {
                tracing::warn!(sink = %t.spec.name, held = t.queue.len(), "stopping with alerts spooled: the next run delivers them")
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
