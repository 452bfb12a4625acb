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

    #[inline]
    pub(super) fn correlate(
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
