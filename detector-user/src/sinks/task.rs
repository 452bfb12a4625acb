//! The per-sink task: takes records in from the channel (and the overflow spool), holds
//! them in the sink's queue, delivers them in batches with backoff, announces drops in band,
//! and on shutdown or reload syncs or hands over what it still holds.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    backoff::backoff,
    format,
    spill::{lock_spill, SharedSpill},
    spool::Queue,
    Msg, Record, Sink, SinkError, SinkSpec, SinkStats, DEFAULT_SHUTDOWN_TIMEOUT, SPILL_STEP,
};
use crate::config::OverflowPolicy;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A sink's task state: its queue, its overflow spool, its counters.
pub(super) struct Task {
    pub(super) queue: Queue,
    pub(super) spill: Option<SharedSpill>,
    pub(super) spec: SinkSpec,
    pub(super) stats: Arc<SinkStats>,
    /// Drops not yet announced (queue overflow), with the reason of the last one.
    pub(super) why: &'static str,
    /// A reload replaced this sink: where to hand what it still holds.
    retire: Option<oneshot::Sender<Queue>>,
}

impl Task {
    /// Queues a record, counting what the queue's bound drops.
    pub(super) fn hold(&mut self, r: &Record) {
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

    pub(super) fn accept(
        &mut self,
        msg: Msg,
        flushes: &mut Vec<oneshot::Sender<()>>,
    ) -> Option<Instant> {
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

/// Runs one sink until shutdown, or until a reload retires it.
pub(super) async fn run_sink(
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
