//! Correlation: one event's step into its correlation's groups (windows opened, joined,
//! decided, fired), the later steps that wait for an earlier one, and the non-monotone
//! windows decided once event time has passed them.

use super::*;

/// The event being handled, as the correlations see it.
pub(super) struct Cur<'a> {
    pub(super) ev: &'a Event,
    /// Its sequence number in the evidence ring (it is stored after evaluation).
    pub(super) seq: u64,
    /// Its credential, one shared copy.
    pub(super) cred: Option<&'a Arc<AlertCredential>>,
    /// Hash of its destination (0: none).
    pub(super) dst_h: u64,
    /// Its time (the tolerance edge when late).
    pub(super) t: u64,
}

impl Engine {
    /// Decides the waiting non-monotone windows that end at or before `upto`.
    #[inline]
    pub(super) fn decide_deferred(&mut self, upto: u64, out: &mut Vec<Alert>) {
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

    /// Keeps a later `temporal_ordered` step that found no group, for an earlier step that
    /// may still arrive within the tolerance.
    #[inline]
    pub(super) fn wait(
        &mut self,
        c_idx: usize,
        step: usize,
        val: u64,
        keys: &[GroupKey],
        cur: &Cur<'_>,
    ) {
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

    /// One event's feed into its correlation: the groups it belongs to take it (a group is
    /// opened if it may open one, else a later `temporal_ordered` step waits for its earlier
    /// step), and each group's windows are decided, or deferred when not monotone.
    #[inline]
    pub(super) fn correlate(
        &mut self,
        rules: &RuleSet,
        f: &Feed,
        keys: &[GroupKey],
        cur: &Cur<'_>,
        out: &mut Vec<Alert>,
    ) {
        let rule = &rules.rules[f.c as usize];
        let Body::Correlation(c) = &rule.body else {
            return;
        };
        let cx = self.feeding(rule, c, f, cur);
        if cx.ordered {
            let o = &mut self.orphans[cx.c_idx];
            while o.list.front().is_some_and(|x| x.ts < cx.wm) {
                o.pop_front();
            }
        }
        let Some(found) = self.find_groups(&cx, f.creates, keys) else {
            return;
        };
        for &at in found.iter() {
            self.feed_group(&cx, at, out);
        }
    }

    /// What the steps of [`Engine::correlate`] share about this event's feed into `c`.
    #[inline]
    fn feeding<'a>(
        &self,
        rule: &'a Rule,
        c: &'a Correlation,
        f: &Feed,
        cur: &'a Cur<'a>,
    ) -> Feeding<'a> {
        let wm = self.watermark();
        let ordered = c.ty == CorrType::TemporalOrdered;
        Feeding {
            cur,
            rule,
            c,
            c_idx: f.c as usize,
            step: usize::from(f.step),
            val_h: f.val_h,
            budget: f.budget,
            by_val: f.has_val && c.net_field,
            ordered,
            distinct: c.ty == CorrType::ValueCount,
            chains: ordered && c.monotone && c.max_gap.is_none(),
            tol: self.opts.reorder_tolerance,
            wm,
            horizon: wm.saturating_sub(c.timespan),
            max_groups: self.opts.max_groups,
            max_entries: self.opts.max_entries,
            max_names: self.opts.max_destinations * 4,
            max_evidence: self.opts.max_evidence.max(2),
        }
    }

    /// The groups the event enters, by slot: one probe per candidate key, or, when none
    /// exists and the event may open one, a new group under its own key. `None`: it enters
    /// none (a later `temporal_ordered` step then waits for its earlier step).
    #[inline]
    fn find_groups(&mut self, cx: &Feeding<'_>, creates: bool, keys: &[GroupKey]) -> Option<Found> {
        let gs = self.groups[cx.c_idx].as_mut()?;
        // One probe per candidate key; the groups are then addressed by slot.
        let mut found: Found = keys
            .iter()
            .filter_map(|&(k, tree)| gs.find(k).map(|s| (k, tree, s)))
            .collect();
        dedup_slots(&mut found);
        if !found.is_empty() {
            return Some(found);
        }
        if !creates {
            if cx.ordered && cx.tol > 0 {
                self.wait(cx.c_idx, cx.step, cx.val_h, keys, cx.cur);
            }
            return None;
        }
        // Create under the last (own) key: for tree grouping that is this event's root.
        let &(key, tree) = keys.last()?;
        if gs.len() >= cx.max_groups {
            gs.evict_lru();
            self.stats.evicted_groups += 1;
        }
        let s = gs.insert(key, Group::empty());
        found.push((key, tree, s));
        Some(found)
    }

    /// The event into one of its groups (key, tree root, slot): its entry placed, with any
    /// waiting later steps it lets join, the group pruned, then its windows decided and fired,
    /// or deferred when not monotone.
    #[inline]
    fn feed_group(
        &mut self,
        cx: &Feeding<'_>,
        (key, tree, s): (u64, Option<u32>, u32),
        out: &mut Vec<Alert>,
    ) {
        let Some(gs) = self.groups[cx.c_idx].as_mut() else {
            return;
        };
        gs.touch(s);
        let g = gs.slot_mut(s);
        let mut fresh_from = place(g, cx, &self.policy);
        let mut joined = Vec::new();
        if cx.ordered && cx.step == 0 && self.orphans[cx.c_idx].max_ts > cx.cur.t {
            let o = &mut self.orphans[cx.c_idx];
            joined = join_waiting(g, o, &self.ring, &self.policy, cx, key, &mut fresh_from);
        }
        self.stats.dropped_entries += prune_group(g, cx);
        if !cx.c.monotone {
            clear_fresh(g);
            self.defer(cx, key, tree, &joined);
            return;
        }
        let (supp, stats, scratch) = (&mut self.supp, &mut self.stats, &mut self.scratch);
        let Some((lo, hi, from)) = decide(g, cx, key, fresh_from, supp, stats, scratch) else {
            return;
        };
        let (t_fire, trig) = g
            .entries
            .get(hi)
            .map_or((cx.cur.t, cx.cur.seq), |e| (e.ts, e.seq()));
        // A firing that suppression swallows (counted) needs no alert details.
        let (cap, suppress) = (cx.max_groups, cx.rule.suppress);
        let Some(suppressed) = suppression(supp, cap, stats, suppress, cx.c_idx, key, t_fire)
        else {
            return;
        };
        let pol = &self.policy;
        let group = || {
            vals_for(cx.c, cx.step, cx.cur.ev, pol)
                .map(|v| group_strings(cx.c, &v, tree))
                .unwrap_or_default()
        };
        let fire = fire_of(cx.c, g, lo, hi, from, self.opts.max_destinations, group);
        let v = Verdict {
            t: t_fire,
            suppressed,
        };
        self.fire_window(cx, key, trig, v, fire, out);
    }

    /// A non-monotone group's windows ending at this event and at the steps that joined it:
    /// decided once no event that may still arrive can change them.
    #[inline]
    fn defer(&mut self, cx: &Feeding<'_>, key: u64, tree: Option<u32>, joined: &[(u64, u8)]) {
        let Cur { ev, t, .. } = *cx.cur;
        let root =
            vals_for(cx.c, cx.step, ev, &self.policy).and_then(|v| group_root(cx.c, &v, tree));
        let mut wait = vec![(t, cx.step as u8, Box::new(ev.clone()))];
        wait.extend(joined.iter().filter_map(|&(s, st)| {
            let e = self.ring.get(s)?;
            Some((e.ts.max(cx.wm), st, Box::new(e)))
        }));
        for (ts, step, ev) in wait {
            let at = self.deferred.partition_point(|d| d.ts <= ts);
            self.deferred.insert(
                at,
                Deferred {
                    ts,
                    c: cx.c_idx,
                    key,
                    root,
                    step,
                    ev,
                },
            );
        }
    }

    /// Emits a firing of group `key`, whose window the entry with ring sequence number `trig`
    /// completed.
    #[inline]
    fn fire_window(
        &mut self,
        cx: &Feeding<'_>,
        key: u64,
        trig: u64,
        v: Verdict,
        fire: Fire,
        out: &mut Vec<Alert>,
    ) {
        let Cur { ev, seq, .. } = *cx.cur;
        // Completed by an entry that waited (or arrived before this late event): that
        // event is the alert's trigger while the ring holds it.
        let waited = if trig == seq {
            None
        } else {
            self.ring.get(trig)
        };
        let s = Subject {
            r: cx.c_idx,
            rule: cx.rule,
            key,
            trigger: waited.as_ref().unwrap_or(ev),
        };
        self.fire(s, v, fire, (seq, ev), out);
    }
}

/// One event's feed into one correlation: what the steps of [`Engine::correlate`] share.
struct Feeding<'a> {
    cur: &'a Cur<'a>,
    rule: &'a Rule,
    c: &'a Correlation,
    c_idx: usize,
    /// The step the event matched.
    step: usize,
    /// Code of its counted value (0: none).
    val_h: u64,
    /// Its identity's fan-out budget, for a `budget: true` correlation.
    budget: Option<u32>,
    /// Display names are kept by counted value (a network field), not by destination.
    by_val: bool,
    ordered: bool,
    /// value_count: the distinct values of the head window are kept.
    distinct: bool,
    /// temporal_ordered decisions may reuse the chain found for an earlier event.
    chains: bool,
    tol: u64,
    wm: u64,
    /// Entries older than this cannot share a window with any event still to come.
    horizon: u64,
    max_groups: usize,
    max_entries: usize,
    max_names: usize,
    max_evidence: usize,
}

/// Groups an event enters: (key, tree root, slot).
type Found = smallvec::SmallVec<[(u64, Option<u32>, u32); 4]>;

/// A `temporal` tree key: the event's own tree root is also one of its ancestors' candidate
/// keys; one group takes the event once.
#[inline]
fn dedup_slots(found: &mut Found) {
    let mut i = 1;
    while i < found.len() {
        if found[..i].iter().any(|x| x.2 == found[i].2) {
            found.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Places the event's entry in `g`, with its display name and evidence reference; returns its
/// time if it went in out of time order (the earliest entry this event placed so).
#[inline]
fn place(g: &mut Group, cx: &Feeding<'_>, policy: &Policy) -> Option<u64> {
    let Cur {
        ev,
        seq,
        cred,
        dst_h,
        t,
    } = *cx.cur;
    let in_order = g.last <= t;
    g.insert(
        Entry::new(t, seq, cx.val_h, dst_h, cx.step as u8, !in_order),
        cx.c.timespan,
        cx.distinct,
    );
    let h = if cx.by_val { cx.val_h } else { dst_h };
    // Self-describing codes (IPv4 destinations, small integers) need no name.
    if h != 0 && !code::describes(h) && g.names_len() < cx.max_names {
        g.names
            .get_or_insert_with(Default::default)
            .insert_with(h, || {
                let val = cx.c.field.and_then(|f| fields::get(f, ev, policy));
                name_of(val.as_ref(), cx.by_val, ev)
            });
    }
    add_evidence(g, seq, t, cx.max_evidence, cred);
    (!in_order).then_some(t)
}

/// A first step that arrived after later steps which waited for it: they join `g` (group
/// `key`) now. Returns the joined (ring sequence number, step) pairs; `fresh_from` comes down
/// to the earliest joined entry.
#[inline]
fn join_waiting(
    g: &mut Group,
    o: &mut Orphans,
    ring: &Ring,
    policy: &Policy,
    cx: &Feeding<'_>,
    key: u64,
    fresh_from: &mut Option<u64>,
) -> Vec<(u64, u8)> {
    let t = cx.cur.t;
    let mut joined = Vec::new();
    let Orphans {
        list,
        keys: okeys,
        first_key,
        ..
    } = o;
    for x in list.iter_mut().rev() {
        // Any earlier arrival is at most the tolerance newer than this one (a
        // difference: the sum saturates near `u64::MAX`).
        if t.checked_sub(x.ts).is_some_and(|d| d >= cx.tol) {
            break;
        }
        if x.ts <= t {
            continue;
        }
        let base = (x.at - *first_key) as usize;
        let Some(k) = (0..usize::from(x.n)).find(|&j| okeys.get(base + j) == Some(&key)) else {
            continue;
        };
        if x.joined & (1 << k) != 0 {
            continue;
        }
        x.joined |= 1 << k;
        join(g, x, ring, policy, cx);
        *fresh_from = Some(fresh_from.map_or(x.ts, |f: u64| f.min(x.ts)));
        joined.push((x.seq, x.step));
    }
    joined
}

/// A waiting later step's entry into `g`, with its display name (its event read from the
/// ring) and evidence reference.
#[inline]
fn join(g: &mut Group, x: &Orphan, ring: &Ring, policy: &Policy, cx: &Feeding<'_>) {
    g.insert(
        Entry::new(x.ts, x.seq, x.val, x.dst, x.step, true),
        cx.c.timespan,
        cx.distinct,
    );
    let x_by_val = x.val != 0 && cx.c.net_field;
    let h = if x_by_val { x.val } else { x.dst };
    if h != 0 && !code::describes(h) && g.names_len() < cx.max_names {
        if let Some(e) = ring.get(x.seq) {
            let v = cx.c.field.and_then(|f| fields::get(f, &e, policy));
            g.names
                .get_or_insert_with(Default::default)
                .insert_with(h, || name_of(v.as_ref(), x_by_val, &e));
        }
    }
    add_evidence(g, x.seq, x.ts, cx.max_evidence, x.cred.as_ref());
}

/// Drops what no window can need any more: entries (see [`Group::prune`]) and evidence
/// references older than the horizon, but the newest. Returns the entries dropped that were
/// still needed.
#[inline]
fn prune_group(g: &mut Group, cx: &Feeding<'_>) -> u64 {
    let dropped = g.prune(cx.horizon, cx.max_entries, cx.distinct);
    while g
        .evidence
        .front()
        .is_some_and(|&(_, ts)| ts < cx.horizon && g.evidence.len() > 1)
    {
        if let Some((gone, _)) = g.evidence.pop_front() {
            forget_cred(g, gone);
        }
    }
    dropped
}

/// Decides a monotone group's windows after the event went in: the head window when all
/// arrived in time order, else every window from the earliest entry placed out of order.
/// `Some((lo, hi, from))`: the window `lo..=hi` is satisfied, counted from entry `from`.
#[inline]
fn decide(
    g: &mut Group,
    cx: &Feeding<'_>,
    key: u64,
    fresh_from: Option<u64>,
    supp: &mut Table<Supp, (usize, u64)>,
    stats: &mut Stats,
    scratch: &mut HashSet<u64, FastBuild>,
) -> Option<(usize, usize, usize)> {
    let need = if cx.distinct || cx.chains {
        need(cx.c, cx.budget)
    } else {
        None
    };
    if g.lb != 0
        && (fresh_from.is_some() || g.lb == STALE || need.is_none_or(|k| i64::from(g.lb) < k))
    {
        g.recount(cx.by_val);
    }
    match fresh_from {
        None => decide_head(g, cx, key, need, supp, stats, scratch),
        Some(fr) => {
            g.chain = 0;
            let d = scan(cx.c, g, fr, cx.budget, scratch);
            clear_fresh(g);
            d
        }
    }
}

/// The head window of a group that took the event in time order (see [`decide`]); `need` is
/// the least count the condition accepts, when known.
#[inline]
fn decide_head(
    g: &mut Group,
    cx: &Feeding<'_>,
    key: u64,
    need: Option<i64>,
    supp: &mut Table<Supp, (usize, u64)>,
    stats: &mut Stats,
    scratch: &mut HashSet<u64, FastBuild>,
) -> Option<(usize, usize, usize)> {
    let t = cx.cur.t;
    let hi = g.entries.len() - 1;
    let lo = g.win as usize;
    // The chain found earlier is still in the window: satisfied again. A repeat that
    // suppression holds back needs nothing more.
    if cx.chains
        && g.chain > t.saturating_sub(cx.c.timespan)
        && held(supp, stats, cx.rule.suppress, cx.c_idx, key, t)
    {
        return None;
    }
    let d = satisfied(cx.c, g, lo, hi, false, cx.budget, scratch);
    if let (true, Some(k)) = (cx.distinct, need) {
        g.relax(k);
    }
    if cx.chains && need.is_some() {
        // ts + 1 (0: none); at `u64::MAX` the saturated value still compares right against
        // `t - timespan`, which is below it.
        g.chain = d
            .and_then(|f| g.entries.get(f))
            .map_or(0, |e| e.ts.saturating_add(1));
    }
    d.map(|from| (lo, hi, from))
}
