//! The agent config file (`detector run --config FILE`): where alerts go (`sinks:`) and the
//! run options. YAML through the bounded front-end of [`crate::input`], unknown and duplicate
//! keys rejected, values parsed into typed values with ranges (the `*_RANGE` constants); every
//! error, semantic ones and missing files included, names `file:line:col`.
//!
//! Documented by `docs/config.example.yaml` (loaded by a test, so it cannot rot).

pub(crate) mod material;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, ToSocketAddrs as _},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};

use crate::input::{
    self,
    value::{self, show},
    yaml::{Node, Value},
    PosError,
};

/// A config that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the cause is part of the message, printed once).
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Anything wrong in the file, at its position: bytes (size, UTF-8, NUL), syntax, limits,
    /// unknown or duplicate keys, types, ranges, cross-key rules, files it names.
    #[error("{0}")]
    Invalid(PosError),
}

/// A listen address (`run.metrics_addr`, `--metrics-addr`) that is not `PORT`, `:PORT` or
/// `HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("metrics address {addr:?}: {msg}")]
pub(crate) struct ListenAddrError {
    /// What was given.
    pub(crate) addr: String,
    /// Why it is not usable.
    pub(crate) msg: String,
}

/// Parses a listen address: `PORT` or `:PORT` mean loopback (127.0.0.1); otherwise
/// `HOST:PORT` (`[::1]:PORT` for IPv6), a host name resolved once.
pub(crate) fn parse_listen_addr(s: &str) -> Result<SocketAddr, ListenAddrError> {
    let err = |msg: String| ListenAddrError {
        addr: s.to_string(),
        msg,
    };
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    t.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("resolves to no address".into()))
}

/// Facility code for a syslog facility name (`syslog.facility`).
pub(crate) fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// `retry.initial` and `retry.max`: a floor so that an unreachable receiver is not hammered
/// (a 1 ns delay made 262,144 attempts for one alert), a ceiling so that a retry is not
/// postponed for ever.
pub(crate) const RETRY_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));
/// `http.timeout`: a request needs time to be answered (with 0 s every attempt failed after
/// the receiver had taken the batch, which it then got again and again).
pub(crate) const HTTP_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// `run.shutdown_timeout`.
pub(crate) const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::ZERO, Duration::from_secs(3600));
/// `file.max_bytes` and `spool.max_bytes`: the spool never goes below 4 KiB; 1 TiB above.
pub(crate) const MAX_BYTES_RANGE: (u64, u64) = (4096, 1 << 40);
/// `file.max_files` (0 would delete alerts at each rotation).
pub(crate) const MAX_FILES_RANGE: (u32, u32) = (1, 1000);
/// `batch.max_alerts`.
pub(crate) const BATCH_RANGE: (usize, usize) = (1, 10_000);

const DAY: u64 = 86_400;
/// `ledger.flush_interval`: a commit at least this often (and at most: not a busy loop).
pub(crate) const LEDGER_FLUSH_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(600));
/// `ledger.reach_window`: how long after a use a connection counts as what the credential
/// opened.
pub(crate) const REACH_WINDOW_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
/// `ledger.retention.max_age`.
pub(crate) const RETENTION_RANGE: (Duration, Duration) =
    (Duration::from_secs(DAY), Duration::from_secs(3650 * DAY));
/// `ledger.rotation.default` and per-category rotation policies.
pub(crate) const ROTATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(DAY), Duration::from_secs(3650 * DAY));
/// `ledger.findings.repeat_after`: a finding is alerted again at most this often.
pub(crate) const REPEAT_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(365 * DAY));
/// `ledger.findings.unused_after`: a credential no workload used for this long is a
/// retirement candidate.
pub(crate) const UNUSED_AFTER_RANGE: (Duration, Duration) =
    (Duration::from_secs(DAY), Duration::from_secs(3650 * DAY));
/// `ledger.export.interval`.
pub(crate) const EXPORT_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(30 * DAY));

/// The whole agent config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where alerts go; empty means stdout NDJSON.
    // `- http: {…}` rather than YAML tags (`- !http {…}`), which few people know.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Run options (command-line flags override them).
    #[serde(default)]
    pub(crate) run: RunConfig,
    /// The credential ledger.
    #[serde(default)]
    pub(crate) ledger: LedgerConfig,
}

/// The credential ledger (`ledger:`): where it lives, how it batches, retention, rotation
/// policy, findings, export to the sinks. See docs/ledger.md.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Keep the ledger at all (`--no-ledger` turns it off).
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// The database file [default: `<state_dir>/ledger.db`].
    #[serde(default)]
    pub(crate) path: Option<PathBuf>,
    /// A batch is committed at least this often while inputs arrive: what a crash can lose.
    #[serde(default = "default_flush_interval", deserialize_with = "ledger_flush")]
    pub(crate) flush_interval: Duration,
    /// … or as soon as this many inputs have been applied.
    #[serde(default = "default_batch_inputs")]
    pub(crate) batch_inputs: usize,
    /// Inputs waiting for the ledger's thread at most; more are counted and announced.
    #[serde(default = "default_queue")]
    pub(crate) queue: usize,
    /// Connections by the same identity and process tree this long after a use are what the
    /// credential reaches.
    #[serde(default = "default_reach_window", deserialize_with = "reach_window")]
    pub(crate) reach_window: Duration,
    /// How long and how much detail is kept.
    #[serde(default)]
    pub(crate) retention: RetentionConfig,
    /// Rotation policy.
    #[serde(default)]
    pub(crate) rotation: RotationConfig,
    /// Findings raised as alerts.
    #[serde(default)]
    pub(crate) findings: FindingsConfig,
    /// Inventory records to the sinks.
    #[serde(default)]
    pub(crate) export: ExportConfig,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            flush_interval: default_flush_interval(),
            batch_inputs: default_batch_inputs(),
            queue: default_queue(),
            reach_window: default_reach_window(),
            retention: RetentionConfig::default(),
            rotation: RotationConfig::default(),
            findings: FindingsConfig::default(),
            export: ExportConfig::default(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_batch_inputs() -> usize {
    4096
}
fn default_queue() -> usize {
    65_536
}
fn default_reach_window() -> Duration {
    Duration::from_secs(10)
}

/// Ledger retention: detail older than `max_age` is dropped, and the oldest detail when the
/// file grows past `max_bytes`; counts are kept on the credential.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionConfig {
    /// Detail (uses, reach, rotations, credentials gone from the host) older than this goes.
    #[serde(default = "default_max_age", deserialize_with = "retention_age")]
    pub(crate) max_age: Duration,
    /// Largest database size in bytes.
    #[serde(default = "default_ledger_bytes")]
    pub(crate) max_bytes: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: default_ledger_bytes(),
        }
    }
}

fn default_max_age() -> Duration {
    Duration::from_secs(180 * 86_400)
}
fn default_ledger_bytes() -> u64 {
    256 << 20
}

/// Rotation policy: a credential in use while older than this raises a finding.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationConfig {
    /// For every category not listed.
    #[serde(default = "default_rotation", deserialize_with = "rotation")]
    pub(crate) default: Duration,
    /// Per category (`ssh_key: 365d`, `k8s_token: 2d`).
    #[serde(default, deserialize_with = "duration_map")]
    pub(crate) categories: BTreeMap<String, Duration>,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            default: default_rotation(),
            categories: BTreeMap::new(),
        }
    }
}

fn default_rotation() -> Duration {
    Duration::from_secs(90 * 86_400)
}

/// The ledger's findings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindingsConfig {
    /// Raise them at all.
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// A finding already alerted is alerted again only after this long.
    #[serde(default = "default_repeat_after", deserialize_with = "repeat_after")]
    pub(crate) repeat_after: Duration,
    /// No use for this long: a retirement candidate.
    #[serde(default = "default_unused_after", deserialize_with = "unused_after")]
    pub(crate) unused_after: Duration,
    /// Executables whose reads are never a non-owner's (daemons that read credentials on
    /// others' behalf).
    #[serde(default = "default_exempt_exe")]
    pub(crate) exempt_exe: Vec<String>,
}

impl Default for FindingsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            repeat_after: default_repeat_after(),
            unused_after: default_unused_after(),
            exempt_exe: default_exempt_exe(),
        }
    }
}

fn default_repeat_after() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_unused_after() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_exempt_exe() -> Vec<String> {
    [
        "/usr/sbin/sshd",
        "/usr/bin/kubelet",
        "/usr/local/bin/kubelet",
    ]
    .map(String::from)
    .to_vec()
}

/// Inventory export to the sinks.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportConfig {
    /// Every this long (the first export after at most 5 minutes); `0s`: never.
    #[serde(
        default = "default_export_interval",
        deserialize_with = "export_interval"
    )]
    pub(crate) interval: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            interval: default_export_interval(),
        }
    }
}

fn default_export_interval() -> Duration {
    Duration::from_secs(86_400)
}

/// Run options that can live in the config file; a flag given on the command line wins.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunConfig {
    /// Where the agent keeps its state (fingerprint key).
    #[serde(default)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Extra rule files or directories.
    #[serde(default)]
    pub(crate) rules: Vec<PathBuf>,
    /// Identities file.
    #[serde(default)]
    pub(crate) identities: Option<PathBuf>,
    /// Watch list file.
    #[serde(default)]
    pub(crate) watch_list: Option<PathBuf>,
    /// How long shutdown waits for sinks to deliver what they hold (spools keep the rest).
    #[serde(default, deserialize_with = "shutdown_timeout")]
    pub(crate) shutdown_timeout: Option<Duration>,
    /// Prometheus metrics and `/health` listen address (`PORT` or `:PORT` = loopback,
    /// `HOST:PORT`); none: no endpoint.
    #[serde(default, deserialize_with = "opt_listen_addr")]
    pub(crate) metrics_addr: Option<String>,
}

/// One sink. Externally tagged (`- http: {...}`) so that each kind accepts only its own keys
/// and errors keep their positions.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkConfig {
    /// NDJSON on standard output.
    Stdout(StdoutConfig),
    /// NDJSON file with size-based rotation.
    File(FileConfig),
    /// RFC 5424 syslog over a unix socket, UDP or TCP.
    Syslog(SyslogConfig),
    /// HTTP(S) batch POST (generic JSON, Splunk HEC, Elastic `_bulk`).
    Http(HttpConfig),
}

impl SinkConfig {
    /// The sink's name (for logs and spool directories).
    pub(crate) fn name(&self) -> &str {
        match self {
            SinkConfig::Stdout(c) => c.name.as_deref().unwrap_or("stdout"),
            SinkConfig::File(c) => c.name.as_deref().unwrap_or("file"),
            SinkConfig::Syslog(c) => c.name.as_deref().unwrap_or("syslog"),
            SinkConfig::Http(c) => c.name.as_deref().unwrap_or("http"),
        }
    }
}

/// Output format of a sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The alert as is (docs/alert.schema.json).
    #[default]
    Native,
    /// OCSF 1.x Detection Finding (class 2004).
    Ocsf,
}

/// `stdout` sink.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Format.
    #[serde(default)]
    pub(crate) format: Format,
}

/// `file` sink.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Format.
    #[serde(default)]
    pub(crate) format: Format,
    /// The file (created 0600).
    pub(crate) path: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    #[serde(default = "default_file_max_bytes", deserialize_with = "max_bytes")]
    pub(crate) max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    #[serde(default = "default_max_files", deserialize_with = "max_files")]
    pub(crate) max_files: u32,
    /// On-disk spool (absent: a bounded in-memory queue), for a file on a disk that can fill
    /// up or a mount that can go away.
    #[serde(default)]
    pub(crate) spool: Option<SpoolConfig>,
}

fn default_file_max_bytes() -> u64 {
    64 << 20
}
fn default_max_files() -> u32 {
    5
}

/// Syslog transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SyslogTransport {
    /// Unix datagram socket (`socket`).
    Unix,
    /// UDP datagrams (`address`).
    Udp,
    /// TCP with octet-counting framing (RFC 6587 3.4.1) (`address`).
    Tcp,
}

/// `syslog` sink.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Format of the MSG part.
    #[serde(default)]
    pub(crate) format: Format,
    /// Transport.
    pub(crate) transport: SyslogTransport,
    /// `host:port` for UDP and TCP.
    #[serde(default, deserialize_with = "opt_host_port")]
    pub(crate) address: Option<String>,
    /// Socket path for `unix` (default `/dev/log`).
    #[serde(default)]
    pub(crate) socket: Option<PathBuf>,
    /// Facility name (`auth`, `authpriv`, `daemon`, `local0` … `local7`).
    #[serde(default = "default_facility", deserialize_with = "facility")]
    pub(crate) facility: String,
    /// APP-NAME.
    #[serde(default = "default_app_name")]
    pub(crate) app_name: String,
    /// Alerts per delivery.
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub(crate) retry: RetryConfig,
    /// On-disk spool (absent: a bounded in-memory queue).
    #[serde(default)]
    pub(crate) spool: Option<SpoolConfig>,
}

fn default_facility() -> String {
    "authpriv".into()
}
fn default_app_name() -> String {
    "detector".into()
}

/// HTTP flavour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HttpFlavor {
    /// A JSON array of documents per POST; `Authorization: Bearer <token>`.
    #[default]
    Generic,
    /// Splunk HTTP Event Collector; `Authorization: Splunk <token>`.
    SplunkHec,
    /// Elastic `_bulk` (create with `_id` = alert id); `Authorization: ApiKey <token>`.
    Elastic,
}

/// `http` sink.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Format of each document.
    #[serde(default)]
    pub(crate) format: Format,
    /// Endpoint (`https://…` or `http://…`), e.g. `…/services/collector/event` or `…/_bulk`.
    #[serde(deserialize_with = "http_url")]
    pub(crate) url: String,
    /// Flavour.
    #[serde(default)]
    pub(crate) flavor: HttpFlavor,
    /// Elastic index.
    #[serde(default)]
    pub(crate) index: Option<String>,
    /// File holding the auth token (never on the command line, never logged).
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    /// TLS options.
    #[serde(default)]
    pub(crate) tls: TlsConfig,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "http_timeout")]
    pub(crate) timeout: Duration,
    /// Alerts per request.
    #[serde(default)]
    pub(crate) batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub(crate) retry: RetryConfig,
    /// On-disk spool (absent: a bounded in-memory queue).
    #[serde(default)]
    pub(crate) spool: Option<SpoolConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// TLS options. Certificates are always verified.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// Extra CA certificates (PEM) trusted besides the system's.
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), with `client_key`.
    #[serde(default)]
    pub(crate) client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[serde(default)]
    pub(crate) client_key: Option<PathBuf>,
}

/// Batching.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchConfig {
    /// Most alerts per delivery.
    #[serde(default = "default_batch", deserialize_with = "batch")]
    pub(crate) max_alerts: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_alerts: default_batch(),
        }
    }
}

fn default_batch() -> usize {
    100
}

/// Retries: exponential backoff with jitter, for ever (at-least-once); the spool bounds what
/// waits.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryConfig {
    /// First delay.
    #[serde(default = "default_initial", deserialize_with = "retry_delay")]
    pub(crate) initial: Duration,
    /// Largest delay.
    #[serde(default = "default_max_delay", deserialize_with = "retry_delay")]
    pub(crate) max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max_delay(),
        }
    }
}

fn default_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(30)
}

/// What a full spool does with one more alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OverflowPolicy {
    /// Drop the oldest spooled alerts to make room.
    #[default]
    DropOldest,
    /// Drop the incoming alert.
    DropNewest,
}

/// When spool appends reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FsyncPolicy {
    /// After every group of appends (each wake-up of the sink's task).
    #[default]
    Always,
    /// At most once a second.
    Interval,
    /// Leave it to the kernel.
    Never,
}

/// Per-sink on-disk spool.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpoolConfig {
    /// Directory (the sink's spool lives in `<dir>/<sink name>/`, 0700, files 0600).
    pub(crate) dir: PathBuf,
    /// Largest spool size in bytes.
    #[serde(default = "default_spool_bytes", deserialize_with = "max_bytes")]
    pub(crate) max_bytes: u64,
    /// Full-spool policy.
    #[serde(default)]
    pub(crate) on_full: OverflowPolicy,
    /// Fsync policy.
    #[serde(default)]
    pub(crate) fsync: FsyncPolicy,
}

fn default_spool_bytes() -> u64 {
    256 << 20
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d)
}

fn duration_in<'de, D: Deserializer<'de>>(
    d: D,
    (min, max): (Duration, Duration),
) -> Result<Duration, D::Error> {
    value::duration_in(&string(d)?, min, max).map_err(serde::de::Error::custom)
}

fn retry_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, RETRY_RANGE)
}

fn http_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, HTTP_TIMEOUT_RANGE)
}

fn shutdown_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration_in(d, SHUTDOWN_TIMEOUT_RANGE).map(Some)
}

fn max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let (min, max) = MAX_BYTES_RANGE;
    value::int_in(u64::deserialize(d)?, min, max).map_err(serde::de::Error::custom)
}

fn max_files<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let (min, max) = MAX_FILES_RANGE;
    value::int_in(u32::deserialize(d)?, min, max).map_err(serde::de::Error::custom)
}

fn batch<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let (min, max) = BATCH_RANGE;
    value::int_in(usize::deserialize(d)?, min, max).map_err(serde::de::Error::custom)
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = string(d)?;
    value::http_url(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn opt_host_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = string(d)?;
    value::host_port(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

fn facility<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = string(d)?;
    facility_code(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown facility {} (kern, user, daemon, auth, syslog, authpriv, local0 … local7)",
            input::excerpt(&s)
        ))
    })?;
    Ok(s)
}

fn ledger_flush<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, LEDGER_FLUSH_RANGE)
}

fn reach_window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, REACH_WINDOW_RANGE)
}

fn retention_age<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, RETENTION_RANGE)
}

fn rotation<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, ROTATION_RANGE)
}

fn repeat_after<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, REPEAT_AFTER_RANGE)
}

fn unused_after<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, UNUSED_AFTER_RANGE)
}

fn export_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, EXPORT_INTERVAL_RANGE)
}

/// Per-category rotation policies: each value in [`ROTATION_RANGE`].
fn duration_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
    let (min, max) = ROTATION_RANGE;
    let m = BTreeMap::<String, String>::deserialize(d)?;
    m.into_iter()
        .map(|(k, v)| {
            value::duration_in(&v, min, max)
                .map(|d| (k.clone(), d))
                .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
        })
        .collect()
}

/// A listen address: a bare port (YAML integer) or a string, checked here so that a bad one
/// is reported with its position.
fn opt_listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum PortOrAddr {
        Port(u16),
        Addr(String),
    }
    let s = match PortOrAddr::deserialize(d)? {
        PortOrAddr::Port(p) => p.to_string(),
        PortOrAddr::Addr(s) => s,
    };
    parse_listen_addr(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

/// The node at `path` under `root` (keys of mappings, indices of sequences; a sink's kind is
/// looked through), or the deepest one that exists: where a semantic error is reported.
fn node_at<'a>(root: &'a Node, path: &[Key<'_>]) -> &'a Node {
    let mut n = root;
    for k in path {
        let next = match (k, &n.value) {
            (Key::Name(name), Value::Map(m)) => m
                .iter()
                .find(|(kn, _)| kn.as_str().is_ok_and(|s| s == *name))
                .map(|(_, v)| v),
            (Key::Index(i), Value::Seq(items)) => items.get(*i),
            // `- http: {…}`: the one entry's value.
            (Key::Kind, Value::Map(m)) if m.len() == 1 => Some(&m[0].1),
            _ => None,
        };
        match next {
            Some(x) => n = x,
            None => break,
        }
    }
    n
}

/// One step of a path into the config tree.
#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a str),
    Index(usize),
    /// The value of a one-key mapping (a sink under its kind).
    Kind,
}

use Key::{Index as I, Kind as K, Name as N};

impl AgentConfig {
    /// Reads and validates a config file, files it names included (token, CA, rule paths…):
    /// what start-up and every SIGHUP reload run before anything else happens.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = Self::read_text(path)?;
        Self::parse_inner(&text, path, true)
    }

    /// Reads and validates a config file without looking at the files it names (for a reader
    /// of a few run options, `detector status`).
    pub(crate) fn read(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = Self::read_text(path)?;
        Self::parse_inner(&text, path, false)
    }

    fn read_text(path: &Path) -> Result<String, ConfigError> {
        input::read_source(path, &input::CONFIG).map_err(|e| match e {
            input::SourceError::Io { error, .. } => ConfigError::Read {
                path: path.to_path_buf(),
                error,
            },
            input::SourceError::Invalid(e) => ConfigError::Invalid(e),
        })
    }

    /// Parses and validates config text (not the files it names); `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        Self::parse_inner(text, path, false)
    }

    fn parse_inner(text: &str, path: &Path, files: bool) -> Result<AgentConfig, ConfigError> {
        let name = path.display().to_string();
        let docs =
            input::yaml::parse_with(&name, text, &input::CONFIG).map_err(ConfigError::Invalid)?;
        if let Some(extra) = docs.get(1) {
            return Err(ConfigError::Invalid(PosError::new(
                &extra.pos,
                "a second YAML document: the config is one document",
            )));
        }
        // An empty file is an empty config, not an error.
        let Some(root) = docs.first().filter(|r| r.value != Value::Null) else {
            return Ok(AgentConfig::default());
        };
        let cfg: AgentConfig = input::de::from_node(root).map_err(ConfigError::Invalid)?;
        cfg.validate(root).map_err(ConfigError::Invalid)?;
        if files {
            cfg.check_files(root).map_err(ConfigError::Invalid)?;
        }
        Ok(cfg)
    }

    /// What spans several keys: names, required companions, orders between values.
    fn validate(&self, root: &Node) -> Result<(), PosError> {
        let mut names = std::collections::BTreeMap::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let at = |p: &[Key<'_>]| {
                let mut full = vec![N("sinks"), I(i), K];
                full.extend_from_slice(p);
                node_at(root, &full)
            };
            let bad = |p: &[Key<'_>], msg: String| {
                PosError::new(&at(p).pos, format!("sinks[{i}]: {msg}"))
            };
            let name = s.name();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(
                    &[N("name")],
                    format!(
                        "name {} must be 1 to 64 letters, digits, '-' or '_'",
                        input::excerpt(name)
                    ),
                ));
            }
            if let Some(first) = names.insert(name.to_string(), i) {
                return Err(bad(
                    &[N("name")],
                    format!(
                        "sinks[{first}] is also named {}; give each a distinct `name`",
                        input::excerpt(name)
                    ),
                ));
            }
            let retry = |r: &RetryConfig| {
                if r.max < r.initial {
                    return Err(bad(
                        &[N("retry"), N("max")],
                        format!(
                            "retry.max ({}) is below retry.initial ({})",
                            show(r.max),
                            show(r.initial)
                        ),
                    ));
                }
                Ok(())
            };
            match s {
                SinkConfig::Syslog(c) => {
                    match (c.transport, &c.address, &c.socket) {
                        (SyslogTransport::Unix, Some(_), _) => {
                            return Err(bad(
                                &[N("address")],
                                "`address` is for udp and tcp; unix takes `socket`".into(),
                            ))
                        }
                        (SyslogTransport::Udp | SyslogTransport::Tcp, None, _) => {
                            return Err(bad(
                                &[N("transport")],
                                format!("syslog over {:?} needs `address: host:port`", c.transport),
                            ))
                        }
                        (SyslogTransport::Udp | SyslogTransport::Tcp, _, Some(_)) => {
                            return Err(bad(
                                &[N("socket")],
                                "`socket` is for transport unix; udp and tcp take `address`".into(),
                            ))
                        }
                        _ => {}
                    }
                    if c.socket.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                        return Err(bad(&[N("socket")], "`socket` is empty".into()));
                    }
                    retry(&c.retry)?;
                }
                SinkConfig::Http(c) => {
                    if c.tls.client_cert.is_some() != c.tls.client_key.is_some() {
                        return Err(bad(
                            &[N("tls")],
                            "tls.client_cert and tls.client_key go together".into(),
                        ));
                    }
                    if c.index.is_some() && c.flavor != HttpFlavor::Elastic {
                        return Err(bad(&[N("index")], "`index` is for flavor elastic".into()));
                    }
                    retry(&c.retry)?;
                }
                SinkConfig::File(_) | SinkConfig::Stdout(_) => {}
            }
        }
        // The ledger's durations are ranged where they are read; these are the counts.
        let l = &self.ledger;
        let at = |p: &[Key<'_>]| {
            let mut full = vec![N("ledger")];
            full.extend_from_slice(p);
            node_at(root, &full).pos.clone()
        };
        for (key, v) in [("batch_inputs", l.batch_inputs), ("queue", l.queue)] {
            if v == 0 {
                return Err(PosError::new(
                    &at(&[N(key)]),
                    format!("ledger.{key} must be > 0"),
                ));
            }
        }
        if l.retention.max_bytes < 1 << 20 {
            return Err(PosError::new(
                &at(&[N("retention"), N("max_bytes")]),
                "ledger.retention.max_bytes must be at least 1 MiB",
            ));
        }
        Ok(())
    }

    /// The files and directories the config names, checked now rather than after the
    /// programs are attached and privileges dropped: each problem at its key's position.
    fn check_files(&self, root: &Node) -> Result<(), PosError> {
        for (i, s) in self.sinks.iter().enumerate() {
            let bad = |p: &[Key<'_>], msg: String| {
                let mut full = vec![N("sinks"), I(i), K];
                full.extend_from_slice(p);
                PosError::new(
                    &node_at(root, &full).pos,
                    format!("sinks[{i}] ({}): {msg}", s.name()),
                )
            };
            let spool = match s {
                SinkConfig::File(c) => {
                    writable_file(&c.path).map_err(|m| bad(&[N("path")], m))?;
                    &c.spool
                }
                SinkConfig::Http(c) => {
                    material::check(c).map_err(|(key, m)| {
                        let keys: Vec<Key<'_>> = key.split('.').map(N).collect();
                        bad(&keys, m)
                    })?;
                    &c.spool
                }
                SinkConfig::Syslog(c) => &c.spool,
                SinkConfig::Stdout(_) => &None,
            };
            if let Some(sp) = spool {
                creatable_dir(&sp.dir).map_err(|m| bad(&[N("spool"), N("dir")], m))?;
            }
        }
        let run = |p: &[Key<'_>]| {
            let mut full = vec![N("run")];
            full.extend_from_slice(p);
            node_at(root, &full)
        };
        for (i, r) in self.run.rules.iter().enumerate() {
            std::fs::metadata(r).map_err(|e| {
                PosError::new(
                    &run(&[N("rules"), I(i)]).pos,
                    format!("run.rules[{i}]: {}: {e}", r.display()),
                )
            })?;
        }
        for (key, p) in [
            ("identities", &self.run.identities),
            ("watch_list", &self.run.watch_list),
        ] {
            if let Some(p) = p {
                readable_file(p)
                    .map_err(|m| PosError::new(&run(&[N(key)]).pos, format!("run.{key}: {m}")))?;
            }
        }
        if let Some(d) = &self.run.state_dir {
            creatable_dir(d).map_err(|m| {
                PosError::new(&run(&[N("state_dir")]).pos, format!("run.state_dir: {m}"))
            })?;
        }
        Ok(())
    }
}

/// A regular file that can be opened for reading.
fn readable_file(p: &Path) -> Result<(), String> {
    let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    match f.metadata() {
        Ok(m) if m.is_dir() => Err(format!("{}: is a directory", p.display())),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// A file the agent can create or append to: not empty, not a directory, and its parent a
/// directory or creatable as one (the file sink creates missing parents).
fn writable_file(p: &Path) -> Result<(), String> {
    if p.as_os_str().is_empty() {
        return Err("`path` is empty".into());
    }
    if p.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(format!("{}: names a directory, not a file", p.display()));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => return Err(format!("{}: is a directory", p.display())),
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", p.display()))
        }
        Err(_) => {}
    }
    match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => creatable_dir(d),
        None => Ok(()),
    }
}

/// A directory that exists, or whose nearest existing ancestor is a directory (so that
/// `create_dir_all` can make it).
fn creatable_dir(d: &Path) -> Result<(), String> {
    if d.as_os_str().is_empty() {
        return Err("the directory is empty".into());
    }
    let mut cur = Some(d);
    while let Some(c) = cur.filter(|c| !c.as_os_str().is_empty()) {
        match std::fs::metadata(c) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "{}: {} is not a directory",
                    d.display(),
                    c.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cur = c.parent(),
            Err(e) => return Err(format!("{}: {}: {e}", d.display(), c.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(s, Path::new("agent.yaml"))
    }

    #[test]
    fn example_config_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.example.yaml");
        // `read`: the example names files (token, CA) this machine does not have.
        let c = AgentConfig::read(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.sinks.len() >= 4, "the example shows every sink kind");
        let kinds: Vec<&str> = c.sinks.iter().map(|s| s.name()).collect();
        assert!(kinds.contains(&"stdout"), "{kinds:?}");
        // The ledger section shows the defaults, and one category's policy.
        let mut l = c.ledger.clone();
        assert_eq!(
            l.rotation.categories.remove("k8s_token"),
            Some(Duration::from_secs(2 * 86_400))
        );
        assert_eq!(l, LedgerConfig::default());
    }

    #[test]
    fn metrics_addr_is_a_port_or_an_address() {
        let a = |s: &str| parse(s).map(|c| c.run.metrics_addr);
        assert_eq!(
            a("run:\n  metrics_addr: 9464\n").unwrap().as_deref(),
            Some("9464")
        );
        assert_eq!(
            a("run:\n  metrics_addr: \"0.0.0.0:9464\"\n")
                .unwrap()
                .as_deref(),
            Some("0.0.0.0:9464")
        );
        assert_eq!(a("run: {}\n").unwrap(), None);
        let e = a("run:\n  metrics_addr: \"no such host\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.yaml:2:"), "{e}");
    }

    #[test]
    fn empty_config_is_default() {
        assert_eq!(parse("").unwrap(), AgentConfig::default());
        assert_eq!(parse("sinks: []\n").unwrap().sinks, vec![]);
    }

    #[test]
    fn unknown_key_names_file_line_col() {
        let e = parse("sinks:\n  - file:\n      path: /x\n      colour: red\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("agent.yaml:4:7: "), "{s}");
        assert!(s.contains("unknown field `colour`"), "{s}");
    }

    #[test]
    fn unknown_sink_kind_and_bad_values_are_positioned() {
        let s = parse("sinks:\n  - kafka: {}\n").unwrap_err().to_string();
        assert!(s.starts_with("agent.yaml:2:"), "{s}");
        assert!(s.contains("kafka"), "{s}");
        let s = parse("sinks:\n  - http:\n      url: http://x\n      timeout: soon\n")
            .unwrap_err()
            .to_string();
        // Values checked by our own deserializers are positioned at the value.
        assert!(s.starts_with("agent.yaml:4:16: bad duration `soon`"), "{s}");
        let s = parse("run:\n  statedir: /x\n").unwrap_err().to_string();
        assert!(s.starts_with("agent.yaml:2:3: "), "{s}");
        let s = parse("sinks: [\n").unwrap_err().to_string();
        assert!(s.starts_with("agent.yaml:"), "{s}");
    }

    #[test]
    fn semantic_errors() {
        let s = parse("sinks:\n  - syslog: {transport: tcp}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("needs `address"), "{s}");
        let s = parse("sinks:\n  - stdout: {}\n  - stdout: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            s.starts_with("agent.yaml:3:13: sinks[1]: sinks[0] is also named `stdout`"),
            "{s}"
        );
        let s = parse("sinks:\n  - http: {url: ftp://x}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("https://"), "{s}");
        let s = parse("sinks:\n  - syslog: {transport: unix, facility: nope}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("unknown facility"), "{s}");
    }

    /// Values the issue found accepted that then misbehaved: each refused at its position.
    #[test]
    fn values_out_of_range_are_positioned() {
        let http =
            |extra: &str| format!("sinks:\n  - http:\n      url: http://127.0.0.1:9/\n{extra}");
        let cases: Vec<(String, &str)> = vec![
            (
                http("      retry: {initial: 1ns, max: 1ns}\n"),
                "agent.yaml:4:24: `1ns` is out of range: 10ms ..= 1h",
            ),
            (
                http("      retry: {initial: 1s, max: 100ms}\n"),
                "agent.yaml:4:33: sinks[0]: retry.max (100ms) is below retry.initial (1s)",
            ),
            (
                http("      timeout: 0s\n"),
                "agent.yaml:4:16: `0s` is out of range: 1s ..= 10m",
            ),
            (
                "sinks:\n  - http: {url: 'http://'}\n".into(),
                "agent.yaml:2:17: bad URL `http://`: empty host",
            ),
            (
                "sinks:\n  - http: {url: 'http://[::1'}\n".into(),
                "agent.yaml:2:17: bad URL `http://[::1`: invalid IPv6 address",
            ),
            (
                "sinks:\n  - http: {url: 'http://a:99999/'}\n".into(),
                "agent.yaml:2:17: bad URL `http://a:99999/`: invalid port number",
            ),
            (
                "run: {shutdown_timeout: 600000years}\n".into(),
                "agent.yaml:1:25: `600000years` is out of range: 0s ..= 1h",
            ),
            (
                "sinks:\n  - file: {path: /x, spool: {dir: /d, max_bytes: 0}}\n".into(),
                "agent.yaml:2:50: 0 is out of range: 4096 ..= 1099511627776",
            ),
            (
                "sinks:\n  - file: {path: /x, max_files: 0}\n".into(),
                "agent.yaml:2:33: 0 is out of range: 1 ..= 1000",
            ),
            (
                "sinks:\n  - syslog: {transport: udp, address: '::::'}\n".into(),
                "agent.yaml:2:39: bad address `::::`",
            ),
            (
                "sinks:\n  - syslog: {transport: tcp, address: 'h:99999'}\n".into(),
                "agent.yaml:2:39: bad address `h:99999`: the port must be 1 ..= 65535",
            ),
            (
                "sinks:\n  - http: {url: 'http://h/', batch: {max_alerts: 0}}\n".into(),
                "agent.yaml:2:50: 0 is out of range: 1 ..= 10000",
            ),
            (
                "sinks:\n  - stdout: {}\n    stdout: {}\n".into(),
                "agent.yaml:3:5: duplicate key `stdout`",
            ),
            (
                "run:\n  rules: []\n  rules: [/x]\n".into(),
                "agent.yaml:3:3: duplicate key `rules`",
            ),
            (format!("sinks: {}", "[".repeat(200_000)), "agent.yaml:1:"),
        ];
        for (yaml, want) in cases {
            let e = parse(&yaml).unwrap_err().to_string();
            assert!(e.starts_with(want), "{yaml:?}\n  got:  {e}\n  want: {want}");
        }
        // Accepted values behave as documented: the floor itself is fine.
        assert!(parse(&http(
            "      retry: {initial: 10ms, max: 10ms}\n      timeout: 1s\n"
        ))
        .is_ok());
    }

    /// Files the config names are checked at load, before anything is attached, each at its
    /// key (they used to fail after the programs were attached, without naming the config).
    #[test]
    fn named_files_are_checked_at_load() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("agent.yaml");
        let garbage = d.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let load = |yaml: &str| {
            std::fs::write(&cfg, yaml).unwrap();
            AgentConfig::load(&cfg)
                .unwrap_err()
                .to_string()
                .replace(&d.path().display().to_string(), "D")
        };
        let cases = [
            (
                "sinks:\n  - http: {url: 'http://h/', token_file: /nonexistent/tok}\n".to_string(),
                "D/agent.yaml:2:42: sinks[0] (http): token_file /nonexistent/tok: No such file",
            ),
            (
                "sinks:\n  - http: {url: 'http://h/', tls: {ca_file: /nonexistent/ca.pem}}\n"
                    .to_string(),
                "D/agent.yaml:2:45: sinks[0] (http): tls.ca_file /nonexistent/ca.pem: No such file",
            ),
            (
                format!(
                    "sinks:\n  - http: {{url: 'http://h/', tls: {{ca_file: {}}}}}\n",
                    garbage.display()
                ),
                "D/agent.yaml:2:45: sinks[0] (http): tls.ca_file D/garbage.pem: no PEM certificate",
            ),
            (
                "sinks:\n  - file: {path: /}\n".to_string(),
                "D/agent.yaml:2:18: sinks[0] (file): /: names a directory",
            ),
            (
                "sinks:\n  - file: {path: ''}\n".to_string(),
                "D/agent.yaml:2:18: sinks[0] (file): `path` is empty",
            ),
            (
                "sinks:\n  - file: {path: /dev/null/x}\n".to_string(),
                "D/agent.yaml:2:18: sinks[0] (file): /dev/null/x: Not a directory",
            ),
            (
                "run:\n  rules: [/nonexistent/rules]\n".to_string(),
                "D/agent.yaml:2:11: run.rules[0]: /nonexistent/rules: No such file",
            ),
        ];
        for (yaml, want) in cases {
            let e = load(&yaml);
            assert!(e.starts_with(want), "{yaml:?}\n  got:  {e}\n  want: {want}");
            assert_eq!(
                e.matches("No such file").count().max(1),
                1,
                "printed once: {e}"
            );
        }
    }

    #[test]
    fn ledger_section() {
        assert_eq!(parse("").unwrap().ledger, LedgerConfig::default());
        let c = parse(
            "ledger:\n  path: /x/ledger.db\n  flush_interval: 250ms\n  reach_window: 5s\n  retention: {max_age: 30d, max_bytes: 10000000}\n  rotation:\n    default: 60d\n    categories: {k8s_token: 2d, ssh_key: 365d}\n  findings: {repeat_after: 1h, unused_after: 7d, exempt_exe: []}\n  export: {interval: 1h}\n",
        )
        .unwrap();
        let l = c.ledger;
        assert!(l.enabled);
        assert_eq!(l.flush_interval, Duration::from_millis(250));
        assert_eq!(
            l.rotation.categories["k8s_token"],
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(l.retention.max_bytes, 10_000_000);
        assert!(l.findings.exempt_exe.is_empty());
        assert_eq!(l.export.interval, Duration::from_secs(3600));
        let s = parse("ledger:\n  rotation:\n    categories: {ssh_key: often}\n")
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("agent.yaml:"), "{s}");
        assert!(s.contains("ssh_key"), "{s}");
        let s = parse("ledger:\n  retention: {max_bytes: 10}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("max_bytes must be at least 1 MiB"), "{s}");
        let s = parse("ledger:\n  colour: red\n").unwrap_err().to_string();
        assert!(s.starts_with("agent.yaml:2:3: "), "{s}");
    }

    #[test]
    fn full_http_sink() {
        let c = parse(
            "sinks:\n  - http:\n      name: siem\n      url: https://siem:8088/services/collector/event\n      flavor: splunk_hec\n      format: ocsf\n      token_file: /etc/detector/hec.token\n      tls: {ca_file: /etc/ca.pem}\n      timeout: 5s\n      batch: {max_alerts: 50}\n      retry: {initial: 100ms, max: 10s}\n      spool: {dir: /var/lib/detector/spool, max_bytes: 1000000, on_full: drop_newest, fsync: interval}\n",
        )
        .unwrap();
        let SinkConfig::Http(h) = &c.sinks[0] else {
            panic!("http")
        };
        assert_eq!(h.flavor, HttpFlavor::SplunkHec);
        assert_eq!(h.format, Format::Ocsf);
        assert_eq!(h.timeout, Duration::from_secs(5));
        let sp = h.spool.as_ref().unwrap();
        assert_eq!(sp.on_full, OverflowPolicy::DropNewest);
        assert_eq!(sp.fsync, FsyncPolicy::Interval);
        assert_eq!(c.sinks[0].name(), "siem");
    }
}
