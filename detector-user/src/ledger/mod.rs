//! The credential ledger: for every machine credential on the host, who owns it, which
//! workloads used it and when, what it reaches, and when it was last rotated (docs/ledger.md).
//!
//! - [`input`]: the one mapping from enriched events to ledger inputs (use, write, contact).
//! - [`model`]: the ledger in memory; applies inputs and decides the findings.
//! - [`store`]: SQLite (WAL) under the state dir, versioned schema, batched writes.
//! - [`writer`]: the ledger's own thread behind a bounded channel: the capture loop and the
//!   engine never wait for it.
//! - [`findings`]: findings and in-band notices as alerts.
//! - [`query`]: records and filters for `detector inventory`, `/inventory` and the export.
//! - [`graph`]: identity → credential → destination as SVG.
//!
//! [`Ledger`] is what `detector run` holds.

pub(crate) mod findings;
pub(crate) mod graph;
pub mod input;
pub mod model;
pub mod policy;
pub mod query;
pub mod store;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;

use crate::{
    config::LedgerConfig, engine::alert::Severity, engine::Alert, enrich::identity::IdentityConfig,
    event::Event, sources::watchlist::WatchList,
};
use model::WatchedCredential;
use policy::Policy;
use writer::{Ctl, Msg, Out, Writer};

pub(crate) use writer::LedgerQuery;
pub use writer::LedgerStats;

#[cfg(test)]
mod tests;

/// The ledger file under a state dir.
pub(crate) fn default_path(state_dir: &Path) -> PathBuf {
    state_dir.join("ledger.db")
}

/// How often dropped inputs are announced at most.
const DROP_NOTICE_EVERY: Duration = Duration::from_secs(60);
/// Inputs are handed to the ledger's thread at most this often (or per [`HANDOFF_INPUTS`], or
/// at the next tick), so that it wakes a few times a second rather than at every alert the
/// capture loop is delivering.
const HANDOFF_EVERY: Duration = Duration::from_millis(100);
/// … or as soon as this many are waiting.
const HANDOFF_INPUTS: usize = 1024;

/// The running ledger, as the capture loop sees it.
pub struct Ledger {
    tx: Option<Sender<Msg>>,
    ctl: Sender<Ctl>,
    out: tokio::sync::mpsc::UnboundedReceiver<Out>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<LedgerStats>,
    watch_generation: Option<u64>,
    announced_drops: u64,
    last_drop_notice: Option<Instant>,
    cfg: LedgerConfig,
    /// Inputs not handed over yet, since when.
    pending: Vec<input::LedgerInput>,
    pending_since: Option<Instant>,
}

impl Ledger {
    /// Starts the ledger's thread on the file at `path`. Opening (and checking) the file
    /// happens on that thread, so start-up does not wait for it.
    pub fn start(
        cfg: &LedgerConfig,
        path: PathBuf,
        host: &str,
        identities: Arc<IdentityConfig>,
    ) -> std::io::Result<Ledger> {
        // Unbounded, but inputs are counted in and out (`LedgerStats::queued`): a batch that
        // would take them past `ledger.queue` is dropped, counted and announced.
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ctl, ctl_rx) = crossbeam_channel::unbounded();
        let (out_tx, out) = tokio::sync::mpsc::unbounded_channel();
        let stats = Arc::new(LedgerStats::default());
        let pol = Policy::new(cfg, identities);
        let (c, h, st) = (cfg.clone(), host.to_string(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("detector-ledger".into())
            .spawn(move || Writer::open(path, pol, c, h, out_tx, st).run(rx, ctl_rx))?;
        Ok(Ledger {
            tx: Some(tx),
            ctl,
            out,
            thread: Some(thread),
            stats,
            watch_generation: None,
            announced_drops: 0,
            last_drop_notice: None,
            cfg: cfg.clone(),
            pending: Vec::new(),
            pending_since: None,
        })
    }

    fn send(&self, m: Msg) {
        if let Some(tx) = &self.tx {
            // Only when the thread is gone (it then said why).
            let _ = tx.send(m);
        }
    }

    /// Takes what a batch of events means to the ledger (nothing for most events), never
    /// waiting; hands it to the ledger's thread every [`HANDOFF_EVERY`] (or [`HANDOFF_INPUTS`]
    /// inputs, or at the next tick). Beyond `ledger.queue` inputs waiting for the thread, a
    /// hand-off's inputs are dropped and counted.
    pub fn observe_batch(&mut self, events: &[Event]) {
        self.pending
            .extend(events.iter().filter_map(input::classify));
        if self.pending.is_empty() {
            return;
        }
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= HANDOFF_INPUTS || since.elapsed() >= HANDOFF_EVERY {
            self.hand_off();
        }
    }

    /// Sends the waiting inputs to the ledger's thread, in one message.
    fn hand_off(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        let inputs = std::mem::take(&mut self.pending);
        let n = inputs.len() as u64;
        let queued = self.stats.queued.fetch_add(n, Relaxed);
        if queued.saturating_add(n) > self.cfg.queue as u64 || self.tx.is_none() {
            self.stats.queued.fetch_sub(n, Relaxed);
            self.stats.dropped.fetch_add(n, Relaxed);
            return;
        }
        self.send(Msg::Inputs(inputs));
    }

    /// [`Ledger::observe_batch`] of one event, handed over at once.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, ev: &Event) {
        self.observe_batch(std::slice::from_ref(ev));
        self.hand_off();
    }

    /// Once a second or so: the time (wall clock, ns), the watch list when it changed; returns
    /// an in-band notice when inputs had to be dropped (at most once a minute).
    pub(crate) fn tick(&mut self, now: u64, watch: &WatchList, host: &str) -> Option<Alert> {
        self.hand_off();
        if self.watch_generation != Some(watch.generation()) {
            self.watch_generation = Some(watch.generation());
            let list = watch
                .iter()
                .filter(|w| w.category != "environ")
                .map(|w| WatchedCredential {
                    path: w.path.display().to_string(),
                    category: w.category.clone(),
                    dev: w.key.dev,
                    ino: w.key.ino,
                    mtime: u64::try_from(w.mtime)
                        .ok()
                        .map(|s| s.saturating_mul(1_000_000_000)),
                })
                .collect();
            self.send(Msg::Watched(list, now));
        }
        self.send(Msg::Tick(now));
        let dropped = self.stats.dropped.load(Relaxed);
        let due = self
            .last_drop_notice
            .is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY);
        if dropped > self.announced_drops && due {
            let n = dropped - self.announced_drops;
            self.announced_drops = dropped;
            self.last_drop_notice = Some(Instant::now());
            let s = format!(
                "{n} inputs not recorded: the ledger's queue ({}) was full",
                self.cfg.queue
            );
            tracing::warn!("credential ledger: {s}");
            return Some(findings::notice(
                "inputs_dropped",
                &s,
                Severity::Medium,
                host,
                now,
            ));
        }
        None
    }

    /// The identities changed (SIGHUP reload).
    pub(crate) fn set_identities(&self, identities: Arc<IdentityConfig>) {
        let p = Policy::new(&self.cfg, identities);
        // On the control channel: never full, so neither lost nor waited for.
        let _ = self.ctl.send(Ctl::Policy(Box::new(p)));
    }

    /// The next alert or inventory record the ledger has for the sinks.
    pub(crate) async fn recv(&mut self) -> Option<Out> {
        self.out.recv().await
    }

    /// A handle for the `/inventory` endpoint.
    pub(crate) fn query(&self) -> LedgerQuery {
        LedgerQuery {
            ctl: self.ctl.clone(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Arc<LedgerStats> {
        self.stats.clone()
    }

    /// Stops: the thread commits what it holds and exits; returns what it still had for the
    /// sinks.
    pub fn stop(mut self) -> Vec<Out> {
        self.hand_off();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("credential ledger thread panicked");
            }
        }
        let mut rest = Vec::new();
        while let Ok(o) = self.out.try_recv() {
            rest.push(o);
        }
        rest
    }
}
