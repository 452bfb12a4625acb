//! The enriched event: what `detector run --events` streams, what `detector record` writes (one
//! JSON object per line) and what `detector replay` and the engine read. Documented field by
//! field in `docs/events.md`; keep the two in step.
//!
//! The shape is flat and nested by concern (`process`, `net`, `file`, …) rather than flattened
//! enums, so that rules address fields with plain dotted paths (`net.dst_port`) and so that
//! serde parses a line without buffering it twice.

use serde::{Deserialize, Serialize};

/// Version of the record format written in the first line of a recording.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// What happened. Serialized in snake_case (`"cred_open"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A process image was replaced (execve).
    Exec,
    /// A new process was created.
    Fork,
    /// A process exited.
    Exit,
    /// An outgoing connect attempt (TCP SYN sent, UDP connect). One per attempt.
    Connect,
    /// The outcome of an outgoing TCP connect (same `net.conn` as its `connect`).
    ConnectResult,
    /// An inbound TCP connection accepted by a listener of this process.
    Accept,
    /// A watched credential file was opened for reading (a use of the credential).
    CredOpen,
    /// A watched credential file was read without an open the agent saw (io_uring, filemap).
    CredRead,
    /// A watched credential file was opened to be written (`O_WRONLY`, or `O_RDWR` with
    /// `O_TRUNC`): the credential modified, by whom. Not a use: token refreshers write what
    /// their workloads read.
    CredWrite,
    /// The kernel dropped records (ring buffer full): counts per CPU.
    Loss,
}

impl Kind {
    /// The snake_case name used in JSON and in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Fork => "fork",
            Kind::Exit => "exit",
            Kind::Connect => "connect",
            Kind::ConnectResult => "connect_result",
            Kind::Accept => "accept",
            Kind::CredOpen => "cred_open",
            Kind::CredRead => "cred_read",
            Kind::CredWrite => "cred_write",
            Kind::Loss => "loss",
        }
    }
}

/// One enriched event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Nanoseconds since the Unix epoch (kernel boot-time clock mapped to wall time once at
    /// agent start, so intervals between events are exact).
    pub ts: u64,
    /// What happened.
    pub kind: Kind,
    /// The process the event is attributed to (for `accept`: the listener's process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    /// Set for `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecInfo>,
    /// Set for `fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkInfo>,
    /// Set for `exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// Set for `connect`, `connect_result`, `accept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetInfo>,
    /// Set for `cred_open`, `cred_read`, `cred_write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// Set for `loss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossInfo>,
}

/// The process an event is attributed to, as the kernel saw it plus what the agent's process
/// table knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Thread id that acted.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Start of the process (boot-time ns); `(tgid, start)` is the process key.
    pub start: u64,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// User name of `uid`, when the agent could resolve it (the table follows /etc/passwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group name of `gid`, when the agent could resolve it (the table follows /etc/group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Task name (settable by the process: never trust it for allow-listing).
    pub comm: String,
    /// Executable path (from exec, or `/proc/<pid>/exe` for processes older than the agent).
    #[serde(default)]
    pub exe: String,
    /// Bounded argv from the last exec, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Parent's executable path, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_exe: Option<String>,
    /// Ancestor tgids, parent first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<u32>,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// cgroup v2 path (relative to the cgroup root), when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Mount namespace inode.
    #[serde(default)]
    pub mntns: u32,
    /// Network namespace inode.
    #[serde(default)]
    pub netns: u32,
    /// Workload the cgroup belongs to.
    #[serde(default, skip_serializing_if = "Workload::is_empty")]
    pub workload: Workload,
    /// Workload identity name assigned by the identity resolver (config or derived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Workload attribution derived from the cgroup path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// systemd unit (`sshd.service`), from the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Container id (64 hex digits), from the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Kubernetes pod uid, from the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Kubernetes namespace of the pod, from the runtime's bundle or the kubelet's pod dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// Kubernetes pod name, from the runtime's bundle annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Container name within the pod, from the runtime's bundle annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

impl Workload {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.unit.is_none() && self.container_id.is_none() && self.pod_uid.is_none()
    }
}

/// `exec` details.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecInfo {
    /// The file name passed to execve.
    pub filename: String,
    /// Bounded argv.
    pub argv: Vec<String>,
    /// True when argv was cut to the kernel bound.
    #[serde(default)]
    pub argv_truncated: bool,
}

/// `fork` details (the event's `process` is the parent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkInfo {
    /// Child process id.
    pub child_tgid: u32,
    /// Child start (boot-time ns).
    pub child_start: u64,
}

/// `exit` details.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInfo {
    /// Exit status (`code`) when the process exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Terminating signal, when killed by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Anything else (number in `NetInfo::protocol_num`).
    Other,
}

/// Connection outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// SYN sent, result pending (always the outcome of a TCP `connect`).
    InProgress,
    /// Handshake completed.
    Established,
    /// Reset by the peer (connection refused).
    Refused,
    /// Timed out, unreachable, or another error (`errno`).
    Failed,
    /// UDP connect: local association only, nothing sent (not a contact: resolvers do one
    /// per address of a name to sort them).
    Associated,
    /// UDP: a datagram was sent to the destination (a contact).
    Sent,
}

/// Direction of a connection relative to the attributed process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The process connected out.
    Outbound,
    /// A peer connected in to the process.
    Inbound,
}

/// Network details of `connect`, `connect_result` and `accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInfo {
    /// Transport protocol.
    pub protocol: Protocol,
    /// 4 or 6.
    pub family: u8,
    /// Direction.
    pub direction: Direction,
    /// Local address (`0.0.0.0`/`::` when not yet bound).
    pub src_addr: String,
    /// Local port (0 when not yet bound).
    pub src_port: u16,
    /// Remote address.
    pub dst_addr: String,
    /// Remote port.
    pub dst_port: u16,
    /// Outcome.
    pub outcome: Outcome,
    /// errno name of a failure (`ECONNREFUSED`, `ETIMEDOUT`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Opaque connection id pairing `connect` with its `connect_result` (a keyed hash of the
    /// kernel's socket, never the kernel address itself, which would disclose the kernel's
    /// layout; recordings before this field was renamed call it `sock`).
    #[serde(alias = "sock")]
    pub conn: u64,
    /// The name the destination address was resolved from, when the agent saw it: a DNS
    /// answer received on this host, or the hosts file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    /// False when the destination is this host: an unspecified, loopback or local address.
    /// Absent in recordings made before the field existed (then only the address decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_host: Option<bool>,
    /// Service name of the destination (the `services` section of identities.yaml), set by
    /// the engine in alert evidence only; rules read the derived field `net.service`, which
    /// is always computed from the identities in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// How a credential file was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An open-family system call.
    Syscall,
    /// io_uring.
    IoUring,
    /// A buffered read seen by the page cache, whatever the syscall path.
    Filemap,
}

/// Credential file details of `cred_open` and `cred_read`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInfo {
    /// The watched credential (the watch-list path), e.g. `/root/.ssh/id_ed25519`.
    pub watched: String,
    /// Category of the credential: `ssh_key`, `cloud`, `kube`, `k8s_token`, `shadow`,
    /// `secret`, `environ`, `token`, `other`.
    pub category: String,
    /// The name the caller used, as passed to the system call (absent for io_uring/filemap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The name the kernel reached the file by (dentry walk; a hardlink shows its own name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Kernel device number of the file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Open flags (`file->f_flags`), when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// Symbolic access mode of `flags`: `read`, `write`, `read_write`, `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// How it was reached.
    pub via: Via,
    /// For `/proc/<pid>/environ`: whose environment was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Last modification of the file (ns since the Unix epoch), when known: the engine's
    /// long-lived-credential rule measures the credential's age from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<u64>,
    /// Keyed fingerprint of the file content (`enrich::fingerprint`), when computed. Never the
    /// content itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Kernel loss report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossInfo {
    /// CPU whose records were dropped.
    pub cpu: u32,
    /// Records dropped since the previous loss record for this CPU.
    pub count: u64,
    /// Records dropped on this CPU since the agent started.
    pub total: u64,
}

/// First line of a recording: says what follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingHeader {
    /// Always `"detector-recording"`.
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Host the events were captured on.
    pub host: String,
    /// Agent version that wrote it.
    pub agent: String,
    /// Wall-clock start of the capture, ns since the Unix epoch.
    pub started: u64,
}
