//! Correlation engine: pure, driven by event timestamps (engine issue).
//!
//! No I/O, no wall clock, no kernel: time is the events' `ts`, so `detector replay` of a
//! recording and live `detector run` produce the same alerts. Loading rule files from disk
//! ([`load`]) happens once at construction and is kept apart from evaluation.
//!
//! Out-of-order arrival: events that match a rule wait in a reorder buffer and are released in
//! timestamp order once the newest timestamp seen is `reorder_tolerance` ahead of them
//! (default 500 ms; the alert latency this adds is that tolerance). An event arriving later
//! than that is still evaluated but counted in `Stats::late` and placed at the release point
//! (its window position is then approximate).
//!
//! Windows are sliding and inclusive: an event exactly `timespan` after another is in the same
//! window. State is bounded: per correlation at most `max_groups` group keys (LRU eviction,
//! counted) and per group at most `max_entries` window entries (oldest dropped, counted).

pub mod alert;
pub mod cond;
pub mod fields;
pub mod index;
pub mod load;
pub mod rules;
pub mod store;
pub mod testing;
pub mod yaml;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use sha2::{Digest, Sha256};

pub use alert::Alert;
use alert::{AlertCredential, AlertProcess, AlertRule};
use cond::CmpOp;
use fields::{Field, Policy, Val};
use rules::{Body, CorrType, Correlation, RuleSet};
use store::{FastBuild, FastMap, Linked, Names, Ring, SStr, Small, Table};

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
    /// Out-of-order tolerance (ns).
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
    /// Events that arrived later than the reorder tolerance.
    pub late: u64,
    /// Group keys evicted because a correlation reached `max_groups`.
    pub evicted_groups: u64,
    /// Window entries dropped because a group reached `max_entries`.
    pub dropped_entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ts: u64,
    step: u8,
    val: u64,
    dst: u64,
}

/// Credentials of a group's evidence events: (ring sequence number, credential).
type Creds = Vec<(u64, Arc<AlertCredential>)>;

/// One group key's state. Kept small (most memory with many keys is here): the first window
/// entry, name and evidence reference are inline; evidence events themselves are in the
/// engine's shared ring.
struct Group {
    key: u64,
    prev: u32,
    next: u32,
    entries: Small<Entry>,
    /// value_count: count of entries per distinct value in the window.
    distinct: Option<Box<FastMap<u64, u32>>>,
    /// Display strings of values/destinations, bounded.
    names: Names,
    /// (ring sequence number, ts) of the evidence events.
    evidence: Small<(u64, u64)>,
    /// The credential of each evidence event that has one, by ring sequence number: the ring
    /// may evict the window's first event (typically the credential read) before the alert,
    /// and the alert's `credential` must not depend on that. Only kept while the sequence
    /// number is in `evidence` (so at most `max_evidence`); boxed so groups without a
    /// credential pay one pointer.
    creds: Option<Box<Creds>>,
    /// Rendered group-by values, in the correlation's `group-by` order.
    group: Small<SStr>,
}

impl Group {
    fn empty() -> Group {
        Group {
            key: 0,
            prev: u32::MAX,
            next: u32::MAX,
            entries: Small::Empty,
            distinct: None,
            names: Names::None,
            evidence: Small::Empty,
            creds: None,
            group: Small::Empty,
        }
    }

    /// Time of the latest entry (a live group always has one).
    fn last_ts(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.ts)
    }
}

impl Linked for Group {
    fn key(&self) -> u64 {
        self.key
    }
    fn links(&mut self) -> (&mut u32, &mut u32) {
        (&mut self.prev, &mut self.next)
    }
}

/// A buffered event waiting for the reorder tolerance: ordered by (ts, arrival).
type Pending = Reverse<(u64, u64, u32)>;

/// Where a buffered event and the rules it matched wait (reused, so that buffering allocates
/// nothing once warm).
#[derive(Default)]
struct Slot {
    ev: Option<Event>,
    matched: Vec<u32>,
}

struct Supp {
    last: u64,
    suppressed: u64,
}

/// The correlation engine.
pub struct Engine {
    rules: Arc<RuleSet>,
    policy: Policy,
    opts: EngineOptions,
    pending: BinaryHeap<Pending>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    seq: u64,
    max_ts: u64,
    released: u64,
    groups: Vec<Option<Table<Group>>>,
    supp: LruCache<(usize, u64), Supp, FastBuild>,
    ring: Ring,
    losses: VecDeque<u64>,
    keep_losses: u64,
    alert_seq: u64,
    since_expiry: u32,
    /// Scratch for candidate rules of the event being matched.
    cand: Vec<u32>,
    /// Events done with (evicted from the ring, or never stored), kept for their buffers.
    spare: Vec<Event>,
    stats: Stats,
}

/// Spare events kept for reuse: one is taken per buffered copy and one comes back per event
/// handled, so a few suffice.
const MAX_SPARE: usize = 64;

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN)
}

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
        let keep_losses = rules.max_timespan().saturating_add(opts.reorder_tolerance);
        Engine {
            rules,
            policy,
            pending: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            max_ts: 0,
            released: 0,
            groups,
            supp: LruCache::with_hasher(nz(opts.max_groups), FastBuild::default()),
            ring: Ring::new(opts.evidence_events),
            losses: VecDeque::new(),
            keep_losses,
            alert_seq: 0,
            since_expiry: 0,
            cand: Vec::new(),
            spare: Vec::new(),
            stats: Stats::default(),
            opts,
        }
    }

    /// Forgets all window, suppression and buffer state and replaces the policy (rule tests
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
            self.opts.ids = IdMode::Derived(hash_of(&(host, started)));
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

    /// Feeds one event; alerts whose window it completes (or releases from the reorder buffer)
    /// are appended to `out`. The event is copied only when it matches a rule.
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Alert>) {
        let keep = self.match_rules(ev);
        let copy = keep.then(|| match self.spare.pop() {
            Some(mut e) => {
                store::clone_into_event(&mut e, ev);
                e
            }
            None => ev.clone(),
        });
        self.admit(ev.ts, copy, out);
    }

    /// Like [`Engine::process`] for a caller that owns the event (replay): no copy at all.
    pub fn process_owned(&mut self, ev: Event, out: &mut Vec<Alert>) {
        let keep = self.match_rules(&ev);
        let ts = ev.ts;
        self.admit(ts, keep.then_some(ev), out);
    }

    /// Matches event rules (candidates from the literal index) into `self.cand`; true when
    /// the event must be buffered (it matched, or it is a loss record).
    fn match_rules(&mut self, ev: &Event) -> bool {
        self.stats.events += 1;
        let rules = &self.rules;
        rules.index.candidates(ev, &self.policy, &mut self.cand);
        let pol = &self.policy;
        self.cand.retain(|&i| match &rules.rules[i as usize].body {
            Body::Event { cond, .. } => cond.eval(ev, pol),
            Body::Correlation(_) => false,
        });
        if !self.cand.is_empty() {
            self.stats.matched += 1;
        }
        !self.cand.is_empty() || ev.kind == Kind::Loss
    }

    fn admit(&mut self, ts: u64, keep: Option<Event>, out: &mut Vec<Alert>) {
        if let Some(ev) = keep {
            self.seq += 1;
            let s = match self.free_slots.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot::default());
                    (self.slots.len() - 1) as u32
                }
            };
            let slot = &mut self.slots[s as usize];
            slot.ev = Some(ev);
            slot.matched.clear();
            slot.matched.extend_from_slice(&self.cand);
            self.pending.push(Reverse((ts, self.seq, s)));
        }
        self.max_ts = self.max_ts.max(ts);
        self.release(self.max_ts.saturating_sub(self.opts.reorder_tolerance), out);
    }

    /// Advances time to `now` (e.g. the capture clock during a quiet period): releases buffered
    /// events up to `now - reorder_tolerance` and expires idle groups.
    pub fn flush(&mut self, now: u64, out: &mut Vec<Alert>) {
        self.max_ts = self.max_ts.max(now);
        self.release(self.max_ts.saturating_sub(self.opts.reorder_tolerance), out);
        self.expire();
    }

    /// End of input: releases everything buffered.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.release(u64::MAX, out);
        // The buffer's slots are sized for its peak; once drained they need not stay.
        self.slots = Vec::new();
        self.free_slots = Vec::new();
        self.spare = Vec::new();
    }

    fn release(&mut self, upto: u64, out: &mut Vec<Alert>) {
        while self.pending.peek().is_some_and(|p| p.0 .0 <= upto) {
            let Some(Reverse((ts, _, s))) = self.pending.pop() else {
                break;
            };
            let slot = &mut self.slots[s as usize];
            let (Some(ev), matched) = (slot.ev.take(), std::mem::take(&mut slot.matched)) else {
                continue;
            };
            let matched = self.handle(ts, ev, matched, out);
            self.slots[s as usize].matched = matched;
            self.free_slots.push(s);
        }
    }

    fn expire(&mut self) {
        let now = self.released;
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
    }

    /// Evaluates a released event; hands back its matched list (for reuse).
    fn handle(&mut self, ts: u64, ev: Event, matched: Vec<u32>, out: &mut Vec<Alert>) -> Vec<u32> {
        let t = if ts < self.released {
            self.stats.late += 1;
            self.released
        } else {
            ts
        };
        self.released = t;
        self.since_expiry += 1;
        if self.since_expiry >= 65_536 {
            self.since_expiry = 0;
            self.expire();
        }
        while self
            .losses
            .front()
            .is_some_and(|&l| l.saturating_add(self.keep_losses) < t)
        {
            self.losses.pop_front();
        }
        if ev.kind == Kind::Loss {
            self.losses.push_back(t);
        }
        let rules = Arc::clone(&self.rules);
        // Groups refer to this event by the sequence number it gets in the ring once handled.
        let seq = self.ring.next_seq();
        // One shared copy of the event's credential for every group it enters.
        let cred = ev.file.as_ref().map(|f| Arc::new(credential_of(f)));
        let mut correlated = false;
        for &m in &matched {
            let m = m as usize;
            let r = &rules.rules[m];
            if r.alert {
                self.event_alert(m, &ev, t, out);
            }
            for &(c, step) in &rules.consumers[m] {
                correlated = true;
                self.correlate(c, step, &ev, seq, cred.as_ref(), t, out);
            }
        }
        let gone = if correlated {
            self.ring.push_evict(ev)
        } else {
            Some(ev)
        };
        // An event that left the ring (or never entered it) lends its buffers to the next
        // copy into the reorder buffer.
        if let Some(old) = gone {
            if self.spare.len() < MAX_SPARE {
                self.spare.push(old);
            }
        }
        matched
    }

    fn group_values(&self, fields: &[Field], ev: &Event) -> Option<Vec<(Field, String)>> {
        fields
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy).map(|v| (f, v.render().into_owned())))
            .collect()
    }

    fn event_alert(&mut self, r: usize, ev: &Event, t: u64, out: &mut Vec<Alert>) {
        let rule = &self.rules.rules[r];
        let group = self.group_values(&rule.group_by, ev).unwrap_or_default();
        let key = hash_of(&group);
        let Some(suppressed) = self.suppression(r, key, t) else {
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
            evidence: vec![self.redact(ev)],
            evidence_dropped: 0,
            credential: ev.file.as_ref().map(credential_of),
        };
        self.emit(r, key, t, suppressed, details, ev, out);
    }

    /// Suppression: `None` when the alert is held back (counted), else the number of
    /// repeats held back since the previous alert of this rule and key.
    fn suppression(&mut self, r: usize, key: u64, last: u64) -> Option<u64> {
        let rule = &self.rules.rules[r];
        match self.supp.get_mut(&(r, key)) {
            Some(s) if last < s.last.saturating_add(rule.suppress) => {
                s.suppressed += 1;
                self.stats.suppressed += 1;
                None
            }
            Some(s) => {
                let n = s.suppressed;
                *s = Supp {
                    last,
                    suppressed: 0,
                };
                Some(n)
            }
            None => {
                self.supp.put(
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

    /// A copy of `e` as an alert shows it: argv bounded and secrets redacted.
    fn redact(&self, e: &Event) -> Event {
        let max_argv = self.opts.max_argv;
        let mut e = e.clone();
        if let Some(p) = e.process.as_mut() {
            p.argv = alert::redact_argv(&p.argv, max_argv);
        }
        if let Some(x) = e.exec.as_mut() {
            x.argv = alert::redact_argv(&x.argv, max_argv);
        }
        e
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        r: usize,
        key: u64,
        last: u64,
        suppressed: u64,
        d: Details,
        trigger: &Event,
        out: &mut Vec<Alert>,
    ) {
        let rule = &self.rules.rules[r];
        self.alert_seq += 1;
        let id = match self.opts.ids {
            IdMode::Random => uuid::Uuid::new_v4().to_string(),
            IdMode::Derived(seed) => {
                let mut h = Sha256::new();
                h.update(seed.to_le_bytes());
                h.update(self.alert_seq.to_le_bytes());
                h.update(rule.id.as_bytes());
                h.update(key.to_le_bytes());
                h.update(d.first.to_le_bytes());
                let dg = h.finalize();
                let mut b = [0u8; 16];
                b.copy_from_slice(&dg[..16]);
                uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
            }
        };
        let proc_ = trigger.process.as_ref();
        let loss_overlap = self.losses.iter().any(|&l| l >= d.first && l <= last);
        let max_argv = self.opts.max_argv;
        self.stats.alerts += 1;
        out.push(Alert {
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
            count: d.count,
            first_seen: d.first,
            last_seen: last,
            evidence: d.evidence,
            evidence_dropped: d.evidence_dropped,
            suppressed,
            loss_overlap,
        });
    }

    /// Group keys an event at `step` contributes to, and whether it may create a group. Keys
    /// are hashed from the field values in place: strings are only materialized when a group
    /// is created.
    fn keys_for<'e>(
        &self,
        c: &Correlation,
        step: usize,
        ev: &'e Event,
    ) -> Option<(Vec<Val<'e>>, Vec<GroupKey>, bool)> {
        let creates = c.ty != CorrType::TemporalOrdered || step == 0;
        let group_by = c.step_group_by.get(step).unwrap_or(&c.group_by);
        let vals: Vec<Val<'e>> = group_by
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy))
            .collect::<Option<_>>()?;
        let tree_at = group_by.iter().position(|&f| f == Field::Tree);
        let mut keys = vec![(key_hash(&vals, None), None)];
        if let (Some(i), Some(p)) = (tree_at, ev.process.as_ref()) {
            if !creates || c.ty == CorrType::Temporal {
                // A later step joins the tree of an earlier one when the earlier tree root is
                // this process or one of its ancestors.
                let own = keys.pop();
                let cands = [p.tgid, p.ppid]
                    .into_iter()
                    .chain(p.ancestors.iter().copied());
                for tg in cands.filter(|&t| t > 1) {
                    if !keys.iter().any(|(_, o)| *o == Some(tg)) {
                        keys.push((key_hash(&vals, Some((i, tg))), Some(tg)));
                    }
                }
                if creates {
                    keys.extend(own);
                }
            }
        }
        Some((vals, keys, creates))
    }

    #[allow(clippy::too_many_arguments)]
    fn correlate(
        &mut self,
        c_idx: usize,
        step: usize,
        ev: &Event,
        seq: u64,
        cred: Option<&Arc<AlertCredential>>,
        t: u64,
        out: &mut Vec<Alert>,
    ) {
        let rules = Arc::clone(&self.rules);
        let Body::Correlation(c) = &rules.rules[c_idx].body else {
            return;
        };
        let Some((vals, mut keys, creates)) = self.keys_for(c, step, ev) else {
            return;
        };
        let val = match c.field {
            Some(f) => match fields::get(f, ev, &self.policy) {
                Some(v) => Some(v),
                // value_count counts values: an event without one adds nothing. For temporal
                // types the field only applies to the last step.
                None if c.ty == CorrType::ValueCount || step + 1 == c.steps.len() => return,
                None => None,
            },
            None => None,
        };
        // Values and destinations are hashed in place; their display strings are built only
        // when a group records a new one.
        let val_h = val
            .as_ref()
            .map_or(0, |v| key_hash(std::slice::from_ref(v), None));
        let dst_h = ev
            .net
            .as_ref()
            .map_or(0, |n| hash_of(&(n.dst_addr.as_str(), n.dst_port)));
        let Some(gs) = self.groups[c_idx].as_ref() else {
            return;
        };
        let any_existing = keys.iter().any(|(k, _)| gs.contains(*k));
        if any_existing {
            keys.retain(|(k, _)| gs.contains(*k));
        } else {
            if !creates {
                return;
            }
            // Create under the last (own) key: for tree grouping that is this event's root.
            let last = keys.pop();
            keys.clear();
            keys.extend(last);
        }
        let by_val = val.is_some() && c.field.is_some_and(|f| f.path().starts_with("net."));
        let rule_suppress = rules.rules[c_idx].suppress;
        for (key, tree) in keys {
            // A firing that suppression will swallow needs no alert details (emit still counts it).
            let details = self
                .supp
                .peek(&(c_idx, key))
                .is_none_or(|s| t >= s.last.saturating_add(rule_suppress));
            let max_groups = self.opts.max_groups;
            let max_entries = self.opts.max_entries;
            let max_names = self.opts.max_destinations * 4;
            let max_evidence = self.opts.max_evidence.max(2);
            let Some(gs) = self.groups[c_idx].as_mut() else {
                return;
            };
            if !gs.contains(key) {
                if gs.len() >= max_groups {
                    gs.pop_lru(Group::empty());
                    self.stats.evicted_groups += 1;
                }
                let mut group = Small::Empty;
                for (&f, v) in c.group_by.iter().zip(&vals) {
                    group.push_back(match (f, tree) {
                        (Field::Tree, Some(root)) => SStr::new(&root.to_string()),
                        _ => SStr::new(&v.render()),
                    });
                }
                gs.insert(Group {
                    key,
                    group,
                    ..Group::empty()
                });
            }
            let Some(g) = gs.get_mut(key) else { continue };
            g.entries.push_back(Entry {
                ts: t,
                step: step as u8,
                val: val_h,
                dst: dst_h,
            });
            if c.ty == CorrType::ValueCount {
                *g.distinct
                    .get_or_insert_with(Default::default)
                    .entry(val_h)
                    .or_insert(0) += 1;
            }
            let h = if by_val { val_h } else { dst_h };
            if h != 0 && g.names.len() < max_names {
                g.names.insert_with(h, || match (&val, &ev.net) {
                    (Some(v), _) if by_val => SStr::new(&v.render()),
                    (_, Some(n)) => SStr::new(&fields::dst_string(&n.dst_addr, n.dst_port)),
                    _ => SStr::new(""),
                });
            }
            // Evidence: keep the first event (often the credential read that starts the
            // story) and the most recent ones.
            if g.evidence.len() >= max_evidence {
                g.evidence.remove(1);
            }
            g.evidence.push_back((seq, t));
            if let Some(cr) = cred {
                g.creds
                    .get_or_insert_with(Default::default)
                    .push((seq, Arc::clone(cr)));
            }
            let start = t.saturating_sub(c.timespan);
            while g.entries.front().is_some_and(|e| e.ts < start) || g.entries.len() > max_entries {
                let Some(e) = g.entries.pop_front() else {
                    break;
                };
                if e.ts >= start {
                    self.stats.dropped_entries += 1;
                }
                if let Some(d) = g.distinct.as_mut() {
                    if let Some(n) = d.get_mut(&e.val) {
                        *n -= 1;
                        if *n == 0 {
                            d.remove(&e.val);
                            g.names.remove(e.val);
                        }
                    }
                }
            }
            while g
                .evidence
                .front()
                .is_some_and(|&(_, ts)| ts < start && g.evidence.len() > 1)
            {
                g.evidence.pop_front();
            }
            if let Some(cs) = g.creds.as_mut() {
                let ev_seqs = &g.evidence;
                cs.retain(|(s, _)| ev_seqs.iter().any(|&(e, _)| e == *s));
                if cs.is_empty() {
                    g.creds = None;
                }
            }
            let Some(fire) = evaluate(c, g, &self.policy, ev, self.opts.max_destinations, details)
            else {
                continue;
            };
            let Some(suppressed) = self.suppression(c_idx, key, t) else {
                continue;
            };
            // Only now, for an alert that goes out, are evidence events copied.
            let evidence: Vec<Event> = fire
                .evidence
                .iter()
                .filter_map(|&s| if s == seq { Some(ev) } else { self.ring.get(s) })
                .map(|e| self.redact(e))
                .collect();
            let evidence_dropped = (fire.evidence.len() - evidence.len()) as u64;
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
            self.emit(c_idx, key, t, suppressed, d, ev, out);
        }
    }
}

/// A group key: its hash and, for `process.tree` grouping, the tree root it stands for.
type GroupKey = (u64, Option<u32>);

/// Hash of group-by values; `tree` replaces the value at an index by a tree root.
fn key_hash(vals: &[Val<'_>], tree: Option<(usize, u32)>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (i, v) in vals.iter().enumerate() {
        match (tree, v) {
            (Some((at, root)), _) if at == i => (1u8, i64::from(root)).hash(&mut h),
            (_, Val::Str(s)) => (0u8, s.as_ref()).hash(&mut h),
            (_, Val::Int(n)) => (1u8, *n).hash(&mut h),
            (_, Val::Bool(b)) => (2u8, *b).hash(&mut h),
            (_, Val::List(l)) => (3u8, *l).hash(&mut h),
        }
    }
    h.finish()
}

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
}

/// The alert's view of a credential event.
fn credential_of(f: &FileInfo) -> AlertCredential {
    AlertCredential {
        watched: f.watched.clone(),
        category: f.category.clone(),
        fingerprint: f.fingerprint.clone(),
    }
}

/// Decides whether a group's window satisfies the correlation; on success, what the alert
/// reports.
fn evaluate(
    c: &Correlation,
    g: &Group,
    pol: &Policy,
    ev: &Event,
    max_dst: usize,
    details: bool,
) -> Option<Fire> {
    // Counting stops once every (gt/gte) threshold is exceeded: the answer cannot change and
    // a busy group must not cost a full scan per event.
    let cap = if c.budget {
        i64::MAX
    } else if c
        .condition
        .iter()
        .all(|(op, _)| matches!(op, CmpOp::Gt | CmpOp::Gte))
    {
        c.condition
            .iter()
            .map(|(_, v)| v.saturating_add(1))
            .max()
            .unwrap_or(i64::MAX)
    } else {
        i64::MAX
    };
    let last = (c.steps.len() - 1) as u8;
    // Where the counted entries start (for temporal_ordered: the chain's first entry).
    let mut from = 0usize;
    let n = match c.ty {
        CorrType::EventCount => g.entries.len() as i64,
        CorrType::ValueCount => g.distinct.as_ref().map_or(0, |d| d.len()) as i64,
        CorrType::Temporal => {
            let mut seen = 0u64;
            for e in g.entries.iter() {
                seen |= 1u64 << (e.step.min(63));
            }
            i64::from(seen.count_ones())
        }
        CorrType::TemporalOrdered => {
            // Earliest chain: the first step-0 entry, then the first step-1 after it, …; the
            // earliest chain leaves the longest tail for the last step.
            let mut want = 0u8;
            let mut n = 0i64;
            let mut vals: Vec<u64> = Vec::new();
            for (i, e) in g.entries.iter().enumerate() {
                if want < last {
                    if e.step == want {
                        if want == 0 {
                            from = i;
                        }
                        want += 1;
                    }
                } else if e.step == last {
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
    let budget = if c.budget {
        ev.process
            .as_ref()
            .and_then(|p| p.identity.as_deref())
            .and_then(|id| pol.identities.get(id))
            .and_then(|i| i.fan_out_budget)
    } else {
        None
    };
    let ok = match budget {
        Some(b) => n > i64::from(b),
        None => c.condition.iter().all(|(op, v)| op.eval(n, *v)),
    };
    if !ok {
        return None;
    }
    if !details && c.max_gap.is_none() {
        // The alert would be suppressed: only the decision matters.
        return Some(Fire {
            group: Vec::new(),
            first: 0,
            count: 0,
            destinations: Vec::new(),
            destination_count: 0,
            evidence: Vec::new(),
            credential: None,
        });
    }
    // The counted entries, for the gap test and the alert's details (only when firing).
    let entries: Vec<&Entry> = match c.ty {
        CorrType::TemporalOrdered => {
            let mut want = 0u8;
            let mut chosen = Vec::new();
            for e in g.entries.iter().skip(from) {
                if want < last && e.step == want {
                    chosen.push(e);
                    want += 1;
                } else if want == last && e.step == last {
                    chosen.push(e);
                }
            }
            chosen
        }
        _ => g.entries.iter().collect(),
    };
    if let Some(gap) = c.max_gap {
        if entries.windows(2).any(|w| w[1].ts - w[0].ts > gap) {
            return None;
        }
    }
    let first = entries.first().map_or(0, |e| e.ts);
    // Destinations are the counted values when the field is a network one (so the list and
    // the count agree with the condition), else the events' `addr:port`.
    let by_val = c.field.is_some_and(|f| f.path().starts_with("net."));
    let dst_set: HashSet<u64> = entries
        .iter()
        .map(|e| if by_val { e.val } else { e.dst })
        .filter(|&h| h != 0)
        .collect();
    let dst_count = dst_set.len();
    let mut destinations: Vec<String> = dst_set
        .iter()
        .filter_map(|&h| g.names.get(h))
        .map(str::to_string)
        .collect();
    destinations.sort();
    destinations.truncate(max_dst);
    let evidence: Vec<u64> = g
        .evidence
        .iter()
        .filter(|&&(_, ts)| ts >= first)
        .map(|&(seq, _)| seq)
        .collect();
    // As if read from the evidence events themselves: the latest one with a credential.
    let credential = g.creds.as_ref().and_then(|cs| {
        evidence
            .iter()
            .rev()
            .find_map(|s| cs.iter().find(|(c, _)| c == s).map(|(_, c)| Arc::clone(c)))
    });
    Some(Fire {
        group: c
            .group_by
            .iter()
            .zip(g.group.iter())
            .map(|(&f, v)| (f, v.as_str().to_string()))
            .collect(),
        first,
        count: entries.len() as u64,
        destinations,
        destination_count: dst_count as u64,
        evidence,
        credential,
    })
}

#[cfg(test)]
mod tests;
