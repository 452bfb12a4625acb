//! Every structure that crosses the kernel↔user boundary.
//!
//! Rules for this file: `#[repr(C)]`, no `bool`, explicit padding so that the layout is the same
//! for the BPF target and the host, and stable numeric event kinds. Userspace never transmutes
//! raw bytes into these types: it checks the length and reads them with `read_unaligned`
//! (see `detector-user/src/sources/decode.rs`).
#![no_std]

/// Stable numeric event kinds written in [`Header::kind`]. Never renumber.
pub mod kind {
    /// A process image was replaced (`sched:sched_process_exec`).
    pub const EXEC: u32 = 1;
    /// A new process (not a thread) was created (`tp_btf/sched_process_fork`).
    pub const FORK: u32 = 2;
    /// The last thread of a process exited (`sched:sched_process_exit`).
    pub const EXIT: u32 = 3;
    /// An outgoing connect attempt (TCP SYN sent, or a UDP connect).
    pub const CONNECT: u32 = 10;
    /// The outcome of an outgoing TCP connect (established, refused, failed).
    pub const CONNECT_RESULT: u32 = 11;
    /// An inbound TCP connection completed its handshake on a listener.
    pub const ACCEPT: u32 = 12;
    /// The first datagram of a connected UDP socket left: the association (a `CONNECT` with
    /// [`super::outcome::ASSOCIATED`] and the same socket cookie) became a contact. Seen on
    /// the packet path, so it carries no process: userspace takes the association's.
    pub const UDP_SEND: u32 = 13;
    /// A DNS answer (UDP from port 53) arrived for a socket of this host: its bytes, for the
    /// names userspace gives connections ([`super::DnsEvent`]).
    pub const DNS_ANSWER: u32 = 14;
    /// A watched credential file was opened.
    pub const FILE_OPEN: u32 = 20;
    /// A watched credential file was read without an open we saw (io_uring, filemap).
    pub const FILE_READ: u32 = 21;
}

/// Connection outcome codes in [`NetEvent::outcome`].
pub mod outcome {
    /// TCP SYN sent; the result follows in a `CONNECT_RESULT`.
    pub const IN_PROGRESS: u32 = 1;
    /// TCP handshake completed.
    pub const ESTABLISHED: u32 = 2;
    /// The peer answered with a reset (ECONNREFUSED).
    pub const REFUSED: u32 = 3;
    /// Timed out, unreachable or otherwise failed; `errno` says why.
    pub const FAILED: u32 = 4;
    /// UDP connect: a local association, no packet exchanged (resolvers' address probes).
    pub const ASSOCIATED: u32 = 5;
    /// UDP: a datagram was sent to the destination (unconnected `sendto`, or the first one of
    /// a connected socket): a contact.
    pub const SENT: u32 = 6;
}

/// How a credential file was reached, in [`FileEvent::via`].
pub mod via {
    /// An open-family system call (`open`, `openat`, `openat2`, `open_by_handle_at`).
    pub const SYSCALL: u32 = 1;
    /// An io_uring `OPENAT`/`OPENAT2` or read request.
    pub const IO_URING: u32 = 2;
    /// A buffered read seen by `filemap:mm_filemap_get_pages`, whatever the syscall path.
    pub const FILEMAP: u32 = 3;
}

/// Special watch ids that are not entries of the userspace watch list.
pub mod watch {
    /// `/proc/<pid>/environ` of a process other than the reader, matched in the kernel.
    pub const PROC_ENVIRON: u32 = 0xffff_fff0;
}

/// Wakeup policy flags for the ring buffer (`bpf_ringbuf_submit`).
pub mod ringbuf {
    /// `BPF_RB_NO_WAKEUP`.
    pub const NO_WAKEUP: u64 = 1;
    /// `BPF_RB_FORCE_WAKEUP`.
    pub const FORCE_WAKEUP: u64 = 2;
    /// `BPF_RB_AVAIL_DATA` for `bpf_ringbuf_query`.
    pub const AVAIL_DATA: u64 = 0;
}

/// Length of `comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a path kept in an event.
pub const PATH_LEN: usize = 256;
/// Bytes of the argument vector kept in an exec event.
pub const ARGS_LEN: usize = 512;
/// Components kept by the kernel's bounded dentry walk.
pub const DENTRY_DEPTH: usize = 3;
/// Bytes per dentry component (names longer than this are cut).
pub const DENTRY_NAME_LEN: usize = 32;

/// Common prefix of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// One of [`kind`].
    pub kind: u32,
    /// CPU that produced the record.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns` when the record was produced.
    pub ts_ns: u64,
    /// Per-CPU sequence number of produced records (gaps reveal loss next to the counters).
    pub seq: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Parent's thread-group id (`real_parent->tgid`); 0 when unknown.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Mount namespace inode number; 0 when unknown.
    pub mntns: u32,
    /// Start time of the thread-group leader (`start_boottime`, ns); with `tgid` it keys a
    /// process so that a reused pid is never confused with the old process. 0 when unknown.
    pub start_ns: u64,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Network namespace inode number; 0 when unknown.
    pub netns: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Task command name (`comm`), NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// `EXEC` record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    /// Common header.
    pub hdr: Header,
    /// Bytes valid in `args` (NUL-separated argv).
    pub args_len: u32,
    /// Bytes of argv the process had in total (more than `args_len` means cut).
    pub args_total: u32,
    /// `bprm->filename` (the name passed to execve), NUL-terminated.
    pub filename: [u8; PATH_LEN],
    /// Bounded argv, NUL-separated, read from the new image's argument area.
    pub args: [u8; ARGS_LEN],
}

/// `FORK` record (`hdr` is the parent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    /// Common header (the parent process).
    pub hdr: Header,
    /// The child's thread-group id.
    pub child_tgid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The child's `start_boottime`.
    pub child_start_ns: u64,
}

/// `EXIT` record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    /// Common header.
    pub hdr: Header,
    /// `task->exit_code` (wait status encoding).
    pub exit_code: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// `CONNECT`, `CONNECT_RESULT` and `ACCEPT` records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetEvent {
    /// Common header: the connecting process (outbound) or the listener's process (inbound).
    /// A `CONNECT_RESULT` carries only kind, CPU, time and sequence: userspace takes the
    /// process from the `CONNECT` with the same `sock`.
    pub hdr: Header,
    /// Kernel socket address; pairs a `CONNECT` with its `CONNECT_RESULT`.
    pub sock: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// IP protocol: 6 TCP, 17 UDP.
    pub protocol: u16,
    /// Local port, host order; 0 when not yet bound.
    pub sport: u16,
    /// Remote port, host order.
    pub dport: u16,
    /// Local address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Remote address (IPv4 in the first 4 bytes).
    pub daddr: [u8; 16],
    /// One of [`outcome`].
    pub outcome: u32,
    /// Positive errno of a failed connect (`sk_err`), else 0.
    pub errno: u32,
}

/// `FILE_OPEN` and `FILE_READ` records.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileEvent {
    /// Common header.
    pub hdr: Header,
    /// Kernel device number (`MAJOR << 20 | MINOR`) of the file's superblock.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Watch id from [`WATCHED`-map values](WatchKey), or one of [`watch`].
    pub watch_id: u32,
    /// One of [`via`].
    pub via: u32,
    /// `file->f_flags` (kernel truth, not the syscall argument); 0 for filemap reads.
    pub flags: u32,
    /// For `/proc/<pid>/environ`, the pid whose environment was read; else 0.
    pub target_pid: u32,
    /// Bytes valid in `path` (0 when the name could not be read).
    pub path_len: u32,
    /// Number of valid components in `dentry`.
    pub depth: u32,
    /// The name the caller passed (read at syscall exit), NUL-terminated; empty for io_uring
    /// and filemap records.
    pub path: [u8; PATH_LEN],
    /// Kernel dentry walk, leaf first: the name the file was really reached by, however named.
    pub dentry: [[u8; DENTRY_NAME_LEN]; DENTRY_DEPTH],
}

/// Key of the `WATCHED` map: one watched credential file, by kernel identity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchKey {
    /// Kernel device number (`MAJOR << 20 | MINOR`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// Key of the `WATCHED_NAMES` map: a watched file's name in its directory, as the dentry cache
/// holds it (the directory by device and inode, the name by its precomputed
/// `d_name.hash_len`). Programs learn it from opens that matched `WATCHED` by inode, so that a
/// file replaced by rename (the shadow suite, editors and token writers write a new file and
/// rename it over the old) still matches by name until userspace has added the new inode.
/// Userspace only deletes entries (those of retired watch ids).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NameKey {
    /// Kernel device number of the directory (and the file).
    pub dev: u64,
    /// Inode number of the directory.
    pub dir_ino: u64,
    /// `dentry.d_name.hash_len`: the name's hash (the kernel salts it with the directory's
    /// dentry) and length.
    pub hash_len: u64,
}

/// The `WATCH_BITS` prefilter in front of `WATCHED`: one bit per hash slot of a watched
/// (dev, inode). Every open and every buffered read of every file checks it, and a clear bit
/// (nearly every file) skips the hash-map lookup (≈20 ns here) for an inlined array load.
/// Userspace sets a key's bit after inserting the key into `WATCHED` and clears bits only by
/// rewriting the whole bitmap from the live keys, so a reader never misses a live key.
pub mod watch_bits {
    /// Bitmap words (65,536 bits, 8 KiB): a few hundred watched files leave ~99 % of slots clear.
    pub const WORDS: usize = 1024;

    /// (word index, bit mask) of a (dev, inode): a multiplicative hash, top 16 bits.
    #[inline(always)]
    pub fn slot(dev: u64, ino: u64) -> (usize, u64) {
        let h = (ino ^ dev.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48;
        ((h >> 6) as usize & (WORDS - 1), 1u64 << (h & 63))
    }
}

/// Bytes of a DNS answer kept in a [`DnsEvent`]: the EDNS default payload size (RFC 9715
/// recommends 1232), so that an answer the resolver did not truncate is whole.
pub const DNS_PAYLOAD_LEN: usize = 1232;

/// A DNS answer received by a socket of this host (UDP from port 53). The header carries the
/// time, CPU, sequence and the receiving socket's cgroup; no process (packet path).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    /// Common header (`kind` = [`kind::DNS_ANSWER`]).
    pub hdr: Header,
    /// 4 or 6 (`AF_INET`/`AF_INET6` as 2/10).
    pub family: u16,
    /// Padding.
    pub _pad: u16,
    /// Bytes of `payload` filled.
    pub len: u32,
    /// The DNS server's address (IPv4 in the first 4 bytes).
    pub server: [u8; 16],
    /// The DNS message, cut at [`DNS_PAYLOAD_LEN`].
    pub payload: [u8; DNS_PAYLOAD_LEN],
}

/// Key of the `LISTENERS` map: a listening TCP port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Port, host order.
    pub port: u16,
    /// Network namespace inode (0 when unknown).
    pub netns: u32,
}

/// Offsets a field is absent from (older kernels): the program falls back or skips it.
pub const NO_OFFSET: u32 = u32::MAX;

/// Kernel structure member offsets, resolved by userspace from `/sys/kernel/btf/vmlinux` and
/// written into the programs' read-only data before load. This stands in for CO-RE, which Rust
/// eBPF programs do not have yet; a member missing from this kernel is [`NO_OFFSET`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent`
    pub task_real_parent: u32,
    /// `task_struct.group_leader`
    pub task_group_leader: u32,
    /// `task_struct.pid`
    pub task_pid: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.start_boottime`
    pub task_start_boottime: u32,
    /// `task_struct.nsproxy`
    pub task_nsproxy: u32,
    /// `task_struct.files`
    pub task_files: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.exit_code`
    pub task_exit_code: u32,
    /// `nsproxy.mnt_ns`
    pub nsproxy_mnt_ns: u32,
    /// `nsproxy.net_ns`
    pub nsproxy_net_ns: u32,
    /// `mnt_namespace.ns.inum`
    pub mnt_ns_inum: u32,
    /// `net.ns.inum`
    pub net_ns_inum: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.f_flags`
    pub file_flags: u32,
    /// `file.f_path.dentry`
    pub file_dentry: u32,
    /// `inode.i_ino`
    pub inode_ino: u32,
    /// `inode.i_sb`
    pub inode_sb: u32,
    /// `super_block.s_dev`
    pub sb_dev: u32,
    /// `super_block.s_magic`
    pub sb_magic: u32,
    /// `dentry.d_name.name`
    pub dentry_name: u32,
    /// `dentry.d_parent`
    pub dentry_parent: u32,
    /// `dentry.d_name.hash_len`
    pub dentry_hash_len: u32,
    /// `dentry.d_inode`
    pub dentry_inode: u32,
    /// `mm_struct.arg_start`
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`
    pub mm_arg_end: u32,
    /// `sock.sk_err`
    pub sock_err: u32,
    /// `sock.__sk_common.skc_net.net` (the socket's network namespace)
    pub sock_net: u32,
    /// `io_kiocb.cqe.fd` (the request's fd before issue)
    pub io_kiocb_fd: u32,
    /// `io_kiocb.flags`
    pub io_kiocb_flags: u32,
    /// Offset of `si` (2nd syscall argument) in `pt_regs` (x86_64 ABI).
    pub regs_arg1: u32,
    /// Offset of `di` (1st syscall argument) in `pt_regs`.
    pub regs_arg0: u32,
    /// `files_struct.fdtab` (the embedded table, in use while no more than
    /// [`direct::FD_SLOTS`] descriptors were ever needed).
    pub files_fdtab: u32,
    /// `dentry.d_shortname.words` (the inline name as words), [`NO_OFFSET`] on kernels that
    /// only have the `d_iname` bytes: the direct loads of [`direct::DENTRY_WORDS`] are then
    /// never reached.
    pub dentry_shortname: u32,
    /// `inet_sock.inet_sport`: the source port read by helper where a direct load needs
    /// `bpf_rdonly_cast` and the kernel lacks it.
    pub inet_sport: u32,
    /// `kiocb.ki_filp` (the file of a buffered read, for the `filemap_read` entry hook).
    pub kiocb_filp: u32,
    /// 1 when userspace patched every [`direct`] load of the object with this kernel's
    /// offsets: the programs then take the BTF-typed direct-load paths; 0 selects the
    /// `bpf_probe_read_kernel` paths (the verifier prunes the other side either way).
    pub direct: u32,
    /// 1 when the `bpf_rdonly_cast` kfunc (6.2+) was patched in: a pointer held as a number
    /// becomes BTF-typed. 0 (e.g. 6.1): userspace turned every cast into a plain move, which
    /// the programs never reach — they read those few members by helper instead.
    pub has_cast: u32,
}

impl KernelOffsets {
    /// All members absent; programs treat the offsets as unavailable.
    pub const fn unset() -> Self {
        Self {
            task_real_parent: NO_OFFSET,
            task_group_leader: NO_OFFSET,
            task_pid: NO_OFFSET,
            task_tgid: NO_OFFSET,
            task_start_boottime: NO_OFFSET,
            task_nsproxy: NO_OFFSET,
            task_files: NO_OFFSET,
            task_mm: NO_OFFSET,
            task_exit_code: NO_OFFSET,
            nsproxy_mnt_ns: NO_OFFSET,
            nsproxy_net_ns: NO_OFFSET,
            mnt_ns_inum: NO_OFFSET,
            net_ns_inum: NO_OFFSET,
            files_fdt: NO_OFFSET,
            fdt_max_fds: NO_OFFSET,
            fdt_fd: NO_OFFSET,
            file_inode: NO_OFFSET,
            file_flags: NO_OFFSET,
            file_dentry: NO_OFFSET,
            inode_ino: NO_OFFSET,
            inode_sb: NO_OFFSET,
            sb_dev: NO_OFFSET,
            sb_magic: NO_OFFSET,
            dentry_name: NO_OFFSET,
            dentry_parent: NO_OFFSET,
            dentry_hash_len: NO_OFFSET,
            dentry_inode: NO_OFFSET,
            mm_arg_start: NO_OFFSET,
            mm_arg_end: NO_OFFSET,
            sock_err: NO_OFFSET,
            sock_net: NO_OFFSET,
            io_kiocb_fd: NO_OFFSET,
            io_kiocb_flags: NO_OFFSET,
            regs_arg1: NO_OFFSET,
            regs_arg0: NO_OFFSET,
            files_fdtab: NO_OFFSET,
            dentry_shortname: NO_OFFSET,
            inet_sport: NO_OFFSET,
            kiocb_filp: NO_OFFSET,
            direct: 0,
            has_cast: 0,
        }
    }
}

/// BTF-typed direct loads and their relocation. Rust eBPF has no CO-RE, so a member offset
/// cannot be an instruction immediate resolved at load time by libbpf; instead the kernel
/// programs emit `ldx` instructions (inline assembly, which the compiler cannot fold or move)
/// whose 16-bit `off` is a placeholder from this table, and userspace rewrites each `off` with
/// the member's offset from `/sys/kernel/btf/vmlinux` before handing the object to aya. The
/// base register comes from `bpf_get_current_task_btf()` or a `tp_btf` argument, so the
/// verifier types the whole chain (`PTR_TO_BTF_ID`) and the JIT emits single `PROBE_MEM`
/// loads instead of one `bpf_probe_read_kernel` helper call (≈ 50–70 ns here) per member.
pub mod direct {
    /// First placeholder of a member.
    pub const BASE: i16 = 0x7e00;
    /// Placeholder of `files_struct.fd_array[0]`; slot `k` is `FD_SLOT_BASE + k`.
    pub const FD_SLOT_BASE: i16 = 0x7f00;
    /// Slots of `files_struct.fd_array` (`NR_OPEN_DEFAULT` on 64-bit kernels).
    pub const FD_SLOTS: usize = 64;
    /// Placeholders lie in `[BASE, END)`; nothing else in the object loads at such offsets.
    pub const END: i16 = FD_SLOT_BASE + FD_SLOTS as i16;

    /// `task_struct.files`
    pub const TASK_FILES: i16 = BASE;
    /// `task_struct.nsproxy`
    pub const TASK_NSPROXY: i16 = BASE + 1;
    /// `task_struct.group_leader`
    pub const TASK_GROUP_LEADER: i16 = BASE + 2;
    /// `task_struct.real_parent`
    pub const TASK_REAL_PARENT: i16 = BASE + 3;
    /// `task_struct.tgid`
    pub const TASK_TGID: i16 = BASE + 4;
    /// `task_struct.pid`
    pub const TASK_PID: i16 = BASE + 5;
    /// `task_struct.start_boottime`
    pub const TASK_START_BOOTTIME: i16 = BASE + 6;
    /// `task_struct.mm`
    pub const TASK_MM: i16 = BASE + 7;
    /// `task_struct.exit_code`
    pub const TASK_EXIT_CODE: i16 = BASE + 8;
    /// `files_struct.fdt`
    pub const FILES_FDT: i16 = BASE + 9;
    /// `fdtable.max_fds`
    pub const FDT_MAX_FDS: i16 = BASE + 10;
    /// `file.f_inode`
    pub const FILE_INODE: i16 = BASE + 11;
    /// `file.f_flags`
    pub const FILE_FLAGS: i16 = BASE + 12;
    /// `file.f_path.dentry`
    pub const FILE_DENTRY: i16 = BASE + 13;
    /// `inode.i_ino`
    pub const INODE_INO: i16 = BASE + 14;
    /// `inode.i_sb`
    pub const INODE_SB: i16 = BASE + 15;
    /// `super_block.s_dev`
    pub const SB_DEV: i16 = BASE + 16;
    /// `super_block.s_magic`
    pub const SB_MAGIC: i16 = BASE + 17;
    /// `dentry.d_name.name`
    pub const DENTRY_NAME: i16 = BASE + 18;
    /// `dentry.d_parent`
    pub const DENTRY_PARENT: i16 = BASE + 19;
    /// `nsproxy.mnt_ns`
    pub const NSPROXY_MNT_NS: i16 = BASE + 20;
    /// `nsproxy.net_ns`
    pub const NSPROXY_NET_NS: i16 = BASE + 21;
    /// `mnt_namespace.ns.inum`
    pub const MNT_NS_INUM: i16 = BASE + 22;
    /// `net.ns.inum`
    pub const NET_NS_INUM: i16 = BASE + 23;
    /// `mm_struct.arg_start`
    pub const MM_ARG_START: i16 = BASE + 24;
    /// `mm_struct.arg_end`
    pub const MM_ARG_END: i16 = BASE + 25;
    /// `pt_regs.di` (1st syscall argument on x86_64)
    pub const PT_REGS_DI: i16 = BASE + 26;
    /// `pt_regs.si` (2nd syscall argument on x86_64)
    pub const PT_REGS_SI: i16 = BASE + 27;
    /// `fdtable.fd`
    pub const FDT_FD: i16 = BASE + 28;
    /// `sock.__sk_common.skc_net.net`
    pub const SOCK_NET: i16 = BASE + 29;
    /// `sock.sk_err`
    pub const SOCK_ERR: i16 = BASE + 30;
    /// `dentry.d_shortname.words[k]` for k in 0..4 (the inline name, 6.14+): optional, see
    /// [`super::KernelOffsets::dentry_shortname`].
    pub const DENTRY_WORDS: [i16; 4] = [BASE + 31, BASE + 32, BASE + 33, BASE + 34];
    /// `sock.sk_protocol`
    pub const SK_PROTOCOL: i16 = BASE + 35;
    /// `sock.__sk_common.skc_family`
    pub const SK_FAMILY: i16 = BASE + 36;
    /// `sock.__sk_common.skc_dport` (network order)
    pub const SK_DPORT: i16 = BASE + 37;
    /// `sock.__sk_common.skc_rcv_saddr`
    pub const SK_RCV_SADDR: i16 = BASE + 38;
    /// `sock.__sk_common.skc_daddr`
    pub const SK_DADDR: i16 = BASE + 39;
    /// `sock.__sk_common.skc_v6_rcv_saddr`, first and second 8 bytes
    pub const SK_V6_RCV_SADDR: [i16; 2] = [BASE + 40, BASE + 41];
    /// `sock.__sk_common.skc_v6_daddr`, first and second 8 bytes
    pub const SK_V6_DADDR: [i16; 2] = [BASE + 42, BASE + 43];
    /// `inet_sock.inet_sport` (network order)
    pub const INET_SPORT: i16 = BASE + 44;
    /// `task_struct.comm`, first and second 8 bytes
    pub const TASK_COMM: [i16; 2] = [BASE + 45, BASE + 46];
    /// `task_struct.cred`
    pub const TASK_CRED: i16 = BASE + 47;
    /// `cred.uid.val`
    pub const CRED_UID: i16 = BASE + 48;
    /// `cred.gid.val`
    pub const CRED_GID: i16 = BASE + 49;
    /// `task_struct.cgroups`
    pub const TASK_CGROUPS: i16 = BASE + 50;
    /// `css_set.dfl_cgrp`
    pub const CSS_SET_DFL_CGRP: i16 = BASE + 51;
    /// `cgroup.kn`
    pub const CGROUP_KN: i16 = BASE + 52;
    /// `kernfs_node.id` (the cgroup v2 id)
    pub const KERNFS_NODE_ID: i16 = BASE + 53;
    /// `kiocb.ki_filp`
    pub const KIOCB_FILP: i16 = BASE + 54;
    /// `dentry.d_name.hash` (a 4-byte load: 6.1's verifier refuses 8 bytes at the union's
    /// first member, `hash`, where `hash_len` overlays it)
    pub const DENTRY_HASH: i16 = BASE + 55;
    /// `dentry.d_inode`
    pub const DENTRY_INODE: i16 = BASE + 56;
    /// `dentry.d_name.len`
    pub const DENTRY_NAME_LEN: i16 = BASE + 57;

    /// Immediate of the placeholder `call` that userspace turns into a kfunc call of
    /// `bpf_rdonly_cast(ptr, btf_id)` (which the verifier inlines as a move): it types a
    /// pointer read as a plain number (a tracepoint field, an array slot read by helper) so
    /// that direct loads apply from there on.
    pub const KFUNC_RDONLY_CAST: i32 = 0x7e7e_0000;
    /// Placeholder BTF type id of `struct file` (the `mov r2, imm` before the call).
    pub const TYPE_FILE: i32 = 0x7e7e_0100;
    /// Placeholder BTF type id of `struct sock`.
    pub const TYPE_SOCK: i32 = 0x7e7e_0101;
    /// Placeholder BTF type id of `struct inet_sock`.
    pub const TYPE_INET_SOCK: i32 = 0x7e7e_0102;
    /// Every type placeholder with its BTF struct name.
    pub const TYPES: &[(i32, &str)] = &[
        (TYPE_FILE, "file"),
        (TYPE_SOCK, "sock"),
        (TYPE_INET_SOCK, "inet_sock"),
    ];

    /// Every member placeholder with its BTF (struct, member path). `files_struct.fd_array`
    /// slots are resolved from `FD_SLOT_BASE` separately.
    pub const MEMBERS: &[(i16, &str, &str)] = &[
        (TASK_FILES, "task_struct", "files"),
        (TASK_NSPROXY, "task_struct", "nsproxy"),
        (TASK_GROUP_LEADER, "task_struct", "group_leader"),
        (TASK_REAL_PARENT, "task_struct", "real_parent"),
        (TASK_TGID, "task_struct", "tgid"),
        (TASK_PID, "task_struct", "pid"),
        (TASK_START_BOOTTIME, "task_struct", "start_boottime"),
        (TASK_MM, "task_struct", "mm"),
        (TASK_EXIT_CODE, "task_struct", "exit_code"),
        (FILES_FDT, "files_struct", "fdt"),
        (FDT_MAX_FDS, "fdtable", "max_fds"),
        (FILE_INODE, "file", "f_inode"),
        (FILE_FLAGS, "file", "f_flags"),
        (FILE_DENTRY, "file", "f_path.dentry"),
        (INODE_INO, "inode", "i_ino"),
        (INODE_SB, "inode", "i_sb"),
        (SB_DEV, "super_block", "s_dev"),
        (SB_MAGIC, "super_block", "s_magic"),
        (DENTRY_NAME, "dentry", "d_name.name"),
        (DENTRY_PARENT, "dentry", "d_parent"),
        (NSPROXY_MNT_NS, "nsproxy", "mnt_ns"),
        (NSPROXY_NET_NS, "nsproxy", "net_ns"),
        (MNT_NS_INUM, "mnt_namespace", "ns.inum"),
        (NET_NS_INUM, "net", "ns.inum"),
        (MM_ARG_START, "mm_struct", "arg_start"),
        (MM_ARG_END, "mm_struct", "arg_end"),
        (PT_REGS_DI, "pt_regs", "di"),
        (PT_REGS_SI, "pt_regs", "si"),
        (FDT_FD, "fdtable", "fd"),
        (SOCK_NET, "sock", "__sk_common.skc_net.net"),
        (SOCK_ERR, "sock", "sk_err"),
        (SK_PROTOCOL, "sock", "sk_protocol"),
        (SK_FAMILY, "sock", "__sk_common.skc_family"),
        (SK_DPORT, "sock", "__sk_common.skc_dport"),
        (SK_RCV_SADDR, "sock", "__sk_common.skc_rcv_saddr"),
        (SK_DADDR, "sock", "__sk_common.skc_daddr"),
        (SK_V6_RCV_SADDR[0], "sock", "__sk_common.skc_v6_rcv_saddr"),
        (SK_V6_DADDR[0], "sock", "__sk_common.skc_v6_daddr"),
        (INET_SPORT, "inet_sock", "inet_sport"),
        (TASK_COMM[0], "task_struct", "comm"),
        (TASK_CRED, "task_struct", "cred"),
        (CRED_UID, "cred", "uid.val"),
        (CRED_GID, "cred", "gid.val"),
        (TASK_CGROUPS, "task_struct", "cgroups"),
        (CSS_SET_DFL_CGRP, "css_set", "dfl_cgrp"),
        (CGROUP_KN, "cgroup", "kn"),
        (KERNFS_NODE_ID, "kernfs_node", "id"),
        (KIOCB_FILP, "kiocb", "ki_filp"),
        (DENTRY_HASH, "dentry", "d_name.hash"),
        (DENTRY_INODE, "dentry", "d_inode"),
        (DENTRY_NAME_LEN, "dentry", "d_name.len"),
    ];

    /// Second halves of 16-byte members: (placeholder, struct, member, bytes past the member's
    /// start).
    pub const MEMBER_TAILS: &[(i16, &str, &str, u32)] = &[
        (
            SK_V6_RCV_SADDR[1],
            "sock",
            "__sk_common.skc_v6_rcv_saddr",
            8,
        ),
        (SK_V6_DADDR[1], "sock", "__sk_common.skc_v6_daddr", 8),
        (TASK_COMM[1], "task_struct", "comm", 8),
    ];
}

/// Tracepoint layouts compiled into the programs. Context fields can only be loaded directly at
/// compile-time offsets (the verifier rejects a load through a modified context pointer), and a
/// direct load costs nothing where a `bpf_probe_read` helper call costs tens of ns. Userspace
/// compares these with the tracefs `format` files and sets the matching bits of
/// [`TracepointOffsets::fixed_layout`]; a tracepoint whose layout differs is read at the
/// runtime offsets through the helper instead.
pub mod tp_fixed {
    /// `ret` of every `syscalls:sys_exit_*` (stable since the tracepoints exist).
    pub const SYS_EXIT_RET: usize = 16;
    /// `inet_sock_set_state` layout bit.
    pub const ISS: u32 = 1;
    /// `inet_sock_set_state.skaddr`
    pub const ISS_SKADDR: usize = 8;
    /// `.oldstate`
    pub const ISS_OLDSTATE: usize = 16;
    /// `.newstate`
    pub const ISS_NEWSTATE: usize = 20;
    /// `.sport`
    pub const ISS_SPORT: usize = 24;
    /// `.dport`
    pub const ISS_DPORT: usize = 26;
    /// `.family`
    pub const ISS_FAMILY: usize = 28;
    /// `.protocol`
    pub const ISS_PROTOCOL: usize = 30;
    /// `.saddr`
    pub const ISS_SADDR: usize = 32;
    /// `.daddr`
    pub const ISS_DADDR: usize = 36;
    /// `.saddr_v6`
    pub const ISS_SADDR_V6: usize = 40;
    /// `.daddr_v6`
    pub const ISS_DADDR_V6: usize = 56;
    /// `mm_filemap_get_pages` layout bit.
    pub const FILEMAP: u32 = 2;
    /// `.i_ino`
    pub const FILEMAP_INO: usize = 8;
    /// `.s_dev`
    pub const FILEMAP_DEV: usize = 16;
    /// `io_uring_submit_req` layout bit.
    pub const IOU_SUBMIT: u32 = 4;
    /// `.req`
    pub const IOU_SUBMIT_REQ: usize = 16;
    /// `.opcode`
    pub const IOU_SUBMIT_OPCODE: usize = 32;
    /// `.flags` (8 bytes since 6.x)
    pub const IOU_SUBMIT_FLAGS: usize = 40;
    /// `io_uring_complete` layout bit.
    pub const IOU_COMPLETE: u32 = 8;
    /// `.req`
    pub const IOU_COMPLETE_REQ: usize = 16;
    /// `.res`
    pub const IOU_COMPLETE_RES: usize = 32;
}

/// Tracepoint field offsets read by userspace from tracefs `format` files, so that a field that
/// moved between kernel versions is still read right. [`NO_OFFSET`] when the field is absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `sched_process_exit.group_dead` (6.16+); absent: the leader's exit counts.
    pub exit_group_dead: u32,
    /// `sched_process_exec.filename` (`__data_loc`).
    pub exec_filename: u32,
    /// `inet_sock_set_state` fields.
    pub iss_skaddr: u32,
    /// `inet_sock_set_state.oldstate`
    pub iss_oldstate: u32,
    /// `inet_sock_set_state.newstate`
    pub iss_newstate: u32,
    /// `inet_sock_set_state.sport`
    pub iss_sport: u32,
    /// `inet_sock_set_state.dport`
    pub iss_dport: u32,
    /// `inet_sock_set_state.family`
    pub iss_family: u32,
    /// `inet_sock_set_state.protocol`
    pub iss_protocol: u32,
    /// `inet_sock_set_state.saddr`
    pub iss_saddr: u32,
    /// `inet_sock_set_state.daddr`
    pub iss_daddr: u32,
    /// `inet_sock_set_state.saddr_v6`
    pub iss_saddr_v6: u32,
    /// `inet_sock_set_state.daddr_v6`
    pub iss_daddr_v6: u32,
    /// `io_uring_submit_req.req`
    pub iou_submit_req: u32,
    /// `io_uring_submit_req.opcode`
    pub iou_submit_opcode: u32,
    /// `io_uring_submit_req.flags`
    pub iou_submit_flags: u32,
    /// `io_uring_complete.req`
    pub iou_complete_req: u32,
    /// `io_uring_complete.res`
    pub iou_complete_res: u32,
    /// `mm_filemap_get_pages.i_ino`
    pub filemap_ino: u32,
    /// `mm_filemap_get_pages.s_dev`
    pub filemap_dev: u32,
    /// Bits of [`tp_fixed`] whose compiled-in layout matches this kernel.
    pub fixed_layout: u32,
}

impl TracepointOffsets {
    /// All fields absent.
    pub const fn unset() -> Self {
        Self {
            exit_group_dead: NO_OFFSET,
            exec_filename: NO_OFFSET,
            iss_skaddr: NO_OFFSET,
            iss_oldstate: NO_OFFSET,
            iss_newstate: NO_OFFSET,
            iss_sport: NO_OFFSET,
            iss_dport: NO_OFFSET,
            iss_family: NO_OFFSET,
            iss_protocol: NO_OFFSET,
            iss_saddr: NO_OFFSET,
            iss_daddr: NO_OFFSET,
            iss_saddr_v6: NO_OFFSET,
            iss_daddr_v6: NO_OFFSET,
            iou_submit_req: NO_OFFSET,
            iou_submit_opcode: NO_OFFSET,
            iou_submit_flags: NO_OFFSET,
            iou_complete_req: NO_OFFSET,
            iou_complete_res: NO_OFFSET,
            filemap_ino: NO_OFFSET,
            filemap_dev: NO_OFFSET,
            fixed_layout: 0,
        }
    }
}

/// Runtime settings written into the programs' read-only data before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's own tgid: its activity is never reported (by tgid, never by name).
    pub agent_tgid: u32,
    /// A producer forces one consumer wakeup each time the pending ring-buffer bytes cross a
    /// multiple of this (0: never).
    pub wakeup_bytes: u32,
    /// Minimum ns between two filemap/io_uring read records for one (process, file).
    pub read_dedup_ns: u64,
}

impl AgentConfig {
    /// Defaults used before userspace fills in real values.
    pub const fn unset() -> Self {
        Self {
            agent_tgid: 0,
            wakeup_bytes: 256 * 1024,
            read_dedup_ns: 1_000_000_000,
        }
    }
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const LOST: u32 = 0;
    /// Records produced (reserve succeeded).
    pub const SENT: u32 = 1;
    /// Open-family exits inspected by the credential filter.
    pub const OPENS_SEEN: u32 = 2;
    /// Consumer wakeups forced by a producer (see the wakeup policy in the eBPF crate).
    pub const WAKEUPS: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Names of the object's programs, maps and load-time globals: the kernel side defines
/// functions and statics of these names, userspace (the loader, the benchmarks, the tests)
/// refers to them only through this table, and a test checks the object has every one.
pub mod names {
    /// Programs the agent attaches.
    pub mod program {
        /// `sched_process_exec`
        pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
        /// `sched_process_fork`
        pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
        /// `sched_process_exit`
        pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
        /// `inet_sock_set_state`
        pub const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
        /// `inet_sock_set_state_btf`
        pub const INET_SOCK_SET_STATE_BTF: &str = "inet_sock_set_state_btf";
        /// `connect4`
        pub const CONNECT4: &str = "connect4";
        /// `connect6`
        pub const CONNECT6: &str = "connect6";
        /// `sendmsg4`
        pub const SENDMSG4: &str = "sendmsg4";
        /// `sendmsg6`
        pub const SENDMSG6: &str = "sendmsg6";
        /// `udp_egress`
        pub const UDP_EGRESS: &str = "udp_egress";
        /// `dns_ingress`
        pub const DNS_INGRESS: &str = "dns_ingress";
        /// `sys_exit_openat`
        pub const SYS_EXIT_OPENAT: &str = "sys_exit_openat";
        /// `sys_exit_openat2`
        pub const SYS_EXIT_OPENAT2: &str = "sys_exit_openat2";
        /// `sys_exit_open`
        pub const SYS_EXIT_OPEN: &str = "sys_exit_open";
        /// `sys_exit_open_by_handle_at`
        pub const SYS_EXIT_OPEN_BY_HANDLE_AT: &str = "sys_exit_open_by_handle_at";
        /// `io_uring_submit_req`
        pub const IO_URING_SUBMIT_REQ: &str = "io_uring_submit_req";
        /// `io_uring_complete`
        pub const IO_URING_COMPLETE: &str = "io_uring_complete";
        /// `mm_filemap_get_pages`
        pub const MM_FILEMAP_GET_PAGES: &str = "mm_filemap_get_pages";
        /// `filemap_read`
        pub const FILEMAP_READ: &str = "filemap_read";
        /// Every program the agent may attach.
        pub const ALL: &[&str] = &[
            SCHED_PROCESS_EXEC,
            SCHED_PROCESS_FORK,
            SCHED_PROCESS_EXIT,
            INET_SOCK_SET_STATE,
            INET_SOCK_SET_STATE_BTF,
            CONNECT4,
            CONNECT6,
            SENDMSG4,
            SENDMSG6,
            UDP_EGRESS,
            DNS_INGRESS,
            SYS_EXIT_OPENAT,
            SYS_EXIT_OPENAT2,
            SYS_EXIT_OPEN,
            SYS_EXIT_OPEN_BY_HANDLE_AT,
            IO_URING_SUBMIT_REQ,
            IO_URING_COMPLETE,
            MM_FILEMAP_GET_PAGES,
            FILEMAP_READ,
        ];
    }

    /// Empty programs on the agent's hooks, for the benchmarks' floor.
    pub mod calibration {
        /// `calibration_empty`
        pub const CALIBRATION_EMPTY: &str = "calibration_empty";
        /// `calibration_empty_btf`
        pub const CALIBRATION_EMPTY_BTF: &str = "calibration_empty_btf";
        /// `calibration_empty_fork`
        pub const CALIBRATION_EMPTY_FORK: &str = "calibration_empty_fork";
        /// `calibration_empty_connect4`
        pub const CALIBRATION_EMPTY_CONNECT4: &str = "calibration_empty_connect4";
        /// `calibration_empty_connect6`
        pub const CALIBRATION_EMPTY_CONNECT6: &str = "calibration_empty_connect6";
        /// `calibration_empty_sendmsg4`
        pub const CALIBRATION_EMPTY_SENDMSG4: &str = "calibration_empty_sendmsg4";
        /// `calibration_empty_sendmsg6`
        pub const CALIBRATION_EMPTY_SENDMSG6: &str = "calibration_empty_sendmsg6";
        /// `calibration_empty_skb`
        pub const CALIBRATION_EMPTY_SKB: &str = "calibration_empty_skb";
        /// Every calibration program.
        pub const ALL: &[&str] = &[
            CALIBRATION_EMPTY,
            CALIBRATION_EMPTY_BTF,
            CALIBRATION_EMPTY_FORK,
            CALIBRATION_EMPTY_CONNECT4,
            CALIBRATION_EMPTY_CONNECT6,
            CALIBRATION_EMPTY_SENDMSG4,
            CALIBRATION_EMPTY_SENDMSG6,
            CALIBRATION_EMPTY_SKB,
        ];
    }

    /// Maps.
    pub mod map {
        /// `EVENTS`
        pub const EVENTS: &str = "EVENTS";
        /// `COUNTERS`
        pub const COUNTERS: &str = "COUNTERS";
        /// `CONSUMER_IDLE`
        pub const CONSUMER_IDLE: &str = "CONSUMER_IDLE";
        /// `PROCS`
        pub const PROCS: &str = "PROCS";
        /// `WATCHED`
        pub const WATCHED: &str = "WATCHED";
        /// `WATCH_BITS`
        pub const WATCH_BITS: &str = "WATCH_BITS";
        /// `WATCHED_NAMES`
        pub const WATCHED_NAMES: &str = "WATCHED_NAMES";
        /// `NAME_BITS`
        pub const NAME_BITS: &str = "NAME_BITS";
        /// `IOU_OPENS`
        pub const IOU_OPENS: &str = "IOU_OPENS";
        /// `RECENT`
        pub const RECENT: &str = "RECENT";
        /// `LISTENERS`
        pub const LISTENERS: &str = "LISTENERS";
        /// `UDP_UNSENT`
        pub const UDP_UNSENT: &str = "UDP_UNSENT";
        /// `UDP_SENT`
        pub const UDP_SENT: &str = "UDP_SENT";
        /// Every map.
        pub const ALL: &[&str] = &[
            EVENTS,
            COUNTERS,
            CONSUMER_IDLE,
            PROCS,
            WATCHED,
            WATCH_BITS,
            WATCHED_NAMES,
            NAME_BITS,
            IOU_OPENS,
            RECENT,
            LISTENERS,
            UDP_UNSENT,
            UDP_SENT,
        ];
    }

    /// Read-only globals userspace writes before load.
    pub mod global {
        /// `KOFF`
        pub const KOFF: &str = "KOFF";
        /// `TPOFF`
        pub const TPOFF: &str = "TPOFF";
        /// `CONFIG`
        pub const CONFIG: &str = "CONFIG";
    }
}

/// Size pins: the kernel and userspace compile these structures separately, so a change to one
/// side that the other does not share is caught here, not by a decoder reading garbage.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Header>() == 88);
    assert!(size_of::<ExecEvent>() == 864);
    assert!(size_of::<ForkEvent>() == 104);
    assert!(size_of::<ExitEvent>() == 96);
    assert!(size_of::<NetEvent>() == 144);
    assert!(size_of::<FileEvent>() == 480);
    assert!(size_of::<DnsEvent>() == 1344);
    assert!(size_of::<WatchKey>() == 16);
    assert!(size_of::<NameKey>() == 24);
    assert!(size_of::<ListenKey>() == 8);
    assert!(size_of::<KernelOffsets>() == 164);
    assert!(size_of::<TracepointOffsets>() == 84);
    assert!(size_of::<AgentConfig>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `repr(C)`, `Copy`, made only of integers and byte arrays, with
    // explicit padding: every bit pattern is a valid value.
    unsafe impl aya::Pod for Header {}
    unsafe impl aya::Pod for WatchKey {}
    unsafe impl aya::Pod for NameKey {}
    unsafe impl aya::Pod for ListenKey {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for TracepointOffsets {}
    unsafe impl aya::Pod for AgentConfig {}
}
