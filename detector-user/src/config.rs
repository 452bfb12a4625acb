//! The agent config file (`detector run --config FILE`): where alerts go (`sinks:`) and the
//! run options. YAML, unknown keys rejected; every error names `file:line:col`.
//!
//! Documented by `docs/config.example.yaml` (loaded by a test, so it cannot rot).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};

/// A config that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Syntax error, unknown key, wrong type, or an invalid value (with its position).
    #[error("{path}:{line}:{col}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A value that is well-formed but unusable (no position: it spans several keys).
    #[error("{path}: {msg}")]
    Semantic {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// The whole agent config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where alerts go; empty means stdout NDJSON.
    // `- http: {…}` rather than YAML tags (`- !http {…}`), which few people know.
    #[serde(
        default,
        deserialize_with = "serde_norway::with::singleton_map_recursive::deserialize"
    )]
    pub sinks: Vec<SinkConfig>,
    /// Run options (command-line flags override them).
    #[serde(default)]
    pub run: RunConfig,
    /// The credential ledger.
    #[serde(default)]
    pub ledger: LedgerConfig,
}

/// The credential ledger (`ledger:`): where it lives, how it batches, retention, rotation
/// policy, findings, export to the sinks. See docs/ledger.md.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Keep the ledger at all (`--no-ledger` turns it off).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The database file [default: `<state_dir>/ledger.db`].
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A batch is committed at least this often while inputs arrive: what a crash can lose.
    #[serde(default = "default_flush_interval", deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// … or as soon as this many inputs have been applied.
    #[serde(default = "default_batch_inputs")]
    pub batch_inputs: usize,
    /// Inputs waiting for the ledger's thread at most; more are counted and announced.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Connections by the same identity and process tree this long after a use are what the
    /// credential reaches.
    #[serde(default = "default_reach_window", deserialize_with = "duration")]
    pub reach_window: Duration,
    /// How long and how much detail is kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Rotation policy.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Findings raised as alerts.
    #[serde(default)]
    pub findings: FindingsConfig,
    /// Inventory records to the sinks.
    #[serde(default)]
    pub export: ExportConfig,
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
pub struct RetentionConfig {
    /// Detail (uses, reach, rotations, credentials gone from the host) older than this goes.
    #[serde(default = "default_max_age", deserialize_with = "duration")]
    pub max_age: Duration,
    /// Largest database size in bytes.
    #[serde(default = "default_ledger_bytes")]
    pub max_bytes: u64,
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
pub struct RotationConfig {
    /// For every category not listed.
    #[serde(default = "default_rotation", deserialize_with = "duration")]
    pub default: Duration,
    /// Per category (`ssh_key: 365d`, `k8s_token: 2d`).
    #[serde(default, deserialize_with = "duration_map")]
    pub categories: BTreeMap<String, Duration>,
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
pub struct FindingsConfig {
    /// Raise them at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A finding already alerted is alerted again only after this long.
    #[serde(default = "default_repeat_after", deserialize_with = "duration")]
    pub repeat_after: Duration,
    /// No use for this long: a retirement candidate.
    #[serde(default = "default_unused_after", deserialize_with = "duration")]
    pub unused_after: Duration,
    /// Executables whose reads are never a non-owner's (daemons that read credentials on
    /// others' behalf).
    #[serde(default = "default_exempt_exe")]
    pub exempt_exe: Vec<String>,
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
pub struct ExportConfig {
    /// Every this long (the first export after at most 5 minutes); `0s`: never.
    #[serde(default = "default_export_interval", deserialize_with = "duration")]
    pub interval: Duration,
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
pub struct RunConfig {
    /// Where the agent keeps its state (fingerprint key).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Extra rule files or directories.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Identities file.
    #[serde(default)]
    pub identities: Option<PathBuf>,
    /// Watch list file.
    #[serde(default)]
    pub watch_list: Option<PathBuf>,
    /// How long shutdown waits for sinks to deliver what they hold (spools keep the rest).
    #[serde(default, deserialize_with = "opt_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// Prometheus metrics and `/health` listen address (`PORT` or `:PORT` = loopback,
    /// `HOST:PORT`); none: no endpoint.
    #[serde(default, deserialize_with = "opt_listen_addr")]
    pub metrics_addr: Option<String>,
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
    pub fn name(&self) -> &str {
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
    pub name: Option<String>,
    /// Format.
    #[serde(default)]
    pub format: Format,
}

/// `file` sink.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Format.
    #[serde(default)]
    pub format: Format,
    /// The file (created 0600).
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    #[serde(default = "default_file_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// On-disk spool (absent: a bounded in-memory queue), for a file on a disk that can fill
    /// up or a mount that can go away.
    #[serde(default)]
    pub spool: Option<SpoolConfig>,
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
pub enum SyslogTransport {
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
    pub name: Option<String>,
    /// Format of the MSG part.
    #[serde(default)]
    pub format: Format,
    /// Transport.
    pub transport: SyslogTransport,
    /// `host:port` for UDP and TCP.
    #[serde(default)]
    pub address: Option<String>,
    /// Socket path for `unix` (default `/dev/log`).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Facility name (`auth`, `authpriv`, `daemon`, `local0` … `local7`).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// APP-NAME.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Alerts per delivery.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// On-disk spool (absent: a bounded in-memory queue).
    #[serde(default)]
    pub spool: Option<SpoolConfig>,
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
pub enum HttpFlavor {
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
    pub name: Option<String>,
    /// Format of each document.
    #[serde(default)]
    pub format: Format,
    /// Endpoint (`https://…` or `http://…`), e.g. `…/services/collector/event` or `…/_bulk`.
    pub url: String,
    /// Flavour.
    #[serde(default)]
    pub flavor: HttpFlavor,
    /// Elastic index.
    #[serde(default)]
    pub index: Option<String>,
    /// File holding the auth token (never on the command line, never logged).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS options.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Alerts per request.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// On-disk spool (absent: a bounded in-memory queue).
    #[serde(default)]
    pub spool: Option<SpoolConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// TLS options. Certificates are always verified.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// Batching.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most alerts per delivery.
    #[serde(default = "default_batch")]
    pub max_alerts: usize,
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
pub struct RetryConfig {
    /// First delay.
    #[serde(default = "default_initial", deserialize_with = "duration")]
    pub initial: Duration,
    /// Largest delay.
    #[serde(default = "default_max_delay", deserialize_with = "duration")]
    pub max: Duration,
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
pub enum OverflowPolicy {
    /// Drop the oldest spooled alerts to make room.
    #[default]
    DropOldest,
    /// Drop the incoming alert.
    DropNewest,
}

/// When spool appends reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
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
pub struct SpoolConfig {
    /// Directory (the sink's spool lives in `<dir>/<sink name>/`, 0700, files 0600).
    pub dir: PathBuf,
    /// Largest spool size in bytes.
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
    /// Full-spool policy.
    #[serde(default)]
    pub on_full: OverflowPolicy,
    /// Fsync policy.
    #[serde(default)]
    pub fsync: FsyncPolicy,
}

fn default_spool_bytes() -> u64 {
    256 << 20
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

fn duration_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
    let m = BTreeMap::<String, String>::deserialize(d)?;
    m.into_iter()
        .map(|(k, v)| {
            humantime::parse_duration(&v)
                .map(|d| (k.clone(), d))
                .map_err(|e| serde::de::Error::custom(format!("{k}: {v:?}: {e}")))
        })
        .collect()
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
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
    crate::metrics::parse_listen_addr(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

impl AgentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        // An empty file is an empty config, not an error.
        if text.trim().is_empty() {
            return Ok(AgentConfig::default());
        }
        let cfg: AgentConfig = serde_norway::from_str(text).map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            // The library appends "at line L column C"; we put the position in front.
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                col,
                msg,
            }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |msg: String| ConfigError::Semantic {
            path: path.to_path_buf(),
            msg,
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let name = s.name();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(format!(
                    "sinks[{i}]: name {name:?} must be non-empty letters, digits, '-' or '_'"
                )));
            }
            if !names.insert(name.to_string()) {
                return Err(bad(format!(
                    "sinks[{i}]: two sinks are named {name:?}; give each a distinct `name`"
                )));
            }
            match s {
                SinkConfig::Syslog(c) => {
                    crate::sinks::syslog::facility_code(&c.facility).ok_or_else(|| {
                        bad(format!("sinks[{i}]: unknown facility {:?}", c.facility))
                    })?;
                    if c.transport != SyslogTransport::Unix && c.address.is_none() {
                        return Err(bad(format!(
                            "sinks[{i}]: syslog over {:?} needs `address: host:port`",
                            c.transport
                        )));
                    }
                    check_batch(i, &c.batch, &c.retry).map_err(bad)?;
                }
                SinkConfig::Http(c) => {
                    if !(c.url.starts_with("https://") || c.url.starts_with("http://")) {
                        return Err(bad(format!(
                            "sinks[{i}]: url {:?} must start with https:// or http://",
                            c.url
                        )));
                    }
                    if c.tls.client_cert.is_some() != c.tls.client_key.is_some() {
                        return Err(bad(format!(
                            "sinks[{i}]: tls.client_cert and tls.client_key go together"
                        )));
                    }
                    check_batch(i, &c.batch, &c.retry).map_err(bad)?;
                }
                SinkConfig::File(c) => {
                    if c.max_bytes == 0 {
                        return Err(bad(format!("sinks[{i}]: max_bytes must be > 0")));
                    }
                }
                SinkConfig::Stdout(_) => {}
            }
        }
        let l = &self.ledger;
        if l.flush_interval < Duration::from_millis(10) {
            return Err(bad("ledger.flush_interval must be at least 10ms".into()));
        }
        if l.batch_inputs == 0 || l.queue == 0 {
            return Err(bad(
                "ledger.batch_inputs and ledger.queue must be > 0".into()
            ));
        }
        if l.reach_window.is_zero() {
            return Err(bad("ledger.reach_window must be > 0".into()));
        }
        if l.retention.max_bytes < 1 << 20 {
            return Err(bad(
                "ledger.retention.max_bytes must be at least 1 MiB".into()
            ));
        }
        if l.retention.max_age.is_zero() {
            return Err(bad("ledger.retention.max_age must be > 0".into()));
        }
        let rot = std::iter::once(("default", &l.rotation.default))
            .chain(l.rotation.categories.iter().map(|(k, v)| (k.as_str(), v)));
        for (k, v) in rot {
            if v.is_zero() {
                return Err(bad(format!("ledger.rotation.{k} must be > 0")));
            }
        }
        if l.findings.unused_after.is_zero() {
            return Err(bad("ledger.findings.unused_after must be > 0".into()));
        }
        Ok(())
    }
}

fn check_batch(i: usize, b: &BatchConfig, r: &RetryConfig) -> Result<(), String> {
    if b.max_alerts == 0 {
        return Err(format!("sinks[{i}]: batch.max_alerts must be > 0"));
    }
    if r.initial.is_zero() || r.max < r.initial {
        return Err(format!(
            "sinks[{i}]: retry needs 0 < initial <= max (got {:?}, {:?})",
            r.initial, r.max
        ));
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
        let c = AgentConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
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
        // Values checked by our own deserializers are positioned at their sink's map.
        assert!(s.starts_with("agent.yaml:3:7: "), "{s}");
        assert!(s.contains("\"soon\""), "{s}");
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
        assert!(s.contains("two sinks are named"), "{s}");
        let s = parse("sinks:\n  - http: {url: ftp://x}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("https://"), "{s}");
        let s = parse("sinks:\n  - syslog: {transport: unix, facility: nope}\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("unknown facility"), "{s}");
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
