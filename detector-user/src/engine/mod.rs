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
pub mod load;
pub mod rules;
pub mod testing;
pub mod yaml;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
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

use crate::event::{Event, Kind};

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

#[derive(Clone, Copy)]
struct Entry {
    ts: u64,
    step: u8,
    val: u64,
    dst: u64,
}

struct Group {
    entries: VecDeque<Entry>,
    /// value_count: count of entries per distinct value in the window.
    distinct: HashMap<u64, u32>,
    /// Display strings of values/destinations, bounded.
    names: HashMap<u64, Box<str>>,
    evidence: VecDeque<Arc<Event>>,
    group: Vec<(Field, String)>,
    last_ts: u64,
}

struct Pending {
    ts: u64,
    seq: u64,
    ev: Arc<Event>,
    matched: Vec<u32>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
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
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    max_ts: u64,
    released: u64,
    groups: Vec<Option<LruCache<u64, Group>>>,
    supp: LruCache<(usize, u64), Supp>,
    losses: VecDeque<u64>,
    keep_losses: u64,
    alert_seq: u64,
    since_expiry: u32,
    stats: Stats,
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN)
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
                Body::Correlation(_) => Some(LruCache::new(nz(opts.max_groups))),
                Body::Event { .. } => None,
            })
            .collect();
        let keep_losses = rules.max_timespan().saturating_add(opts.reorder_tolerance);
        Engine {
            rules,
            policy,
            pending: BinaryHeap::new(),
            seq: 0,
            max_ts: 0,
            released: 0,
            groups,
            supp: LruCache::new(nz(opts.max_groups)),
            losses: VecDeque::new(),
            keep_losses,
            alert_seq: 0,
            since_expiry: 0,
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
        self.groups.iter().flatten().map(LruCache::len).sum()
    }

    /// Feeds one event; alerts whose window it completes (or releases from the reorder buffer)
    /// are appended to `out`. The event is copied only when it matches a rule.
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Alert>) {
        let matched = self.match_rules(ev);
        let keep = (!matched.is_empty() || ev.kind == Kind::Loss).then(|| Arc::new(ev.clone()));
        self.admit(ev.ts, keep, matched, out);
    }

    /// Like [`Engine::process`] for a caller that owns the event (replay): no copy at all.
    pub fn process_owned(&mut self, ev: Event, out: &mut Vec<Alert>) {
        let matched = self.match_rules(&ev);
        let ts = ev.ts;
        let keep = (!matched.is_empty() || ev.kind == Kind::Loss).then(|| Arc::new(ev));
        self.admit(ts, keep, matched, out);
    }

    fn match_rules(&mut self, ev: &Event) -> Vec<u32> {
        self.stats.events += 1;
        let mut matched = Vec::new();
        for i in self.rules.candidates(ev.kind) {
            if let Body::Event { cond, .. } = &self.rules.rules[i].body {
                if cond.eval(ev, &self.policy) {
                    matched.push(i as u32);
                }
            }
        }
        if !matched.is_empty() {
            self.stats.matched += 1;
        }
        matched
    }

    fn admit(
        &mut self,
        ts: u64,
        keep: Option<Arc<Event>>,
        matched: Vec<u32>,
        out: &mut Vec<Alert>,
    ) {
        if let Some(ev) = keep {
            self.seq += 1;
            self.pending.push(Reverse(Pending {
                ts,
                seq: self.seq,
                ev,
                matched,
            }));
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
    }

    fn release(&mut self, upto: u64, out: &mut Vec<Alert>) {
        while self.pending.peek().is_some_and(|p| p.0.ts <= upto) {
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            self.handle(p, out);
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
                .is_some_and(|(_, s)| s.last_ts.saturating_add(c.timespan) < now)
            {
                g.pop_lru();
            }
        }
    }

    fn handle(&mut self, p: Pending, out: &mut Vec<Alert>) {
        let t = if p.ts < self.released {
            self.stats.late += 1;
            self.released
        } else {
            p.ts
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
        if p.ev.kind == Kind::Loss {
            self.losses.push_back(t);
        }
        let rules = Arc::clone(&self.rules);
        for &m in &p.matched {
            let m = m as usize;
            let r = &rules.rules[m];
            if r.alert {
                self.event_alert(m, &p.ev, t, out);
            }
            for &(c, step) in &rules.consumers[m] {
                self.correlate(c, step, &p.ev, t, out);
            }
        }
    }

    fn group_values(&self, fields: &[Field], ev: &Event) -> Option<Vec<(Field, String)>> {
        fields
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy).map(|v| (f, v.render().into_owned())))
            .collect()
    }

    fn event_alert(&mut self, r: usize, ev: &Arc<Event>, t: u64, out: &mut Vec<Alert>) {
        let rule = &self.rules.rules[r];
        let group = self.group_values(&rule.group_by, ev).unwrap_or_default();
        let key = hash_of(&group);
        let dst = ev
            .net
            .as_ref()
            .map(|n| fields::dst_string(&n.dst_addr, n.dst_port));
        let evidence = vec![Arc::clone(ev)];
        self.emit(
            r,
            key,
            group,
            t,
            t,
            1,
            dst.iter().cloned().collect(),
            dst.is_some() as u64,
            &evidence,
            ev,
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        r: usize,
        key: u64,
        group: Vec<(Field, String)>,
        first: u64,
        last: u64,
        count: u64,
        destinations: Vec<String>,
        destination_count: u64,
        evidence: &[Arc<Event>],
        trigger: &Event,
        out: &mut Vec<Alert>,
    ) {
        let rule = &self.rules.rules[r];
        let suppressed = match self.supp.get_mut(&(r, key)) {
            Some(s) if last < s.last.saturating_add(rule.suppress) => {
                s.suppressed += 1;
                self.stats.suppressed += 1;
                return;
            }
            Some(s) => {
                let n = s.suppressed;
                *s = Supp {
                    last,
                    suppressed: 0,
                };
                n
            }
            None => {
                self.supp.put(
                    (r, key),
                    Supp {
                        last,
                        suppressed: 0,
                    },
                );
                0
            }
        };
        self.alert_seq += 1;
        let id = match self.opts.ids {
            IdMode::Random => uuid::Uuid::new_v4().to_string(),
            IdMode::Derived(seed) => {
                let mut h = Sha256::new();
                h.update(seed.to_le_bytes());
                h.update(self.alert_seq.to_le_bytes());
                h.update(rule.id.as_bytes());
                h.update(key.to_le_bytes());
                h.update(first.to_le_bytes());
                let d = h.finalize();
                let mut b = [0u8; 16];
                b.copy_from_slice(&d[..16]);
                uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
            }
        };
        let proc_ = trigger.process.as_ref();
        let cred = evidence
            .iter()
            .rev()
            .find_map(|e| e.file.as_ref())
            .map(|f| AlertCredential {
                watched: f.watched.clone(),
                category: f.category.clone(),
                fingerprint: f.fingerprint.clone(),
            });
        let loss_overlap = self.losses.iter().any(|&l| l >= first && l <= last);
        let max_argv = self.opts.max_argv;
        let redact = |e: &Event| {
            let mut e = e.clone();
            if let Some(p) = e.process.as_mut() {
                p.argv = alert::redact_argv(&p.argv, max_argv);
            }
            if let Some(x) = e.exec.as_mut() {
                x.argv = alert::redact_argv(&x.argv, max_argv);
            }
            e
        };
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
            credential: cred,
            group: group
                .into_iter()
                .map(|(f, v)| (f.path().to_string(), v))
                .collect::<BTreeMap<_, _>>(),
            destinations,
            destination_count,
            count,
            first_seen: first,
            last_seen: last,
            evidence: evidence.iter().map(|e| redact(e)).collect(),
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
        let vals: Vec<Val<'e>> = c
            .group_by
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy))
            .collect::<Option<_>>()?;
        let tree_at = c.group_by.iter().position(|&f| f == Field::Tree);
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

    fn correlate(
        &mut self,
        c_idx: usize,
        step: usize,
        ev: &Arc<Event>,
        t: u64,
        out: &mut Vec<Alert>,
    ) {
        let rules = Arc::clone(&self.rules);
        let Body::Correlation(c) = &rules.rules[c_idx].body else {
            return;
        };
        let Some((vals, keys, creates)) = self.keys_for(c, step, ev) else {
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
        let mut existing: Vec<GroupKey> = Vec::new();
        if let Some(gs) = self.groups[c_idx].as_mut() {
            for (k, g) in &keys {
                if gs.contains(k) {
                    existing.push((*k, *g));
                }
            }
        }
        let targets = if existing.is_empty() {
            if !creates {
                return;
            }
            // Create under the last (own) key: for tree grouping that is this event's root.
            keys.into_iter().last().into_iter().collect()
        } else {
            existing
        };
        for (key, tree) in targets {
            // A firing that suppression will swallow needs no alert details (emit still counts it).
            let rule_suppress = rules.rules[c_idx].suppress;
            let details = self
                .supp
                .peek(&(c_idx, key))
                .is_none_or(|s| t >= s.last.saturating_add(rule_suppress));
            let fire = {
                let Some(gs) = self.groups[c_idx].as_mut() else {
                    return;
                };
                if !gs.contains(&key) {
                    if gs.len() >= self.opts.max_groups {
                        gs.pop_lru();
                        self.stats.evicted_groups += 1;
                    }
                    gs.put(
                        key,
                        Group {
                            entries: VecDeque::new(),
                            distinct: HashMap::new(),
                            names: HashMap::new(),
                            evidence: VecDeque::new(),
                            group: c
                                .group_by
                                .iter()
                                .zip(&vals)
                                .map(|(&f, v)| match (f, tree) {
                                    (Field::Tree, Some(root)) => (f, root.to_string()),
                                    _ => (f, v.render().into_owned()),
                                })
                                .collect(),
                            last_ts: t,
                        },
                    );
                }
                let Some(g) = gs.get_mut(&key) else { continue };
                g.last_ts = t;
                g.entries.push_back(Entry {
                    ts: t,
                    step: step as u8,
                    val: val_h,
                    dst: dst_h,
                });
                if c.ty == CorrType::ValueCount {
                    *g.distinct.entry(val_h).or_insert(0) += 1;
                }
                let by_val = val.is_some() && c.field.is_some_and(|f| f.path().starts_with("net."));
                let h = if by_val { val_h } else { dst_h };
                if h != 0 && g.names.len() < self.opts.max_destinations * 4 {
                    g.names.entry(h).or_insert_with(|| match (&val, &ev.net) {
                        (Some(v), _) if by_val => v.render().into(),
                        (_, Some(n)) => fields::dst_string(&n.dst_addr, n.dst_port).into(),
                        _ => Box::from(""),
                    });
                }
                // Evidence: keep the first event (often the credential read that starts the
                // story) and the most recent ones.
                if g.evidence.len() >= self.opts.max_evidence.max(2) {
                    g.evidence.remove(1);
                }
                g.evidence.push_back(Arc::clone(ev));
                let start = t.saturating_sub(c.timespan);
                while g.entries.front().is_some_and(|e| e.ts < start)
                    || g.entries.len() > self.opts.max_entries
                {
                    let Some(e) = g.entries.pop_front() else {
                        break;
                    };
                    if e.ts >= start {
                        self.stats.dropped_entries += 1;
                    }
                    if c.ty == CorrType::ValueCount {
                        if let Some(n) = g.distinct.get_mut(&e.val) {
                            *n -= 1;
                            if *n == 0 {
                                g.distinct.remove(&e.val);
                                g.names.remove(&e.val);
                            }
                        }
                    }
                }
                while g
                    .evidence
                    .front()
                    .is_some_and(|e| e.ts < start && g.evidence.len() > 1)
                {
                    g.evidence.pop_front();
                }
                evaluate(c, g, &self.policy, ev, self.opts.max_destinations, details)
            };
            if let Some(f) = fire {
                let evidence: Vec<Arc<Event>> = f.evidence;
                self.emit(
                    c_idx,
                    key,
                    f.group,
                    f.first,
                    t,
                    f.count,
                    f.destinations,
                    f.destination_count,
                    &evidence,
                    ev,
                    out,
                );
            }
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
    evidence: Vec<Arc<Event>>,
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
        CorrType::ValueCount => g.distinct.len() as i64,
        CorrType::Temporal => {
            let mut seen = 0u64;
            for e in &g.entries {
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
        .filter_map(|h| g.names.get(h))
        .map(|s| s.to_string())
        .collect();
    destinations.sort();
    destinations.truncate(max_dst);
    Some(Fire {
        group: g.group.clone(),
        first,
        count: entries.len() as u64,
        destinations,
        destination_count: dst_count as u64,
        evidence: g
            .evidence
            .iter()
            .filter(|e| e.ts >= first)
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests;
