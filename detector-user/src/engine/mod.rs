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
pub(crate) mod code;
pub(crate) mod compact;
pub(crate) mod cond;
mod conditions;
mod correlate;
mod driver;
mod emit;
pub mod fields;
pub(crate) mod index;
mod keys;
pub mod load;
mod plan;
pub mod rules;
pub mod sigma;
pub(crate) mod store;
pub mod testing;
mod window;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use alert::Alert;
use alert::{AlertCredential, AlertIncident, AlertProcess, AlertRule};
use cond::CmpOp;
use fields::{Field, Policy, Val};
use keys::{alert_group_hash, combine, group_hash, host_seed, int_hash, Memo};
use rules::{Body, CorrType, Correlation, Rule, RuleSet};
use store::{FastBuild, FastMap, Names, Ring, SStr, Small, Table};

use crate::event::{Event, FileInfo, Kind};
use conditions::*;
use correlate::*;
use emit::*;
use plan::*;
use window::*;
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
    pub(crate) fn rules(&self) -> &RuleSet {
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
    pub(crate) fn process_owned(&mut self, ev: Event, out: &mut Vec<Alert>) {
        self.process(&ev, out);
    }
}

#[cfg(test)]
mod tests;
