//! Compact state for the engine: most of its memory is one small group per key, so the
//! containers here keep the common case (one window entry, one name, one evidence event)
//! inline, and evidence events live once in a shared bounded ring that groups address by
//! sequence number instead of each group keeping its own copies alive.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::event::{Event, ExecInfo, FileInfo, NetInfo, Process, Workload};

/// Multiply-rotate hasher for keys that are already hashes (group keys) or small integers:
/// SipHash's DoS resistance buys nothing there and costs a fifth of a busy group lookup.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 59);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hasher builder for [`FastHasher`].
pub type FastBuild = BuildHasherDefault<FastHasher>;

/// A fast-hashed map.
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;

/// A deque that holds up to one item inline and spills to the heap beyond.
#[derive(Debug, Clone, Default)]
pub enum Small<T> {
    /// No items.
    #[default]
    Empty,
    /// One item, inline.
    One(T),
    /// Two or more (or emptied after spilling). Not boxed: the deque's header fits beside an
    /// inline item of the size the engine keeps, and a box would add a dependent cache miss.
    Many(VecDeque<T>),
}

impl<T> Small<T> {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Small::Empty => 0,
            Small::One(_) => 1,
            Small::Many(d) => d.len(),
        }
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends at the back.
    pub fn push_back(&mut self, x: T) {
        match self {
            Small::Many(d) => d.push_back(x),
            Small::Empty => *self = Small::One(x),
            Small::One(_) => {
                if let Small::One(a) = std::mem::take(self) {
                    let mut d = VecDeque::with_capacity(4);
                    d.push_back(a);
                    d.push_back(x);
                    *self = Small::Many(d);
                }
            }
        }
    }

    /// Removes the front item.
    pub fn pop_front(&mut self) -> Option<T> {
        match self {
            Small::Empty => None,
            Small::One(_) => match std::mem::take(self) {
                Small::One(a) => Some(a),
                _ => None,
            },
            Small::Many(d) => d.pop_front(),
        }
    }

    /// Removes the item at `i`.
    pub fn remove(&mut self, i: usize) -> Option<T> {
        match self {
            Small::Many(d) => d.remove(i),
            _ if i == 0 => self.pop_front(),
            _ => None,
        }
    }

    /// The front item.
    pub fn front(&self) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => Some(a),
            Small::Many(d) => d.front(),
        }
    }

    /// The back item.
    pub fn back(&self) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => Some(a),
            Small::Many(d) => d.back(),
        }
    }

    /// Items front to back.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        let (a, b): (&[T], &[T]) = match self {
            Small::Empty => (&[], &[]),
            Small::One(x) => (std::slice::from_ref(x), &[]),
            Small::Many(d) => d.as_slices(),
        };
        a.iter().chain(b.iter())
    }

    /// The item at `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => (i == 0).then_some(a),
            Small::Many(d) => d.get(i),
        }
    }

    /// The item at `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match self {
            Small::Empty => None,
            Small::One(a) => (i == 0).then_some(a),
            Small::Many(d) => d.get_mut(i),
        }
    }

    /// Inserts at `i` (≤ `len`), shifting later items back.
    pub fn insert(&mut self, i: usize, x: T) {
        if i >= self.len() {
            self.push_back(x);
            return;
        }
        match self {
            Small::Many(d) => d.insert(i, x),
            Small::Empty => *self = Small::One(x),
            Small::One(_) => {
                if let Small::One(a) = std::mem::take(self) {
                    let mut d = VecDeque::with_capacity(4);
                    d.push_back(x);
                    d.push_back(a);
                    *self = Small::Many(d);
                }
            }
        }
    }

    /// The index of the first item for which `pred` is false (items partitioned by `pred`).
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        match self {
            Small::Empty => 0,
            Small::One(a) => usize::from(pred(a)),
            Small::Many(d) => d.partition_point(|x| pred(x)),
        }
    }

    /// Keeps the items for which `f` holds.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        match self {
            Small::Empty => {}
            Small::One(a) => {
                if !f(a) {
                    *self = Small::Empty;
                }
            }
            Small::Many(d) => d.retain(|x| f(x)),
        }
    }
}

/// Display names by hash: a few kept inline and scanned, more in a map (a fan-out group
/// holds over a hundred, added and removed as values enter and leave its window).
#[derive(Debug, Default)]
pub enum Names {
    /// Up to `FEW` names.
    #[default]
    None,
    /// A few, scanned.
    Few(Small<(u64, SStr)>),
    /// More.
    Map(Box<FastMap<u64, SStr>>),
}

const FEW: usize = 4;

impl Names {
    /// Number of names.
    pub fn len(&self) -> usize {
        match self {
            Names::None => 0,
            Names::Few(s) => s.len(),
            Names::Map(m) => m.len(),
        }
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of `h`.
    pub fn get(&self, h: u64) -> Option<&str> {
        match self {
            Names::None => None,
            Names::Few(s) => s.iter().find(|(k, _)| *k == h).map(|(_, v)| v.as_str()),
            Names::Map(m) => m.get(&h).map(SStr::as_str),
        }
    }

    /// Adds the name of `h` unless known; `make` builds it only then.
    pub fn insert_with(&mut self, h: u64, make: impl FnOnce() -> SStr) {
        match self {
            Names::None => {
                let mut s = Small::Empty;
                s.push_back((h, make()));
                *self = Names::Few(s);
            }
            Names::Few(s) => {
                if s.iter().any(|(k, _)| *k == h) {
                    return;
                }
                if s.len() < FEW {
                    s.push_back((h, make()));
                    return;
                }
                let mut m: FastMap<u64, SStr> = FastMap::default();
                while let Some((k, v)) = s.pop_front() {
                    m.insert(k, v);
                }
                m.insert(h, make());
                *self = Names::Map(Box::new(m));
            }
            Names::Map(m) => {
                m.entry(h).or_insert_with(make);
            }
        }
    }

    /// Forgets the name of `h`.
    pub fn remove(&mut self, h: u64) {
        match self {
            Names::None => {}
            Names::Few(s) => s.retain(|(k, _)| *k != h),
            Names::Map(m) => {
                m.remove(&h);
            }
        }
    }
}

/// A string of up to 22 bytes inline, longer ones boxed (group values and destination names
/// are mostly addresses and short identities).
#[derive(Clone, Debug)]
pub enum SStr {
    /// Length and bytes.
    Inline(u8, [u8; 22]),
    /// Longer.
    Heap(Box<str>),
}

impl SStr {
    /// Stores `s`.
    pub fn new(s: &str) -> SStr {
        if s.len() <= 22 {
            let mut b = [0u8; 22];
            b[..s.len()].copy_from_slice(s.as_bytes());
            SStr::Inline(s.len() as u8, b)
        } else {
            SStr::Heap(s.into())
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            // Always a whole `&str` copied in by `new`, so valid UTF-8.
            SStr::Inline(n, b) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or_default(),
            SStr::Heap(s) => s,
        }
    }
}

/// The shared evidence ring: released events that matched a correlation, addressed by a
/// sequence number that only grows. Holds at most `cap` events; an older event is gone, and an
/// alert then lists the evidence still held (its counts stay exact).
///
/// Slots are overwritten in place (`clone_into_event`): once the ring has wrapped, storing an
/// event reuses the evicted one's string and vector buffers and moves no `Event` around.
#[derive(Debug)]
pub struct Ring {
    slots: Vec<Event>,
    /// Sequence number of the next event stored.
    next: u64,
    /// Slot the next event goes to (`next % cap`, kept to avoid a division per event).
    at: usize,
    cap: usize,
}

impl Ring {
    /// A ring of `cap` events.
    pub fn new(cap: usize) -> Ring {
        Ring {
            slots: Vec::new(),
            next: 0,
            at: 0,
            cap,
        }
    }

    /// The sequence number the next pushed event gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Stores a copy of `ev` (dropping the oldest when full); returns its sequence number.
    pub fn push_clone(&mut self, ev: &Event) -> u64 {
        self.push_with(ev, clone_into_event, Event::clone)
    }

    /// Stores `ev` (dropping the oldest when full); returns its sequence number.
    pub fn push(&mut self, ev: Event) -> u64 {
        self.push_with(ev, |slot, ev| *slot = ev, |ev| ev)
    }

    fn push_with<T>(
        &mut self,
        ev: T,
        overwrite: impl FnOnce(&mut Event, T),
        make: impl FnOnce(T) -> Event,
    ) -> u64 {
        let seq = self.next;
        self.next += 1;
        if self.cap == 0 {
            return seq;
        }
        match self.slots.get_mut(self.at) {
            Some(slot) => overwrite(slot, ev),
            None => self.slots.push(make(ev)),
        }
        self.at += 1;
        if self.at == self.cap {
            self.at = 0;
        }
        seq
    }

    /// The event with sequence number `seq`, while it is held.
    pub fn get(&self, seq: u64) -> Option<&Event> {
        let back = self.next.checked_sub(seq)?;
        if back == 0 || back > self.slots.len() as u64 {
            return None;
        }
        let i = usize::try_from(seq % self.cap as u64).ok()?;
        self.slots.get(i)
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Makes `dst` a copy of `src`, reusing `dst`'s string and vector buffers where they are large
/// enough: the engine copies every event that feeds a correlation into its evidence ring, and
/// a recycled event (one the ring let go) makes that copy mostly allocation-free. Same result
/// as `*dst = src.clone()`. The structs are destructured without `..`, so a new field is a
/// compile error here rather than a stale copy.
pub fn clone_into_event(dst: &mut Event, src: &Event) {
    let Event {
        ts,
        kind,
        process,
        exec,
        fork,
        exit,
        net,
        file,
        loss,
    } = src;
    dst.ts = *ts;
    dst.kind = *kind;
    opt_into(&mut dst.process, process, process_into);
    opt_into(&mut dst.exec, exec, exec_into);
    dst.fork.clone_from(fork);
    dst.exit.clone_from(exit);
    opt_into(&mut dst.net, net, net_into);
    opt_into(&mut dst.file, file, file_into);
    dst.loss.clone_from(loss);
}

fn opt_into<T: Clone>(dst: &mut Option<T>, src: &Option<T>, into: fn(&mut T, &T)) {
    match (dst.as_mut(), src) {
        (Some(d), Some(s)) => into(d, s),
        _ => *dst = src.clone(),
    }
}

fn process_into(d: &mut Process, s: &Process) {
    let Process {
        pid,
        tgid,
        ppid,
        start,
        uid,
        gid,
        user,
        comm,
        exe,
        argv,
        parent_exe,
        ancestors,
        cgroup_id,
        cgroup,
        mntns,
        netns,
        workload,
        identity,
    } = s;
    let Workload {
        unit,
        container_id,
        pod_uid,
        pod_namespace,
        pod_name,
        container_name,
    } = workload;
    d.pid = *pid;
    d.tgid = *tgid;
    d.ppid = *ppid;
    d.start = *start;
    d.uid = *uid;
    d.gid = *gid;
    d.user.clone_from(user);
    d.comm.clone_from(comm);
    d.exe.clone_from(exe);
    d.argv.clone_from(argv);
    d.parent_exe.clone_from(parent_exe);
    d.ancestors.clone_from(ancestors);
    d.cgroup_id = *cgroup_id;
    d.cgroup.clone_from(cgroup);
    d.mntns = *mntns;
    d.netns = *netns;
    d.workload.unit.clone_from(unit);
    d.workload.container_id.clone_from(container_id);
    d.workload.pod_uid.clone_from(pod_uid);
    d.workload.pod_namespace.clone_from(pod_namespace);
    d.workload.pod_name.clone_from(pod_name);
    d.workload.container_name.clone_from(container_name);
    d.identity.clone_from(identity);
}

fn exec_into(d: &mut ExecInfo, s: &ExecInfo) {
    let ExecInfo {
        filename,
        argv,
        argv_truncated,
    } = s;
    d.filename.clone_from(filename);
    d.argv.clone_from(argv);
    d.argv_truncated = *argv_truncated;
}

fn net_into(d: &mut NetInfo, s: &NetInfo) {
    let NetInfo {
        protocol,
        family,
        direction,
        src_addr,
        src_port,
        dst_addr,
        dst_port,
        outcome,
        error,
        sock,
    } = s;
    d.protocol = *protocol;
    d.family = *family;
    d.direction = *direction;
    d.src_addr.clone_from(src_addr);
    d.src_port = *src_port;
    d.dst_addr.clone_from(dst_addr);
    d.dst_port = *dst_port;
    d.outcome = *outcome;
    d.error.clone_from(error);
    d.sock = *sock;
}

fn file_into(d: &mut FileInfo, s: &FileInfo) {
    let FileInfo {
        watched,
        category,
        path,
        resolved,
        dev,
        ino,
        flags,
        access,
        via,
        target_pid,
        mtime,
        fingerprint,
    } = s;
    d.watched.clone_from(watched);
    d.category.clone_from(category);
    d.path.clone_from(path);
    d.resolved.clone_from(resolved);
    d.dev = *dev;
    d.ino = *ino;
    d.flags = *flags;
    d.access.clone_from(access);
    d.via = *via;
    d.target_pid = *target_pid;
    d.mtime = *mtime;
    d.fingerprint.clone_from(fingerprint);
}

const NIL: u32 = u32::MAX;

/// A slot's key and its place in the recency list, kept apart from the items: relinking
/// touches the neighbours' links, and these are 16 bytes each rather than a whole item.
#[derive(Debug, Clone, Copy)]
struct Link {
    key: u64,
    /// More recently used neighbour.
    prev: u32,
    /// Less recently used neighbour.
    next: u32,
}

/// Items by key in a slab, with a least-recently-used list: one index entry and no allocation
/// per item beyond the item itself (what `lru::LruCache` spends a node on). Callers look a key
/// up once ([`Table::find`]) and then work on its slot.
#[derive(Debug)]
pub struct Table<G> {
    map: FastMap<u64, u32>,
    slots: Vec<G>,
    links: Vec<Link>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
}

impl<G> Default for Table<G> {
    fn default() -> Self {
        Table {
            map: FastMap::default(),
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl<G> Table<G> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `key` is held (recency unchanged).
    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// The slot of `key` (recency unchanged).
    pub fn find(&self, key: u64) -> Option<u32> {
        self.map.get(&key).copied()
    }

    fn unlink(&mut self, s: u32) {
        let Link {
            prev: p, next: n, ..
        } = self.links[s as usize];
        if p == NIL {
            self.head = n;
        } else {
            self.links[p as usize].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.links[n as usize].prev = p;
        }
    }

    fn link_front(&mut self, s: u32) {
        let old = self.head;
        let l = &mut self.links[s as usize];
        l.prev = NIL;
        l.next = old;
        if old == NIL {
            self.tail = s;
        } else {
            self.links[old as usize].prev = s;
        }
        self.head = s;
    }

    /// Makes slot `s` (from [`Table::find`] or [`Table::insert`]) the most recently used.
    pub fn touch(&mut self, s: u32) {
        if self.head != s {
            self.unlink(s);
            self.link_front(s);
        }
    }

    /// The item in slot `s`.
    pub fn slot(&self, s: u32) -> &G {
        &self.slots[s as usize]
    }

    /// The item in slot `s`, mutably (recency unchanged).
    pub fn slot_mut(&mut self, s: u32) -> &mut G {
        &mut self.slots[s as usize]
    }

    /// The item under `key` (recency unchanged).
    pub fn peek(&self, key: u64) -> Option<&G> {
        let s = self.find(key)?;
        self.slots.get(s as usize)
    }

    /// The item under `key`, made the most recently used.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut G> {
        let s = self.find(key)?;
        self.touch(s);
        self.slots.get_mut(s as usize)
    }

    /// Files `g` under `key` (which must not be held yet) as the most recently used; returns
    /// its slot.
    pub fn insert(&mut self, key: u64, g: G) -> u32 {
        let link = Link {
            key,
            prev: NIL,
            next: NIL,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = g;
                self.links[s as usize] = link;
                s
            }
            None => {
                self.slots.push(g);
                self.links.push(link);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, s);
        self.link_front(s);
        s
    }

    /// The least recently used item.
    pub fn peek_lru(&self) -> Option<&G> {
        (self.tail != NIL).then(|| &self.slots[self.tail as usize])
    }

    /// Removes the least recently used item; `replace` is left in its slot (dropping the
    /// item's heap parts now rather than at reuse).
    pub fn pop_lru(&mut self, replace: G) -> Option<G> {
        if self.tail == NIL {
            return None;
        }
        let s = self.tail;
        self.unlink(s);
        let g = std::mem::replace(&mut self.slots[s as usize], replace);
        self.map.remove(&self.links[s as usize].key);
        self.free.push(s);
        Some(g)
    }

    /// Removes the least recently used item in place (its slot keeps the item until reused,
    /// when [`Table::insert`] overwrites it): no item is moved.
    pub fn evict_lru(&mut self) -> bool {
        if self.tail == NIL {
            return false;
        }
        let s = self.tail;
        self.unlink(s);
        self.map.remove(&self.links[s as usize].key);
        self.free.push(s);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        key: u64,
    }
    impl Item {
        fn new(key: u64) -> Item {
            Item { key }
        }
    }

    fn ev(ts: u64) -> Event {
        Event {
            ts,
            kind: crate::event::Kind::Exec,
            process: None,
            exec: None,
            fork: None,
            exit: None,
            net: None,
            file: None,
            loss: None,
        }
    }

    #[test]
    fn ring_addresses_by_sequence_and_forgets_the_oldest() {
        let mut r = Ring::new(3);
        let seqs: Vec<u64> = (0..5).map(|t| r.push(ev(t))).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert_eq!(r.len(), 3);
        assert!(r.get(1).is_none(), "pushed out");
        assert_eq!(r.get(2).map(|e| e.ts), Some(2));
        assert_eq!(r.get(4).map(|e| e.ts), Some(4));
        assert!(r.get(5).is_none(), "not yet pushed");
        assert_eq!(r.next_seq(), 5);
        let mut z = Ring::new(0);
        assert_eq!((z.push(ev(1)), z.push(ev(2))), (0, 1));
        assert!(z.get(0).is_none() && z.is_empty());
    }

    #[test]
    fn clone_into_event_is_a_clone() {
        use crate::event::*;
        let s = |x: &str| x.to_string();
        let full = Event {
            ts: 7,
            kind: Kind::Connect,
            process: Some(Process {
                pid: 1,
                tgid: 2,
                ppid: 3,
                start: 4,
                uid: 5,
                gid: 6,
                user: Some(s("alice")),
                comm: s("ssh"),
                exe: s("/usr/bin/ssh"),
                argv: vec![s("ssh"), s("-i"), s("/root/.ssh/id_rsa"), s("host")],
                parent_exe: Some(s("/bin/bash")),
                ancestors: vec![3, 1],
                cgroup_id: 9,
                cgroup: Some(s("/system.slice/x.service")),
                mntns: 10,
                netns: 11,
                workload: Workload {
                    unit: Some(s("x.service")),
                    container_id: None,
                    pod_uid: Some(s("uid")),
                    pod_namespace: Some(s("ns")),
                    pod_name: Some(s("pod")),
                    container_name: Some(s("c")),
                },
                identity: Some(s("svc")),
            }),
            exec: Some(ExecInfo {
                filename: s("/usr/bin/ssh"),
                argv: vec![s("ssh")],
                argv_truncated: true,
            }),
            fork: Some(ForkInfo {
                child_tgid: 12,
                child_start: 13,
            }),
            exit: Some(ExitInfo {
                code: Some(1),
                signal: None,
            }),
            net: Some(NetInfo {
                protocol: Protocol::Tcp,
                family: 4,
                direction: Direction::Outbound,
                src_addr: s("10.0.0.1"),
                src_port: 1234,
                dst_addr: s("10.0.0.2"),
                dst_port: 22,
                outcome: Outcome::InProgress,
                error: Some(s("refused")),
                sock: 14,
            }),
            file: Some(FileInfo {
                watched: s("/root/.ssh/id_rsa"),
                category: s("ssh_key"),
                path: Some(s("id_rsa")),
                resolved: None,
                dev: 1,
                ino: 2,
                flags: Some(3),
                access: Some(s("read")),
                via: Via::Syscall,
                target_pid: Some(4),
                mtime: Some(5),
                fingerprint: Some(s("hmac-sha256:00")),
            }),
            loss: Some(LossInfo {
                cpu: 1,
                count: 2,
                total: 3,
            }),
        };
        let mut short = full.clone();
        if let Some(p) = short.process.as_mut() {
            p.argv.truncate(1);
            p.user = None;
            p.ancestors.clear();
            p.identity = Some(s("a-much-longer-identity-name-than-before"));
        }
        short.net = None;
        short.kind = Kind::CredOpen;
        let all = [full, short, ev(3)];
        for a in &all {
            for b in &all {
                let mut d = a.clone();
                clone_into_event(&mut d, b);
                assert_eq!(&d, b);
            }
        }
    }

    #[test]
    fn push_clone_overwrites_in_place() {
        let mut r = Ring::new(2);
        assert_eq!((r.push_clone(&ev(1)), r.push_clone(&ev(2))), (0, 1));
        assert_eq!(r.push_clone(&ev(3)), 2);
        assert!(r.get(0).is_none());
        assert_eq!(
            (r.get(1).map(|e| e.ts), r.get(2).map(|e| e.ts)),
            (Some(2), Some(3))
        );
        assert_eq!((r.next_seq(), r.len()), (3, 2));
        let mut z = Ring::new(0);
        assert_eq!(z.push_clone(&ev(4)), 0);
        assert!(z.get(0).is_none() && z.is_empty());
    }

    #[test]
    fn sstr_round_trips() {
        for s in [
            "",
            "10.0.0.1:443",
            "exactly-twenty-two-by",
            &"x".repeat(40),
            "é ü ✓",
        ] {
            assert_eq!(SStr::new(s).as_str(), s);
        }
        assert!(matches!(SStr::new("a"), SStr::Inline(..)));
        assert!(matches!(SStr::new(&"x".repeat(23)), SStr::Heap(_)));
    }

    proptest! {
        /// `Names` behaves as a map under any sequence of inserts and removals.
        #[test]
        fn names_is_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..10), 0..80)) {
            let mut n = Names::default();
            let mut m: HashMap<u64, String> = HashMap::new();
            for (ins, h) in ops {
                if ins {
                    n.insert_with(h, || SStr::new(&format!("n{h}")));
                    m.entry(h).or_insert_with(|| format!("n{h}"));
                } else {
                    n.remove(h);
                    m.remove(&h);
                }
                prop_assert_eq!(n.len(), m.len());
                for k in 0..10 {
                    prop_assert_eq!(n.get(k), m.get(&k).map(String::as_str));
                }
            }
        }

        /// `Small` behaves as a `VecDeque` under any sequence of operations.
        #[test]
        fn small_is_a_deque(ops in proptest::collection::vec((0u8..5, any::<u8>()), 0..60)) {
            let mut s: Small<u8> = Small::default();
            let mut d: VecDeque<u8> = VecDeque::new();
            for (op, x) in ops {
                match op {
                    0 | 1 => { s.push_back(x); d.push_back(x); }
                    2 => prop_assert_eq!(s.pop_front(), d.pop_front()),
                    3 => {
                        let i = usize::from(x) % (d.len() + 1);
                        prop_assert_eq!(s.remove(i), d.remove(i));
                    }
                    _ => { s.retain(|v| v % 3 != x % 3); d.retain(|v| v % 3 != x % 3); }
                }
                prop_assert_eq!(s.len(), d.len());
                prop_assert_eq!(s.front(), d.front());
                prop_assert_eq!(s.back(), d.back());
                prop_assert_eq!(s.iter().copied().collect::<Vec<_>>(), d.iter().copied().collect::<Vec<_>>());
            }
        }

        /// `Table` evicts exactly what `lru::LruCache` evicts for the engine's access pattern
        /// (look up without promoting, promote on use, insert, pop the least recent).
        #[test]
        fn table_matches_lru_cache(ops in proptest::collection::vec((0u8..6, 0u64..12), 0..200)) {
            let mut t: Table<Item> = Table::default();
            let mut l: lru::LruCache<u64, ()> = lru::LruCache::unbounded();
            for (op, k) in ops {
                match op {
                    0 => prop_assert_eq!(t.contains(k), l.contains(&k)),
                    1 => prop_assert_eq!(t.get_mut(k).is_some(), l.get_mut(&k).is_some()),
                    2 => if !t.contains(k) { t.insert(k, Item::new(k)); l.put(k, ()); },
                    3 => {
                        // find + touch is get_mut; slot holds the item filed under the key.
                        let s = t.find(k);
                        prop_assert_eq!(s.is_some(), l.get_mut(&k).is_some());
                        if let Some(s) = s {
                            t.touch(s);
                            prop_assert_eq!(t.slot(s).key, k);
                        }
                    }
                    4 => {
                        let a = t.peek_lru().map(|i| i.key);
                        prop_assert_eq!(t.evict_lru(), a.is_some());
                        prop_assert_eq!(a, l.pop_lru().map(|(k, _)| k));
                    }
                    _ => {
                        let a = t.pop_lru(Item::new(u64::MAX)).map(|i| i.key);
                        let b = l.pop_lru().map(|(k, _)| k);
                        prop_assert_eq!(a, b);
                    }
                }
                prop_assert_eq!(t.len(), l.len());
                prop_assert_eq!(t.peek_lru().map(|i| i.key), l.peek_lru().map(|(k, _)| *k));
            }
        }
    }
}
