//! Alerts out: suppression, evidence copies, alert contents and ids, and incidents (firings
//! of correlations whose groups share events, merged into one alert and its updates).

use super::*;

pub(super) struct Supp {
    pub(super) last: u64,
    pub(super) suppressed: u64,
}

/// Incidents kept open at once (the oldest is closed first): alerts are rare, and only
/// correlations grouped by process tree make incidents.
pub(super) const MAX_INCIDENTS: usize = 256;
/// Counted events and destinations an incident remembers (its counts stay exact up to this).
pub(super) const INCIDENT_EVENTS: usize = 4096;
/// Trees an incident lists.
pub(super) const INCIDENT_TREES: usize = 64;
/// Processes an incident lists.
pub(super) const INCIDENT_PROCESSES: usize = 32;
/// Evidence events an incident's alert holds (its groups' evidence together).
pub(super) const INCIDENT_EVIDENCE: usize = 32;

/// An incident of a correlation whose groups share events: the groups whose firings overlap
/// (share counted events), reported as one.
pub(super) struct Incident {
    /// Rule index.
    pub(super) rule: usize,
    /// Group keys merged into it (a group's own repeats are its suppression's business).
    pub(super) keys: Vec<u64>,
    /// Until when (event time) a window of the rule can still share events with it: its
    /// latest firing plus the window and the tolerance.
    pub(super) open_until: u64,
    /// Ring sequence numbers of its counted events, ascending, at most [`INCIDENT_EVENTS`]
    /// (the oldest dropped, and counted).
    pub(super) seqs: Vec<u64>,
    pub(super) seqs_dropped: u64,
    /// Codes of its distinct destinations, ascending, bounded likewise.
    pub(super) dsts: Vec<u64>,
    pub(super) dsts_dropped: u64,
    /// Tree roots of its groups, ascending.
    pub(super) trees: Vec<u32>,
    /// The incident's id (its first alert's).
    pub(super) id: String,
    /// Updates emitted.
    pub(super) revision: u32,
    /// Its latest alert without the evidence events (copying those for every alert that may
    /// never merge cost more than the rest of the alert), and where it was pushed: (batch,
    /// index in `out`).
    pub(super) record: Alert,
    pub(super) at: (u64, usize),
    /// Ring sequence numbers of the latest alert's evidence events, in its order: read again
    /// from the ring for an update.
    pub(super) evidence: Vec<u64>,
}

impl Incident {
    /// A merged firing's group, counted events, destinations and tree.
    fn absorb(&mut self, f: &Firing) {
        // Bounded like the trees: past that, a group's repeat is still held back by its own
        // suppression.
        if self.keys.len() < INCIDENT_TREES {
            self.keys.push(f.key);
        }
        self.open_until = self.open_until.max(f.open_until);
        union_sorted(&mut self.seqs, &f.seqs, &mut self.seqs_dropped);
        union_sorted(&mut self.dsts, &f.dsts, &mut self.dsts_dropped);
        if let Some(root) = f.root {
            if let Err(at) = self.trees.binary_search(&root) {
                if self.trees.len() < INCIDENT_TREES {
                    self.trees.insert(at, root);
                }
            }
        }
    }
}

/// An alert's contents apart from what the rule and suppression decide.
pub(super) struct Details {
    pub(super) group: Vec<(Field, String)>,
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) destinations: Vec<String>,
    pub(super) destination_count: u64,
    /// Redacted copies of the evidence events.
    pub(super) evidence: Vec<Event>,
    /// Evidence events no longer in the ring.
    pub(super) evidence_dropped: u64,
    /// The latest credential among the window's evidence events.
    pub(super) credential: Option<AlertCredential>,
}

impl Engine {
    /// Evidence copies and emission of a correlation firing (suppression already let it
    /// through). `seq`/`cur` are the event being handled (not yet in the ring).
    pub(super) fn fire(
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
    pub(super) fn incident(
        &mut self,
        r: usize,
        rule: &Rule,
        f: Firing,
        mut a: Alert,
        out: &mut Vec<Alert>,
    ) {
        let found = self.incidents.iter().rposition(|i| {
            i.rule == r
                && !i.keys.contains(&f.key)
                && i.open_until >= f.t
                && shares(&i.seqs, &f.seqs)
        });
        let Some(mut inc) = found.and_then(|i| self.incidents.remove(i)) else {
            self.open_incident(r, rule, f, a, out);
            return;
        };
        self.stats.merged += 1;
        inc.absorb(&f);
        let (batch, idx) = inc.at;
        // Still in the caller's hands: the same call (event) fired it; one alert.
        let in_place = batch == self.batch && out.get(idx).is_some_and(|x| x.id == inc.record.id);
        let old_evidence = self.incident_evidence(&mut inc, in_place, out);
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
        self.revise(&mut inc, rule, &mut m, in_place);
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

    /// The first alert of a new incident (the oldest open one is closed past
    /// [`MAX_INCIDENTS`]).
    fn open_incident(
        &mut self,
        r: usize,
        rule: &Rule,
        f: Firing,
        mut a: Alert,
        out: &mut Vec<Alert>,
    ) {
        a.id = self.new_id(rule, &a);
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
    }

    /// The incident's latest evidence events, for a merge: taken back from its alert still in
    /// `out` (`in_place`), else read again from the ring.
    fn incident_evidence(
        &self,
        inc: &mut Incident,
        in_place: bool,
        out: &mut [Alert],
    ) -> Vec<(u64, Event)> {
        if in_place {
            let held = out
                .get_mut(inc.at.1)
                .map(|x| std::mem::take(&mut x.evidence));
            return inc
                .evidence
                .iter()
                .copied()
                .zip(held.unwrap_or_default())
                .collect();
        }
        // The update's events, from the ring (a window can still share events with the
        // incident, so they are recent); one it no longer holds is counted as dropped.
        let got: Vec<(u64, Event)> = inc
            .evidence
            .iter()
            .filter_map(|&s| self.ring.get(s).map(|e| (s, self.redact(e))))
            .collect();
        inc.record.evidence_dropped += (inc.evidence.len() - got.len()) as u64;
        got
    }

    /// A merged alert's counts (the incident's), id and incident section: merged in place it
    /// keeps the alert's id, an update is the next revision under an id of its own.
    fn revise(&mut self, inc: &mut Incident, rule: &Rule, m: &mut Alert, in_place: bool) {
        m.count = inc.seqs.len() as u64 + inc.seqs_dropped;
        m.destination_count = inc.dsts.len() as u64 + inc.dsts_dropped;
        if in_place {
            m.id = inc.record.id.clone();
        } else {
            inc.revision += 1;
            m.id = self.new_id(rule, m);
            self.stats.alerts += 1;
        }
        m.incident = Some(AlertIncident {
            id: inc.id.clone(),
            revision: inc.revision,
            trees: inc.trees.clone(),
            processes: processes_of(m),
        });
    }

    pub(super) fn group_values(
        &self,
        fields: &[Field],
        ev: &Event,
    ) -> Option<Vec<(Field, String)>> {
        fields
            .iter()
            .map(|&f| fields::get(f, ev, &self.policy).map(|v| (f, v.render().into_owned())))
            .collect()
    }

    pub(super) fn event_alert(
        &mut self,
        rule: &Rule,
        r: usize,
        ev: &Event,
        t: u64,
        out: &mut Vec<Alert>,
    ) {
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
    pub(super) fn redact(&self, mut e: Event) -> Event {
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
    pub(super) fn destination_names(&self, d: &Details) -> (Vec<String>, Vec<String>) {
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

    pub(super) fn emit(&mut self, s: Subject<'_>, v: Verdict, d: Details, out: &mut Vec<Alert>) {
        let mut a = self.alert_of(String::new(), s.rule, v.t, v.suppressed, d, s.trigger);
        a.id = self.new_id(s.rule, &a);
        self.stats.alerts += 1;
        out.push(a);
    }

    /// The next alert's id: random, or derived from the seed, the alert's ordinal, rule, group
    /// (its rendered values, stably hashed) and window start.
    pub(super) fn new_id(&mut self, rule: &Rule, a: &Alert) -> String {
        let (key, first) = (alert_group_hash(&a.group), a.first_seen);
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
    pub(super) fn alert_of(
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
}

/// Whether suppression holds back an alert at `t` of a rule and key that last alerted at
/// `last`: within `suppress` of it, before or after (an alert completed by a late event may
/// be older than the previous one).
#[inline]
pub(super) fn held_back(last: u64, suppress: u64, t: u64) -> bool {
    // The distance, not sums: `last + suppress` saturates near `u64::MAX`, and a saturated
    // bound let every repeat through.
    t.abs_diff(last) < suppress
}

/// Whether suppression holds back an alert of rule `r` for `key` at `t`; counts it if so
/// (as [`suppression`] would) and otherwise changes nothing.
#[inline]
pub(super) fn held(
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
#[inline]
pub(super) fn suppression(
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
#[inline]
pub(super) fn name_of(val: Option<&Val<'_>>, by_val: bool, ev: &Event) -> SStr {
    match (val, &ev.net) {
        (Some(v), _) if by_val => SStr::new(&v.render()),
        (_, Some(n)) => SStr::new(&fields::dst_string(&n.dst_addr, n.dst_port)),
        _ => SStr::new(""),
    }
}

/// Whose alert: the rule (index and compiled), the group key, and the event that completed
/// the window (the alert's trigger).
#[derive(Clone, Copy)]
pub(super) struct Subject<'a> {
    pub(super) r: usize,
    pub(super) rule: &'a Rule,
    pub(super) key: u64,
    pub(super) trigger: &'a Event,
}

/// Suppression's verdict on a firing that goes out: its time and the repeats held back.
#[derive(Clone, Copy)]
pub(super) struct Verdict {
    pub(super) t: u64,
    pub(super) suppressed: u64,
}

pub(super) struct Fire {
    pub(super) group: Vec<(Field, String)>,
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) destinations: Vec<String>,
    pub(super) destination_count: u64,
    /// Ring sequence numbers of the evidence events.
    pub(super) evidence: Vec<u64>,
    /// The credential of the latest evidence event that has one (whether or not the ring
    /// still holds that event).
    pub(super) credential: Option<Arc<AlertCredential>>,
    /// For a correlation whose groups share events: ring sequence numbers of the counted
    /// events and codes of the destinations, ascending and distinct (else empty).
    pub(super) seqs: Vec<u64>,
    pub(super) dsts: Vec<u64>,
}

/// What a firing of a correlation whose groups share events brings to an incident.
pub(super) struct Firing {
    pub(super) key: u64,
    pub(super) t: u64,
    pub(super) open_until: u64,
    pub(super) seqs: Vec<u64>,
    pub(super) dsts: Vec<u64>,
    pub(super) root: Option<u32>,
    /// Ring sequence numbers of its alert's evidence events, in their order.
    pub(super) evidence: Vec<u64>,
}

/// Whether two ascending lists share a value.
pub(super) fn shares(a: &[u64], b: &[u64]) -> bool {
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
pub(super) fn union_sorted(into: &mut Vec<u64>, add: &[u64], dropped: &mut u64) {
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
pub(super) fn merge_alerts(
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
pub(super) fn processes_of(a: &Alert) -> Vec<AlertProcess> {
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
pub(super) fn credential_of(f: &FileInfo) -> AlertCredential {
    AlertCredential {
        watched: f.watched.clone(),
        category: f.category.clone(),
        fingerprint: f.fingerprint.clone(),
    }
}
