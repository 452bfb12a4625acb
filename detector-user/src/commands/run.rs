//! `detector run`: capture from the kernel, enrich, attribute to identities, correlate, and
//! deliver alerts through the configured sinks (default: NDJSON on stdout); with `--events`,
//! every enriched event goes to stdout too.
//!
//! SIGHUP reloads the config file, rules, identities and baseline through the same code path
//! as start-up ([`settings::prepare`]: flags over the config file over the defaults, resolved
//! in one place, [`settings::Settings`]); on any error the running set stays and the
//! error (file:line:col) is logged. Either way an in-band `detector-reload` alert records it.
//! A reload starts fresh correlation windows and suppression state: the old engine first
//! decides the windows still waiting on it (`lt`/`lte` conditions; so events already received
//! are judged by the rules in force when they arrived), then partial windows are dropped.
//! Carrying them over is not sound when a rule's window, threshold or grouping changed. Sinks
//! whose config changed are rebuilt (the others keep running untouched; a replaced sink hands
//! what it holds to its successor, see [`SinkSet::reconfigure`]) and watch-list changes reach
//! the kernel map at once. State dir, metrics address and the ledger are fixed at start; a
//! reload that changes them says they need a restart.
//!
//! The credential ledger (docs/ledger.md) runs on its own thread: after each batch's alerts
//! are handed to the sinks, the batch's inputs are set aside for it and handed over every
//! 100 ms, never making the loop wait; its findings and inventory records come back here for
//! the sinks.

use std::{
    io::Write as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use self::settings::{prepare, Prepared, Settings};
use super::{
    capture_opts::{hostname, shutdown_signal, CaptureArgs},
    detect_opts::{DetectArgs, Detection},
};
use crate::{
    capture::LiveCapture,
    config::AgentConfig,
    enrich::fingerprint::{load_or_create_key, Fingerprinter},
    event::{Event, Kind},
    ledger::{writer::Out, Ledger},
    metrics::Metrics,
    sinks::{format::reload_alert, SinkSet},
    sources::kernel::boottime_ns,
};

pub(crate) mod settings;

/// Arguments of `detector run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Also stream every enriched event (NDJSON) on stdout, interleaved with alerts.
    #[arg(long)]
    pub(crate) events: bool,
    /// Where the agent keeps its state (the fingerprint key and the credential ledger, 0600)
    /// [default: the config's
    /// `run.state_dir`, else /var/lib/detector].
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Agent config (YAML): sinks and run options; flags given here win over it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Serve Prometheus metrics (`/metrics`) and health (`/health`) on this address: `PORT` or
    /// `:PORT` (loopback only) or `HOST:PORT` [default: the config's `run.metrics_addr`, else
    /// no endpoint].
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// Keep no credential ledger (the config's `ledger.enabled: false` does the same).
    #[arg(long)]
    pub(crate) no_ledger: bool,
    /// Detection flags.
    #[command(flatten)]
    pub(crate) detect: DetectArgs,
    /// Capture flags.
    #[command(flatten)]
    pub(crate) capture: CaptureArgs,
}

/// "FILE: sinks" (or "sinks" without a config file), to prefix a sink error with.
fn sinks_of(args: &RunArgs) -> String {
    match &args.config {
        Some(p) => format!("{}: sinks", p.display()),
        None => "sinks".into(),
    }
}

/// How long a sink replaced by a reload may keep delivering what it holds to its old
/// destination before handing the rest to its successor (the capture loop waits meanwhile).
const RELOAD_GRACE: Duration = Duration::from_secs(2);

/// What a reload may change besides the detection set.
struct Live<'a> {
    /// The config in force.
    running: &'a mut AgentConfig,
    /// The settings in force.
    settings: &'a mut Settings,
    sinks: &'a mut SinkSet,
    cap: &'a mut LiveCapture,
}

/// Re-reads everything and, only if all of it is valid, replaces the running set: rules,
/// identities, sinks (only those whose config changed are rebuilt, handing over what they
/// hold) and the watch list (applied to the kernel map at once). Returns the outcome and a
/// one-line summary (what changed, or the error that kept the old set).
async fn reload(
    args: &RunArgs,
    live: Live<'_>,
    host: &str,
    current: &mut Detection,
    alerts: &mut Vec<crate::engine::Alert>,
) -> (bool, String) {
    let Prepared {
        config: cfg,
        settings,
        detection: new,
        kernel,
    } = match prepare(args, host) {
        Ok(x) => x,
        Err(e) => return (false, format!("{e:#}; keeping the running set")),
    };
    // Sinks last among the checks: every new sink is built before a running one is touched.
    let sink_changes = if cfg.sinks != live.running.sinks {
        match live.sinks.reconfigure(&cfg.sinks, host, RELOAD_GRACE).await {
            Ok(c) => c,
            Err(e) => {
                return (
                    false,
                    format!("{}: {e}; keeping the running set", sinks_of(args)),
                )
            }
        }
    } else {
        Vec::new()
    };
    let mut summary = new.changes_from(&current.rule_ids, current.identities);
    if !sink_changes.is_empty() {
        summary.push_str(&format!("; sinks [{}]", sink_changes.join(", ")));
    }
    match live.cap.source.set_watch_patterns(kernel.watch_patterns) {
        Ok(Some((added, removed))) => summary.push_str(&format!(
            "; watch list: {} patterns, files +{added} -{removed}, {} watched",
            live.cap.source.watch_list().patterns().len(),
            live.cap.source.watch_list().len()
        )),
        Ok(None) => {}
        Err(e) => summary.push_str(&format!("; watch list not applied: {e}")),
    }
    if settings.shutdown_timeout != live.settings.shutdown_timeout {
        summary.push_str(&format!(
            "; shutdown_timeout {:?}",
            settings.shutdown_timeout
        ));
    }
    // Fixed at start: the effective values are compared (a config edit a flag overrides
    // changes nothing); the ledger by its whole section.
    let mut fixed = Vec::new();
    if settings.state_dir != live.settings.state_dir {
        fixed.push("state_dir");
    }
    if settings.metrics_addr != live.settings.metrics_addr {
        fixed.push("metrics_addr");
    }
    if cfg.ledger != live.running.ledger || settings.ledger != live.settings.ledger {
        fixed.push("ledger");
    }
    if !fixed.is_empty() {
        summary.push_str(&format!("; changed {} need a restart", fixed.join(", ")));
    }
    // Events already received are judged by the rules in force when they arrived.
    current.engine.finish(alerts);
    *current = new;
    // The fixed ones stay as started (so a later reload still says they need a restart); the
    // others are in force now.
    let ledger = std::mem::take(&mut live.running.ledger);
    *live.running = AgentConfig { ledger, ..cfg };
    let (state_dir, metrics_addr, ledger) = (
        std::mem::take(&mut live.settings.state_dir),
        live.settings.metrics_addr.take(),
        live.settings.ledger.take(),
    );
    *live.settings = Settings {
        state_dir,
        metrics_addr,
        ledger,
        ..settings
    };
    (true, summary)
}

/// Resolves on the next SIGHUP; never when the handler could not be installed.
async fn hangup(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The ledger's next output; never, without a ledger.
async fn ledger_out(l: &mut Option<Ledger>) -> Option<Out> {
    match l {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands a ledger output to the sinks.
fn deliver(o: Out, sinks: &SinkSet, metrics: &Option<Metrics>) {
    match o {
        Out::Alert(a) => {
            if let Some(m) = metrics {
                // Not a syscall→alert figure: the ledger's alerts travel through its thread.
                m.batch().alert(&a.rule.id, None);
            }
            sinks.send(*a);
        }
        Out::Inventory(r) => sinks.send_inventory(*r),
    }
}

/// Keyed fingerprints of credential contents; the key lives in the state dir, 0600.
fn fingerprinter(state_dir: &std::path::Path) -> Option<Fingerprinter> {
    let key = std::fs::create_dir_all(state_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            load_or_create_key(&state_dir.join("fingerprint.key")).map_err(|e| e.to_string())
        });
    match key {
        Ok(k) => Some(Fingerprinter::new(k, 4096)),
        Err(e) => {
            tracing::warn!("credential fingerprints disabled: {e}");
            None
        }
    }
}

/// Adds the content fingerprint to a credential event (never the content itself).
fn fingerprint(fp: &mut Option<Fingerprinter>, ev: &mut Event) {
    let (Some(fp), Some(f)) = (fp.as_mut(), ev.file.as_mut()) else {
        return;
    };
    if f.category == "environ" || f.fingerprint.is_some() {
        return;
    }
    match fp.of_file(std::path::Path::new(&f.watched)) {
        Ok(s) => f.fingerprint = Some(s),
        Err(e) => tracing::debug!("no fingerprint for {}: {e}", f.watched),
    }
}

/// Runs the agent.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let host = hostname();
    // The config, rules and identities first: a broken one fails before anything is attached.
    let Prepared {
        config: mut cfg,
        mut settings,
        detection: mut det,
        kernel: opts,
    } = prepare(&args, &host)?;
    let mut fp = fingerprinter(&settings.state_dir);
    // Bound before anything is attached or dropped: a busy port fails start-up, and a port
    // below 1024 is bound while CAP_NET_BIND_SERVICE is still there.
    let metrics_listener = match &settings.metrics_addr {
        Some(a) => {
            let l = crate::metrics::bind(crate::metrics::parse_listen_addr(a)?)?;
            tracing::info!(addr = %l.local_addr()?, "metrics and health endpoint");
            Some(l)
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cap = LiveCapture::start(&opts)?;
        let metrics = match metrics_listener {
            Some(l) => {
                let m = Metrics::new();
                m.set_programs(&cap.source.status, |s| opts.load.groups.contains(&s.group));
                if let Some(r) = cap.source.ring_fill_reader() {
                    m.set_ring(r);
                }
                m.serve(l)?;
                Some(m)
            }
            None => None,
        };
        // Attached, maps and state dir open: from here on only what the steady state uses.
        // Before the sinks, whose runtime threads would otherwise keep the full sets
        // (capabilities are per thread).
        match crate::privs::drop_all_but(crate::privs::KEPT) {
            Ok(kept) => tracing::info!(
                kept = crate::privs::names(&kept).join(","),
                "dropped every other capability"
            ),
            Err(e) => tracing::warn!("{e}; running with the capabilities it started with"),
        }
        // Right after attaching: a spool left by a previous run starts draining at once.
        // What the config's validation cannot see (a permission the dropped capabilities no
        // longer give) still names the config.
        let mut sinks = SinkSet::from_config(&cfg.sinks, &host)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sinks_of(&args)))?;
        if let Some(m) = &metrics {
            m.set_sinks(sinks.stats());
        }
        // After the capabilities are dropped, like the sinks' threads.
        let mut ledger = if let Some(path) = settings.ledger.clone() {
            let l = Ledger::start(&cfg.ledger, path, &host, det.resolver.shared_config())?;
            if let Some(m) = &metrics {
                m.set_ledger(l.query(), l.stats());
            }
            Some(l)
        } else {
            tracing::info!("no credential ledger");
            None
        };
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            attached = cap.source.status.iter().filter(|s| s.attached).count(),
            watched = cap.source.watch_list().len(),
            rules = det.rule_ids.len(),
            "capturing"
        );
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!("SIGHUP reload unavailable: {e}"))
            .ok();
        // Events only: alerts go through the sinks (whose stdout writes take the lock per
        // batch, so the lock is taken per batch here too).
        // A plain buffer, written out once per batch (a BufWriter here would hold events back
        // until 8 KiB had accumulated).
        let mut out: Vec<u8> = Vec::new();
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let (mut events, mut alerts) = (Vec::new(), Vec::new());
        loop {
            events.clear();
            tokio::select! {
                _ = &mut stop => break,
                _ = hangup(&mut hup) => {
                    let live = Live {
                        running: &mut cfg,
                        settings: &mut settings,
                        sinks: &mut sinks,
                        cap: &mut cap,
                    };
                    let (ok, summary) = reload(&args, live, &host, &mut det, &mut alerts).await;
                    if let Some(m) = &metrics {
                        m.set_sinks(sinks.stats());
                    }
                    if let (true, Some(l)) = (ok, &ledger) {
                        l.set_identities(det.resolver.shared_config());
                    }
                    if ok {
                        tracing::info!("reloaded: {summary}");
                    } else {
                        tracing::error!("reload failed: {summary}");
                    }
                    let now = cap.enricher.wall(boottime_ns());
                    alerts.push(reload_alert(ok, &summary, &host, now));
                    let mut batch = metrics.as_ref().map(Metrics::batch);
                    for a in alerts.drain(..) {
                        if let Some(b) = batch.as_mut() {
                            b.alert(&a.rule.id, None);
                        }
                        sinks.send(a);
                    }
                    continue;
                }
                o = ledger_out(&mut ledger) => {
                    if let Some(o) = o {
                        deliver(o, &sinks, &metrics);
                    }
                    continue;
                }
                _ = ticker.tick() => {
                    if let Some(l) = ledger.as_mut() {
                        let now = cap.enricher.wall(boottime_ns());
                        if let Some(a) = l.tick(now, cap.source.watch_list(), &host) {
                            deliver(Out::Alert(Box::new(a)), &sinks, &metrics);
                        }
                    }
                    continue;
                }
                r = cap.next_events(&mut events) => r?,
            }
            let mut batch = metrics.as_ref().map(Metrics::batch);
            for ev in events.iter_mut() {
                if let Some(b) = batch.as_mut() {
                    b.event(ev.kind.as_str());
                }
                if let Some(p) = ev.process.as_mut() {
                    det.resolver.apply(p);
                }
                if matches!(ev.kind, Kind::CredOpen | Kind::CredRead) {
                    fingerprint(&mut fp, ev);
                }
                if args.events {
                    serde_json::to_writer(&mut out, &*ev)?;
                    out.write_all(b"\n")?;
                }
                let t0 = batch.is_some().then(Instant::now);
                det.engine.process(ev, &mut alerts);
                if let (Some(b), Some(t0)) = (batch.as_mut(), t0) {
                    b.rule_eval(t0.elapsed());
                }
            }
            // Windows close on time as well as on events.
            det.engine
                .flush(cap.enricher.wall(boottime_ns()), &mut alerts);
            if !out.is_empty() {
                let mut so = std::io::stdout().lock();
                so.write_all(&out)?;
                so.flush()?;
                out.clear();
            }
            if let Some(b) = batch.as_mut() {
                b.kernel(
                    cap.source.lost_per_cpu(),
                    cap.source.stats.decode_errors,
                    cap.source.stats.forced_wakeups,
                );
                b.ring_pending_max(cap.source.stats.ring_pending_max);
                b.reused_numbers(cap.enricher.reused.count);
                if !alerts.is_empty() {
                    // Syscall→alert latency: emission wall time − the triggering event's time.
                    let now = cap.enricher.wall(boottime_ns());
                    for a in &alerts {
                        b.alert(&a.rule.id, Some(now.saturating_sub(a.last_seen)));
                    }
                }
            }
            drop(batch);
            for a in alerts.drain(..) {
                sinks.send(a);
            }
            // The alerts are on their way: only now the ledger's share of the batch.
            if let Some(l) = ledger.as_mut() {
                l.observe_batch(&events);
            }
        }
        // Graceful stop: no more intake; the last windows' alerts, then the sinks deliver
        // what they hold (spools keep the rest for the next run).
        det.engine.finish(&mut alerts);
        for a in alerts.drain(..) {
            sinks.send(a);
        }
        // The ledger commits what it holds; what it still had for the sinks goes out.
        if let Some(l) = ledger.take() {
            for o in l.stop() {
                deliver(o, &sinks, &metrics);
            }
        }
        sinks.shutdown(settings.shutdown_timeout).await;
        tracing::info!(
            records = cap.source.stats.records,
            lost = cap.source.stats.lost,
            "stopped"
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
