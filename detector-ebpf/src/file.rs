//! Credential files, matched by kernel identity (device, inode) — never by the path argument —
//! so that any way of naming the file (relative to a dirfd or cwd, `..`, symlink, hardlink,
//! `/proc/self/fd/N`, `openat2`) is the same file. Three vantage points:
//!
//! - exit of every open-family syscall: the returned fd → `task->files` → `struct file`;
//! - io_uring: `io_uring_submit_req` remembers OPENAT/OPENAT2 requests and checks the file of
//!   READ-family requests; `io_uring_complete` resolves the fd an OPENAT returned;
//! - `filemap:mm_filemap_get_pages`: buffered reads of a watched inode whatever the syscall
//!   path (fd passing, 32-bit compat syscalls, splice), deduplicated per (process, file).
//!
//! Ordinary opens cost a handful of kernel reads and one hash lookup, and produce nothing.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{fentry, map, tracepoint},
    maps::{Array, HashMap, LruHashMap},
    programs::{FEntryContext, TracePointContext},
};
use detector_common::{
    counter, direct as d, kind, tp_fixed, via, watch, watch_bits, FileEvent, NameKey, WatchKey,
    DENTRY_DEPTH, NO_OFFSET,
};

use crate::{
    cast, count, direct, dl, fill_header, global, has_cast, is_agent, kread, kread_pair, lost,
    task_btf, tpf, wake_flags, CONFIG, EVENTS, KOFF, TPOFF,
};

/// Which saved syscall register holds the path argument (see `report`).
const PATH_ARG0: u32 = 0;
const PATH_ARG1: u32 = 1;
const NO_PATH_ARG: u32 = NO_OFFSET;

const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const IORING_OP_READV: u8 = 1;
const IORING_OP_READ_FIXED: u8 = 4;
const IORING_OP_OPENAT: u8 = 18;
const IORING_OP_READ: u8 = 22;
const IORING_OP_OPENAT2: u8 = 28;
const IORING_OP_SPLICE: u8 = 30;
const IORING_OP_READ_MULTISHOT: u8 = 49;
/// `REQ_F_FIXED_FILE`: the request's fd is an index into the ring's registered files.
const REQ_F_FIXED_FILE: u32 = 1;

/// Watched credential files: (dev, inode) → watch id. Kept current by userspace.
#[map]
static WATCHED: HashMap<WatchKey, u32> = HashMap::with_max_entries(65536, 0);

/// Prefilter in front of `WATCHED` (see `detector_common::watch_bits`). Userspace writes it.
#[map]
static WATCH_BITS: Array<[u64; watch_bits::WORDS]> = Array::with_max_entries(1, 0);

/// The watch id of a (dev, inode), if watched: the bitmap first, the hash only on a set bit.
#[inline(always)]
fn watched(dev: u64, ino: u64) -> Option<u32> {
    let (word, mask) = watch_bits::slot(dev, ino);
    let bits = WATCH_BITS.get(0)?;
    // `slot` masks the index; the explicit bound keeps the verifier's range proof local.
    if bits.get(word & (watch_bits::WORDS - 1))? & mask == 0 {
        return None;
    }
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    unsafe { WATCHED.get(&WatchKey { dev, ino }) }.copied()
}

/// A watched file's name in its directory → watch id (see `NameKey`), learned by the programs
/// from opens that matched `WATCHED` by inode. A least-recently-used map: it cannot fill, and
/// userspace deletes the entries of retired watch ids.
#[map]
static WATCHED_NAMES: LruHashMap<NameKey, u32> = LruHashMap::with_max_entries(16384, 0);

/// Prefilter in front of `WATCHED_NAMES` (slots as `watch_bits::slot`), set by the programs as
/// they learn a name and never cleared: a stale bit costs one lookup, nothing more.
#[map]
static NAME_BITS: Array<[u64; watch_bits::WORDS]> = Array::with_max_entries(1, 0);

/// `file`'s dentry and the precomputed hash and length of its name (`D`: direct loads).
#[inline(always)]
fn name_hash<const D: bool>(file: u64) -> Option<(u64, u64)> {
    if D {
        let dentry = dl!(u64, file, d::FILE_DENTRY);
        if dentry == 0 {
            return None;
        }
        // `hash_len` as the kernel lays it out on x86_64: hash in the low half, length above.
        let hash = dl!(u32, dentry, d::DENTRY_HASH) as u64;
        let len = dl!(u32, dentry, d::DENTRY_NAME_LEN) as u64;
        return Some((dentry, hash | len << 32));
    }
    let dentry: u64 = kread(file, global!(KOFF.file_dentry))?;
    Some((dentry, kread(dentry, global!(KOFF.dentry_hash_len))?))
}

/// The `WATCHED_NAMES` key of `dentry` (named by `hash_len`) on device `dev`: its directory's
/// inode number (a number: a dentry's address would be a pointer the verifier keeps out of
/// keys and arithmetic).
#[inline(always)]
fn name_key<const D: bool>(dentry: u64, hash_len: u64, dev: u64) -> Option<NameKey> {
    let dir_ino = if D {
        let parent = dl!(u64, dentry, d::DENTRY_PARENT);
        // A root has itself as parent: no name to match.
        if parent == 0 || parent == dentry {
            return None;
        }
        let inode = dl!(u64, parent, d::DENTRY_INODE);
        if inode == 0 {
            return None;
        }
        dl!(u64, inode, d::INODE_INO)
    } else {
        let parent: u64 = kread(dentry, global!(KOFF.dentry_parent))?;
        if parent == dentry {
            return None;
        }
        let inode: u64 = kread(parent, global!(KOFF.dentry_inode))?;
        kread(inode, global!(KOFF.inode_ino))?
    };
    Some(NameKey {
        dev,
        dir_ino,
        hash_len,
    })
}

/// Remembers the name under which watched file `w` was just opened (when it is new), so that
/// a replacement of the file by rename matches at once (see `watched_name`).
#[inline(always)]
fn learn_name<const D: bool>(file: u64, dev: u64, w: u32) {
    let Some((dentry, hash_len)) = name_hash::<D>(file) else {
        return;
    };
    let Some(key) = name_key::<D>(dentry, hash_len, dev) else {
        return;
    };
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    if unsafe { WATCHED_NAMES.get(&key) }.copied() == Some(w) {
        return;
    }
    let _ = WATCHED_NAMES.insert(&key, &w, 0);
    let (word, mask) = watch_bits::slot(0, hash_len);
    if let Some(bits) = NAME_BITS.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer for this run; the index is masked into the array.
        // Not atomic: two CPUs learning at once may lose one bit, which the next open of that
        // file by inode sets again.
        unsafe { (*bits)[word & (watch_bits::WORDS - 1)] |= mask };
    }
}

/// The watch id of the file whose name `file` now has in its directory, for an inode not (yet)
/// watched: a watched file replaced by rename, before userspace has added the new inode. Most
/// opens leave at the bitmap: two loads and a bit test.
#[inline(always)]
fn watched_name<const D: bool>(file: u64, dev: u64) -> Option<u32> {
    let (dentry, hash_len) = name_hash::<D>(file)?;
    // The name's hash is already salted by its directory: it alone picks the slot.
    let (word, mask) = watch_bits::slot(0, hash_len);
    let bits = NAME_BITS.get(0)?;
    if bits.get(word & (watch_bits::WORDS - 1))? & mask == 0 {
        return None;
    }
    let key = name_key::<D>(dentry, hash_len, dev)?;
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    unsafe { WATCHED_NAMES.get(&key) }.copied()
}

/// io_uring OPENAT/OPENAT2 requests in flight: request → opcode.
#[map]
static IOU_OPENS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(8192, 0);

/// Key of `RECENT`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RecentKey {
    tgid: u32,
    _pad: u32,
    dev: u64,
    ino: u64,
}

/// Last time a (process, file) pair was reported: read records are deduplicated against it.
#[map]
static RECENT: LruHashMap<RecentKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// What a `struct file` is.
struct FileId {
    file: u64,
    dev: u64,
    ino: u64,
    magic: u64,
}

/// `D`: `file` is a `PTR_TO_BTF_ID` and the members are read with direct loads; else with
/// probe-read helper calls.
#[inline(always)]
fn file_id<const D: bool>(file: u64) -> Option<FileId> {
    if D {
        let inode = dl!(u64, file, d::FILE_INODE);
        if inode == 0 {
            return None;
        }
        let ino = dl!(u64, inode, d::INODE_INO);
        let sb = dl!(u64, inode, d::INODE_SB);
        if sb == 0 {
            return None;
        }
        return Some(FileId {
            file,
            dev: dl!(u32, sb, d::SB_DEV) as u64,
            ino,
            magic: dl!(u64, sb, d::SB_MAGIC),
        });
    }
    let inode: u64 = kread(file, global!(KOFF.file_inode))?;
    let ino: u64 = kread(inode, global!(KOFF.inode_ino))?;
    let sb: u64 = kread(inode, global!(KOFF.inode_sb))?;
    let dev: u32 = kread(sb, global!(KOFF.sb_dev))?;
    let magic: u64 = kread(sb, global!(KOFF.sb_magic)).unwrap_or(0);
    Some(FileId {
        file,
        dev: dev as u64,
        ino,
        magic,
    })
}

/// One slot of `files_struct.fd_array` by a direct load (the slot index must be an
/// instruction immediate: the verifier refuses a variable offset on a BTF pointer).
macro_rules! fd_slots {
    ($files:expr, $fd:expr, $($i:literal)*) => {
        match $fd {
            $($i => dl!(u64, $files, d::FD_SLOT_BASE + $i),)*
            _ => 0,
        }
    };
}

/// A `struct file *` found by [`fd_file_direct`].
enum FdFile {
    /// A `PTR_TO_BTF_ID`: direct loads apply.
    Typed(u64),
    /// A plain number (a grown table on a kernel without `bpf_rdonly_cast`): helper reads.
    Raw(u64),
}

/// fd → `struct file *`, by direct loads: a slot of the descriptor table embedded in
/// `files_struct` while the task still uses it (no helper call at all), else one probe read of
/// `fdt->fd[fd]` whose result is typed with `bpf_rdonly_cast` where the kernel has it.
#[inline(always)]
fn fd_file_direct(fd: u64) -> Option<FdFile> {
    let files = dl!(u64, task_btf(), d::TASK_FILES);
    if files == 0 {
        return None;
    }
    let fdt = dl!(u64, files, d::FILES_FDT);
    // A grown table lives elsewhere and the embedded slots are stale.
    if fd >= d::FD_SLOTS as u64 || fdt != files + global!(KOFF.files_fdtab) as u64 {
        if fdt == 0 || fd >= dl!(u32, fdt, d::FDT_MAX_FDS) as u64 {
            return None;
        }
        let arr = dl!(u64, fdt, d::FDT_FD);
        let file: u64 = kread(arr + fd * 8, 0)?;
        if file == 0 {
            return None;
        }
        if !has_cast() {
            return Some(FdFile::Raw(file));
        }
        return Some(FdFile::Typed(cast!(file, d::TYPE_FILE)));
    }
    let file = fd_slots!(files, fd,
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63);
    if file == 0 {
        None
    } else {
        Some(FdFile::Typed(file))
    }
}

/// fd → `struct file *` in the current task's descriptor table.
#[inline(always)]
fn fd_file(fd: u64) -> Option<u64> {
    // SAFETY: a helper without preconditions; the pointer is only read through fault-tolerant
    // helpers.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kread(task, global!(KOFF.task_files))?;
    let fdt: u64 = kread(files, global!(KOFF.files_fdt))?;
    let (max, arr): (u32, u64) = kread_pair(fdt, global!(KOFF.fdt_max_fds), global!(KOFF.fdt_fd))?;
    if fd >= max as u64 {
        return None;
    }
    let file: u64 = kread(arr + fd * 8, 0)?;
    if file == 0 {
        None
    } else {
        Some(file)
    }
}

/// Decimal pid in a short NUL-terminated name; 0 when it is not a number.
#[inline(always)]
fn parse_pid(name: &[u8; 16]) -> u32 {
    let mut v: u32 = 0;
    let mut i = 0;
    while i < 10 {
        let c = name[i];
        if c == 0 {
            break;
        }
        if !c.is_ascii_digit() {
            return 0;
        }
        v = v.wrapping_mul(10).wrapping_add((c - b'0') as u32);
        i += 1;
    }
    if i == 0 {
        0
    } else {
        v
    }
}

/// For a procfs file named `environ`: the pid directory it belongs to when that is another
/// process than the caller; else `None`.
#[inline(always)]
fn foreign_environ<const D: bool>(file: u64, pid: u32, tgid: u32) -> Option<u32> {
    let dentry: u64 = if D {
        dl!(u64, file, d::FILE_DENTRY)
    } else {
        kread(file, global!(KOFF.file_dentry))?
    };
    let name_ptr: u64 = if D {
        dl!(u64, dentry, d::DENTRY_NAME)
    } else {
        kread(dentry, global!(KOFF.dentry_name))?
    };
    let name: [u8; 8] = kread(name_ptr, 0)?;
    if &name != b"environ\0" {
        return None;
    }
    let pname_ptr: u64 = if D {
        let parent = dl!(u64, dentry, d::DENTRY_PARENT);
        dl!(u64, parent, d::DENTRY_NAME)
    } else {
        let parent: u64 = kread(dentry, global!(KOFF.dentry_parent))?;
        kread(parent, global!(KOFF.dentry_name))?
    };
    let mut pname = [0u8; 16];
    // SAFETY: a fault-tolerant helper read into a buffer we own; it writes at most the buffer's
    // length.
    unsafe { bpf_probe_read_kernel_str_bytes(pname_ptr as *const u8, &mut pname) }.ok()?;
    let target = parse_pid(&pname);
    if target == 0 || target == tgid || target == pid {
        return None;
    }
    Some(target)
}

/// Bounded dentry walk, leaf first, within the file's filesystem.
#[inline(always)]
fn walk_dentries<const D: bool>(ev: &mut FileEvent, file: u64) {
    ev.depth = 0;
    let mut dentry: u64 = if D {
        dl!(u64, file, d::FILE_DENTRY)
    } else {
        kread(file, global!(KOFF.file_dentry)).unwrap_or(0)
    };
    let mut i = 0;
    while i < DENTRY_DEPTH {
        if dentry == 0 {
            break;
        }
        let name_ptr: u64 = if D {
            dl!(u64, dentry, d::DENTRY_NAME)
        } else {
            kread(dentry, global!(KOFF.dentry_name)).unwrap_or(0)
        };
        if name_ptr == 0 {
            break;
        }
        let inline = global!(KOFF.dentry_shortname);
        if D && inline != NO_OFFSET && name_ptr == dentry + inline as u64 {
            // The name is stored in the dentry itself: four direct loads instead of a string
            // helper call (a longer inline name is cut at 32 bytes, as by the helper).
            let w = [
                dl!(u64, dentry, d::DENTRY_WORDS[0]),
                dl!(u64, dentry, d::DENTRY_WORDS[1]),
                dl!(u64, dentry, d::DENTRY_WORDS[2]),
                dl!(u64, dentry, d::DENTRY_WORDS[3]),
            ];
            // `dentry` sits at an 8-byte multiple of the (8-aligned) record.
            let dst = ev.dentry[i].as_mut_ptr() as *mut [u64; 4];
            // SAFETY: `dst` is `ev.dentry[i]` of the reserved record: 32 bytes, 8-aligned (the
            // record is 8-aligned and `dentry` sits at a multiple of 8).
            unsafe { dst.write(w) };
        } else {
            // SAFETY: a fault-tolerant helper read into a buffer of the record; it writes at
            // most the buffer's length.
            let read = unsafe {
                bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut ev.dentry[i])
            };
            if read.is_err() {
                ev.dentry[i][0] = 0;
            }
        }
        ev.depth = (i + 1) as u32;
        let parent: u64 = if D {
            dl!(u64, dentry, d::DENTRY_PARENT)
        } else {
            kread(dentry, global!(KOFF.dentry_parent)).unwrap_or(0)
        };
        if parent == dentry {
            break;
        }
        dentry = parent;
        i += 1;
    }
}

/// Remembers that (tgid, file) was just reported. An existing entry is updated in place: a
/// lookup costs a fraction of an LRU insert, and a process that opens a credential once
/// usually opens it again.
#[inline(always)]
fn touch_recent(tgid: u32, dev: u64, ino: u64, now: u64) {
    let key = RecentKey {
        tgid,
        _pad: 0,
        dev,
        ino,
    };
    if let Some(t) = RECENT.get_ptr_mut(&key) {
        // SAFETY: a map value pointer of this program run; a plain integer.
        unsafe { *t = now };
        return;
    }
    let _ = RECENT.insert(&key, &now, 0);
}

/// True when (tgid, file) was reported less than `read_dedup_ns` ago.
#[inline(always)]
fn seen_recently(tgid: u32, dev: u64, ino: u64, now: u64) -> bool {
    let key = RecentKey {
        tgid,
        _pad: 0,
        dev,
        ino,
    };
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    match unsafe { RECENT.get(&key) } {
        Some(t) => now.saturating_sub(*t) < global!(CONFIG.read_dedup_ns),
        None => false,
    }
}

/// Reports a watched file reached through `id.file` (`D`: a `PTR_TO_BTF_ID`, see `file_id`).
/// `user_path_arg`: which syscall argument (`PATH_ARG0|1`) holds the path the caller passed.
#[inline(always)]
fn report<const D: bool>(
    id: &FileId,
    watch_id: u32,
    target_pid: u32,
    k: u32,
    how: u32,
    user_path_arg: u32,
) {
    let Some(mut entry) = EVENTS.reserve::<FileEvent>(0) else {
        lost();
        return;
    };
    // SAFETY: the reservation holds one whole record, ours alone until it is submitted; every field
    // is written before that.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, k);
    ev.dev = id.dev;
    ev.ino = id.ino;
    ev.watch_id = watch_id;
    ev.via = how;
    ev.flags = if k == kind::FILE_OPEN && D {
        dl!(u32, id.file, d::FILE_FLAGS)
    } else if k == kind::FILE_OPEN {
        kread(id.file, global!(KOFF.file_flags)).unwrap_or(0)
    } else {
        0
    };
    ev.target_pid = target_pid;
    ev.path_len = 0;
    ev.path[0] = 0;
    if user_path_arg != NO_PATH_ARG {
        // The name the caller passed, read after the fact from the saved syscall registers:
        // informative only (a racing thread could have rewritten it); the identity above is
        // what matched.
        // SAFETY: a helper without preconditions; the verifier types the pointer it returns.
        let task = unsafe { bpf_get_current_task_btf() };
        // SAFETY: `task` is the BTF-typed current task, as the helper requires.
        let regs = unsafe { bpf_task_pt_regs(task) } as u64;
        let uptr = if direct() {
            // `bpf_task_pt_regs` returns a BTF-typed `pt_regs`.
            Some(if user_path_arg == PATH_ARG0 {
                dl!(u64, regs, d::PT_REGS_DI)
            } else {
                dl!(u64, regs, d::PT_REGS_SI)
            })
        } else if user_path_arg == PATH_ARG0 {
            kread::<u64>(regs, global!(KOFF.regs_arg0))
        } else {
            kread::<u64>(regs, global!(KOFF.regs_arg1))
        };
        if let Some(uptr) = uptr {
            // SAFETY: a fault-tolerant helper read into a buffer we own; it writes at most the
            // buffer's length.
            if let Ok(s) = unsafe { bpf_probe_read_user_str_bytes(uptr as *const u8, &mut ev.path) }
            {
                ev.path_len = s.len() as u32;
            }
        }
    }
    if id.file != 0 {
        walk_dentries::<D>(ev, id.file);
    } else {
        ev.depth = 0;
    }
    touch_recent(ev.hdr.tgid, id.dev, id.ino, ev.hdr.ts_ns);
    let flags = wake_flags::<FileEvent>();
    entry.submit(flags);
}

/// A file descriptor was just opened: report it when it is a watched credential or another
/// process's `/proc/<pid>/environ`. The caller's ids are read only then: nearly every open is
/// of neither, and leaves after a few loads and one bitmap test.
#[inline(always)]
fn opened(fd: u64, how: u32, path_arg: u32) {
    if direct() {
        match fd_file_direct(fd) {
            Some(FdFile::Typed(file)) => opened_file::<true>(file, how, path_arg),
            Some(FdFile::Raw(file)) => opened_file::<false>(file, how, path_arg),
            None => {}
        }
        return;
    }
    let Some(file) = fd_file(fd) else { return };
    opened_file::<false>(file, how, path_arg);
}

/// `O_PATH`: a descriptor that names the file and cannot read it.
const O_PATH: u32 = 0o10_000_000;

/// Whether `file` was opened `O_PATH` (no access to the content: not a credential use; the
/// agent itself opens every newly watched file so, to teach its name).
#[inline(always)]
fn path_only<const D: bool>(file: u64) -> bool {
    let flags: u32 = if D {
        dl!(u32, file, d::FILE_FLAGS)
    } else {
        kread(file, global!(KOFF.file_flags)).unwrap_or(0)
    };
    flags & O_PATH != 0
}

#[inline(always)]
fn opened_file<const D: bool>(file: u64, how: u32, path_arg: u32) {
    let Some(id) = file_id::<D>(file) else { return };
    if let Some(w) = watched(id.dev, id.ino) {
        // The agent's own opens teach names too: it opens every file it starts to watch.
        learn_name::<D>(file, id.dev, w);
        if is_agent((bpf_get_current_pid_tgid() >> 32) as u32) || path_only::<D>(file) {
            return;
        }
        report::<D>(&id, w, 0, kind::FILE_OPEN, how, path_arg);
    } else if id.magic == PROC_SUPER_MAGIC {
        let pid_tgid = bpf_get_current_pid_tgid();
        let (pid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
        if is_agent(tgid) {
            return;
        }
        if let Some(target) = foreign_environ::<D>(file, pid, tgid) {
            report::<D>(
                &id,
                watch::PROC_ENVIRON,
                target,
                kind::FILE_OPEN,
                how,
                path_arg,
            );
        }
    } else if let Some(w) = watched_name::<D>(file, id.dev) {
        if is_agent((bpf_get_current_pid_tgid() >> 32) as u32) || path_only::<D>(file) {
            return;
        }
        report::<D>(&id, w, 0, kind::FILE_OPEN, how, path_arg);
    }
}

/// Shared body of the open-family exit programs.
#[inline(always)]
fn on_open_exit(ctx: &TracePointContext, path_arg: u32) {
    count(counter::OPENS_SEEN, 1);
    // `ret` sits right after the common header and the syscall number in every sys_exit_*.
    // SAFETY: `ret` lies at this fixed offset in every sys_exit record: a direct load from the
    // context.
    let ret: i64 = unsafe {
        core::ptr::read_volatile(
            (aya_ebpf::EbpfContext::as_ptr(ctx) as *const u8).add(tp_fixed::SYS_EXIT_RET)
                as *const i64,
        )
    };
    if ret < 0 {
        return;
    }
    opened(ret as u64, via::SYSCALL, path_arg);
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, PATH_ARG1);
    0
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, PATH_ARG1);
    0
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, PATH_ARG0);
    0
}

#[tracepoint]
pub fn sys_exit_open_by_handle_at(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx, NO_PATH_ARG);
    0
}

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = try_iou_submit(&ctx);
    0
}

fn try_iou_submit(ctx: &TracePointContext) -> Option<()> {
    let off = global!(TPOFF.iou_submit_opcode);
    if off == NO_OFFSET {
        return None;
    }
    let opcode: u8 = tpf!(
        ctx,
        tp_fixed::IOU_SUBMIT,
        tp_fixed::IOU_SUBMIT_OPCODE,
        off,
        u8
    )?;
    let req: u64 = tpf!(
        ctx,
        tp_fixed::IOU_SUBMIT,
        tp_fixed::IOU_SUBMIT_REQ,
        global!(TPOFF.iou_submit_req),
        u64
    )?;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    if opcode == IORING_OP_OPENAT || opcode == IORING_OP_OPENAT2 {
        let _ = IOU_OPENS.insert(&req, &(opcode as u32), 0);
        return None;
    }
    if !(opcode == IORING_OP_READ
        || opcode == IORING_OP_READV
        || opcode == IORING_OP_READ_FIXED
        || opcode == IORING_OP_READ_MULTISHOT
        || opcode == IORING_OP_SPLICE)
    {
        return None;
    }
    let foff = global!(TPOFF.iou_submit_flags);
    // The low 32 bits whatever the field's width: a u64 since 6.2, a u32 before (and in
    // `io_uring_submit_sqe`); `REQ_F_FIXED_FILE` is bit 0 in both.
    let flags: u32 = if foff == NO_OFFSET {
        0
    } else {
        tpf!(
            ctx,
            tp_fixed::IOU_SUBMIT,
            tp_fixed::IOU_SUBMIT_FLAGS,
            foff,
            u32
        )
        .unwrap_or(0)
    };
    if flags & REQ_F_FIXED_FILE != 0 {
        // Registered-file index, not an fd: left to the filemap vantage point.
        return None;
    }
    let fd: i32 = kread(req, global!(KOFF.io_kiocb_fd))?;
    if fd < 0 {
        return None;
    }
    let file = fd_file(fd as u64)?;
    let id = file_id::<false>(file)?;
    let w = watched(id.dev, id.ino)?;
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if seen_recently(tgid, id.dev, id.ino, now) {
        return None;
    }
    report::<false>(&id, w, 0, kind::FILE_READ, via::IO_URING, NO_PATH_ARG);
    Some(())
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let _ = try_iou_complete(&ctx);
    0
}

fn try_iou_complete(ctx: &TracePointContext) -> Option<()> {
    let off = global!(TPOFF.iou_complete_req);
    if off == NO_OFFSET {
        return None;
    }
    let req: u64 = tpf!(
        ctx,
        tp_fixed::IOU_COMPLETE,
        tp_fixed::IOU_COMPLETE_REQ,
        off,
        u64
    )?;
    // SAFETY: the map value stays valid for this program run (RCU); it is plain data, read right
    // away.
    unsafe { IOU_OPENS.get(&req) }?;
    let _ = IOU_OPENS.remove(&req);
    let res: i32 = tpf!(
        ctx,
        tp_fixed::IOU_COMPLETE,
        tp_fixed::IOU_COMPLETE_RES,
        global!(TPOFF.iou_complete_res),
        i32
    )?;
    if res < 0 {
        return None;
    }
    opened(res as u64, via::IO_URING, NO_PATH_ARG);
    Some(())
}

#[tracepoint]
pub fn mm_filemap_get_pages(ctx: TracePointContext) -> u32 {
    let _ = try_filemap(&ctx);
    0
}

fn try_filemap(ctx: &TracePointContext) -> Option<()> {
    let ioff = global!(TPOFF.filemap_ino);
    let doff = global!(TPOFF.filemap_dev);
    if ioff == NO_OFFSET || doff == NO_OFFSET {
        return None;
    }
    let ino: u64 = tpf!(ctx, tp_fixed::FILEMAP, tp_fixed::FILEMAP_INO, ioff, u64)?;
    let dev: u32 = tpf!(ctx, tp_fixed::FILEMAP, tp_fixed::FILEMAP_DEV, doff, u32)?;
    let w = watched(dev as u64, ino)?;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if seen_recently(tgid, dev as u64, ino, now) {
        return None;
    }
    let id = FileId {
        file: 0,
        dev: dev as u64,
        ino,
        magic: 0,
    };
    report::<false>(&id, w, 0, kind::FILE_READ, via::FILEMAP, NO_PATH_ARG);
    Some(())
}

/// Buffered reads on kernels without `filemap:mm_filemap_get_pages` (before 6.11): the entry
/// of `filemap_read`, which every buffered `read_iter` of a page-cache file system goes
/// through (read, pread, readv, splice, sendfile). Attached only where the tracepoint is
/// missing and fentry is allowed (not under lockdown, which refuses it).
#[fentry(function = "filemap_read")]
pub fn filemap_read(ctx: FEntryContext) -> u32 {
    let _ = try_filemap_read(&ctx);
    0
}

fn try_filemap_read(ctx: &FEntryContext) -> Option<()> {
    // A BTF-typed `struct kiocb *`: direct loads apply from it.
    let iocb: u64 = ctx.arg(0);
    let id = if direct() {
        let file = dl!(u64, iocb, d::KIOCB_FILP);
        if file == 0 {
            return None;
        }
        file_id::<true>(file)?
    } else {
        file_id::<false>(kread(iocb, global!(KOFF.kiocb_filp))?)?
    };
    let w = watched(id.dev, id.ino)?;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_agent(tgid) {
        return None;
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if seen_recently(tgid, id.dev, id.ino, now) {
        return None;
    }
    // Reported like the tracepoint's reads: by identity, without names.
    let id = FileId { file: 0, ..id };
    report::<false>(&id, w, 0, kind::FILE_READ, via::FILEMAP, NO_PATH_ARG);
    Some(())
}
