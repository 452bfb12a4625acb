//! The driver: an event through its plan — time advanced (watermark, expiry, deferred
//! windows), event rules matched and alerted, correlations fed.

use super::*;

impl Engine {
    /// Evaluates one event from its plan; stores it in the evidence ring when it fed a
    /// correlation (under the sequence number the groups were given).
    #[inline]
    pub(super) fn execute(&mut self, ev: &Event, plan: &Plan, out: &mut Vec<Alert>) {
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
    #[inline]
    pub(super) fn watermark(&self) -> u64 {
        self.max_ts.saturating_sub(self.opts.reorder_tolerance)
    }

    /// Advances event time for an event stamped `ts`; returns the time it is placed at (its
    /// own, or the tolerance edge when later than that).
    #[inline]
    pub(super) fn advance(&mut self, ts: u64, out: &mut Vec<Alert>) -> u64 {
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
    #[inline]
    pub(crate) fn flush(&mut self, now: u64, out: &mut Vec<Alert>) {
        self.batch += 1;
        self.max_ts = self.max_ts.max(now);
        self.decide_deferred(self.watermark(), out);
        self.expire();
    }

    /// End of input: decides every waiting window.
    #[inline]
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.batch += 1;
        self.decide_deferred(u64::MAX, out);
    }

    #[inline]
    pub(super) fn expire(&mut self) {
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
    #[inline]
    pub(super) fn handle(&mut self, t: u64, ev: &Event, plan: &Plan, out: &mut Vec<Alert>) -> bool {
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
}
