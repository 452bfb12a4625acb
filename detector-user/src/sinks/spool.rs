//! What a sink holds until it is delivered: a bounded in-memory queue, or a bounded on-disk
//! spool that survives a crash and a restart.
//!
//! The spool is a directory (0700) of segment files (0600) with records framed as
//! `len: u32 LE | crc32(payload): u32 LE | payload`, appended in order. The delivered prefix
//! is recorded in `head` (segment, offset), replaced atomically after each delivery. On open
//! every record after the head is checked: a torn or corrupt tail (kill -9 mid-append, power
//! loss) is detected by its length or checksum, counted, and cut off — never mis-parsed.
//! Delivery after a crash may repeat the records delivered since the last `head` update
//! (at-least-once; the alert id lets the receiver dedup).

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::config::{FsyncPolicy, OverflowPolicy};

use super::{Record, SinkError};

/// Frame header bytes.
const HEADER: u64 = 8;
/// Largest record accepted (a sane alert is a few KiB); larger lengths mean corruption.
const MAX_RECORD: u32 = 16 << 20;

/// Result of queueing one record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Records dropped by the overflow policy to make this push fit (or this one).
    pub(crate) dropped: u64,
}

/// A sink's queue: memory or disk.
pub(crate) enum Queue {
    /// Bounded in-memory queue (lost on exit; what remains at shutdown is logged).
    Memory(MemQueue),
    /// On-disk spool.
    Disk(Spool),
}

impl Queue {
    /// Queues a record, applying the overflow policy.
    pub(crate) fn push(&mut self, r: &Record) -> Result<Pushed, SinkError> {
        match self {
            Queue::Memory(q) => Ok(q.push(r)),
            Queue::Disk(s) => s.push(r),
        }
    }

    /// Up to `n` oldest records with their sequence numbers, oldest first.
    pub(crate) fn peek(&mut self, n: usize) -> Result<Vec<(u64, Record)>, SinkError> {
        match self {
            Queue::Memory(q) => Ok(q.peek(n)),
            Queue::Disk(s) => s.peek(n),
        }
    }

    /// Up to `n` newest records, oldest first.
    pub(crate) fn tail(&mut self, n: usize) -> Result<Vec<Record>, SinkError> {
        let skip = self.len().saturating_sub(n);
        let mut v = Vec::new();
        match self {
            Queue::Memory(q) => v.extend(q.items.iter().skip(skip).map(|(_, r)| r.clone())),
            Queue::Disk(s) => {
                for loc in s.index.iter().skip(skip) {
                    v.push(s.read(loc)?);
                }
            }
        }
        Ok(v)
    }

    /// Removes every record with sequence number `<= seq` (delivered).
    pub(crate) fn commit(&mut self, seq: u64) -> Result<(), SinkError> {
        match self {
            Queue::Memory(q) => {
                q.commit(seq);
                Ok(())
            }
            Queue::Disk(s) => s.commit(seq),
        }
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Queue::Memory(q) => q.items.len(),
            Queue::Disk(s) => s.index.len(),
        }
    }

    /// True when nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Queue::Memory(q) => q.bytes,
            Queue::Disk(s) => s.bytes,
        }
    }

    /// Makes appends durable according to the fsync policy (`force`: now, whatever it says).
    pub(crate) fn sync(&mut self, force: bool) -> Result<(), SinkError> {
        match self {
            Queue::Memory(_) => Ok(()),
            Queue::Disk(s) => s.sync(force),
        }
    }

    /// The policy's name, for the overflow notice.
    pub(crate) fn policy(&self) -> OverflowPolicy {
        match self {
            Queue::Memory(q) => q.policy,
            Queue::Disk(s) => s.policy,
        }
    }
}

/// Bounded in-memory queue.
pub(crate) struct MemQueue {
    items: VecDeque<(u64, Record)>,
    bytes: u64,
    max_records: usize,
    policy: OverflowPolicy,
    next_seq: u64,
}

impl MemQueue {
    /// A queue of at most `max_records`.
    pub(crate) fn new(max_records: usize, policy: OverflowPolicy) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_records: max_records.max(1),
            policy,
            next_seq: 1,
        }
    }

    fn push(&mut self, r: &Record) -> Pushed {
        let mut dropped = 0;
        if self.items.len() >= self.max_records {
            match self.policy {
                OverflowPolicy::DropNewest => return Pushed { dropped: 1 },
                OverflowPolicy::DropOldest => {
                    if let Some((_, old)) = self.items.pop_front() {
                        self.bytes -= old.body.len() as u64;
                        dropped += 1;
                    }
                }
            }
        }
        self.bytes += r.body.len() as u64;
        self.items.push_back((self.next_seq, r.clone()));
        self.next_seq += 1;
        Pushed { dropped }
    }

    fn peek(&self, n: usize) -> Vec<(u64, Record)> {
        self.items.iter().take(n).cloned().collect()
    }

    fn commit(&mut self, seq: u64) {
        while self.items.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, r)) = self.items.pop_front() {
                self.bytes -= r.body.len() as u64;
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    seq: u64,
    seg: u64,
    off: u64,
    /// Frame length including the header.
    len: u64,
}

struct Segment {
    id: u64,
    file: File,
    len: u64,
}

/// What opening a spool found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Records waiting for delivery.
    pub(crate) records: usize,
    /// Torn or corrupt bytes cut off.
    pub(crate) torn_bytes: u64,
}

/// Bounded, crash-safe on-disk spool of one sink.
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    policy: OverflowPolicy,
    fsync: FsyncPolicy,
    segments: VecDeque<Segment>,
    index: VecDeque<Loc>,
    bytes: u64,
    next_seq: u64,
    dirty: bool,
    last_sync: Instant,
    /// What the last open found.
    pub(crate) recovered: Recovered,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> SinkError + '_ {
    move |e| SinkError::Spool(format!("{}: {e}", path.display()))
}

fn open_0600(path: &Path, append: bool) -> Result<File, SinkError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .append(append)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))?;
    // A file made by an older run or by hand may be wider: alerts name hosts and users.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_at(path))?;
    Ok(f)
}

/// Encodes the payload of one record: `id_len: u16 LE | id | body`.
fn payload(r: &Record) -> Vec<u8> {
    let id = r.id.as_bytes();
    let id_len = id.len().min(u16::MAX as usize);
    let mut p = Vec::with_capacity(2 + id_len + r.body.len());
    p.extend_from_slice(&(id_len as u16).to_le_bytes());
    p.extend_from_slice(&id[..id_len]);
    p.extend_from_slice(&r.body);
    p
}

fn frame(r: &Record) -> Vec<u8> {
    let p = payload(r);
    let mut f = Vec::with_capacity(8 + p.len());
    f.extend_from_slice(&(p.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    f.extend_from_slice(&p);
    f
}

fn decode(p: &[u8]) -> Option<Record> {
    let id_len = u16::from_le_bytes([*p.first()?, *p.get(1)?]) as usize;
    let id = std::str::from_utf8(p.get(2..2 + id_len)?).ok()?.to_string();
    Some(Record {
        id,
        body: p.get(2 + id_len..)?.to_vec(),
    })
}

/// Scans frames of `data` from `from`; returns (frame offsets and lengths, end of the valid
/// prefix).
fn scan(data: &[u8], from: u64) -> (Vec<(u64, u64)>, u64) {
    let mut out = Vec::new();
    let mut off = from as usize;
    while off + HEADER as usize <= data.len() {
        let len = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
        let crc = u32::from_le_bytes([data[off + 4], data[off + 5], data[off + 6], data[off + 7]]);
        let start = off + HEADER as usize;
        if len > MAX_RECORD || start + len as usize > data.len() {
            break;
        }
        let p = &data[start..start + len as usize];
        if crc32fast::hash(p) != crc || decode(p).is_none() {
            break;
        }
        out.push((off as u64, HEADER + len as u64));
        off = start + len as usize;
    }
    (out, off as u64)
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and recovers what a previous run left.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        policy: OverflowPolicy,
        fsync: FsyncPolicy,
    ) -> Result<Spool, SinkError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_at(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_at(dir))?;
        let (head_seg, head_off) = read_head(dir)?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io_at(dir))?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name();
                let n = n.to_str()?;
                n.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut s = Spool {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(4096),
            // Segments are a fraction of the bound so that freeing space is cheap (delete a
            // file) and the disk holds at most one segment over the bound.
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 64 << 20),
            policy,
            fsync,
            segments: VecDeque::new(),
            index: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            dirty: false,
            last_sync: Instant::now(),
            recovered: Recovered::default(),
        };
        let last = ids.last().copied();
        for id in ids {
            let path = seg_path(dir, id);
            if id < head_seg {
                // Fully delivered before the previous run stopped.
                std::fs::remove_file(&path).map_err(io_at(&path))?;
                continue;
            }
            let mut file = open_0600(&path, true)?;
            let mut data = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
            file.read_to_end(&mut data).map_err(io_at(&path))?;
            let from = if id == head_seg {
                head_off.min(data.len() as u64)
            } else {
                0
            };
            let (frames, end) = scan(&data, from);
            if end < data.len() as u64 {
                let torn = data.len() as u64 - end;
                s.recovered.torn_bytes += torn;
                tracing::warn!(
                    spool = %dir.display(),
                    segment = id,
                    offset = end,
                    bytes = torn,
                    "spool: torn or corrupt records cut off (crash during an append?)"
                );
                if Some(id) == last {
                    // Later appends must start on a frame boundary.
                    file.set_len(end).map_err(io_at(&path))?;
                    file.sync_all().map_err(io_at(&path))?;
                }
            }
            for (off, len) in frames {
                s.index.push_back(Loc {
                    seq: s.next_seq,
                    seg: id,
                    off,
                    len,
                });
                s.next_seq += 1;
                s.bytes += len;
            }
            let len = if Some(id) == last {
                end
            } else {
                data.len() as u64
            };
            s.segments.push_back(Segment { id, file, len });
        }
        s.recovered.records = s.index.len();
        Ok(s)
    }

    fn tail_segment(&mut self, need: u64) -> Result<&mut Segment, SinkError> {
        let roll = match self.segments.back() {
            None => true,
            Some(seg) => seg.len > 0 && seg.len + need > self.segment_bytes,
        };
        if roll {
            let id = self.segments.back().map(|s| s.id + 1).unwrap_or(1);
            let path = seg_path(&self.dir, id);
            let file = open_0600(&path, true)?;
            self.segments.push_back(Segment { id, file, len: 0 });
        }
        self.segments
            .back_mut()
            .ok_or_else(|| SinkError::Spool("no segment".into()))
    }

    fn push(&mut self, r: &Record) -> Result<Pushed, SinkError> {
        let f = frame(r);
        let need = f.len() as u64;
        let mut dropped = 0;
        if need > self.max_bytes {
            return Ok(Pushed { dropped: 1 });
        }
        while self.bytes + need > self.max_bytes {
            match self.policy {
                OverflowPolicy::DropNewest => {
                    return Ok(Pushed {
                        dropped: dropped + 1,
                    })
                }
                OverflowPolicy::DropOldest => {
                    let Some(first) = self.index.front().copied() else {
                        break;
                    };
                    self.commit(first.seq)?;
                    dropped += 1;
                }
            }
        }
        let seq = self.next_seq;
        let dir = self.dir.clone();
        let seg = self.tail_segment(need)?;
        let off = seg.len;
        if let Err(e) = seg.file.write_all(&f) {
            // A partial frame would be cut at the next open; cut it now so later appends stay
            // aligned.
            let _ = seg.file.set_len(off);
            return Err(io_at(&seg_path(&dir, seg.id))(e));
        }
        seg.len += need;
        let id = seg.id;
        self.index.push_back(Loc {
            seq,
            seg: id,
            off,
            len: need,
        });
        self.next_seq += 1;
        self.bytes += need;
        self.dirty = true;
        Ok(Pushed { dropped })
    }

    fn read(&self, loc: &Loc) -> Result<Record, SinkError> {
        let Some(seg) = self.segments.iter().find(|s| s.id == loc.seg) else {
            return Err(SinkError::Spool(format!("segment {} missing", loc.seg)));
        };
        let mut buf = vec![0u8; loc.len as usize];
        let path = seg_path(&self.dir, seg.id);
        seg.file
            .read_exact_at(&mut buf, loc.off)
            .map_err(io_at(&path))?;
        decode(&buf[HEADER as usize..])
            .ok_or_else(|| SinkError::Spool(format!("{}: bad record", path.display())))
    }

    fn peek(&mut self, n: usize) -> Result<Vec<(u64, Record)>, SinkError> {
        let mut out = Vec::with_capacity(n.min(self.index.len()));
        for loc in self.index.iter().take(n) {
            out.push((loc.seq, self.read(loc)?));
        }
        Ok(out)
    }

    fn commit(&mut self, seq: u64) -> Result<(), SinkError> {
        let mut moved = false;
        while self.index.front().is_some_and(|l| l.seq <= seq) {
            if let Some(l) = self.index.pop_front() {
                self.bytes -= l.len;
                moved = true;
            }
        }
        if !moved {
            return Ok(());
        }
        let (seg, off) = match self.index.front() {
            Some(l) => (l.seg, l.off),
            None => self
                .segments
                .back()
                .map(|s| (s.id, s.len))
                .unwrap_or((1, 0)),
        };
        // The appends the head points past must be on disk before the head says so.
        self.sync(true)?;
        write_head(&self.dir, seg, off)?;
        while self.segments.front().is_some_and(|s| s.id < seg) {
            if let Some(s) = self.segments.pop_front() {
                let path = seg_path(&self.dir, s.id);
                drop(s.file);
                std::fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        Ok(())
    }

    fn sync(&mut self, force: bool) -> Result<(), SinkError> {
        if !self.dirty {
            return Ok(());
        }
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= Duration::from_secs(1),
            FsyncPolicy::Never => false,
        };
        if !(due || force) {
            return Ok(());
        }
        if let Some(seg) = self.segments.back() {
            seg.file
                .sync_data()
                .map_err(io_at(&seg_path(&self.dir, seg.id)))?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

fn read_head(dir: &Path) -> Result<(u64, u64), SinkError> {
    let p = dir.join("head");
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(seg)), Some(Ok(off))) => Ok((seg, off)),
                // A head file is replaced atomically, so a bad one was edited by hand: keep
                // everything (duplicates beat losses).
                _ => {
                    tracing::warn!(path = %p.display(), "spool: unreadable head, redelivering all");
                    Ok((0, 0))
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(io_at(&p)(e)),
    }
}

fn write_head(dir: &Path, seg: u64, off: u64) -> Result<(), SinkError> {
    let tmp = dir.join("head.tmp");
    let p = dir.join("head");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    f.write_all(format!("{seg} {off}\n").as_bytes())
        .map_err(io_at(&tmp))?;
    f.sync_data().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io_at(&p))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            id: format!("id-{i}"),
            body: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes(),
        }
    }

    fn open(dir: &Path, max: u64, p: OverflowPolicy) -> Spool {
        Spool::open(dir, max, p, FsyncPolicy::Always).unwrap()
    }

    fn ids(q: &mut Queue) -> Vec<String> {
        q.peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.id)
            .collect()
    }

    #[test]
    fn survives_reopen_in_order_and_forgets_delivered() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::Disk(open(d.path(), 1 << 20, OverflowPolicy::DropOldest));
        for i in 0..10 {
            q.push(&rec(i)).unwrap();
        }
        let first3 = q.peek(3).unwrap();
        q.commit(first3[2].0).unwrap();
        drop(q);
        let mut q = Queue::Disk(open(d.path(), 1 << 20, OverflowPolicy::DropOldest));
        assert_eq!(
            ids(&mut q),
            (3..10).map(|i| format!("id-{i}")).collect::<Vec<_>>()
        );
        assert_eq!(q.peek(1).unwrap()[0].1, rec(3));
    }

    #[test]
    fn torn_tail_is_cut_not_misparsed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path(), 1 << 20, OverflowPolicy::DropOldest);
        for i in 0..5 {
            s.push(&rec(i)).unwrap();
        }
        drop(s);
        // A kill -9 in the middle of an append: half a frame at the end.
        let seg = seg_path(d.path(), 1);
        let full = frame(&rec(5));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&full[..full.len() / 2]).unwrap();
        drop(f);
        let mut s = open(d.path(), 1 << 20, OverflowPolicy::DropOldest);
        assert_eq!(s.recovered.records, 5);
        assert_eq!(s.recovered.torn_bytes, (full.len() / 2) as u64);
        // Appends after recovery land on a frame boundary.
        s.push(&rec(6)).unwrap();
        drop(s);
        let mut q = Queue::Disk(open(d.path(), 1 << 20, OverflowPolicy::DropOldest));
        assert_eq!(
            ids(&mut q),
            vec!["id-0", "id-1", "id-2", "id-3", "id-4", "id-6"]
        );
    }

    #[test]
    fn corrupt_byte_is_detected_by_checksum() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path(), 1 << 20, OverflowPolicy::DropOldest);
        for i in 0..3 {
            s.push(&rec(i)).unwrap();
        }
        drop(s);
        let seg = seg_path(d.path(), 1);
        let mut data = std::fs::read(&seg).unwrap();
        let flen = frame(&rec(0)).len();
        // Flip a payload byte of the last record (same length, wrong checksum).
        data[2 * flen + 20] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let mut q = Queue::Disk(open(d.path(), 1 << 20, OverflowPolicy::DropOldest));
        assert_eq!(ids(&mut q), vec!["id-0", "id-1"]);
    }

    #[test]
    fn drop_oldest_and_drop_newest_are_bounded_and_counted() {
        let flen = frame(&rec(0)).len() as u64;
        for (policy, expect) in [
            (OverflowPolicy::DropOldest, (6..10).collect::<Vec<_>>()),
            (OverflowPolicy::DropNewest, (0..4).collect::<Vec<_>>()),
        ] {
            let d = tempfile::tempdir().unwrap();
            // Minimum bound is 4096: fit exactly 4 frames by padding.
            let mut s = open(d.path(), 4096, policy);
            let big = |i: usize| Record {
                id: format!("id-{i}"),
                body: vec![b'x'; (4096 / 4) - 8 - 2 - format!("id-{i}").len()],
            };
            let _ = flen;
            let mut dropped = 0;
            for i in 0..10 {
                dropped += s.push(&big(i)).unwrap().dropped;
            }
            assert_eq!(dropped, 6, "{policy:?}");
            assert!(s.bytes <= 4096);
            let mut q = Queue::Disk(s);
            assert_eq!(
                ids(&mut q),
                expect.iter().map(|i| format!("id-{i}")).collect::<Vec<_>>(),
                "{policy:?}"
            );
            drop(q);
            // The bound and the order hold after a restart too.
            let mut q = Queue::Disk(open(d.path(), 4096, policy));
            assert_eq!(q.len(), 4, "{policy:?}");
            assert_eq!(ids(&mut q)[0], format!("id-{}", expect[0]));
        }
    }

    #[test]
    fn files_are_0600_and_dir_0700() {
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().join("sink");
        let mut s = open(&sd, 1 << 20, OverflowPolicy::DropOldest);
        s.push(&rec(0)).unwrap();
        let first = s.peek(1).unwrap()[0].0;
        s.commit(first).unwrap();
        s.push(&rec(1)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sd), 0o700);
        for e in std::fs::read_dir(&sd).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }

    #[test]
    fn segments_roll_and_delivered_ones_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        // 512 KiB bound → 64 KiB segments; ~140 B records → many segments.
        let mut q = Queue::Disk(open(d.path(), 512 << 10, OverflowPolicy::DropNewest));
        for i in 0..2000 {
            assert_eq!(q.push(&rec(i)).unwrap().dropped, 0);
        }
        let segs = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                .count()
        };
        assert!(segs(d.path()) > 3);
        let all = q.peek(usize::MAX).unwrap();
        q.commit(all[1900].0).unwrap();
        assert!(segs(d.path()) <= 2, "{}", segs(d.path()));
        drop(q);
        let mut q = Queue::Disk(open(d.path(), 512 << 10, OverflowPolicy::DropNewest));
        assert_eq!(q.len(), 99);
        assert_eq!(q.peek(1).unwrap()[0].1.id, "id-1901");
    }

    #[test]
    fn memory_queue_policies() {
        let mut q = Queue::Memory(MemQueue::new(3, OverflowPolicy::DropOldest));
        let mut d = 0;
        for i in 0..5 {
            d += q.push(&rec(i)).unwrap().dropped;
        }
        assert_eq!(d, 2);
        assert_eq!(ids(&mut q), vec!["id-2", "id-3", "id-4"]);
        let s = q.peek(2).unwrap();
        q.commit(s[1].0).unwrap();
        assert_eq!(ids(&mut q), vec!["id-4"]);
        let mut q = Queue::Memory(MemQueue::new(3, OverflowPolicy::DropNewest));
        for i in 0..5 {
            q.push(&rec(i)).unwrap();
        }
        assert_eq!(ids(&mut q), vec!["id-0", "id-1", "id-2"]);
    }
}
