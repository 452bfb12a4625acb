//! The sink set: every configured sink fed at once, each through its own channel and task;
//! built from the config, reconfigured by a reload, shut down with a deadline.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    file, http,
    spill::{drop_moved_prefix, lock_spill, SharedSpill, Spill},
    spool::{MemQueue, Queue, Spool},
    stdout, syslog,
    task::run_sink,
    Item, Msg, Sink, SinkError, SinkStats, CHANNEL, MEMORY_QUEUE, SPILL_STEP,
};
use crate::{
    config::{Format, OverflowPolicy, RetryConfig, SinkConfig, SpoolConfig},
    engine::Alert,
    ledger::query::InventoryRecord,
};

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
    pub(super) rt: Option<tokio::runtime::Runtime>,
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
pub(crate) struct SinkSpec {
    /// Name (logs, spool directory).
    pub(crate) name: String,
    /// Document format.
    pub(crate) format: Format,
    /// Records per delivery.
    pub(crate) batch: usize,
    /// Backoff.
    pub(crate) retry: RetryConfig,
    /// Host name for in-band alerts.
    pub(crate) host: String,
}

/// A sink built from its config, before its queue is opened.
pub(super) struct Built {
    pub(super) sink: Box<dyn Sink>,
    pub(super) spool: Option<SpoolConfig>,
    pub(super) spec: SinkSpec,
}

pub(super) fn build(c: &SinkConfig, host: &str) -> Result<Built, SinkError> {
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
pub(super) fn open_queues(
    name: &str,
    spool: &Option<SpoolConfig>,
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
    pub(crate) fn empty() -> Result<SinkSet, SinkError> {
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
    pub(crate) fn send_inventory(&self, r: InventoryRecord) {
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
            let dropped = g.push(&a, &h.name);
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
    pub(crate) async fn reconfigure(
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
    pub(crate) async fn shutdown(mut self, timeout: Duration) {
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

fn spool_of(c: &SinkConfig) -> Option<&SpoolConfig> {
    match c {
        SinkConfig::Stdout(_) => None,
        SinkConfig::File(f) => f.spool.as_ref(),
        SinkConfig::Syslog(s) => s.spool.as_ref(),
        SinkConfig::Http(h) => h.spool.as_ref(),
    }
}
