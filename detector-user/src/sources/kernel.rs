//! The live kernel source: loads the programs, keeps the watch list and listener seeds in the
//! kernel maps, and drains the ring buffer in batches.

use std::{
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt as _},
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use detector_common::{counter, Header, ListenKey};
use tokio::io::unix::AsyncFd;

use super::{
    decode::{self, Record},
    loader::{self, KernelReads, LoadOptions, Loaded, ProgramStatus},
    preflight::{self, Environment},
    watchlist::{self, WatchList},
};

/// Errors of the live source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Preflight failed.
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// Load failed.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    /// I/O on the ring buffer.
    #[error("ring buffer: {0}")]
    Io(#[from] std::io::Error),
    /// Watch list.
    #[error(transparent)]
    WatchList(#[from] watchlist::WatchListError),
    /// Map update.
    #[error("updating kernel map {map}: {msg}")]
    Map {
        /// Map.
        map: &'static str,
        /// Error.
        msg: String,
    },
}

/// Options of the live source.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// Loader options.
    pub load: LoadOptions,
    /// Longest time a record waits in the ring buffer before the consumer looks, when idle.
    pub poll_interval: Duration,
    /// The same while records are flowing (they did in the last 50 ms): detections complete
    /// then, so this bounds most of the syscall→alert latency.
    pub active_poll_interval: Duration,
    /// Watch-list patterns.
    pub watch_patterns: Vec<watchlist::Pattern>,
    /// /etc/passwd (homes for `~`).
    pub passwd: PathBuf,
    /// How often the watch list is re-expanded even without a directory change.
    pub rescan_interval: Duration,
    /// Kernel BTF (default `/sys/kernel/btf/vmlinux`).
    pub btf: Option<PathBuf>,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            load: LoadOptions::default(),
            poll_interval: Duration::from_millis(1),
            active_poll_interval: Duration::from_micros(500),
            watch_patterns: watchlist::parse(watchlist::DEFAULT_LIST, "<embedded>")
                .unwrap_or_default(),
            passwd: PathBuf::from("/etc/passwd"),
            rescan_interval: Duration::from_secs(10),
            btf: None,
        }
    }
}

/// Counters the consumer keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceStats {
    /// Records decoded.
    pub(crate) records: u64,
    /// Records that failed to decode.
    pub(crate) decode_errors: u64,
    /// Kernel losses reported.
    pub(crate) lost: u64,
    /// Ring-buffer bytes pending when the consumer last woke (before draining).
    pub(crate) ring_pending: u64,
    /// The most seen pending at a wake-up since start.
    pub ring_pending_max: u64,
    /// Consumer wakeups the kernel forced (a burst crossing the wakeup threshold), as of the
    /// last loss check.
    pub(crate) forced_wakeups: u64,
    /// Times the consumer went to sleep until the kernel's first record (idle agent).
    pub(crate) sleeps: u64,
    /// TCP outcomes dropped because their attempt was not seen (the agent's own connects,
    /// attempts lost in the kernel).
    pub(crate) unpaired_outcomes: u64,
}

/// The live source.
pub struct KernelSource {
    ring: AsyncFd<RingBuf<MapData>>,
    loaded_rest: LoadedRest,
    lost_seen: Vec<u64>,
    last_loss_check: Instant,
    pacer: super::pacer::Pacer,
    watch: WatchList,
    passwd: PathBuf,
    inotify: Option<AsyncFd<inotify::Inotify>>,
    last_rescan: Instant,
    rescan_interval: Duration,
    ring_fill: Option<std::sync::Arc<super::ringfill::RingFill>>,
    connects: super::connects::PendingConnects,
    /// The kernel's `CONSUMER_IDLE` flag is set (we went to sleep and no record came since).
    idle_flag_raised: bool,
    /// Per-program attach state.
    pub status: Vec<ProgramStatus>,
    /// How the programs read kernel structures (direct loads or helper calls).
    pub reads: KernelReads,
    /// Environment found by preflight.
    pub env: Environment,
    /// Running counters.
    pub stats: SourceStats,
}

/// Parts of [`Loaded`] besides the ring buffer.
struct LoadedRest {
    _ebpf: aya::Ebpf,
    counters: aya::maps::PerCpuArray<MapData, u64>,
    watched: aya::maps::HashMap<MapData, detector_common::WatchKey, u32>,
    watch_bits: aya::maps::Array<MapData, [u64; detector_common::watch_bits::WORDS]>,
    watched_names: aya::maps::HashMap<MapData, detector_common::NameKey, u32>,
    bits: super::watchbits::WatchBits,
    consumer_idle: aya::maps::Array<MapData, u32>,
    listeners: aya::maps::HashMap<MapData, ListenKey, Header>,
    _logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// Boot-time clock now, ns.
pub(crate) fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl KernelSource {
    /// Name and kernel id of every loaded program (for `bpf_stats` attribution).
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.loaded_rest
            ._ebpf
            .programs()
            .filter_map(|(name, p)| Some((name.to_string(), p.info().ok()?.id())))
            .collect()
    }

    /// Preflight, load, attach, seed the maps.
    pub(crate) fn start(opts: &KernelOptions) -> Result<Self, SourceError> {
        let env = preflight::check(opts.btf.as_deref())?;
        let Loaded {
            ebpf,
            logger,
            events,
            counters,
            watched,
            watch_bits,
            watched_names,
            consumer_idle,
            listeners,
            status,
            reads,
            ..
        } = loader::load(&env, &opts.load)?;
        tracing::info!(
            mode = reads.mode,
            patched = reads.patched,
            reason = reads.reason.as_deref().unwrap_or(""),
            "kernel structure reads"
        );
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd owns the ring buffer.
        let ring = unsafe { AsyncFd::register(events) }.map_err(|e| SourceError::Io(e.into()))?;
        let ring_fill =
            super::ringfill::RingFill::new(ring.get_ref().as_raw_fd(), opts.load.ring_bytes.into())
                .map(std::sync::Arc::new)
                .map_err(|e| tracing::warn!("ring-buffer fill not measured: {e}"))
                .ok();
        let watch = WatchList::new(opts.watch_patterns.clone(), watchlist::homes(&opts.passwd));
        let mut me = Self {
            ring,
            loaded_rest: LoadedRest {
                _ebpf: ebpf,
                counters,
                watched,
                watch_bits,
                watched_names,
                bits: Default::default(),
                consumer_idle,
                listeners,
                _logger: logger,
            },
            lost_seen: Vec::new(),
            last_loss_check: Instant::now(),
            pacer: super::pacer::Pacer::new(opts.poll_interval, opts.active_poll_interval)?,
            watch,
            passwd: opts.passwd.clone(),
            inotify: None,
            last_rescan: Instant::now(),
            rescan_interval: opts.rescan_interval,
            ring_fill,
            connects: super::connects::PendingConnects::default(),
            idle_flag_raised: false,
            status,
            reads,
            env,
            stats: SourceStats::default(),
        };
        me.rescan_watch()?;
        me.seed_listeners();
        // Sleeping needs the ring's positions to check for a racing record after raising the flag.
        if me.ring_fill.is_some() {
            me.pacer.allow_sleep();
        }
        Ok(me)
    }

    /// The watch list as it stands.
    pub fn watch_list(&self) -> &WatchList {
        &self.watch
    }

    /// Replaces the watch-list patterns (SIGHUP reload) and applies the change to the kernel
    /// map at once; returns the files (added, removed), or none when the patterns are the
    /// same.
    pub(crate) fn set_watch_patterns(
        &mut self,
        patterns: Vec<watchlist::Pattern>,
    ) -> Result<Option<(usize, usize)>, SourceError> {
        if self.watch.patterns() == patterns.as_slice() {
            return Ok(None);
        }
        self.watch.set_patterns(patterns);
        self.rescan_watch().map(Some)
    }

    /// Re-expands the watch list, applies the delta to the kernel map and re-arms inotify on
    /// the directories that matter; returns the files (added, removed).
    pub(crate) fn rescan_watch(&mut self) -> Result<(usize, usize), SourceError> {
        self.watch.set_homes(watchlist::homes(&self.passwd));
        // Watch the directories first, then look: a file created in between raises an event
        // (and the next rescan), instead of waiting for the periodic one.
        self.arm_inotify();
        let delta = self.watch.rescan();
        for k in &delta.removed {
            let _ = self.loaded_rest.watched.remove(k);
        }
        for (k, id) in &delta.added {
            self.loaded_rest
                .watched
                .insert(k, id, 0)
                .map_err(|e| SourceError::Map {
                    map: "WATCHED",
                    msg: e.to_string(),
                })?;
        }
        // Bits after the keys: the kernel never sees a set bit's key missing for long, and
        // never a live key without its bit.
        let rest = &mut self.loaded_rest;
        if rest.bits.update(
            delta.added.iter().map(|(k, _)| k),
            delta.removed.len(),
            self.watch.keys(),
        ) {
            rest.watch_bits
                .set(0, rest.bits.words(), 0)
                .map_err(|e| SourceError::Map {
                    map: "WATCH_BITS",
                    msg: e.to_string(),
                })?;
        }
        self.teach_names(&delta);
        if !delta.added.is_empty() || !delta.removed.is_empty() {
            tracing::debug!(
                added = delta.added.len(),
                removed = delta.removed.len(),
                total = self.watch.len(),
                "watch list updated"
            );
        }
        self.last_rescan = Instant::now();
        Ok((delta.added.len(), delta.removed.len()))
    }

    /// Opens each newly watched file (`O_PATH`: no read, no access time, no side effect), so
    /// that the programs learn its name in its directory now (they learn from any open that
    /// matches by inode, the agent's own included): a later replacement of the file by rename
    /// then matches by name before this agent has added the new inode. Then forgets the
    /// names of files no longer watched.
    fn teach_names(&mut self, delta: &watchlist::Delta) {
        for (_, id) in &delta.added {
            if let Some(w) = self.watch.get(*id) {
                let _ = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                    .open(&w.path);
            }
        }
        if delta.removed.is_empty() {
            return;
        }
        let names = &mut self.loaded_rest.watched_names;
        let dead: Vec<detector_common::NameKey> = names
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, id)| !self.watch.is_live(*id))
            .map(|(k, _)| k)
            .collect();
        for k in dead {
            let _ = names.remove(&k);
        }
    }

    fn arm_inotify(&mut self) {
        use inotify::{Inotify, WatchMask};
        let Ok(ino) = Inotify::init() else { return };
        // Only events on the directory's own entries. Any event a child can raise (ATTRIB,
        // OPEN, ACCESS, CLOSE_*) would mark every file in the directory as having a watched
        // parent, and then every open and close of any file there (all of /etc, every home)
        // pays fsnotify's parent walk: +210 ns per open+close here with ATTRIB in the mask.
        let mask =
            WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::DELETE | WatchMask::MOVED_FROM;
        for d in self.watch.directories() {
            let _ = ino.watches().add(&d, mask);
        }
        // SAFETY: the Inotify owns its fd for as long as the AsyncFd owns it.
        self.inotify = unsafe { AsyncFd::register(ino) }.ok();
    }

    /// Listeners older than the agent: attribute inbound connections to them too.
    fn seed_listeners(&mut self) {
        for (key, hdr) in super::listeners::scan() {
            let _ = self.loaded_rest.listeners.insert(key, hdr, 0);
        }
    }

    /// Waits for records (at most one poll interval) and appends what is there to `out`.
    /// Also turns new kernel losses into in-band `Loss` records and keeps the watch list
    /// current.
    pub(crate) async fn next_batch(&mut self, out: &mut Vec<Record>) -> Result<(), SourceError> {
        let asleep = self.go_to_sleep();
        self.pacer.arm(asleep)?;
        let mut rescan = false;
        tokio::select! {
            guard = self.ring.readable_mut() => {
                let mut guard = guard?;
                guard.clear_ready();
            }
            r = async {
                match self.inotify.as_mut() {
                    Some(i) => i.readable_mut().await.map(|mut g| { g.clear_ready(); true }),
                    None => std::future::pending().await,
                }
            } => {
                rescan = r.unwrap_or(false);
            }
            r = self.pacer.fired() => r?,
        }
        if let Some(f) = &self.ring_fill {
            // What waited for us: the backlog this wake-up finds.
            self.stats.ring_pending = f.pending();
            self.stats.ring_pending_max = self.stats.ring_pending_max.max(self.stats.ring_pending);
        }
        let before = out.len();
        self.drain(out);
        if out.len() > before {
            // Whoever woke us (the kernel clears the flag when it forces the wakeup, else a
            // timer), the flag is raised again only at the next sleep.
            self.idle_flag_raised = false;
        }
        self.pacer.saw(out.len() - before);
        if rescan || self.last_rescan.elapsed() >= self.rescan_interval {
            if let Some(i) = self.inotify.as_mut() {
                let mut buf = [0u8; 4096];
                while let Ok(evs) = i.get_mut().read_events(&mut buf) {
                    if evs.count() == 0 {
                        break;
                    }
                }
            }
            self.rescan_watch()?;
        }
        if self.last_loss_check.elapsed() >= Duration::from_millis(50) {
            self.check_loss(out);
        }
        Ok(())
    }

    /// Raises the kernel's wake flag when the pacer may sleep, then checks that nothing was
    /// reserved meanwhile (the flag is set before the check, so a producer either sees it or
    /// its reservation is seen here). True: sleep on the safety timer.
    fn go_to_sleep(&mut self) -> bool {
        if !self.pacer.would_sleep() {
            return false;
        }
        let Some(fill) = self.ring_fill.as_ref() else {
            return false;
        };
        if !self.idle_flag_raised {
            if self.loaded_rest.consumer_idle.set(0, 1, 0).is_err() {
                return false;
            }
            self.idle_flag_raised = true;
            self.stats.sleeps += 1;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        fill.pending() == 0
    }

    /// The kernel's wake flag: 1 while the consumer sleeps and no record has come since.
    pub fn wake_flag(&self) -> Option<u32> {
        self.loaded_rest.consumer_idle.get(&0, 0).ok()
    }

    /// Raises the kernel's wake flag as going to sleep does (for tests and diagnostics).
    pub fn raise_wake_flag(&mut self) -> Result<(), SourceError> {
        self.loaded_rest
            .consumer_idle
            .set(0, 1, 0)
            .map_err(|e| SourceError::Map {
                map: "CONSUMER_IDLE",
                msg: e.to_string(),
            })?;
        self.idle_flag_raised = true;
        Ok(())
    }

    /// Drains everything in the ring buffer now.
    pub fn drain(&mut self, out: &mut Vec<Record>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode::decode(&item) {
                Ok(mut r) => {
                    self.stats.records += 1;
                    if let Record::Net(n) = &mut r {
                        if !self.connects.pair(n) {
                            self.stats.unpaired_outcomes = self.connects.unpaired;
                            continue;
                        }
                    }
                    out.push(r);
                }
                Err(e) => {
                    self.stats.decode_errors += 1;
                    tracing::warn!(error = %e, "undecodable ring-buffer record skipped");
                }
            }
        }
    }

    /// Reads the per-CPU loss counters and reports increases.
    pub fn check_loss(&mut self, out: &mut Vec<Record>) {
        self.last_loss_check = Instant::now();
        self.stats.forced_wakeups = self.counter(counter::WAKEUPS);
        let Ok(values) = self.loaded_rest.counters.get(&counter::LOST, 0) else {
            return;
        };
        if self.lost_seen.len() < values.len() {
            self.lost_seen.resize(values.len(), 0);
        }
        let now = boottime_ns();
        for (cpu, v) in values.iter().enumerate() {
            let seen = self.lost_seen[cpu];
            if *v > seen {
                self.stats.lost += v - seen;
                out.push(Record::Loss {
                    ts_ns: now,
                    cpu: cpu as u32,
                    count: v - seen,
                    total: *v,
                });
                self.lost_seen[cpu] = *v;
            }
        }
    }

    /// Records the kernel dropped so far, per CPU (as of the last loss check).
    pub(crate) fn lost_per_cpu(&self) -> &[u64] {
        &self.lost_seen
    }

    /// Sum over CPUs of a kernel counter.
    pub fn counter(&self, idx: u32) -> u64 {
        self.loaded_rest
            .counters
            .get(&idx, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Ring-buffer bytes pending now and the capacity (none when the positions could not be
    /// mapped).
    pub fn ring_fill(&self) -> Option<(u64, u64)> {
        self.ring_fill.as_ref().map(|f| (f.pending(), f.capacity()))
    }

    /// The ring buffer's position reader, for a metrics endpoint that reads it at each scrape.
    pub(crate) fn ring_fill_reader(&self) -> Option<std::sync::Arc<super::ringfill::RingFill>> {
        self.ring_fill.clone()
    }
}
