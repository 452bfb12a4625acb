//! Compact state for the engine: most of its memory is one small group per key, so the
//! containers here keep the common case (one window entry, one name, one evidence event)
//! inline, and evidence events live once in a shared bounded ring that groups address by
//! sequence number instead of each group keeping its own copies alive.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::compact;
use crate::event::Event;

/// Multiply-rotate hasher for keys that are already hashes (group keys) or small integers:
/// SipHash's DoS resistance buys nothing there and costs a fifth of a busy group lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

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
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

/// A fast-hashed map.
pub(crate) type FastMap<K, V> = HashMap<K, V, FastBuild>;

/// A deque that holds up to one item inline and spills to the heap beyond.
#[derive(Debug, Clone, Default)]
pub(crate) enum Small<T> {
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
    pub(crate) fn len(&self) -> usize {
        match self {
            Small::Empty => 0,
            Small::One(_) => 1,
            Small::Many(d) => d.len(),
        }
    }

    /// True when there are no items.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends at the back.
    pub(crate) fn push_back(&mut self, x: T) {
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
    pub(crate) fn pop_front(&mut self) -> Option<T> {
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
    #[cfg(test)] // only the tests use it
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        match self {
            Small::Many(d) => d.remove(i),
            _ if i == 0 => self.pop_front(),
            _ => None,
        }
    }

    /// The front item.
    pub(crate) fn front(&self) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => Some(a),
            Small::Many(d) => d.front(),
        }
    }

    /// The back item.
    pub(crate) fn back(&self) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => Some(a),
            Small::Many(d) => d.back(),
        }
    }

    /// Items front to back.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        let (a, b): (&[T], &[T]) = match self {
            Small::Empty => (&[], &[]),
            Small::One(x) => (std::slice::from_ref(x), &[]),
            Small::Many(d) => d.as_slices(),
        };
        a.iter().chain(b.iter())
    }

    /// The item at `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        match self {
            Small::Empty => None,
            Small::One(a) => (i == 0).then_some(a),
            Small::Many(d) => d.get(i),
        }
    }

    /// The item at `i`, mutably.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match self {
            Small::Empty => None,
            Small::One(a) => (i == 0).then_some(a),
            Small::Many(d) => d.get_mut(i),
        }
    }

    /// Inserts at `i` (≤ `len`), shifting later items back.
    pub(crate) fn insert(&mut self, i: usize, x: T) {
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

    /// Removes the second item, keeping the first: what a list of "the first and the latest
    /// few" drops when it grows past its bound. Two pops and a push rather than shifting the
    /// items behind it.
    pub(crate) fn remove_second(&mut self) -> Option<T> {
        match self {
            Small::Many(d) if d.len() >= 2 => {
                let first = d.pop_front()?;
                let second = d.pop_front();
                d.push_front(first);
                second
            }
            _ => None,
        }
    }

    /// The index of the first item for which `pred` is false (items partitioned by `pred`).
    pub(crate) fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        match self {
            Small::Empty => 0,
            Small::One(a) => usize::from(pred(a)),
            Small::Many(d) => d.partition_point(|x| pred(x)),
        }
    }

    /// Keeps the items for which `f` holds.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
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
pub(crate) enum Names {
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
    pub(crate) fn len(&self) -> usize {
        match self {
            Names::None => 0,
            Names::Few(s) => s.len(),
            Names::Map(m) => m.len(),
        }
    }

    /// The name of `h`.
    pub(crate) fn get(&self, h: u64) -> Option<&str> {
        match self {
            Names::None => None,
            Names::Few(s) => s.iter().find(|(k, _)| *k == h).map(|(_, v)| v.as_str()),
            Names::Map(m) => m.get(&h).map(SStr::as_str),
        }
    }

    /// Adds the name of `h` unless known; `make` builds it only then.
    pub(crate) fn insert_with(&mut self, h: u64, make: impl FnOnce() -> SStr) {
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

    /// Keeps the names of the hashes for which `f` holds.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(u64) -> bool) {
        match self {
            Names::None => {}
            Names::Few(s) => s.retain(|(k, _)| f(*k)),
            Names::Map(m) => m.retain(|k, _| f(*k)),
        }
    }

    /// Forgets the name of `h`.
    pub(crate) fn remove(&mut self, h: u64) {
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
pub(crate) enum SStr {
    /// Length and bytes.
    Inline(u8, [u8; 22]),
    /// Longer.
    Heap(Box<str>),
}

impl SStr {
    /// Stores `s`.
    pub(crate) fn new(s: &str) -> SStr {
        if s.len() <= 22 {
            let mut b = [0u8; 22];
            b[..s.len()].copy_from_slice(s.as_bytes());
            SStr::Inline(s.len() as u8, b)
        } else {
            SStr::Heap(s.into())
        }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
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
/// Events are kept in the compact encoding of [`super::compact`], back to back in one byte
/// arena used circularly: storing an event encodes it into a small reused buffer (hot in the
/// cache) and copies it to the arena's write front, so the arena is written strictly
/// sequentially (the hardware prefetcher streams it) and nothing is allocated. An event is
/// decoded only when asked for. It is held while it is among the newest `cap` events and its
/// bytes have not been overwritten (the arena holds `cap` events of [`RING_BYTES_PER_EVENT`]
/// bytes on average; larger events hold fewer).
#[derive(Debug)]
pub(crate) struct Ring {
    /// The arena (allocated on first use).
    buf: Vec<u8>,
    /// Absolute arena position and length of each held event, by `seq % cap`.
    index: Vec<(u64, u32)>,
    /// Encoding scratch.
    scratch: Vec<u8>,
    /// Sequence number of the next event stored.
    next: u64,
    /// Slot the next event goes to (`next % cap`, kept to avoid a division per event).
    at: usize,
    cap: usize,
    /// Absolute arena position of the next write (arena offset: `pos % buf.len()`).
    pos: u64,
}

/// Arena bytes per event of capacity: an event of the default pack's rules encodes to
/// 150–300 bytes, so the newest `cap` events normally all fit.
pub(crate) const RING_BYTES_PER_EVENT: usize = 512;

impl Ring {
    /// A ring of `cap` events.
    pub(crate) fn new(cap: usize) -> Ring {
        Ring {
            buf: Vec::new(),
            index: Vec::new(),
            scratch: Vec::new(),
            next: 0,
            at: 0,
            cap,
            pos: 0,
        }
    }

    /// The sequence number the next pushed event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// Stores `ev` (dropping the oldest when full); returns its sequence number.
    pub(crate) fn push(&mut self, ev: &Event) -> u64 {
        let seq = self.next;
        self.next += 1;
        if self.cap == 0 {
            return seq;
        }
        if self.buf.is_empty() {
            // Zeroed pages are mapped lazily: memory grows as the arena is first written.
            self.buf = vec![0; self.cap.saturating_mul(RING_BYTES_PER_EVENT) + 8];
        }
        compact::encode(ev, &mut self.scratch);
        let n = self.scratch.len();
        // Records start 8-aligned so they can be written a word at a time.
        let padded = n.next_multiple_of(8);
        self.scratch.resize(padded, 0);
        let base = self.buf.as_ptr().align_offset(8).min(8);
        let usable = (self.buf.len() - base) as u64 / 8 * 8;
        let mut off = (self.pos % usable) as usize;
        let entry = if padded as u64 > usable {
            // Larger than the whole arena: not held.
            (u64::MAX, 0)
        } else {
            if off + padded > usable as usize {
                // Records never wrap: skip the arena's tail.
                self.pos += usable - off as u64;
                off = 0;
            }
            if let Some(dst) = self.buf.get_mut(base + off..base + off + padded) {
                stream_copy(dst, &self.scratch);
            }
            let at = self.pos;
            self.pos += padded as u64;
            (at, n as u32)
        };
        match self.index.get_mut(self.at) {
            Some(slot) => *slot = entry,
            None => self.index.push(entry),
        }
        self.at += 1;
        if self.at == self.cap {
            self.at = 0;
        }
        seq
    }

    /// A copy of the event with sequence number `seq`, while it is held.
    pub(crate) fn get(&self, seq: u64) -> Option<Event> {
        let back = self.next.checked_sub(seq)?;
        if back == 0 || back > self.index.len() as u64 {
            return None;
        }
        let i = usize::try_from(seq % self.cap as u64).ok()?;
        let &(at, n) = self.index.get(i)?;
        let base = self.buf.as_ptr().align_offset(8).min(8);
        let usable = (self.buf.len().checked_sub(base)? as u64) / 8 * 8;
        // Overwritten once the write front has moved a whole arena past its start.
        if at == u64::MAX || usable == 0 || self.pos > at.saturating_add(usable) {
            return None;
        }
        let off = base + usize::try_from(at % usable).ok()?;
        compact::decode(self.buf.get(off..off + n as usize)?)
    }

    /// Events held (at most; a few may have been overwritten by larger ones).
    #[cfg(test)] // only the tests use it
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing is held.
    #[cfg(test)] // only the tests use it
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Copies `src` into `dst` (equal lengths, a multiple of 8, `dst` 8-aligned). On x86-64 with
/// non-temporal stores: the arena is read back only for the rare alert, and ordinary stores
/// would pull every line it writes into the cache, evicting the groups' state that the next
/// events need.
fn stream_copy(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if dst.len() == src.len() && dst.len().is_multiple_of(8) && dst.as_ptr().align_offset(8) == 0 {
        for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            // SAFETY: `d` is 8 writable bytes of `dst`, 8-aligned (checked above, and chunks
            // of 8 keep the alignment); MOVNTI (SSE2, part of the x86-64 baseline) writes them.
            unsafe {
                std::arch::x86_64::_mm_stream_si64(
                    d.as_mut_ptr().cast::<i64>(),
                    i64::from_ne_bytes(w),
                );
            }
        }
        return;
    }
    dst.copy_from_slice(src);
}

/// Asks the CPU to start loading the cache line of `x`, which the engine will read when a
/// later event reaches the same state: a window's next entries, the next item to evict. The
/// group state of a busy node is larger than the cache, and each of these reads would
/// otherwise be a memory round trip the next event waits for.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and does not read memory architecturally; the pointer
    // comes from a reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast::<i8>(),
        );
    }
}

const NIL: u32 = u32::MAX;

/// A slot's key and its place in the recency list, kept apart from the items: relinking
/// touches the neighbours' links, and these are 16 bytes each rather than a whole item.
#[derive(Debug, Clone, Copy)]
struct Link<K> {
    key: K,
    /// More recently used neighbour.
    prev: u32,
    /// Less recently used neighbour.
    next: u32,
}

/// Items by key in a slab, with a least-recently-used list: one index entry and no allocation
/// per item beyond the item itself (what `lru::LruCache` spends a node on). Callers look a key
/// up once ([`Table::find`]) and then work on its slot.
#[derive(Debug)]
pub(crate) struct Table<G, K = u64> {
    map: FastMap<K, u32>,
    slots: Vec<G>,
    links: Vec<Link<K>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
}

impl<G, K> Default for Table<G, K> {
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

impl<G, K: Copy + Eq + std::hash::Hash> Table<G, K> {
    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether `key` is held (recency unchanged).
    #[cfg(test)] // only the tests use it
    pub(crate) fn contains(&self, key: K) -> bool {
        self.map.contains_key(&key)
    }

    /// The slot of `key` (recency unchanged).
    pub(crate) fn find(&self, key: K) -> Option<u32> {
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
    pub(crate) fn touch(&mut self, s: u32) {
        if self.head != s {
            self.unlink(s);
            self.link_front(s);
        }
    }

    /// The item in slot `s`.
    pub(crate) fn slot(&self, s: u32) -> &G {
        &self.slots[s as usize]
    }

    /// The item in slot `s`, mutably (recency unchanged).
    pub(crate) fn slot_mut(&mut self, s: u32) -> &mut G {
        &mut self.slots[s as usize]
    }

    /// The item under `key` (recency unchanged).
    pub(crate) fn peek(&self, key: K) -> Option<&G> {
        let s = self.find(key)?;
        self.slots.get(s as usize)
    }

    /// The item under `key`, made the most recently used.
    #[cfg(test)] // only the tests use it
    pub(crate) fn get_mut(&mut self, key: K) -> Option<&mut G> {
        let s = self.find(key)?;
        self.touch(s);
        self.slots.get_mut(s as usize)
    }

    /// Files `g` under `key` (which must not be held yet) as the most recently used; returns
    /// its slot.
    pub(crate) fn insert(&mut self, key: K, g: G) -> u32 {
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
    pub(crate) fn peek_lru(&self) -> Option<&G> {
        (self.tail != NIL).then(|| &self.slots[self.tail as usize])
    }

    /// Removes the least recently used item; `replace` is left in its slot (dropping the
    /// item's heap parts now rather than at reuse).
    pub(crate) fn pop_lru(&mut self, replace: G) -> Option<G> {
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
    pub(crate) fn evict_lru(&mut self) -> bool {
        if self.tail == NIL {
            return false;
        }
        let s = self.tail;
        self.unlink(s);
        self.map.remove(&self.links[s as usize].key);
        self.free.push(s);
        // The next eviction's item: a table at its cap evicts on nearly every insert.
        if let (Some(l), Some(g)) = (
            self.links.get(self.tail as usize),
            self.slots.get(self.tail as usize),
        ) {
            prefetch(l);
            prefetch(g);
        }
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
        let seqs: Vec<u64> = (0..5).map(|t| r.push(&ev(t))).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert_eq!(r.len(), 3);
        assert!(r.get(1).is_none(), "pushed out");
        assert_eq!(r.get(2).map(|e| e.ts), Some(2));
        assert_eq!(r.get(4).map(|e| e.ts), Some(4));
        assert!(r.get(5).is_none(), "not yet pushed");
        assert_eq!(r.next_seq(), 5);
        let mut z = Ring::new(0);
        assert_eq!((z.push(&ev(1)), z.push(&ev(2))), (0, 1));
        assert!(z.get(0).is_none() && z.is_empty());
    }

    #[test]
    fn push_overwrites_the_oldest() {
        let mut r = Ring::new(2);
        assert_eq!((r.push(&ev(1)), r.push(&ev(2))), (0, 1));
        assert_eq!(r.push(&ev(3)), 2);
        assert!(r.get(0).is_none());
        assert_eq!(
            (r.get(1).map(|e| e.ts), r.get(2).map(|e| e.ts)),
            (Some(2), Some(3))
        );
        assert_eq!((r.next_seq(), r.len()), (3, 2));
        let mut z = Ring::new(0);
        assert_eq!(z.push(&ev(4)), 0);
        assert!(z.get(0).is_none() && z.is_empty());
    }

    /// An event whose encoding grows with `len` (its exec argv).
    fn sized(ts: u64, len: usize) -> Event {
        let mut e = ev(ts);
        e.exec = Some(crate::event::ExecInfo {
            filename: "/bin/x".into(),
            argv: vec!["a".repeat(len)],
            argv_truncated: false,
        });
        e
    }

    #[test]
    fn arena_holds_what_fits_and_never_returns_overwritten_bytes() {
        // 4 events of capacity: an arena of 4 × RING_BYTES_PER_EVENT bytes.
        let mut r = Ring::new(4);
        let lens = [10, 700, 3, 900, 1200, 5, 64, 2000, 1, 1];
        let seqs: Vec<u64> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| r.push(&sized(i as u64, n)))
            .collect();
        // Whatever `get` returns is exactly the event pushed under that number.
        let mut held = 0;
        for (&s, &n) in seqs.iter().zip(&lens) {
            if let Some(e) = r.get(s) {
                assert_eq!(e, sized(s, n), "seq {s}");
                held += 1;
            }
        }
        // The newest ones fit; the big ones pushed older ones out early.
        assert!(r.get(9).is_some() && r.get(8).is_some());
        assert!((2..=4).contains(&held), "{held}");
        // An event larger than the whole arena is not held, and breaks nothing.
        let big = r.push(&sized(10, 4 * RING_BYTES_PER_EVENT + 1));
        assert!(r.get(big).is_none());
        let after = r.push(&sized(11, 7));
        assert_eq!(r.get(after), Some(sized(11, 7)));
    }

    proptest! {
        /// Under any sequence of event sizes, `get` returns the event pushed under that
        /// sequence number or nothing, and always the newest event.
        #[test]
        fn arena_never_mixes_events(lens in proptest::collection::vec(0usize..3000, 1..60), cap in 1usize..8) {
            let mut r = Ring::new(cap);
            for (i, &n) in lens.iter().enumerate() {
                let s = r.push(&sized(i as u64, n));
                prop_assert_eq!(s, i as u64);
                if n < RING_BYTES_PER_EVENT * cap - 64 {
                    prop_assert_eq!(r.get(s), Some(sized(i as u64, n)));
                }
            }
            for (i, &n) in lens.iter().enumerate() {
                if let Some(e) = r.get(i as u64) {
                    prop_assert_eq!(e, sized(i as u64, n));
                }
            }
        }
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
        fn small_is_a_deque(ops in proptest::collection::vec((0u8..6, any::<u8>()), 0..60)) {
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
                    4 => prop_assert_eq!(s.remove_second(), d.remove(1)),
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
