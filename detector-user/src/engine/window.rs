//! Window state: a correlation's entries per group key (`Entry`, `Group`), the later
//! `temporal_ordered` steps waiting for an earlier one (`Orphans`), the non-monotone windows
//! waiting for time to pass (`Deferred`), and the group's evidence bookkeeping.

use super::*;

/// A window entry: 32 bytes, two to a cache line (a busy node holds millions of them).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) ts: u64,
    /// Ring sequence number of the event (low 48 bits), its step (next 8) and the fresh
    /// flag (top bit).
    pub(super) meta: u64,
    pub(super) val: u64,
    pub(super) dst: u64,
}

pub(super) const SEQ_BITS: u32 = 48;
pub(super) const FRESH: u64 = 1 << 63;

impl Entry {
    #[inline]
    pub(super) fn new(ts: u64, seq: u64, val: u64, dst: u64, step: u8, fresh: bool) -> Entry {
        let meta = (seq & ((1 << SEQ_BITS) - 1))
            | (u64::from(step) << SEQ_BITS)
            | (FRESH * u64::from(fresh));
        Entry { ts, meta, val, dst }
    }

    /// Ring sequence number of the event (the ring holds far fewer than 2^48 events, and a
    /// number that wrapped only makes the ring miss).
    #[inline]
    pub(super) fn seq(&self) -> u64 {
        self.meta & ((1 << SEQ_BITS) - 1)
    }

    #[inline]
    pub(super) fn step(&self) -> u8 {
        (self.meta >> SEQ_BITS) as u8
    }

    /// Inserted by the event being handled out of time order (late, or a waiting
    /// `temporal_ordered` step joining): windows that already held the other entries were
    /// decided without it.
    #[inline]
    pub(super) fn fresh(&self) -> bool {
        self.meta & FRESH != 0
    }

    #[inline]
    pub(super) fn clear_fresh(&mut self) {
        self.meta &= !FRESH;
    }
}

/// Credentials of a group's evidence events: (ring sequence number, credential).
pub(super) type Creds = Vec<(u64, Arc<AlertCredential>)>;

/// One group key's state. Kept small (most memory with many keys is here): the first window
/// entry and evidence reference are inline; evidence events themselves are in the engine's
/// shared ring. Aligned to a cache line so that touching a group costs two lines, not three:
/// nearly every connect touches a group no other recent event did.
#[repr(align(64))]
pub(super) struct Group {
    /// Index in `entries` of the first entry of the window ending at the newest entry (the
    /// "head window"); earlier entries are kept only for events arriving late.
    pub(super) win: u32,
    /// value_count with a `gt`/`gte` condition far exceeded: a lower bound of the head
    /// window's distinct values, kept instead of `distinct` (0: `distinct` is exact, or the
    /// window small). Every entry leaving lowers it by one, entries joining leave it alone;
    /// only when it no longer proves the condition are the values counted again. A busy
    /// group (a scanner, or any group held back by suppression) then costs no map update
    /// per event.
    pub(super) lb: u32,
    /// temporal_ordered with a `gt`/`gte` condition: 1 + the time of the first step of a
    /// chain found satisfying the head window (0: none). Any later head window that still
    /// holds that entry is satisfied without scanning.
    pub(super) chain: u64,
    /// Time of the latest entry (0: none), kept here because the group's line is read anyway
    /// and the back of `entries` is a cache miss for a group that other events' state
    /// displaced since its last event: the order check need not wait for it.
    pub(super) last: u64,
    /// Window entries in timestamp order (ties in arrival order).
    pub(super) entries: Small<Entry>,
    /// value_count: count of entries per distinct value in the head window.
    pub(super) distinct: Option<Box<FastMap<u64, u32>>>,
    /// Display strings of values/destinations that their codes do not carry, bounded; boxed,
    /// as most groups count addresses and ports.
    pub(super) names: Option<Box<Names>>,
    /// (ring sequence number, ts) of the evidence events, in timestamp order.
    pub(super) evidence: Small<(u64, u64)>,
    /// The credential of each evidence event that has one, by ring sequence number: the ring
    /// may evict the window's first event (typically the credential read) before the alert,
    /// and the alert's `credential` must not depend on that. Only kept while the sequence
    /// number is in `evidence` (so at most `max_evidence`); boxed so groups without a
    /// credential pay one pointer.
    pub(super) creds: Option<Box<Creds>>,
}

impl Group {
    #[inline]
    pub(super) fn empty() -> Group {
        Group {
            win: 0,
            lb: 0,
            chain: 0,
            last: 0,
            entries: Small::Empty,
            distinct: None,
            names: None,
            evidence: Small::Empty,
            creds: None,
        }
    }

    /// Display names held.
    #[inline]
    pub(super) fn names_len(&self) -> usize {
        self.names.as_ref().map_or(0, |n| n.len())
    }

    /// Time of the latest entry (a live group always has one).
    #[inline]
    pub(super) fn last_ts(&self) -> u64 {
        self.last
    }

    /// One entry of `val` left the head window.
    #[inline]
    pub(super) fn forget(&mut self, val: u64) {
        match self.lb {
            0 => {}
            STALE => return,
            1 => {
                self.lb = STALE;
                return;
            }
            _ => {
                self.lb -= 1;
                return;
            }
        }
        match self.distinct.as_mut() {
            Some(d) => {
                if let Some(n) = d.get_mut(&val) {
                    *n -= 1;
                    if *n == 0 {
                        d.remove(&val);
                        if !code::describes(val) {
                            if let Some(n) = self.names.as_mut() {
                                n.remove(val);
                            }
                        }
                    }
                }
            }
            None => {
                let win = self.win as usize;
                if !code::describes(val) && !self.entries.iter().skip(win).any(|e| e.val == val) {
                    if let Some(n) = self.names.as_mut() {
                        n.remove(val);
                    }
                }
            }
        }
    }

    /// One entry of `val` (already in `entries`) entered the head window. Small head windows
    /// count distinct values by scanning: most groups of a key like (identity, destination)
    /// never hold more than a few entries, and a map each would be two allocations per group.
    #[inline]
    pub(super) fn remember(&mut self, val: u64) {
        if self.lb != 0 {
            return;
        }
        if let Some(d) = self.distinct.as_mut() {
            if val != NO_VALUE {
                *d.entry(val).or_insert(0) += 1;
            }
            return;
        }
        let win = self.win as usize;
        if self.entries.len() - win > SCAN_DISTINCT {
            self.distinct = Some(self.count_values());
        }
    }

    /// The head window's values and how many entries carry each ([`NO_VALUE`] is none).
    #[inline]
    pub(super) fn count_values(&self) -> Box<FastMap<u64, u32>> {
        let mut d: Box<FastMap<u64, u32>> = Box::default();
        for e in self.entries.iter().skip(self.win as usize) {
            if e.val != NO_VALUE {
                *d.entry(e.val).or_insert(0) += 1;
            }
        }
        d
    }

    /// Counts the head window's distinct values again after a lower bound stopped proving
    /// the condition; `by_val`: display names are kept by value (forgotten with it).
    #[inline]
    pub(super) fn recount(&mut self, by_val: bool) {
        self.lb = 0;
        let win = self.win as usize;
        if self.entries.len() - win <= SCAN_DISTINCT {
            self.distinct = None;
        } else {
            self.distinct = Some(self.count_values());
        }
        if by_val {
            // Names of values that left while only the bound was kept.
            let win = &self.entries;
            let d = self.distinct.as_deref();
            let w = self.win as usize;
            if let Some(n) = self.names.as_mut() {
                n.retain(|h| match d {
                    Some(d) => d.contains_key(&h),
                    None => win.iter().skip(w).any(|e| e.val == h),
                });
            }
        }
    }

    /// After a decision on the head window: keeps only a lower bound of its distinct values
    /// when they exceed `need` (the least count the condition accepts) by enough that the
    /// recount, once the bound runs out, costs at most a few map updates per event.
    #[inline]
    pub(super) fn relax(&mut self, need: i64) {
        let Some(d) = self.distinct.as_ref() else {
            return;
        };
        let n = d.len() as i64;
        let w = (self.entries.len() - self.win as usize) as i64;
        let slack = n - need.max(0);
        if slack >= LAZY_SLACK && slack * 4 >= w && n < i64::from(STALE) {
            self.lb = n as u32;
            self.distinct = None;
        }
    }

    /// Inserts an entry at its timestamp position (after equal ones) and keeps the head window
    /// and its distinct values up to date. True when it went at the back (in time order).
    #[inline]
    pub(super) fn insert(&mut self, e: Entry, timespan: u64, distinct: bool) -> bool {
        let at_back = self.last <= e.ts;
        if at_back {
            self.entries.push_back(e);
            self.last = e.ts;
            if distinct {
                self.remember(e.val);
            }
            let start = e.ts.saturating_sub(timespan);
            while let Some(x) = self.entries.get(self.win as usize) {
                if x.ts >= start {
                    break;
                }
                let v = x.val;
                self.win += 1;
                if distinct {
                    self.forget(v);
                }
            }
            // The entries the next event of this group will find at the window's start.
            if let Some(x) = self.entries.get(self.win as usize + AHEAD) {
                store::prefetch(x);
            }
        } else {
            let head_start = self.last_ts().saturating_sub(timespan);
            let pos = self.entries.partition_point(|x| x.ts <= e.ts);
            self.entries.insert(pos, e);
            if e.ts < head_start {
                self.win += 1;
            } else if distinct {
                self.remember(e.val);
            }
        }
        at_back
    }

    /// Drops entries no window can need any more (older than `horizon`) and those beyond
    /// `max_entries`; returns how many of the latter were still needed.
    #[inline]
    pub(super) fn prune(&mut self, horizon: u64, max_entries: usize, distinct: bool) -> u64 {
        let mut dropped = 0;
        while self.entries.front().is_some_and(|e| e.ts < horizon)
            || self.entries.len() > max_entries
        {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            if e.ts >= horizon {
                dropped += 1;
            }
            if self.win > 0 {
                self.win -= 1;
            } else {
                // A head-window entry dropped (`max_entries`): it may start the known chain.
                self.chain = 0;
                if distinct {
                    self.forget(e.val);
                }
            }
        }
        if self.entries.is_empty() {
            self.last = 0;
        }
        // The entries the next event of this group will check for age.
        if let Some(x) = self.entries.get(AHEAD) {
            store::prefetch(x);
        }
        dropped
    }
}

/// A later step of a `temporal_ordered` correlation that found no group: an earlier step may
/// still arrive late (within the tolerance) and open a group it belongs to.
pub(super) struct Orphan {
    pub(super) ts: u64,
    pub(super) seq: u64,
    pub(super) val: u64,
    pub(super) dst: u64,
    pub(super) step: u8,
    /// Its candidate keys are `keys[at - first_key ..][..n]` of [`Orphans`].
    pub(super) at: u64,
    pub(super) n: u8,
    /// Bit per candidate key already joined.
    pub(super) joined: u16,
    pub(super) cred: Option<Arc<AlertCredential>>,
}

/// Waiting later steps of one `temporal_ordered` correlation, in arrival order, and their
/// candidate keys (kept flat so waiting allocates nothing once warm).
#[derive(Default)]
pub(super) struct Orphans {
    pub(super) list: VecDeque<Orphan>,
    pub(super) keys: VecDeque<u64>,
    pub(super) first_key: u64,
    /// Newest timestamp among `list` (a step that is not older opens nothing to join).
    pub(super) max_ts: u64,
}

impl Orphans {
    #[inline]
    pub(super) fn pop_front(&mut self) {
        if let Some(o) = self.list.pop_front() {
            for _ in 0..o.n {
                self.keys.pop_front();
            }
            self.first_key += u64::from(o.n);
        }
    }
}

/// Candidate keys an orphan keeps (a process tree has at most the process, its parent and
/// `MAX_ANCESTORS` ancestors: ten).
pub(super) const ORPHAN_KEYS: usize = 16;

/// A window of a non-monotone correlation waiting to be decided once event time has passed
/// its end by the tolerance.
pub(super) struct Deferred {
    pub(super) ts: u64,
    pub(super) c: usize,
    pub(super) key: u64,
    /// The group's tree root (for `process.tree` grouping).
    pub(super) root: Option<u32>,
    /// The step `ev` matched (its group-by fields give the group's values).
    pub(super) step: u8,
    pub(super) ev: Box<Event>,
}

/// Head windows of up to this many entries count distinct values by scanning.
pub(super) const SCAN_DISTINCT: usize = 8;
/// The counted value of a `value_count` entry whose event has none (no value code is 0): the
/// event is in the window, its value is not (Sigma: the window holds the events the rules
/// matched; the condition counts the distinct values among them).
pub(super) const NO_VALUE: u64 = 0;
/// How many window entries ahead of the one just read [`store::prefetch`] loads: a busy
/// group's next event reads on from there.
pub(super) const AHEAD: usize = 4;
/// `Group::lb` when the bound ran out: the head window's distinct values are unknown until
/// counted again.
pub(super) const STALE: u32 = u32::MAX;
/// Least margin over the condition for a group to keep only a lower bound of its distinct
/// values.
pub(super) const LAZY_SLACK: i64 = 32;

/// Records an evidence event: the first (often the credential read that starts the story)
/// and the most recent ones are kept, in timestamp order.
#[inline]
pub(super) fn add_evidence(
    g: &mut Group,
    seq: u64,
    ts: u64,
    max_evidence: usize,
    cred: Option<&Arc<AlertCredential>>,
) {
    if g.evidence.back().is_none_or(|&(_, x)| x <= ts) {
        g.evidence.push_back((seq, ts));
    } else {
        let at = g.evidence.partition_point(|&(_, x)| x <= ts);
        g.evidence.insert(at, (seq, ts));
    }
    if let Some(cr) = cred {
        g.creds
            .get_or_insert_with(Default::default)
            .push((seq, Arc::clone(cr)));
    }
    if g.evidence.len() > max_evidence {
        if let Some((gone, _)) = g.evidence.remove_second() {
            forget_cred(g, gone);
        }
    }
}

/// An evidence entry left the group's evidence: its event's credential is no longer needed
/// unless the event is there twice (it matched two steps of one correlation). The group
/// keeps the credentials of its evidence events only.
#[inline]
pub(super) fn forget_cred(g: &mut Group, seq: u64) {
    // Most evidence events carry no credential: that is the cheap test, made first.
    let Some(cs) = g.creds.as_mut() else {
        return;
    };
    if !cs.iter().any(|&(s, _)| s == seq) || g.evidence.iter().any(|&(s, _)| s == seq) {
        return;
    }
    cs.retain(|&(s, _)| s != seq);
    if cs.is_empty() {
        g.creds = None;
    }
}

#[inline]
pub(super) fn clear_fresh(g: &mut Group) {
    for i in 0..g.entries.len() {
        if let Some(e) = g.entries.get_mut(i) {
            e.clear_fresh();
        }
    }
}
