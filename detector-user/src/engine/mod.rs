//! Correlation engine: pure, driven by event timestamps (engine issue).
//!
//! No I/O, no wall clock, no kernel: time is the events' `ts`, so `detector replay` of a
//! recording and live `detector run` produce the same alerts given the same arrival order.
//! Loading rule files from disk ([`load`]) happens once at construction and is kept apart from
//! evaluation.
//!
//! Events are evaluated in arrival order, at once: an alert goes out from the very
//! [`Engine::process`] call of the event that completes its evidence, with no added latency.
//! Conditions that can only become true as events are added (`gt`/`gte` counts, `temporal`,
//! `temporal_ordered`, `max_gap` "machine speed", identity budgets) fire on that event.
//! Conditions that a later event could make false again (`lt`, `lte`, `eq`, `neq`) are decided
//! for the window ending at each event once event time has passed that event by the tolerance,
//! so no event that may still arrive can change the answer.
//!
//! Out-of-order arrival: `reorder_tolerance` (default 500 ms) is how late an event may arrive
//! and still be placed exactly. Windows keep their entries ordered by timestamp and retain
//! those a late event could still share a window with; a late event is inserted at its
//! timestamp, and every window it completes is evaluated (an alert then reports that window).
//! A `temporal_ordered` later step that finds no group is kept for the tolerance, so an
//! earlier step that arrives after it still opens the group and the chain completes. An event
//! later than the tolerance is still evaluated, but placed at the tolerance edge and counted in
//! `Stats::late`. A loss record is taken into account by alerts emitted after it arrives.
//!
//! Incidents: groups of a `temporal`/`temporal_ordered` correlation keyed by `process.tree`
//! share events (a connect joins the group of every ancestor's tree). Firings of such groups
//! whose counted events overlap are one incident: on the same event they make one alert, later
//! an update of it (same `incident.id`, next revision). Decided when an alert goes out, from
//! the events alone, so replay and live agree.
//!
//! Windows are sliding and inclusive: an event exactly `timespan` after another is in the same
//! window. State is bounded: per correlation at most `max_groups` group keys (LRU eviction,
//! counted) and per group at most `max_entries` window entries (oldest dropped, counted);
//! waiting `temporal_ordered` steps are bounded by `max_groups` too (dropped ones counted as
//! dropped entries).

pub mod alert;
pub mod code;
pub mod compact;
pub mod cond;
pub mod fields;
pub mod index;
mod keys;
pub mod load;
pub mod rules;
pub mod sigma;
pub mod store;
pub mod testing;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use alert::Alert;
use alert::{AlertCredential, AlertIncident, AlertProcess, AlertRule};
use cond::CmpOp;
use fields::{Field, Policy, Val};
use keys::{combine, group_hash, host_seed, int_hash, Memo};
use rules::{Body, CorrType, Correlation, Rule, RuleSet};
use store::{FastBuild, FastMap, Names, Ring, SStr, Small, Table};

use crate::event::{Event, FileInfo, Kind};
/// How alert ids are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdMode {
    /// Random UUID v4: unique across restarts (live).
    Random,
    /// Derived from a seed, the alert's ordinal, rule, group and window: replay of the same
    /// input with the same seed yields the same ids.
    Derived(u64),
}

/// Engine tuning.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Host name put in alerts.
    pub host: String,
    /// Alert id scheme.
    pub ids: IdMode,
    /// How late (ns) an event may arrive and still be placed exactly in its windows. It adds
    /// no latency to alerts; it sets how long window entries and waiting `temporal_ordered`
    /// steps are kept past their window, and when `lt`/`lte`/`eq`/`neq` windows are decided.
    pub reorder_tolerance: u64,
    /// Group keys kept per correlation.
    pub max_groups: usize,
    /// Window entries kept per group.
    pub max_entries: usize,
    /// Evidence events kept per group and put in an alert.
    pub max_evidence: usize,
    /// Destinations listed in an alert (the count stays exact).
    pub max_destinations: usize,
    /// argv elements put in an alert.
    pub max_argv: usize,
    /// Evidence events kept for alerts, over all groups (a shared ring, newest kept). An
    /// alert's evidence lists those of its events still held; counts stay exact.
    pub evidence_events: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            host: String::new(),
            ids: IdMode::Random,
            reorder_tolerance: 500_000_000,
            max_groups: 100_000,
            max_entries: 4096,
            max_evidence: 8,
            max_destinations: 32,
            max_argv: 16,
            evidence_events: 65_536,
        }
    }
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Events given to the engine.
    pub events: u64,
    /// Events that matched at least one event rule.
    pub matched: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Alerts suppressed.
    pub suppressed: u64,
    /// Events that arrived later than the reorder tolerance (placed at its edge).
    pub late: u64,
    /// Group keys evicted because a correlation reached `max_groups`.
    pub evicted_groups: u64,
    /// Window entries dropped because a group reached `max_entries`.
    pub dropped_entries: u64,
    /// Firings merged into another group's incident (in its alert, or as an update of it).
    #[serde(skip_serializing_if = "is_zero")]
    pub merged: u64,
}

// serde's skip_serializing_if takes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A window entry: 32 bytes, two to a cache line (a busy node holds millions of them).
#[derive(Clone, Copy, Debug)]
struct Entry {
    ts: u64,
    /// Ring sequence number of the event (low 48 bits), its step (next 8) and the fresh
    /// flag (top bit).
    meta: u64,
    val: u64,
    dst: u64,
}

const SEQ_BITS: u32 = 48;
const FRESH: u64 = 1 << 63;

impl Entry {
    fn new(ts: u64, seq: u64, val: u64, dst: u64, step: u8, fresh: bool) -> Entry {
        let meta = (seq & ((1 << SEQ_BITS) - 1))
            | (u64::from(step) << SEQ_BITS)
            | (FRESH * u64::from(fresh));
        Entry { ts, meta, val, dst }
    }

    /// Ring sequence number of the event (the ring holds far fewer than 2^48 events, and a
    /// number that wrapped only makes the ring miss).
    fn seq(&self) -> u64 {
        self.meta & ((1 << SEQ_BITS) - 1)
    }

    fn step(&self) -> u8 {
        (self.meta >> SEQ_BITS) as u8
    }

    /// Inserted by the event being handled out of time order (late, or a waiting
    /// `temporal_ordered` step joining): windows that already held the other entries were
    /// decided without it.
    fn fresh(&self) -> bool {
        self.meta & FRESH != 0
    }

    fn clear_fresh(&mut self) {
        self.meta &= !FRESH;
    }
}

/// Credentials of a group's evidence events: (ring sequence number, credential).
type Creds = Vec<(u64, Arc<AlertCredential>)>;

/// One group key's state. Kept small (most memory with many keys is here): the first window
/// entry and evidence reference are inline; evidence events themselves are in the engine's
/// shared ring. Aligned to a cache line so that touching a group costs two lines, not three:
/// nearly every connect touches a group no other recent event did.
#[repr(align(64))]
struct Group {
    /// Index in `entries` of the first entry of the window ending at the newest entry (the
    /// "head window"); earlier entries are kept only for events arriving late.
    win: u32,
    /// value_count with a `gt`/`gte` condition far exceeded: a lower bound of the head
    /// window's distinct values, kept instead of `distinct` (0: `distinct` is exact, or the
    /// window small). Every entry leaving lowers it by one, entries joining leave it alone;
    /// only when it no longer proves the condition are the values counted again. A busy
    /// group (a scanner, or any group held back by suppression) then costs no map update
    /// per event.
    lb: u32,
    /// temporal_ordered with a `gt`/`gte` condition: 1 + the time of the first step of a
    /// chain found satisfying the head window (0: none). Any later head window that still
    /// holds that entry is satisfied without scanning.
    chain: u64,
    /// Time of the latest entry (0: none), kept here because the group's line is read anyway
    /// and the back of `entries` is a cache miss for a group that other events' state
    /// displaced since its last event: the order check need not wait for it.
    last: u64,
    /// Window entries in timestamp order (ties in arrival order).
    entries: Small<Entry>,
    /// value_count: count of entries per distinct value in the head window.
    distinct: Option<Box<FastMap<u64, u32>>>,
    /// Display strings of values/destinations that their codes do not carry, bounded; boxed,
    /// as most groups count addresses and ports.
    names: Option<Box<Names>>,
    /// (ring sequence number, ts) of the evidence events, in timestamp order.
    evidence: Small<(u64, u64)>,
    /// The credential of each evidence event that has one, by ring sequence number: the ring
    /// may evict the window's first event (typically the credential read) before the alert,
    /// and the alert's `credential` must not depend on that. Only kept while the sequence
    /// number is in `evidence` (so at most `max_evidence`); boxed so groups without a
    /// credential pay one pointer.
    creds: Option<Box<Creds>>,
}

impl Group {
    fn empty() -> Group {
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
    fn names_len(&self) -> usize {
        self.names.as_ref().map_or(0, |n| n.len())
    }

    /// Time of the latest entry (a live group always has one).
    fn last_ts(&self) -> u64 {
        self.last
    }

    /// One entry of `val` left the head window.
    fn forget(&mut self, val: u64) {
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
    fn remember(&mut self, val: u64) {
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
    fn count_values(&self) -> Box<FastMap<u64, u32>> {
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
    fn recount(&mut self, by_val: bool) {
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
    fn relax(&mut self, need: i64) {
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
    fn insert(&mut self, e: Entry, timespan: u64, distinct: bool) -> bool {
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
    fn prune(&mut self, horizon: u64, max_entries: usize, distinct: bool) -> u64 {
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
struct Orphan {
    ts: u64,
    seq: u64,
    val: u64,
    dst: u64,
    step: u8,
    /// Its candidate keys are `keys[at - first_key ..][..n]` of [`Orphans`].
    at: u64,
    n: u8,
    /// Bit per candidate key already joined.
    joined: u16,
    cred: Option<Arc<AlertCredential>>,
}

/// Waiting later steps of one `temporal_ordered` correlation, in arrival order, and their
/// candidate keys (kept flat so waiting allocates nothing once warm).
#[derive(Default)]
struct Orphans {
    list: VecDeque<Orphan>,
    keys: VecDeque<u64>,
    first_key: u64,
    /// Newest timestamp among `list` (a step that is not older opens nothing to join).
    max_ts: u64,
}

impl Orphans {
    fn pop_front(&mut self) {
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
const ORPHAN_KEYS: usize = 16;

/// A window of a non-monotone correlation waiting to be decided once event time has passed
/// its end by the tolerance.
struct Deferred {
    ts: u64,
    c: usize,
    key: u64,
    /// The group's tree root (for `process.tree` grouping).
    root: Option<u32>,
    /// The step `ev` matched (its group-by fields give the group's values).
    step: u8,
    ev: Box<Event>,
}

struct Supp {
    last: u64,
    suppressed: u64,
}

/// The correlation engine.
pub struct Engine {
    rules: Arc<RuleSet>,
    /// An empty rule set that takes `rules`' place while an event is handled (see
    /// [`Engine::handle`]).
    parked: Option<Arc<RuleSet>>,
    policy: Policy,
    opts: EngineOptions,
    /// Newest event timestamp seen (or time given to `flush`).
    max_ts: u64,
    groups: Vec<Option<Table<Group>>>,
    orphans: Vec<Orphans>,
    deferred: VecDeque<Deferred>,
    /// Suppression state by (rule, group key), least recently alerted evicted past
    /// `max_groups`.
    supp: Table<Supp, (usize, u64)>,
    ring: Ring,
    losses: VecDeque<u64>,
    keep_losses: u64,
    alert_seq: u64,
    since_expiry: u32,
    /// Scratch for candidate rules of the event being matched.
    cand: Vec<u32>,
    /// What the event being handled does (kept to reuse its buffers).
    plan: Option<Box<Plan>>,
    /// Scratch set for counting distinct values of a window from scratch.
    scratch: HashSet<u64, FastBuild>,
    /// Incidents of correlations whose groups share events, still open to a firing that
    /// shares events with them; the most recently changed last.
    incidents: VecDeque<Incident>,
    /// Number of the call handing alerts out (`process`, `flush`, `finish`): an incident's
    /// alert pushed during this call is still in the caller's `out`, where a firing on the
    /// same event merges into it.
    batch: u64,
    stats: Stats,
}

/// Incidents kept open at once (the oldest is closed first): alerts are rare, and only
/// correlations grouped by process tree make incidents.
const MAX_INCIDENTS: usize = 256;
/// Counted events and destinations an incident remembers (its counts stay exact up to this).
const INCIDENT_EVENTS: usize = 4096;
/// Trees an incident lists.
const INCIDENT_TREES: usize = 64;
/// Processes an incident lists.
const INCIDENT_PROCESSES: usize = 32;
/// Evidence events an incident's alert holds (its groups' evidence together).
const INCIDENT_EVIDENCE: usize = 32;

/// An incident of a correlation whose groups share events: the groups whose firings overlap
/// (share counted events), reported as one.
struct Incident {
    /// Rule index.
    rule: usize,
    /// Group keys merged into it (a group's own repeats are its suppression's business).
    keys: Vec<u64>,
    /// Until when (event time) a window of the rule can still share events with it: its
    /// latest firing plus the window and the tolerance.
    open_until: u64,
    /// Ring sequence numbers of its counted events, ascending, at most [`INCIDENT_EVENTS`]
    /// (the oldest dropped, and counted).
    seqs: Vec<u64>,
    seqs_dropped: u64,
    /// Codes of its distinct destinations, ascending, bounded likewise.
    dsts: Vec<u64>,
    dsts_dropped: u64,
    /// Tree roots of its groups, ascending.
    trees: Vec<u32>,
    /// The incident's id (its first alert's).
    id: String,
    /// Updates emitted.
    revision: u32,
    /// Its latest alert without the evidence events (copying those for every alert that may
    /// never merge cost more than the rest of the alert), and where it was pushed: (batch,
    /// index in `out`).
    record: Alert,
    at: (u64, usize),
    /// Ring sequence numbers of the latest alert's evidence events, in its order: read again
    /// from the ring for an update.
    evidence: Vec<u64>,
}

/// Head windows of up to this many entries count distinct values by scanning.
const SCAN_DISTINCT: usize = 8;
/// The counted value of a `value_count` entry whose event has none (no value code is 0): the
/// event is in the window, its value is not (Sigma: the window holds the events the rules
/// matched; the condition counts the distinct values among them).
const NO_VALUE: u64 = 0;
/// How many window entries ahead of the one just read [`store::prefetch`] loads: a busy
/// group's next event reads on from there.
const AHEAD: usize = 4;
/// `Group::lb` when the bound ran out: the head window's distinct values are unknown until
/// counted again.
const STALE: u32 = u32::MAX;
/// Least margin over the condition for a group to keep only a lower bound of its distinct
/// values.
const LAZY_SLACK: i64 = 32;

/// An alert's contents apart from what the rule and suppression decide.
struct Details {
    group: Vec<(Field, String)>,
    first: u64,
    count: u64,
    destinations: Vec<String>,
    destination_count: u64,
    /// Redacted copies of the evidence events.
    evidence: Vec<Event>,
    /// Evidence events no longer in the ring.
    evidence_dropped: u64,
    /// The latest credential among the window's evidence events.
    credential: Option<AlertCredential>,
}

impl Engine {
    /// An engine over a loaded rule set and policy (identities, baseline).
    pub fn new(rules: RuleSet, policy: Policy, opts: EngineOptions) -> Engine {
        Engine::new_shared(Arc::new(rules), policy, opts)
    }

    fn new_shared(rules: Arc<RuleSet>, policy: Policy, opts: EngineOptions) -> Engine {
        let groups = rules
            .rules
            .iter()
            .map(|r| match r.body {
                Body::Correlation(_) => Some(Table::default()),
                Body::Event { .. } => None,
            })
            .collect();
        let orphans = rules.rules.iter().map(|_| Orphans::default()).collect();
        let keep_losses = rules.max_timespan().saturating_add(opts.reorder_tolerance);
        Engine {
            rules,
            parked: Some(Arc::default()),
            policy,
            max_ts: 0,
            groups,
            orphans,
            deferred: VecDeque::new(),
            supp: Table::default(),
            ring: Ring::new(opts.evidence_events),
            losses: VecDeque::new(),
            keep_losses,
            alert_seq: 0,
            since_expiry: 0,
            cand: Vec::new(),
            plan: Some(Box::default()),
            scratch: HashSet::default(),
            incidents: VecDeque::new(),
            batch: 0,
            stats: Stats::default(),
            opts,
        }
    }

    /// Forgets all window, suppression and waiting state and replaces the policy (rule tests
    /// run every case on a clean engine).
    pub fn reset(&mut self, policy: Policy) {
        let rules = Arc::clone(&self.rules);
        let opts = self.opts.clone();
        *self = Engine::new_shared(rules, policy, opts);
    }

    /// Sets the host name put in alerts and, unless ids are random, derives the id seed from
    /// the host and capture start (a recording's header), so replays are reproducible and two
    /// recordings do not share ids.
    pub fn set_host(&mut self, host: &str, started: u64, random_ids: bool) {
        self.opts.host = host.to_string();
        if !random_ids {
            self.opts.ids = IdMode::Derived(host_seed(host, started));
        }
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live group keys over all correlations.
    pub fn live_groups(&self) -> usize {
        self.groups.iter().flatten().map(Table::len).sum()
    }

    /// Feeds one event; alerts it completes (and non-monotone windows it lets time decide)
    /// are appended to `out` by this call. The event is copied only when it feeds a
    /// correlation (encoded into the evidence ring, reusing an evicted event's buffer).
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Alert>) {
        self.batch += 1;
        // Boxed and taken out while the event is handled: moving the plan itself would copy
        // its inline buffers twice per event.
        let mut p = self.plan.take().unwrap_or_default();
        plan(&self.rules, &self.policy, &mut self.cand, ev, &mut p);
        self.execute(ev, &p, out);
        self.plan = Some(p);
    }

    /// Like [`Engine::process`] for a caller that owns the event (replay).
    pub fn process_owned(&mut self, ev: Event, out: &mut Vec<Alert>) {
        self.process(&ev, out);
    }

    /// Evaluates one event from its plan; stores it in the evidence ring when it fed a
    /// correlation (under the sequence number the groups were given).
    fn execute(&mut self, ev: &Event, plan: &Plan, out: &mut Vec<Alert>) {
        self.stats.events += 1;
        let keep = !plan.matched.is_empty();
        if keep {
            self.stats.matched += 1;
        }
        let t = self.advance(ev.ts, out);
        if ev.kind == Kind::Loss {
            self.losses.push_back(t);
        }
        if keep && self.handle(t, ev, plan, out) {
            self.ring.push(ev);
        }
    }

    /// The oldest timestamp an event may have and still be placed exactly.
    fn watermark(&self) -> u64 {
        self.max_ts.saturating_sub(self.opts.reorder_tolerance)
    }

    /// Advances event time for an event stamped `ts`; returns the time it is placed at (its
    /// own, or the tolerance edge when later than that).
    fn advance(&mut self, ts: u64, out: &mut Vec<Alert>) -> u64 {
        let wm = self.watermark();
        let t = if ts < wm {
            self.stats.late += 1;
            wm
        } else {
            ts
        };
        if ts > self.max_ts {
            self.max_ts = ts;
            self.decide_deferred(self.watermark(), out);
        }
        while self
            .losses
            .front()
            .is_some_and(|&l| l.saturating_add(self.keep_losses) < t)
        {
            self.losses.pop_front();
        }
        self.since_expiry += 1;
        if self.since_expiry >= 65_536 {
            self.since_expiry = 0;
            self.expire();
        }
        t
    }

    /// Advances time to `now` (e.g. the capture clock during a quiet period): decides waiting
    /// non-monotone windows and expires idle groups.
    pub fn flush(&mut self, now: u64, out: &mut Vec<Alert>) {
        self.batch += 1;
        self.max_ts = self.max_ts.max(now);
        self.decide_deferred(self.watermark(), out);
        self.expire();
    }

    /// End of input: decides every waiting window.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.batch += 1;
        self.decide_deferred(u64::MAX, out);
    }

    fn expire(&mut self) {
        let now = self.watermark();
        for (i, g) in self.groups.iter_mut().enumerate() {
            let (Some(g), Body::Correlation(c)) = (g, &self.rules.rules[i].body) else {
                continue;
            };
            while g
                .peek_lru()
                .is_some_and(|s| s.last_ts().saturating_add(c.timespan) < now)
            {
                g.pop_lru(Group::empty());
            }
        }
        for o in &mut self.orphans {
            while o.list.front().is_some_and(|x| x.ts < now) {
                o.pop_front();
            }
        }
        self.incidents.retain(|i| i.open_until >= now);
    }

    /// Evaluates an event that matched event rules; true when it fed a correlation.
    fn handle(&mut self, t: u64, ev: &Event, plan: &Plan, out: &mut Vec<Alert>) -> bool {
        // The rule set is moved out for the event (and back), not reference-counted: an atomic
        // increment waits for every store still pending, the evidence ring's streaming stores
        // among them, and cost ~45 ns per event. Nothing below reads `self.rules`.
        let rules = match self.parked.take() {
            Some(empty) => std::mem::replace(&mut self.rules, empty),
            None => Arc::clone(&self.rules),
        };
        // Groups refer to this event by the sequence number it gets in the ring once handled.
        let seq = self.ring.next_seq();
        let correlated = plan.fed;
        // One shared copy of the event's credential for every group it enters.
        let cred = if correlated {
            ev.file.as_ref().map(|f| Arc::new(credential_of(f)))
        } else {
            None
        };
        let mut feeds = plan.feeds.iter().peekable();
        for (i, &m) in plan.matched.iter().enumerate() {
            let m = m as usize;
            let r = &rules.rules[m];
            if r.alert {
                self.event_alert(r, m, ev, t, out);
            }
            while let Some(f) = feeds.next_if(|f| f.from as usize == i) {
                let cur = Cur {
                    ev,
                    seq,
                    cred: cred.as_ref(),
                    dst_h: plan.dst_h,
                    t,
                };
                self.correlate(&rules, f, plan.keys_of(f), &cur, out);
            }
        }
        self.parked = Some(std::mem::replace(&mut self.rules, rules));
        correlated
    }

    /// Decides the waiting non-monotone windows that end at or before `upto`.
    fn decide_deferred(&mut self, upto: u64, out: &mut Vec<Alert>) {
        while self.deferred.front().is_some_and(|d| d.ts <= upto) {
            let Some(d) = self.deferred.pop_front() else {
                break;
            };
            let rules = Arc::clone(&self.rules);
            let Body::Correlation(c) = &rules.rules[d.c].body else {
                continue;
            };
            let Some(g) = self.groups[d.c].as_ref().and_then(|gs| gs.peek(d.key)) else {
                continue;
            };
            let lo = g
                .entries
                .partition_point(|e| e.ts < d.ts.saturating_sub(c.timespan));
            let hi = g.entries.partition_point(|e| e.ts <= d.ts);
            if hi == 0 || lo >= hi {
                continue;
            }
            let budget = budget_of(c, &d.ev, &self.policy);
            let Some(from) = satisfied(c, g, lo, hi - 1, false, budget, &mut self.scratch) else {
                continue;
            };
            let suppress = rules.rules[d.c].suppress;
            let cap = self.opts.max_groups;
            let Some(suppressed) = suppression(
                &mut self.supp,
                cap,
                &mut self.stats,
                suppress,
                d.c,
                d.key,
                d.ts,
            ) else {
                continue;
            };
            let group = || {
                let gb = c
                    .step_group_by
                    .get(usize::from(d.step))
                    .unwrap_or(&c.group_by);
                let vals: Vals<'_> = gb
                    .iter()
                    .map(|&f| fields::get(f, &d.ev, &self.policy))
                    .collect::<Option<_>>()
                    .unwrap_or_default();
                group_strings(c, &vals, d.root)
            };
            let fire = fire_of(c, g, lo, hi - 1, from, self.opts.max_destinations, group);
            let s = Subject {
                r: d.c,
                rule: &rules.rules[d.c],
                key: d.key,
                trigger: &d.ev,
            };
            let v = Verdict {
                t: d.ts,
                suppressed,
            };
            self.fire(s, v, fire, (u64::MAX, &d.ev), out);
        }
    }

    /// Evidence copies and emission of a correlation firing (suppression already let it
    /// through). `seq`/`cur` are the event being handled (not yet in the ring).
    fn fire(
        &mut self,
        s: Subject<'_>,
        v: Verdict,
        fire: Fire,
        (seq, cur): (u64, &Event),
        out: &mut Vec<Alert>,
    ) {
        let Subject {
            r,
            rule,
            key,
            trigger,
        } = s;
        let Verdict { t, suppressed } = v;
        // Only now, for an alert that goes out, are evidence events copied.
        let merges = matches!(&rule.body, Body::Correlation(c) if c.merges);
        let mut held = Vec::new();
        let evidence: Vec<Event> = fire
            .evidence
            .iter()
            .filter_map(|&q| {
                let e = if q == seq {
                    Some(self.redact(cur.clone()))
                } else {
                    self.ring.get(q).map(|e| self.redact(e))
                };
                if merges && e.is_some() {
                    held.push(q);
                }
                e
            })
            .collect();
        let evidence_dropped = (fire.evidence.len() - evidence.len()) as u64;
        let root = fire
            .group
            .iter()
            .find(|(f, _)| *f == Field::Tree)
            .and_then(|(_, v)| v.parse::<u32>().ok());
        let d = Details {
            group: fire.group,
            first: fire.first,
            count: fire.count,
            destinations: fire.destinations,
            destination_count: fire.destination_count,
            evidence,
            evidence_dropped,
            credential: fire.credential.map(|c| (*c).clone()),
        };
        match &rule.body {
            Body::Correlation(c) if c.merges => {
                let firing = Firing {
                    key,
                    t,
                    open_until: t
                        .saturating_add(c.timespan)
                        .saturating_add(self.opts.reorder_tolerance),
                    seqs: fire.seqs,
                    dsts: fire.dsts,
                    root,
                    evidence: held,
                };
                let a = self.alert_of(String::new(), rule, t, suppressed, d, trigger);
                self.incident(r, rule, firing, a, out);
            }
            _ => self.emit(s, v, d, out),
        }
    }

    /// A firing of a correlation whose groups share events: merged into the open incident of
    /// the same rule it shares counted events with — into that incident's alert while the
    /// caller still holds it (the same event fired both), else as an update of it — or the
    /// first alert of a new incident.
    fn incident(&mut self, r: usize, rule: &Rule, f: Firing, mut a: Alert, out: &mut Vec<Alert>) {
        let found = self.incidents.iter().rposition(|i| {
            i.rule == r
                && !i.keys.contains(&f.key)
                && i.open_until >= f.t
                && shares(&i.seqs, &f.seqs)
        });
        let Some(mut inc) = found.and_then(|i| self.incidents.remove(i)) else {
            a.id = self.new_id(rule, f.key, a.first_seen);
            self.stats.alerts += 1;
            if self.incidents.len() >= MAX_INCIDENTS {
                self.incidents.pop_front();
            }
            let evidence = std::mem::take(&mut a.evidence);
            let record = a.clone();
            a.evidence = evidence;
            self.incidents.push_back(Incident {
                rule: r,
                keys: vec![f.key],
                open_until: f.open_until,
                seqs: f.seqs,
                seqs_dropped: 0,
                dsts: f.dsts,
                dsts_dropped: 0,
                trees: f.root.into_iter().collect(),
                id: a.id.clone(),
                revision: 0,
                at: (self.batch, out.len()),
                record,
                evidence: f.evidence,
            });
            out.push(a);
            return;
        };
        self.stats.merged += 1;
        // Bounded like the trees: past that, a group's repeat is still held back by its own
        // suppression.
        if inc.keys.len() < INCIDENT_TREES {
            inc.keys.push(f.key);
        }
        inc.open_until = inc.open_until.max(f.open_until);
        union_sorted(&mut inc.seqs, &f.seqs, &mut inc.seqs_dropped);
        union_sorted(&mut inc.dsts, &f.dsts, &mut inc.dsts_dropped);
        if let Some(root) = f.root {
            if let Err(at) = inc.trees.binary_search(&root) {
                if inc.trees.len() < INCIDENT_TREES {
                    inc.trees.insert(at, root);
                }
            }
        }
        let (batch, idx) = inc.at;
        // Still in the caller's hands: the same call (event) fired it; one alert.
        let in_place = batch == self.batch && out.get(idx).is_some_and(|x| x.id == inc.record.id);
        let old_evidence: Vec<(u64, Event)> = if in_place {
            let held = out.get_mut(idx).map(|x| std::mem::take(&mut x.evidence));
            inc.evidence
                .iter()
                .copied()
                .zip(held.unwrap_or_default())
                .collect()
        } else {
            // The update's events, from the ring (a window can still share events with the
            // incident, so they are recent); one it no longer holds is counted as dropped.
            let got: Vec<(u64, Event)> = inc
                .evidence
                .iter()
                .filter_map(|&s| self.ring.get(s).map(|e| (s, self.redact(e))))
                .collect();
            inc.record.evidence_dropped += (inc.evidence.len() - got.len()) as u64;
            got
        };
        let new_evidence: Vec<(u64, Event)> = f
            .evidence
            .iter()
            .copied()
            .zip(std::mem::take(&mut a.evidence))
            .collect();
        let (mut m, seqs) = merge_alerts(
            &inc.record,
            old_evidence,
            a,
            new_evidence,
            in_place,
            self.opts.max_destinations,
        );
        m.count = inc.seqs.len() as u64 + inc.seqs_dropped;
        m.destination_count = inc.dsts.len() as u64 + inc.dsts_dropped;
        if in_place {
            m.id = inc.record.id.clone();
        } else {
            inc.revision += 1;
            m.id = self.new_id(rule, f.key, m.first_seen);
            self.stats.alerts += 1;
        }
        m.incident = Some(AlertIncident {
            id: inc.id.clone(),
            revision: inc.revision,
            trees: inc.trees.clone(),
            processes: processes_of(&m),
        });
        let evidence = std::mem::take(&mut m.evidence);
        inc.record = m.clone();
        m.evidence = evidence;
        inc.evidence = seqs;
        if in_place {
            if let Some(x) = out.get_mut(idx) {
                *x = m;
            }
        } else {
            inc.at = (self.batch, out.len());
            out.push(m);
        }
        self.incidents.push_back(inc);
    }

    fn group_values(&self, fields: &[Field], ev: &Event) -> Option<Vec<(Field, String)>> {
        fields
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy).map(|v| (f, v.render().into_owned())))
            .collect()
    }

    fn event_alert(&mut self, rule: &Rule, r: usize, ev: &Event, t: u64, out: &mut Vec<Alert>) {
        let group = self.group_values(&rule.group_by, ev).unwrap_or_default();
        let key = group_hash(&group);
        let cap = self.opts.max_groups;
        let Some(suppressed) = suppression(
            &mut self.supp,
            cap,
            &mut self.stats,
            rule.suppress,
            r,
            key,
            t,
        ) else {
            return;
        };
        let dst = ev
            .net
            .as_ref()
            .map(|n| fields::dst_string(&n.dst_addr, n.dst_port));
        let details = Details {
            group,
            first: t,
            count: 1,
            destination_count: dst.is_some() as u64,
            destinations: dst.into_iter().collect(),
            evidence: vec![self.redact(ev.clone())],
            evidence_dropped: 0,
            credential: ev.file.as_ref().map(credential_of),
        };
        let s = Subject {
            r,
            rule,
            key,
            trigger: ev,
        };
        self.emit(s, Verdict { t, suppressed }, details, out);
    }

    /// A copy of `e` as an alert shows it: argv bounded and secrets redacted, and the
    /// destination's service name (identities.yaml) added.
    fn redact(&self, mut e: Event) -> Event {
        let max_argv = self.opts.max_argv;
        if let Some(p) = e.process.as_mut() {
            p.argv = alert::redact_argv(&p.argv, max_argv);
        }
        if let Some(x) = e.exec.as_mut() {
            x.argv = alert::redact_argv(&x.argv, max_argv);
        }
        if let Some(n) = e.net.as_mut() {
            n.service = None;
            if self.policy.identities.has_services() {
                n.service = fields::parse_ip(&n.dst_addr)
                    .and_then(|ip| self.policy.identities.service_name(ip, n.dst_port))
                    .map(str::to_string);
            }
        }
        e
    }

    /// The service names and resolved names of an alert's destinations: from its evidence
    /// events, and the services of destinations written `addr:port`.
    fn destination_names(&self, d: &Details) -> (Vec<String>, Vec<String>) {
        let mut services = Vec::new();
        let mut names = Vec::new();
        for n in d.evidence.iter().filter_map(|e| e.net.as_ref()) {
            services.extend(n.service.clone());
            names.extend(n.dst_name.clone());
        }
        if self.policy.identities.has_services() {
            for dst in &d.destinations {
                if let Ok(sa) = dst.parse::<std::net::SocketAddr>() {
                    let s = self.policy.identities.service_name(sa.ip(), sa.port());
                    services.extend(s.map(str::to_string));
                }
            }
        }
        let max = self.opts.max_destinations;
        for v in [&mut services, &mut names] {
            v.sort();
            v.dedup();
            v.truncate(max);
        }
        (services, names)
    }

    fn emit(&mut self, s: Subject<'_>, v: Verdict, d: Details, out: &mut Vec<Alert>) {
        let id = self.new_id(s.rule, s.key, d.first);
        let a = self.alert_of(id, s.rule, v.t, v.suppressed, d, s.trigger);
        self.stats.alerts += 1;
        out.push(a);
    }

    /// The next alert's id.
    fn new_id(&mut self, rule: &Rule, key: u64, first: u64) -> String {
        self.alert_seq += 1;
        match self.opts.ids {
            IdMode::Random => uuid::Uuid::new_v4().to_string(),
            IdMode::Derived(seed) => {
                let mut h = Sha256::new();
                h.update(seed.to_le_bytes());
                h.update(self.alert_seq.to_le_bytes());
                h.update(rule.id.as_bytes());
                h.update(key.to_le_bytes());
                h.update(first.to_le_bytes());
                let dg = h.finalize();
                let mut b = [0u8; 16];
                b.copy_from_slice(&dg[..16]);
                uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
            }
        }
    }

    /// The alert of a firing (or an event rule's match) ending at `last`.
    fn alert_of(
        &self,
        id: String,
        rule: &Rule,
        last: u64,
        suppressed: u64,
        d: Details,
        trigger: &Event,
    ) -> Alert {
        let proc_ = trigger.process.as_ref();
        let loss_overlap = self.losses.iter().any(|&l| l >= d.first && l <= last);
        let max_argv = self.opts.max_argv;
        let (services, destination_names) = self.destination_names(&d);
        Alert {
            id,
            rule: AlertRule {
                id: rule.id.clone(),
                title: rule.title.clone(),
                severity: rule.severity,
            },
            attack: rule.attack.clone(),
            host: self.opts.host.clone(),
            identity: proc_.and_then(|p| p.identity.clone()),
            process: proc_.map(|p| AlertProcess {
                tgid: p.tgid,
                start: p.start,
                exe: p.exe.clone(),
                argv: alert::redact_argv(&p.argv, max_argv),
                user: p.user.clone(),
                uid: p.uid,
            }),
            credential: d.credential,
            group: d
                .group
                .into_iter()
                .map(|(f, v)| (f.path().to_string(), v))
                .collect::<BTreeMap<_, _>>(),
            destinations: d.destinations,
            destination_count: d.destination_count,
            services,
            destination_names,
            count: d.count,
            first_seen: d.first,
            last_seen: last,
            evidence: d.evidence,
            evidence_dropped: d.evidence_dropped,
            suppressed,
            loss_overlap,
            incident: None,
        }
    }

    /// Keeps a later `temporal_ordered` step that found no group, for an earlier step that
    /// may still arrive within the tolerance.
    fn wait(&mut self, c_idx: usize, step: usize, val: u64, keys: &[GroupKey], cur: &Cur<'_>) {
        let Cur {
            seq,
            cred,
            dst_h: dst,
            t,
            ..
        } = *cur;
        let cap = self.opts.max_groups;
        let o = &mut self.orphans[c_idx];
        if o.list.len() >= cap {
            o.pop_front();
            self.stats.dropped_entries += 1;
        }
        let n = keys.len().min(ORPHAN_KEYS);
        let at = o.first_key + o.keys.len() as u64;
        o.keys.extend(keys.iter().take(n).map(|k| k.0));
        o.max_ts = o.max_ts.max(t);
        o.list.push_back(Orphan {
            ts: t,
            seq,
            val,
            dst,
            step: step as u8,
            at,
            n: n as u8,
            joined: 0,
            cred: cred.cloned(),
        });
    }

    fn correlate(
        &mut self,
        rules: &RuleSet,
        f: &Feed,
        keys: &[GroupKey],
        cur: &Cur<'_>,
        out: &mut Vec<Alert>,
    ) {
        let Cur {
            ev,
            seq,
            cred,
            dst_h,
            t,
        } = *cur;
        let Feed {
            step,
            creates,
            has_val,
            val_h,
            ..
        } = *f;
        let (c_idx, step) = (f.c as usize, usize::from(step));
        let Body::Correlation(c) = &rules.rules[c_idx].body else {
            return;
        };
        let tol = self.opts.reorder_tolerance;
        let wm = self.watermark();
        // Entries older than this cannot share a window with any event still to come.
        let horizon = wm.saturating_sub(c.timespan);
        let ordered = c.ty == CorrType::TemporalOrdered;
        if ordered {
            let o = &mut self.orphans[c_idx];
            while o.list.front().is_some_and(|x| x.ts < wm) {
                o.pop_front();
            }
        }
        let net_field = c.net_field;
        let by_val = has_val && net_field;
        let mono = c.monotone;
        let distinct = c.ty == CorrType::ValueCount;
        // temporal_ordered decisions may reuse the chain found for an earlier event.
        let chains = ordered && mono && c.max_gap.is_none();
        let max_groups = self.opts.max_groups;
        let max_entries = self.opts.max_entries;
        let max_names = self.opts.max_destinations * 4;
        let max_evidence = self.opts.max_evidence.max(2);
        let Some(gs) = self.groups[c_idx].as_mut() else {
            return;
        };
        // One probe per candidate key; the groups are then addressed by slot.
        let mut found: smallvec::SmallVec<[(u64, Option<u32>, u32); 4]> = keys
            .iter()
            .filter_map(|&(k, tree)| gs.find(k).map(|s| (k, tree, s)))
            .collect();
        // A `temporal` tree key: the event's own tree root is also one of its ancestors'
        // candidate keys; one group takes the event once.
        let mut i = 1;
        while i < found.len() {
            if found[..i].iter().any(|x| x.2 == found[i].2) {
                found.remove(i);
            } else {
                i += 1;
            }
        }
        if found.is_empty() {
            if !creates {
                if ordered && tol > 0 {
                    self.wait(c_idx, step, val_h, keys, cur);
                }
                return;
            }
            // Create under the last (own) key: for tree grouping that is this event's root.
            let Some(&(key, tree)) = keys.last() else {
                return;
            };
            if gs.len() >= max_groups {
                gs.evict_lru();
                self.stats.evicted_groups += 1;
            }
            let s = gs.insert(key, Group::empty());
            found.push((key, tree, s));
        }
        for &(key, tree, s) in found.iter() {
            let Some(gs) = self.groups[c_idx].as_mut() else {
                return;
            };
            gs.touch(s);
            let g = gs.slot_mut(s);
            let in_order = g.last <= t;
            g.insert(
                Entry::new(t, seq, val_h, dst_h, step as u8, !in_order),
                c.timespan,
                distinct,
            );
            // Earliest entry placed out of time order by this event.
            let mut fresh_from = (!in_order).then_some(t);
            let h = if by_val { val_h } else { dst_h };
            // Self-describing codes (IPv4 destinations, small integers) need no name.
            if h != 0 && !code::describes(h) && g.names_len() < max_names {
                g.names
                    .get_or_insert_with(Default::default)
                    .insert_with(h, || {
                        let val = c.field.and_then(|f| fields::get(f, ev, &self.policy));
                        name_of(val.as_ref(), by_val, ev)
                    });
            }
            add_evidence(g, seq, t, max_evidence, cred);
            // A first step that arrived after later steps which waited for it: they join now.
            let mut joined: Vec<(u64, u8)> = Vec::new();
            if ordered && step == 0 && self.orphans[c_idx].max_ts > t {
                let Orphans {
                    list,
                    keys: okeys,
                    first_key,
                    ..
                } = &mut self.orphans[c_idx];
                for x in list.iter_mut().rev() {
                    // Any earlier arrival is at most the tolerance newer than this one (a
                    // difference: the sum saturates near `u64::MAX`).
                    if t.checked_sub(x.ts).is_some_and(|d| d >= tol) {
                        break;
                    }
                    if x.ts <= t {
                        continue;
                    }
                    let base = (x.at - *first_key) as usize;
                    let Some(k) =
                        (0..usize::from(x.n)).find(|&j| okeys.get(base + j) == Some(&key))
                    else {
                        continue;
                    };
                    if x.joined & (1 << k) != 0 {
                        continue;
                    }
                    x.joined |= 1 << k;
                    g.insert(
                        Entry::new(x.ts, x.seq, x.val, x.dst, x.step, true),
                        c.timespan,
                        distinct,
                    );
                    fresh_from = Some(fresh_from.map_or(x.ts, |f: u64| f.min(x.ts)));
                    let x_by_val = x.val != 0 && net_field;
                    let h = if x_by_val { x.val } else { x.dst };
                    if h != 0 && !code::describes(h) && g.names_len() < max_names {
                        if let Some(e) = self.ring.get(x.seq) {
                            let v = c.field.and_then(|f| fields::get(f, &e, &self.policy));
                            g.names
                                .get_or_insert_with(Default::default)
                                .insert_with(h, || name_of(v.as_ref(), x_by_val, &e));
                        }
                    }
                    add_evidence(g, x.seq, x.ts, max_evidence, x.cred.as_ref());
                    joined.push((x.seq, x.step));
                }
            }
            self.stats.dropped_entries += g.prune(horizon, max_entries, distinct);
            while g
                .evidence
                .front()
                .is_some_and(|&(_, ts)| ts < horizon && g.evidence.len() > 1)
            {
                if let Some((gone, _)) = g.evidence.pop_front() {
                    forget_cred(g, gone);
                }
            }
            if !mono {
                clear_fresh(g);
                // Decided once no event that may still arrive can change the window.
                let root =
                    vals_for(c, step, ev, &self.policy).and_then(|v| group_root(c, &v, tree));
                let mut wait = vec![(t, step as u8, Box::new(ev.clone()))];
                wait.extend(joined.iter().filter_map(|&(s, st)| {
                    let e = self.ring.get(s)?;
                    Some((e.ts.max(wm), st, Box::new(e)))
                }));
                for (ts, step, ev) in wait {
                    let at = self.deferred.partition_point(|d| d.ts <= ts);
                    self.deferred.insert(
                        at,
                        Deferred {
                            ts,
                            c: c_idx,
                            key,
                            root,
                            step,
                            ev,
                        },
                    );
                }
                continue;
            }
            let need = if distinct || chains {
                need(c, f.budget)
            } else {
                None
            };
            if g.lb != 0
                && (fresh_from.is_some()
                    || g.lb == STALE
                    || need.is_none_or(|k| i64::from(g.lb) < k))
            {
                g.recount(by_val);
            }
            let decision = match fresh_from {
                None => {
                    let hi = g.entries.len() - 1;
                    let lo = g.win as usize;
                    let suppress = rules.rules[c_idx].suppress;
                    // The chain found earlier is still in the window: satisfied again. A
                    // repeat that suppression holds back needs nothing more.
                    if chains
                        && g.chain > t.saturating_sub(c.timespan)
                        && held(&mut self.supp, &mut self.stats, suppress, c_idx, key, t)
                    {
                        continue;
                    }
                    let d = satisfied(c, g, lo, hi, false, f.budget, &mut self.scratch);
                    if let (true, Some(k)) = (distinct, need) {
                        g.relax(k);
                    }
                    if chains && need.is_some() {
                        // ts + 1 (0: none); at `u64::MAX` the saturated value still compares
                        // right against `t - timespan`, which is below it.
                        g.chain = d
                            .and_then(|f| g.entries.get(f))
                            .map_or(0, |e| e.ts.saturating_add(1));
                    }
                    d.map(|from| (lo, hi, from))
                }
                Some(fr) => {
                    g.chain = 0;
                    let d = scan(c, g, fr, f.budget, &mut self.scratch);
                    clear_fresh(g);
                    d
                }
            };
            let Some((lo, hi, from)) = decision else {
                continue;
            };
            let (t_fire, trig) = g.entries.get(hi).map_or((t, seq), |e| (e.ts, e.seq()));
            // A firing that suppression swallows (counted) needs no alert details.
            let suppress = rules.rules[c_idx].suppress;
            let Some(suppressed) = suppression(
                &mut self.supp,
                max_groups,
                &mut self.stats,
                suppress,
                c_idx,
                key,
                t_fire,
            ) else {
                continue;
            };
            let pol = &self.policy;
            let group = || {
                vals_for(c, step, ev, pol)
                    .map(|v| group_strings(c, &v, tree))
                    .unwrap_or_default()
            };
            let fire = fire_of(c, g, lo, hi, from, self.opts.max_destinations, group);
            // Completed by an entry that waited (or arrived before this late event): that
            // event is the alert's trigger while the ring holds it.
            let waited = if trig == seq {
                None
            } else {
                self.ring.get(trig)
            };
            let s = Subject {
                r: c_idx,
                rule: &rules.rules[c_idx],
                key,
                trigger: waited.as_ref().unwrap_or(ev),
            };
            let v = Verdict {
                t: t_fire,
                suppressed,
            };
            self.fire(s, v, fire, (seq, ev), out);
        }
    }
}

/// An event's group-by values at `step` of `c` (`None`: it lacks one): for an alert's group
/// and a deferred window's tree root.
fn vals_for<'e>(c: &Correlation, step: usize, ev: &'e Event, pol: &Policy) -> Option<Vals<'e>> {
    let group_by = c.step_group_by.get(step).unwrap_or(&c.group_by);
    group_by.iter().map(|&f| fields::get(f, ev, pol)).collect()
}

/// Works out what `ev` will do into `p`: the event rules it matches (candidates from the
/// literal index) and, for each correlation fed, its group keys and counted value. Depends on
/// the event, the rules and the policy only.
fn plan(rules: &RuleSet, pol: &Policy, cand: &mut Vec<u32>, ev: &Event, p: &mut Plan) {
    p.matched.clear();
    p.feeds.clear();
    p.keys.clear();
    p.keyed.clear();
    p.memo.clear();
    p.fed = false;
    p.dst_h = 0;
    rules.index.candidates(ev, pol, cand);
    let subject = fields::Subject::new(ev, pol);
    p.matched.extend(
        cand.iter()
            .copied()
            .filter(|&i| match &rules.rules[i as usize].body {
                Body::Event { cond, .. } => cond.eval_at(&subject),
                Body::Correlation(_) => false,
            }),
    );
    for from in 0..p.matched.len() {
        let m = p.matched[from] as usize;
        for &(c, step) in &rules.consumers[m] {
            if !p.fed {
                p.fed = true;
                p.dst_h = code::dst_at(ev, subject.dst_ip);
            }
            let Body::Correlation(corr) = &rules.rules[c].body else {
                continue;
            };
            let creates = corr.ty != CorrType::TemporalOrdered || step == 0;
            // Correlations grouping alike (e.g. every rule keyed by process tree) share keys.
            let group_by = corr.step_group_by.get(step).unwrap_or(&corr.group_by);
            let tree_keys = !creates || corr.ty == CorrType::Temporal;
            let shared = p
                .keyed
                .iter()
                .filter_map(|&i| p.feeds.get(i as usize))
                .find(|f| {
                    f.creates == creates
                        && f.tree_keys == tree_keys
                        && step_group_by(rules, f) == Some(group_by.as_slice())
                });
            let (at, n, computed) = match shared {
                Some(f) => (f.at, f.n, false),
                None => {
                    let at = p.keys.len();
                    if !group_keys(group_by, tree_keys, creates, ev, pol, p) {
                        p.keys.truncate(at);
                        continue;
                    }
                    (at as u32, (p.keys.len() - at) as u32, true)
                }
            };
            let has_val;
            let val_h = match corr.field {
                None => {
                    has_val = false;
                    0
                }
                Some(f) => match (f, code::addr_of_dst(p.dst_h)) {
                    // The destination's code already holds the parsed address.
                    (Field::DstAddr, Some(addr)) => {
                        has_val = true;
                        addr
                    }
                    // So does an unnamed destination's host (its address).
                    (Field::DstHost, Some(addr))
                        if ev.net.as_ref().is_some_and(|n| n.dst_name.is_none()) =>
                    {
                        has_val = true;
                        addr
                    }
                    _ => match fields::get(f, ev, pol) {
                        Some(v) => {
                            has_val = true;
                            code::val(&v, || p.memo.hash(f, ev, pol).unwrap_or_default())
                        }
                        // For temporal types the field only applies to the last step. A
                        // value_count event without a value is in the window but counts no
                        // value (`NO_VALUE`): 0 distinct values satisfy `lt`, `lte`, `neq`.
                        None if corr.ty != CorrType::ValueCount && step + 1 == corr.steps.len() => {
                            continue
                        }
                        None => {
                            has_val = false;
                            0
                        }
                    },
                },
            };
            if computed {
                p.keyed.push(p.feeds.len() as u32);
            }
            p.feeds.push(Feed {
                c: c as u32,
                step: step as u8,
                from: from as u32,
                creates,
                tree_keys,
                has_val,
                at,
                n,
                val_h,
                budget: budget_of(corr, ev, pol),
            });
        }
    }
}

/// Appends to `p.keys` the group keys of an event under `group_by` (false: it lacks a field).
/// With `tree_keys`, a `process.tree` field stands for each of the process's ancestors in
/// turn: a later step joins the tree of an earlier one when that tree's root is this process
/// or one of its ancestors; `creates` then adds the event's own key last.
fn group_keys(
    group_by: &[Field],
    tree_keys: bool,
    creates: bool,
    ev: &Event,
    pol: &Policy,
    p: &mut Plan,
) -> bool {
    let mut parts: smallvec::SmallVec<[u64; 4]> = smallvec::SmallVec::new();
    for &f in group_by {
        match p.memo.hash(f, ev, pol) {
            Some(h) => parts.push(h),
            None => return false,
        }
    }
    let tree_at = group_by.iter().position(|&f| f == Field::Tree);
    if let (Some(i), Some(pr), true) = (tree_at, ev.process.as_ref(), tree_keys) {
        let own = combine(&parts);
        let first = p.keys.len();
        let cands = [pr.tgid, pr.ppid]
            .into_iter()
            .chain(pr.ancestors.iter().copied());
        for tg in cands.filter(|&t| t > 1) {
            if !p.keys[first..].iter().any(|(_, o)| *o == Some(tg)) {
                parts[i] = int_hash(i64::from(tg));
                p.keys.push((combine(&parts), Some(tg)));
            }
        }
        if creates {
            p.keys.push((own, None));
        }
    } else {
        p.keys.push((combine(&parts), None));
    }
    true
}

/// The group-by fields of a feed's correlation at its step.
fn step_group_by<'r>(rules: &'r RuleSet, f: &Feed) -> Option<&'r [Field]> {
    let Body::Correlation(c) = &rules.rules.get(f.c as usize)?.body else {
        return None;
    };
    Some(
        c.step_group_by
            .get(usize::from(f.step))
            .unwrap_or(&c.group_by),
    )
}

/// An event's work that depends on the event, the rules and the policy only.
#[derive(Default)]
struct Plan {
    /// Event rules it matched.
    matched: smallvec::SmallVec<[u32; 8]>,
    /// What it gives each correlation it feeds, in handling order.
    feeds: smallvec::SmallVec<[Feed; 6]>,
    /// The feeds' group keys.
    keys: smallvec::SmallVec<[GroupKey; 12]>,
    /// Feeds that computed their keys (the others share one of these): only these are
    /// searched for a match, so many correlations of few distinct groupings stay linear.
    keyed: smallvec::SmallVec<[u32; 6]>,
    /// Whether a matched rule has consumers (the event then goes into the evidence ring).
    fed: bool,
    /// Code of its destination (0: none, or it feeds no correlation).
    dst_h: u64,
    /// Its field hashes.
    memo: Memo,
}

impl Plan {
    fn keys_of(&self, f: &Feed) -> &[GroupKey] {
        let at = f.at as usize;
        self.keys.get(at..at + f.n as usize).unwrap_or_default()
    }
}

/// What an event gives one correlation at one step.
#[derive(Clone, Copy)]
struct Feed {
    c: u32,
    step: u8,
    /// Position in [`Plan::matched`] of the rule this feed comes from.
    from: u32,
    /// Whether it may open a group.
    creates: bool,
    /// Whether a `process.tree` field gave one key per ancestor.
    tree_keys: bool,
    /// Whether it has the counted value.
    has_val: bool,
    /// Its keys: `Plan::keys[at..at + n]`.
    at: u32,
    n: u32,
    /// Code of the counted value (0: none).
    val_h: u64,
    /// The fan-out budget of its identity, for a `budget: true` correlation.
    budget: Option<u32>,
}

/// Whether suppression holds back an alert at `t` of a rule and key that last alerted at
/// `last`: within `suppress` of it, before or after (an alert completed by a late event may
/// be older than the previous one).
fn held_back(last: u64, suppress: u64, t: u64) -> bool {
    // The distance, not sums: `last + suppress` saturates near `u64::MAX`, and a saturated
    // bound let every repeat through.
    t.abs_diff(last) < suppress
}

/// Whether suppression holds back an alert of rule `r` for `key` at `t`; counts it if so
/// (as [`suppression`] would) and otherwise changes nothing.
fn held(
    supp: &mut Table<Supp, (usize, u64)>,
    stats: &mut Stats,
    suppress: u64,
    r: usize,
    key: u64,
    t: u64,
) -> bool {
    match supp.find((r, key)) {
        Some(slot) if held_back(supp.slot(slot).last, suppress, t) => {
            supp.slot_mut(slot).suppressed += 1;
            stats.suppressed += 1;
            true
        }
        _ => false,
    }
}

/// Suppression of an alert of rule `r` for `key` at `last`: `None` when it is held back
/// (counted), else the number of repeats held back since the previous alert of this rule and
/// key.
fn suppression(
    supp: &mut Table<Supp, (usize, u64)>,
    cap: usize,
    stats: &mut Stats,
    suppress: u64,
    r: usize,
    key: u64,
    last: u64,
) -> Option<u64> {
    // A held-back repeat leaves recency alone: the table evicts the least recently
    // *alerted* key, and relinking would cost two more cache misses per repeat.
    match supp.find((r, key)) {
        Some(slot) if held_back(supp.slot(slot).last, suppress, last) => {
            supp.slot_mut(slot).suppressed += 1;
            stats.suppressed += 1;
            None
        }
        Some(slot) => {
            supp.touch(slot);
            let s = supp.slot_mut(slot);
            let n = s.suppressed;
            *s = Supp {
                last: last.max(s.last),
                suppressed: 0,
            };
            Some(n)
        }
        None => {
            // As `lru::LruCache::put` did: the least recently used entry makes room.
            if supp.len() >= cap.max(1) {
                supp.evict_lru();
            }
            supp.insert(
                (r, key),
                Supp {
                    last,
                    suppressed: 0,
                },
            );
            Some(0)
        }
    }
}

/// Display string of a value (when the counted field is a network one) or of the event's
/// destination.
fn name_of(val: Option<&Val<'_>>, by_val: bool, ev: &Event) -> SStr {
    match (val, &ev.net) {
        (Some(v), _) if by_val => SStr::new(&v.render()),
        (_, Some(n)) => SStr::new(&fields::dst_string(&n.dst_addr, n.dst_port)),
        _ => SStr::new(""),
    }
}

/// Records an evidence event: the first (often the credential read that starts the story)
/// and the most recent ones are kept, in timestamp order.
fn add_evidence(
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
fn forget_cred(g: &mut Group, seq: u64) {
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

fn clear_fresh(g: &mut Group) {
    for i in 0..g.entries.len() {
        if let Some(e) = g.entries.get_mut(i) {
            e.clear_fresh();
        }
    }
}
/// Whose alert: the rule (index and compiled), the group key, and the event that completed
/// the window (the alert's trigger).
#[derive(Clone, Copy)]
struct Subject<'a> {
    r: usize,
    rule: &'a Rule,
    key: u64,
    trigger: &'a Event,
}

/// Suppression's verdict on a firing that goes out: its time and the repeats held back.
#[derive(Clone, Copy)]
struct Verdict {
    t: u64,
    suppressed: u64,
}

/// The event being handled, as the correlations see it.
struct Cur<'a> {
    ev: &'a Event,
    /// Its sequence number in the evidence ring (it is stored after evaluation).
    seq: u64,
    /// Its credential, one shared copy.
    cred: Option<&'a Arc<AlertCredential>>,
    /// Hash of its destination (0: none).
    dst_h: u64,
    /// Its time (the tolerance edge when late).
    t: u64,
}

/// A group key: its hash and, for `process.tree` grouping, the tree root it stands for.
type GroupKey = (u64, Option<u32>);

/// An event's group-by values (inline: no allocation per correlation and event).
type Vals<'e> = smallvec::SmallVec<[Val<'e>; 2]>;

struct Fire {
    group: Vec<(Field, String)>,
    first: u64,
    count: u64,
    destinations: Vec<String>,
    destination_count: u64,
    /// Ring sequence numbers of the evidence events.
    evidence: Vec<u64>,
    /// The credential of the latest evidence event that has one (whether or not the ring
    /// still holds that event).
    credential: Option<Arc<AlertCredential>>,
    /// For a correlation whose groups share events: ring sequence numbers of the counted
    /// events and codes of the destinations, ascending and distinct (else empty).
    seqs: Vec<u64>,
    dsts: Vec<u64>,
}

/// What a firing of a correlation whose groups share events brings to an incident.
struct Firing {
    key: u64,
    t: u64,
    open_until: u64,
    seqs: Vec<u64>,
    dsts: Vec<u64>,
    root: Option<u32>,
    /// Ring sequence numbers of its alert's evidence events, in their order.
    evidence: Vec<u64>,
}

/// Whether two ascending lists share a value.
fn shares(a: &[u64], b: &[u64]) -> bool {
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Adds the ascending distinct values `add` to the ascending distinct `into`, keeping at most
/// [`INCIDENT_EVENTS`] (the smallest, i.e. oldest, dropped and counted in `dropped`).
fn union_sorted(into: &mut Vec<u64>, add: &[u64], dropped: &mut u64) {
    let mut out = Vec::with_capacity(into.len() + add.len());
    let (mut i, mut j) = (0, 0);
    loop {
        match (into.get(i), add.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                out.push(x);
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x < y => {
                out.push(x);
                i += 1;
            }
            (_, Some(&y)) => {
                out.push(y);
                j += 1;
            }
            (Some(&x), None) => {
                out.push(x);
                i += 1;
            }
            (None, None) => break,
        }
    }
    if out.len() > INCIDENT_EVENTS {
        let extra = out.len() - INCIDENT_EVENTS;
        out.drain(..extra);
        *dropped += extra as u64;
    }
    *into = out;
}

/// An incident's alert: `old` (its latest, without evidence events: they are `old_ev`) and
/// `new` (a firing of another of its groups, its evidence events in `new_ev`), with the
/// evidence events' ring sequence numbers. Its group, trees and id are the incident's; counts
/// are set by the caller from the incident's sets. `in_place`: the two are one alert (the same
/// event fired both), so their held-back repeats add up; an update reports the new group's.
/// Returns the alert and the sequence numbers of its evidence events, in its order.
fn merge_alerts(
    old: &Alert,
    old_ev: Vec<(u64, Event)>,
    new: Alert,
    new_ev: Vec<(u64, Event)>,
    in_place: bool,
    max_dst: usize,
) -> (Alert, Vec<u64>) {
    let later = new.last_seen >= old.last_seen;
    let union = |a: &[String], b: Vec<String>| {
        let mut v: Vec<String> = a.iter().cloned().chain(b).collect();
        v.sort();
        v.dedup();
        v.truncate(max_dst);
        v
    };
    let mut evidence: Vec<(u64, Event)> = Vec::with_capacity(old_ev.len() + new_ev.len());
    for (s, e) in old_ev.into_iter().chain(new_ev) {
        if !evidence.iter().any(|(x, _)| *x == s) {
            evidence.push((s, e));
        }
    }
    evidence.sort_by_key(|(_, e)| e.ts);
    let mut evidence_dropped = old.evidence_dropped + new.evidence_dropped;
    if evidence.len() > INCIDENT_EVIDENCE {
        // The first event (often the credential read that starts the story) and the latest.
        let extra = evidence.len() - INCIDENT_EVIDENCE;
        evidence.drain(1..1 + extra);
        evidence_dropped += extra as u64;
    }
    let (seqs, evidence): (Vec<u64>, Vec<Event>) = evidence.into_iter().unzip();
    let m = Alert {
        id: String::new(),
        identity: if later {
            new.identity
        } else {
            old.identity.clone()
        },
        process: if later {
            new.process
        } else {
            old.process.clone()
        },
        credential: new.credential.or_else(|| old.credential.clone()),
        group: old.group.clone(),
        destinations: union(&old.destinations, new.destinations),
        services: union(&old.services, new.services),
        destination_names: union(&old.destination_names, new.destination_names),
        first_seen: old.first_seen.min(new.first_seen),
        last_seen: old.last_seen.max(new.last_seen),
        evidence,
        evidence_dropped,
        suppressed: if in_place {
            old.suppressed + new.suppressed
        } else {
            new.suppressed
        },
        loss_overlap: old.loss_overlap || new.loss_overlap,
        incident: None,
        ..new
    };
    (m, seqs)
}

/// The distinct processes of an alert's evidence events (and its own), in order of first
/// appearance, bounded.
fn processes_of(a: &Alert) -> Vec<AlertProcess> {
    let mut out: Vec<AlertProcess> = Vec::new();
    let from_events = a.evidence.iter().filter_map(|e| {
        e.process.as_ref().map(|p| AlertProcess {
            tgid: p.tgid,
            start: p.start,
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            user: p.user.clone(),
            uid: p.uid,
        })
    });
    for p in from_events.chain(a.process.clone()) {
        if out.len() >= INCIDENT_PROCESSES {
            break;
        }
        if !out.iter().any(|q| q.tgid == p.tgid && q.start == p.start) {
            out.push(p);
        }
    }
    out
}

/// The alert's view of a credential event.
fn credential_of(f: &FileInfo) -> AlertCredential {
    AlertCredential {
        watched: f.watched.clone(),
        category: f.category.clone(),
        fingerprint: f.fingerprint.clone(),
    }
}

/// The entries of `lo..=hi` a decision counts (for `temporal_ordered`: the chain from
/// `from`), optionally without the fresh ones.
fn counted<'g>(
    c: &Correlation,
    g: &'g Group,
    lo: usize,
    hi: usize,
    from: usize,
    skip_fresh: bool,
) -> Vec<&'g Entry> {
    let last = (c.steps.len() - 1) as u8;
    let range = move |a: usize| {
        (a..=hi)
            .filter_map(move |i| g.entries.get(i))
            .filter(move |e| !(skip_fresh && e.fresh()))
    };
    match c.ty {
        CorrType::TemporalOrdered => {
            let mut want = 0u8;
            let mut chosen = Vec::new();
            for e in range(from) {
                if want < last && e.step() == want {
                    chosen.push(e);
                    want += 1;
                } else if want == last && e.step() == last {
                    chosen.push(e);
                }
            }
            chosen
        }
        _ => range(lo).collect(),
    }
}

/// Whether the window of entries `lo..=hi` satisfies the correlation (`skip_fresh`: as it was
/// before this event's out-of-order entries). `Some(from)`: where the counted entries start
/// (for `temporal_ordered`, the chain's first entry; else `lo`).
fn satisfied(
    c: &Correlation,
    g: &Group,
    lo: usize,
    hi: usize,
    skip_fresh: bool,
    budget: Option<u32>,
    scratch: &mut HashSet<u64, FastBuild>,
) -> Option<usize> {
    // Counting stops once every (gt/gte) threshold is exceeded: the answer cannot change and
    // a busy group must not cost a full scan per event.
    let cap = if !c.budget && c.monotone {
        c.condition
            .iter()
            .map(|(_, v)| v.saturating_add(1))
            .max()
            .unwrap_or(i64::MAX)
    } else {
        i64::MAX
    };
    let last = (c.steps.len() - 1) as u8;
    let range = || {
        (lo..=hi)
            .filter_map(|i| g.entries.get(i))
            .filter(move |e| !(skip_fresh && e.fresh()))
    };
    let mut from = lo;
    let n = match c.ty {
        CorrType::EventCount if !skip_fresh => (hi + 1 - lo) as i64,
        CorrType::EventCount => range().count() as i64,
        // A lower bound that proves the condition (see `Group::lb`).
        CorrType::ValueCount
            if !skip_fresh
                && lo == g.win as usize
                && hi + 1 == g.entries.len()
                && g.lb != 0
                && g.lb != STALE
                && need(c, budget).is_some_and(|k| i64::from(g.lb) >= k) =>
        {
            i64::from(g.lb)
        }
        CorrType::ValueCount
            if !skip_fresh && lo == g.win as usize && hi + 1 == g.entries.len() && g.lb == 0 =>
        {
            // The head window: its distinct values are kept up to date, or it is small.
            match g.distinct.as_ref() {
                Some(d) => d.len() as i64,
                None => {
                    let mut seen = [0u64; SCAN_DISTINCT + 1];
                    let mut n = 0;
                    for e in range() {
                        if e.val != NO_VALUE && !seen[..n].contains(&e.val) && n < seen.len() {
                            seen[n] = e.val;
                            n += 1;
                        }
                    }
                    n as i64
                }
            }
        }
        CorrType::ValueCount => {
            scratch.clear();
            for e in range().filter(|e| e.val != NO_VALUE) {
                scratch.insert(e.val);
                if scratch.len() as i64 >= cap {
                    break;
                }
            }
            scratch.len() as i64
        }
        // With `field`: every rule but the last matched in the window, in any order, and the
        // condition counts distinct values of `field` among the last rule's matches (a key
        // read by ssh after its connect still counts the host it connected to).
        CorrType::Temporal if c.field.is_some() => {
            let mut seen = 0u64;
            let mut vals: smallvec::SmallVec<[u64; 8]> = smallvec::SmallVec::new();
            for e in range() {
                if e.step() != last {
                    seen |= 1u64 << (e.step().min(63));
                } else if (vals.len() as i64) < cap && !vals.contains(&e.val) {
                    vals.push(e.val);
                }
            }
            if (seen.count_ones() as usize) < usize::from(last).min(64) {
                return None;
            }
            vals.len() as i64
        }
        CorrType::Temporal => {
            let mut seen = 0u64;
            for e in range() {
                seen |= 1u64 << (e.step().min(63));
            }
            i64::from(seen.count_ones())
        }
        CorrType::TemporalOrdered => {
            // Earliest chain: the first step-0 entry, then the first step-1 after it, …; the
            // earliest chain leaves the longest tail for the last step.
            let mut want = 0u8;
            let mut n = 0i64;
            let mut vals: smallvec::SmallVec<[u64; 8]> = smallvec::SmallVec::new();
            for i in lo..=hi {
                let Some(e) = g.entries.get(i) else { break };
                if skip_fresh && e.fresh() {
                    continue;
                }
                if want < last {
                    if e.step() == want {
                        if want == 0 {
                            from = i;
                        }
                        want += 1;
                    }
                } else if e.step() == last {
                    if c.field.is_some() {
                        if !vals.contains(&e.val) {
                            vals.push(e.val);
                            n += 1;
                        }
                    } else {
                        n += 1;
                    }
                    if n >= cap {
                        break;
                    }
                }
            }
            if want < last {
                return None;
            }
            n
        }
    };
    let ok = match budget {
        Some(b) => n > i64::from(b),
        None => c.condition.iter().all(|(op, v)| op.eval(n, *v)),
    };
    if !ok {
        return None;
    }
    if let Some(gap) = c.max_gap {
        let entries = counted(c, g, lo, hi, from, skip_fresh);
        if entries.windows(2).any(|w| w[1].ts - w[0].ts > gap) {
            return None;
        }
    }
    Some(from)
}

/// The fan-out budget that replaces a `budget` correlation's condition for the event's
/// identity, if it has one.
fn budget_of(c: &Correlation, ev: &Event, pol: &Policy) -> Option<u32> {
    if !c.budget {
        return None;
    }
    ev.process
        .as_ref()
        .and_then(|p| p.identity.as_deref())
        .and_then(|id| pol.identities.get(id))
        .and_then(|i| i.fan_out_budget)
}

/// For a condition that only `gt`/`gte` make up (or a budget): the least count that
/// satisfies it.
fn need(c: &Correlation, budget: Option<u32>) -> Option<i64> {
    if let Some(b) = budget {
        return Some(i64::from(b).saturating_add(1));
    }
    c.condition.iter().try_fold(0i64, |k, &(op, v)| match op {
        CmpOp::Gt => Some(k.max(v.saturating_add(1))),
        CmpOp::Gte => Some(k.max(v)),
        _ => None,
    })
}

/// After an event placed entries out of time order (the earliest at `f`): the first window
/// (by its end) that it newly completes, as `(lo, hi, from)`. Windows ending at each entry from
/// `f` to `f + timespan` are the ones it can change; one already satisfied without the new
/// entries was decided (and alerted) before.
fn scan(
    c: &Correlation,
    g: &Group,
    f: u64,
    budget: Option<u32>,
    scratch: &mut HashSet<u64, FastBuild>,
) -> Option<(usize, usize, usize)> {
    let j0 = g.entries.partition_point(|e| e.ts < f);
    let j1 = g
        .entries
        .partition_point(|e| e.ts <= f.saturating_add(c.timespan));
    for j in j0..j1 {
        let Some(end) = g.entries.get(j) else { break };
        let lo = g
            .entries
            .partition_point(|e| e.ts < end.ts.saturating_sub(c.timespan));
        let Some(from) = satisfied(c, g, lo, j, false, budget, scratch) else {
            continue;
        };
        if !end.fresh() && satisfied(c, g, lo, j, true, budget, scratch).is_some() {
            continue;
        }
        return Some((lo, j, from));
    }
    None
}

/// The tree root a group of `c` keyed with `tree` stands for: the candidate root, or for the
/// event's own key its own `process.tree` value.
fn group_root(c: &Correlation, vals: &[Val<'_>], tree: Option<u32>) -> Option<u32> {
    tree.or_else(|| {
        let at = c.group_by.iter().position(|&f| f == Field::Tree)?;
        match vals.get(at) {
            Some(Val::Int(n)) => u32::try_from(*n).ok(),
            _ => None,
        }
    })
}

/// A group's rendered values, in the correlation's `group-by` order, from the group-by values
/// `vals` of one of its events (equal for every event of the group: the key is their hash)
/// and, for `process.tree`, the tree root the group stands for. Rendered only for an alert
/// that goes out, so groups keep no strings.
fn group_strings(c: &Correlation, vals: &[Val<'_>], root: Option<u32>) -> Vec<(Field, String)> {
    c.group_by
        .iter()
        .zip(vals)
        .map(|(&f, v)| {
            let s = match (f, root) {
                (Field::Tree, Some(r)) => r.to_string(),
                _ => v.render().into_owned(),
            };
            (f, s)
        })
        .collect()
}

/// What the alert of a satisfied window `lo..=hi` reports; `group` renders the group's values.
fn fire_of(
    c: &Correlation,
    g: &Group,
    lo: usize,
    hi: usize,
    from: usize,
    max_dst: usize,
    group: impl FnOnce() -> Vec<(Field, String)>,
) -> Fire {
    let entries = counted(c, g, lo, hi, from, false);
    let first = entries.first().map_or(0, |e| e.ts);
    let end = g.entries.get(hi).map_or(u64::MAX, |e| e.ts);
    // Destinations are the counted values when the field is a network one (so the list and
    // the count agree with the condition), else the events' `addr:port`.
    let by_val = c.field.is_some_and(|f| f.path().starts_with("net."));
    let dst_set: HashSet<u64> = entries
        .iter()
        .map(|e| if by_val { e.val } else { e.dst })
        .filter(|&h| h != 0)
        .collect();
    let dst_count = dst_set.len();
    let (seqs, dsts) = if c.merges {
        let mut seqs: Vec<u64> = entries.iter().map(|e| e.seq()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut dsts: Vec<u64> = dst_set.iter().copied().collect();
        dsts.sort_unstable();
        (seqs, dsts)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut destinations: Vec<String> = dst_set
        .iter()
        .filter_map(|&h| code::render(h).or_else(|| g.names.as_ref()?.get(h).map(str::to_string)))
        .collect();
    destinations.sort();
    destinations.truncate(max_dst);
    let evidence: Vec<u64> = g
        .evidence
        .iter()
        .filter(|&&(_, ts)| ts >= first && ts <= end)
        .map(|&(seq, _)| seq)
        .collect();
    // As if read from the evidence events themselves: the latest one with a credential.
    let credential = g.creds.as_ref().and_then(|cs| {
        evidence
            .iter()
            .rev()
            .find_map(|s| cs.iter().find(|(c, _)| c == s).map(|(_, c)| Arc::clone(c)))
    });
    Fire {
        group: group(),
        first,
        count: entries.len() as u64,
        destinations,
        destination_count: dst_count as u64,
        evidence,
        credential,
        seqs,
        dsts,
    }
}

#[cfg(test)]
mod tests;
