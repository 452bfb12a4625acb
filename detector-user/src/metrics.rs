//! Prometheus metrics and the health endpoint of `detector run --metrics-addr ADDR`.
//!
//! The capture loop updates a [`Metrics`] (one lock per batch); an HTTP server (hyper) on the
//! same runtime serves `GET /metrics` (text exposition format, encoded by the `prometheus`
//! crate's [`TextEncoder`]) and `GET /health` (JSON: every program, its hook, attached or not;
//! `red` with status 503 when a program of an enabled group is not attached).
//!
//! Latencies are kept in hdrhistograms (ns, 3 significant digits) since the agent started and
//! exported as summaries (p50, p99, p999, in seconds).
//!
//! With the credential ledger, `GET /inventory` answers what `detector inventory` would, as a
//! JSON array of credential records, from the running agent's ledger (filters as query
//! parameters: `shared`, `unowned`, `non_owner`, `stale_copy`, `stale=DAYS`, `unused=DAYS`,
//! `identity=GLOB`, `credential=GLOB`, `category=NAME`, `gone`), and
//! `GET /inventory?show=PATH|ID` one credential's record.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use prometheus::{
    proto::{self, MetricFamily, MetricType},
    Encoder as _, TextEncoder,
};
use serde::{Deserialize, Serialize};

// The address syntax is the config's (it validates `run.metrics_addr`); re-exported for the
// flag and `detector status`.
pub(crate) use crate::config::{parse_listen_addr, ListenAddrError};
use crate::{
    ledger::{query::Filter, LedgerQuery, LedgerStats},
    sinks::SinkStats,
    sources::{loader::ProgramStatus, ringfill::RingFill},
};

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsError {
    /// The listen address is not `PORT`, `:PORT` or `HOST:PORT`.
    #[error(transparent)]
    Addr(#[from] ListenAddrError),
    /// Binding failed.
    #[error("metrics address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A latency histogram (ns) with an exact sum.
struct Latency {
    h: Histogram<u64>,
    sum_ns: u128,
}

impl Latency {
    fn new() -> Self {
        Self {
            // 1 ns … 1 h at 3 significant digits; larger values saturate.
            h: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            sum_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.h.saturating_record(ns.max(1));
        self.sum_ns += u128::from(ns);
    }
}

/// Everything the endpoint exports (updated by the capture loop).
struct State {
    events: BTreeMap<&'static str, u64>,
    alerts: BTreeMap<String, u64>,
    lost_per_cpu: Vec<u64>,
    decode_errors: u64,
    forced_wakeups: u64,
    reused_numbers: u64,
    rule_eval: Latency,
    syscall_to_alert: Latency,
    sinks: Vec<(String, Arc<SinkStats>)>,
    programs: Vec<ProgramHealth>,
    ring: Option<Arc<RingFill>>,
    ring_pending_max: u64,
    ledger: Option<(LedgerQuery, Arc<LedgerStats>)>,
}

/// One program in `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProgramHealth {
    /// Program name.
    pub(crate) program: String,
    /// Hook.
    pub(crate) hook: String,
    /// Hook group.
    pub(crate) group: String,
    /// Attached?
    pub(crate) attached: bool,
    /// Its group is enabled: the agent needs it.
    pub(crate) required: bool,
    /// Attached through a fallback hook (this kernel lacks the preferred one): which and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fallback: Option<String>,
    /// Why not attached (or what was passed over for the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// The `/health` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Health {
    /// `green` or `red` (a required program is not attached).
    pub(crate) status: String,
    /// Programs attached.
    pub(crate) attached: usize,
    /// Every program.
    pub(crate) programs: Vec<ProgramHealth>,
}

impl Health {
    /// Red?
    pub(crate) fn is_red(&self) -> bool {
        self.status != "green"
    }
}

/// The agent's metrics, shared by the capture loop and the endpoint.
#[derive(Clone)]
pub(crate) struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A locked view for one batch of updates.
pub(crate) struct Batch<'a>(MutexGuard<'a, State>);

impl Batch<'_> {
    /// One event of `kind`.
    pub(crate) fn event(&mut self, kind: &'static str) {
        *self.0.events.entry(kind).or_insert(0) += 1;
    }

    /// One rule evaluation (the engine's handling of one event) took `d`.
    pub(crate) fn rule_eval(&mut self, d: Duration) {
        self.0
            .rule_eval
            .record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// One alert of `rule` emitted; `latency_ns`: emission wall time − triggering event's
    /// `ts` (none for alerts no syscall triggered).
    pub(crate) fn alert(&mut self, rule: &str, latency_ns: Option<u64>) {
        match self.0.alerts.get_mut(rule) {
            Some(n) => *n += 1,
            None => {
                self.0.alerts.insert(rule.to_string(), 1);
            }
        }
        if let Some(l) = latency_ns {
            self.0.syscall_to_alert.record(l);
        }
    }

    /// Kernel losses: running totals per CPU; undecodable records; consumer wakeups the
    /// kernel forced.
    pub(crate) fn kernel(&mut self, lost_per_cpu: &[u64], decode_errors: u64, forced_wakeups: u64) {
        if self.0.lost_per_cpu.as_slice() != lost_per_cpu {
            self.0.lost_per_cpu = lost_per_cpu.to_vec();
        }
        self.0.decode_errors = decode_errors;
        self.0.forced_wakeups = forced_wakeups;
    }

    /// Kernel matches dropped because another file had taken the watched file's inode number.
    pub(crate) fn reused_numbers(&mut self, n: u64) {
        self.0.reused_numbers = n;
    }

    /// The largest ring-buffer backlog (bytes) a consumer wake-up found so far.
    pub(crate) fn ring_pending_max(&mut self, bytes: u64) {
        self.0.ring_pending_max = bytes;
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves counters, still worth serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Empty metrics.
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                events: BTreeMap::new(),
                alerts: BTreeMap::new(),
                lost_per_cpu: Vec::new(),
                decode_errors: 0,
                forced_wakeups: 0,
                reused_numbers: 0,
                rule_eval: Latency::new(),
                syscall_to_alert: Latency::new(),
                sinks: Vec::new(),
                programs: Vec::new(),
                ring: None,
                ring_pending_max: 0,
                ledger: None,
            })),
        }
    }

    /// Locks for a batch of updates.
    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch(lock(&self.state))
    }

    /// The programs and whether each is required (its group enabled).
    pub(crate) fn set_programs(
        &self,
        status: &[ProgramStatus],
        required: impl Fn(&ProgramStatus) -> bool,
    ) {
        lock(&self.state).programs = status
            .iter()
            .map(|s| ProgramHealth {
                program: s.program.clone(),
                hook: s.hook.clone(),
                group: serde_json::to_value(s.group)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", s.group).to_lowercase()),
                attached: s.attached,
                required: required(s),
                fallback: s.fallback.clone(),
                reason: s.reason.clone(),
            })
            .collect();
    }

    /// The ring buffer's positions (read at each scrape).
    pub(crate) fn set_ring(&self, ring: Arc<RingFill>) {
        lock(&self.state).ring = Some(ring);
    }

    /// The credential ledger: `/inventory` asks it, `/metrics` reads its counters.
    pub(crate) fn set_ledger(&self, q: LedgerQuery, stats: Arc<LedgerStats>) {
        lock(&self.state).ledger = Some((q, stats));
    }

    /// The sinks' counters (read at each scrape).
    pub(crate) fn set_sinks(&self, sinks: Vec<(String, Arc<SinkStats>)>) {
        lock(&self.state).sinks = sinks;
    }

    /// The health document.
    pub(crate) fn health(&self) -> Health {
        let st = lock(&self.state);
        let red = st.programs.iter().any(|p| p.required && !p.attached);
        Health {
            status: if red { "red" } else { "green" }.into(),
            attached: st.programs.iter().filter(|p| p.attached).count(),
            programs: st.programs.clone(),
        }
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let families = self.families();
        let mut out = Vec::new();
        // Writing into a Vec fails only on invalid families, which `families` never builds.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }

    fn families(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let st = lock(&self.state);
        let mut v = vec![
            family(
                "detector_events_total",
                "Enriched events by kind.",
                MetricType::COUNTER,
                st.events
                    .iter()
                    .map(|(k, n)| counter(&[("kind", k)], *n as f64))
                    .collect(),
            ),
            family(
                "detector_kernel_lost_total",
                "Records the kernel dropped (ring buffer full), by CPU.",
                MetricType::COUNTER,
                st.lost_per_cpu
                    .iter()
                    .enumerate()
                    .map(|(cpu, n)| counter(&[("cpu", &cpu.to_string())], *n as f64))
                    .collect(),
            ),
            family(
                "detector_ringbuf_pending_max_bytes",
                "Largest ring-buffer backlog a consumer wake-up found since start.",
                MetricType::GAUGE,
                vec![gauge(&[], st.ring_pending_max as f64)],
            ),
            family(
                "detector_ringbuf_forced_wakeups_total",
                "Consumer wakeups forced by the kernel: one each time a burst's pending bytes cross a multiple of --wakeup-bytes.",
                MetricType::COUNTER,
                vec![counter(&[], st.forced_wakeups as f64)],
            ),
            family(
                "detector_decode_errors_total",
                "Ring-buffer records that could not be decoded.",
                MetricType::COUNTER,
                vec![counter(&[], st.decode_errors as f64)],
            ),
            family(
                "detector_reused_inode_matches_total",
                "Credential matches dropped: the file opened had taken the inode number of a watched file deleted or replaced since, as its birth time shows.",
                MetricType::COUNTER,
                vec![counter(&[], st.reused_numbers as f64)],
            ),
            family(
                "detector_alerts_total",
                "Alerts emitted, by rule.",
                MetricType::COUNTER,
                st.alerts
                    .iter()
                    .map(|(r, n)| counter(&[("rule", r)], *n as f64))
                    .collect(),
            ),
            summary(
                "detector_rule_evaluation_seconds",
                "Time the engine spends on one event (all rules), since start.",
                &st.rule_eval,
            ),
            summary(
                "detector_syscall_to_alert_seconds",
                "Alert emission wall time minus the triggering event's timestamp, since start.",
                &st.syscall_to_alert,
            ),
        ];
        let sink = |name: &str, help: &str, t: MetricType, f: &dyn Fn(&SinkStats) -> u64| {
            family(
                name,
                help,
                t,
                st.sinks
                    .iter()
                    .map(|(n, s)| {
                        let val = f(s) as f64;
                        if t == MetricType::GAUGE {
                            gauge(&[("sink", n)], val)
                        } else {
                            counter(&[("sink", n)], val)
                        }
                    })
                    .collect(),
            )
        };
        v.push(sink(
            "detector_sink_queue_depth",
            "Alerts held by the sink (memory queue or spool).",
            MetricType::GAUGE,
            &|s| s.queued.load(Relaxed),
        ));
        v.push(sink(
            "detector_sink_queued_bytes",
            "Bytes held by the sink (the spool's bytes for a spooled sink).",
            MetricType::GAUGE,
            &|s| s.queued_bytes.load(Relaxed),
        ));
        v.push(sink(
            "detector_sink_retries_total",
            "Failed delivery attempts (each is retried).",
            MetricType::COUNTER,
            &|s| s.failures.load(Relaxed),
        ));
        v.push(sink(
            "detector_sink_delivered_total",
            "Alerts the destination accepted.",
            MetricType::COUNTER,
            &|s| s.delivered.load(Relaxed),
        ));
        v.push(sink(
            "detector_sink_dropped_total",
            "Alerts dropped (queue or spool full).",
            MetricType::COUNTER,
            &|s| s.dropped.load(Relaxed),
        ));
        v.push(family(
            "detector_program_attached",
            "1 when the kernel program is attached.",
            MetricType::GAUGE,
            st.programs
                .iter()
                .map(|p| {
                    gauge(
                        &[("program", &p.program), ("group", &p.group)],
                        f64::from(u8::from(p.attached)),
                    )
                })
                .collect(),
        ));
        v.push(family(
            "detector_program_fallback",
            "1 when the concern is covered through a fallback hook (this kernel lacks the preferred one).",
            MetricType::GAUGE,
            st.programs
                .iter()
                .filter(|p| p.attached)
                .map(|p| {
                    gauge(
                        &[("program", &p.program), ("hook", &p.hook)],
                        f64::from(u8::from(p.fallback.is_some())),
                    )
                })
                .collect(),
        ));
        v.push(family(
            "detector_coverage_lost",
            "Concerns of enabled hook groups that nothing covers on this kernel (each is logged and listed in /health).",
            MetricType::GAUGE,
            vec![gauge(
                &[],
                st.programs
                    .iter()
                    .filter(|p| p.required && !p.attached)
                    .count() as f64,
            )],
        ));
        if let Some(r) = &st.ring {
            let (pending, cap) = (r.pending(), r.capacity());
            v.push(family(
                "detector_ringbuf_pending_bytes",
                "Ring-buffer bytes produced by the kernel and not yet consumed, now.",
                MetricType::GAUGE,
                vec![gauge(&[], pending as f64)],
            ));
            v.push(family(
                "detector_ringbuf_capacity_bytes",
                "Ring-buffer data size.",
                MetricType::GAUGE,
                vec![gauge(&[], cap as f64)],
            ));
            v.push(family(
                "detector_ringbuf_fill_ratio",
                "Ring-buffer fill now: pending bytes / capacity.",
                MetricType::GAUGE,
                vec![gauge(&[], pending as f64 / cap.max(1) as f64)],
            ));
        }
        if let Some((_, l)) = &st.ledger {
            let c = |name: &str, help: &str, v: u64| {
                family(
                    name,
                    help,
                    MetricType::COUNTER,
                    vec![counter(&[], v as f64)],
                )
            };
            let g = |name: &str, help: &str, v: u64| {
                family(name, help, MetricType::GAUGE, vec![gauge(&[], v as f64)])
            };
            v.push(c(
                "detector_ledger_inputs_total",
                "Credential uses, writes and contacts the ledger applied.",
                l.inputs.load(Relaxed),
            ));
            v.push(c(
                "detector_ledger_dropped_total",
                "Ledger inputs dropped because its queue was full (announced in band).",
                l.dropped.load(Relaxed),
            ));
            v.push(c(
                "detector_ledger_batches_total",
                "Batches the ledger committed to its database.",
                l.batches.load(Relaxed),
            ));
            v.push(c(
                "detector_ledger_rows_written_total",
                "Rows the ledger wrote to its database.",
                l.rows.load(Relaxed),
            ));
            v.push(g(
                "detector_ledger_credentials",
                "Credentials in the ledger.",
                l.credentials.load(Relaxed),
            ));
            v.push(g(
                "detector_ledger_database_bytes",
                "Bytes the ledger's database uses (at its last housekeeping).",
                l.db_bytes.load(Relaxed),
            ));
            v.push(g(
                "detector_ledger_memory_only",
                "1 while the ledger cannot write its database and keeps everything in memory.",
                u64::from(l.memory_only.load(Relaxed)),
            ));
        }
        // The encoder rejects families without samples.
        v.retain(|f| !f.get_metric().is_empty());
        v
    }

    /// Serves `/metrics` and `/health` on `listener` until the runtime stops.
    pub(crate) fn serve(&self, listener: std::net::TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let me = me.clone();
                        async move {
                            let r = if req.uri().path() == "/inventory" {
                                me.inventory(req.uri().query().unwrap_or("")).await
                            } else {
                                me.respond(req.uri().path())
                            };
                            Ok::<_, Infallible>(r)
                        }
                    });
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!("metrics endpoint connection: {e}");
                    }
                });
            }
        });
        Ok(())
    }

    /// `/inventory`: the ledger's records (filtered), or one (`show=`).
    async fn inventory(&self, query: &str) -> Response<Full<Bytes>> {
        let ledger = lock(&self.state).ledger.as_ref().map(|(q, _)| q.clone());
        let Some(q) = ledger else {
            return reply(
                404,
                "text/plain",
                b"no credential ledger in this agent\n".to_vec(),
            );
        };
        let mut f = Filter::default();
        let mut show = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let days = || v.parse::<u64>().ok();
            match k.as_ref() {
                "shared" => f.shared = true,
                "unowned" => f.unowned = true,
                "non_owner" => f.non_owner = true,
                "stale_copy" => f.stale_copy = true,
                "gone" => f.include_gone = true,
                "stale" => f.stale_days = days(),
                "unused" => f.unused_days = days(),
                "identity" => f.identity = Some(crate::ledger::query::glob(&v)),
                "credential" => f.credential = Some(crate::ledger::query::glob(&v)),
                "category" => f.category = Some(v.into_owned()),
                "show" => show = Some(v.into_owned()),
                other => {
                    return reply(
                        400,
                        "text/plain",
                        format!("unknown parameter {other:?}\n").into_bytes(),
                    )
                }
            }
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            match show {
                Some(key) => q.show(key).await.map(|r| r.ok_or(())),
                None => q.list(f).await.map(Ok),
            }
        })
        .await;
        match answer {
            Ok(Some(Ok(body))) => reply(200, "application/json", body),
            Ok(Some(Err(()))) => reply(404, "text/plain", b"no such credential\n".to_vec()),
            _ => reply(503, "text/plain", b"the ledger did not answer\n".to_vec()),
        }
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, ctype, body) = match path {
            "/metrics" => (200, prometheus::TEXT_FORMAT, self.render()),
            "/health" => {
                let h = self.health();
                let status = if h.is_red() { 503 } else { 200 };
                let body = serde_json::to_vec_pretty(&h).unwrap_or_default();
                (status, "application/json", body)
            }
            _ => (
                404,
                "text/plain",
                b"not found: try /metrics, /health or /inventory\n".to_vec(),
            ),
        };
        reply(status, ctype, body)
    }
}

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Binds the endpoint's socket (before capabilities are dropped).
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, MetricsError> {
    std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })
}

fn family(name: &str, help: &str, t: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(t);
    f.set_metric(metrics);
    f
}

fn labels(l: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    l.iter()
        .map(|(k, v)| {
            let mut p = proto::LabelPair::default();
            p.set_name((*k).into());
            p.set_value((*v).into());
            p
        })
        .collect()
}

fn counter(l: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(v);
    let mut m = proto::Metric::default();
    m.set_label(labels(l));
    m.set_counter(c);
    m
}

fn gauge(l: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(v);
    let mut m = proto::Metric::default();
    m.set_label(labels(l));
    m.set_gauge(g);
    m
}

fn summary(name: &str, help: &str, lat: &Latency) -> MetricFamily {
    let mut s = proto::Summary::default();
    s.set_sample_count(lat.h.len());
    s.set_sample_sum(lat.sum_ns as f64 / 1e9);
    let qs = [0.5, 0.99, 0.999]
        .iter()
        .map(|&q| {
            let mut p = proto::Quantile::default();
            p.set_quantile(q);
            let v = if lat.h.is_empty() {
                f64::NAN
            } else {
                lat.h.value_at_quantile(q) as f64 / 1e9
            };
            p.set_value(v);
            p
        })
        .collect();
    s.set_quantile(qs);
    let mut m = proto::Metric::default();
    m.set_summary(s);
    family(name, help, MetricType::SUMMARY, vec![m])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_default_to_loopback() {
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(parse_listen_addr("9464").unwrap(), lo(9464));
        assert_eq!(parse_listen_addr(":9464").unwrap(), lo(9464));
        assert_eq!(
            parse_listen_addr("0.0.0.0:9464").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 9464))
        );
        assert_eq!(
            parse_listen_addr("[::1]:9464").unwrap().to_string(),
            "[::1]:9464"
        );
        assert!(parse_listen_addr("nonsense").is_err());
        assert!(parse_listen_addr("1.2.3.4:99999").is_err());
    }

    fn metrics_with_data() -> Metrics {
        let m = Metrics::new();
        let stats = Arc::new(SinkStats::default());
        stats.queued.store(7, std::sync::atomic::Ordering::Relaxed);
        stats
            .failures
            .store(3, std::sync::atomic::Ordering::Relaxed);
        m.set_sinks(vec![("spool-http".into(), stats)]);
        let mut b = m.batch();
        b.event("exec");
        b.event("exec");
        b.event("cred_open");
        for us in 1..=1000u64 {
            b.rule_eval(Duration::from_micros(us));
        }
        b.alert("ssh-key-then-ssh-fanout", Some(2_000_000));
        b.alert("ssh-key-then-ssh-fanout", Some(4_000_000));
        b.alert("detector-reload", None);
        b.kernel(&[0, 5], 1, 9);
        drop(b);
        m
    }

    #[test]
    fn render_is_the_text_exposition_format() {
        let text = String::from_utf8(metrics_with_data().render()).unwrap();
        for want in [
            "# TYPE detector_events_total counter",
            "detector_events_total{kind=\"exec\"} 2",
            "detector_events_total{kind=\"cred_open\"} 1",
            "detector_kernel_lost_total{cpu=\"1\"} 5",
            "detector_ringbuf_forced_wakeups_total 9",
            "detector_alerts_total{rule=\"ssh-key-then-ssh-fanout\"} 2",
            "detector_alerts_total{rule=\"detector-reload\"} 1",
            "# TYPE detector_rule_evaluation_seconds summary",
            "detector_rule_evaluation_seconds_count 1000",
            "detector_syscall_to_alert_seconds_count 2",
            "detector_syscall_to_alert_seconds_sum 0.006",
            "detector_sink_queue_depth{sink=\"spool-http\"} 7",
            "detector_sink_retries_total{sink=\"spool-http\"} 3",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        let q = |name: &str, q: &str| -> f64 {
            let prefix = format!("{name}{{quantile=\"{q}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("{prefix} missing"))
                .parse()
                .unwrap()
        };
        // 1..=1000 µs: p50 ≈ 500 µs, p99 ≈ 990 µs, p999 ≈ 999 µs (3 significant digits).
        assert!((q("detector_rule_evaluation_seconds", "0.5") - 500e-6).abs() < 1e-6);
        assert!((q("detector_rule_evaluation_seconds", "0.99") - 990e-6).abs() < 1e-6);
        assert!((q("detector_rule_evaluation_seconds", "0.999") - 999e-6).abs() < 1e-6);
        assert!((q("detector_syscall_to_alert_seconds", "0.99") - 4e-3).abs() < 1e-5);
    }

    fn status(attached: &[bool]) -> Vec<ProgramStatus> {
        attached
            .iter()
            .enumerate()
            .map(|(i, &a)| ProgramStatus {
                program: format!("p{i}"),
                hook: format!("tracepoint/x/p{i}"),
                group: if i == 0 {
                    crate::sources::loader::Group::Reads
                } else {
                    crate::sources::loader::Group::Process
                },
                attached: a,
                fallback: None,
                reason: (!a).then(|| "no".to_string()),
                covers: String::new(),
            })
            .collect()
    }

    #[test]
    fn health_is_red_only_when_a_required_program_is_missing() {
        let m = Metrics::new();
        m.set_programs(&status(&[true, true]), |_| true);
        assert!(!m.health().is_red());
        // Not attached, but its group is disabled: not required.
        m.set_programs(&status(&[false, true]), |s| {
            s.group != crate::sources::loader::Group::Reads
        });
        let h = m.health();
        assert_eq!(h.status, "green");
        assert_eq!(h.attached, 1);
        assert_eq!(h.programs[0].group, "reads");
        m.set_programs(&status(&[true, false]), |_| true);
        assert!(m.health().is_red());
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_health_over_http() {
        let m = metrics_with_data();
        m.set_programs(&status(&[true, false]), |_| true);
        let l = bind(parse_listen_addr("127.0.0.1:0").unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        m.serve(l).unwrap();
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = r.text().await.unwrap();
        assert!(
            text.contains("detector_events_total{kind=\"exec\"} 2"),
            "{text}"
        );
        let r = c.get(format!("http://{addr}/health")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let h: Health = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(h.is_red());
        assert_eq!(h.programs.len(), 2);
        assert!(!h.programs[1].attached);
        let r = c.get(format!("http://{addr}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
}
