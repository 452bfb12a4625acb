//! Planning: what an event will do, from the event, the rules and the policy only — the event
//! rules it matches (through the literal index) and, for each correlation it feeds, its group
//! keys (stable hashes, [`super::keys`]) and counted value.

use super::*;

/// A group key: its hash and, for `process.tree` grouping, the tree root it stands for.
pub(super) type GroupKey = (u64, Option<u32>);

/// An event's group-by values (inline: no allocation per correlation and event).
pub(super) type Vals<'e> = smallvec::SmallVec<[Val<'e>; 2]>;

/// An event's group-by values at `step` of `c` (`None`: it lacks one): for an alert's group
/// and a deferred window's tree root.
#[inline]
pub(super) fn vals_for<'e>(
    c: &Correlation,
    step: usize,
    ev: &'e Event,
    pol: &Policy,
) -> Option<Vals<'e>> {
    let group_by = c.step_group_by.get(step).unwrap_or(&c.group_by);
    group_by.iter().map(|&f| fields::get(f, ev, pol)).collect()
}

/// Works out what `ev` will do into `p`: the event rules it matches (candidates from the
/// literal index) and, for each correlation fed, its group keys and counted value. Depends on
/// the event, the rules and the policy only.
#[inline]
pub(super) fn plan(rules: &RuleSet, pol: &Policy, cand: &mut Vec<u32>, ev: &Event, p: &mut Plan) {
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
            add_feed(rules, pol, ev, p, from, (c, step));
        }
    }
}

/// Adds what the event (matched by rule `from` of `p.matched`) gives step `step` of
/// correlation `c`, unless it lacks a group-by field or the counted value its step needs.
#[inline]
fn add_feed(
    rules: &RuleSet,
    pol: &Policy,
    ev: &Event,
    p: &mut Plan,
    from: usize,
    (c, step): (usize, usize),
) {
    let Body::Correlation(corr) = &rules.rules[c].body else {
        return;
    };
    let creates = corr.ty != CorrType::TemporalOrdered || step == 0;
    let group_by = corr.step_group_by.get(step).unwrap_or(&corr.group_by);
    let tree_keys = !creates || corr.ty == CorrType::Temporal;
    let Some((at, n, computed)) = feed_keys(rules, p, group_by, tree_keys, creates, ev, pol) else {
        return;
    };
    // Keys computed for a feed that then lacks its value stay in `p.keys`, unused.
    let Some((has_val, val_h)) = counted_value(corr, step, ev, pol, p) else {
        return;
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

/// A feed's keys in `p.keys` as (at, n, computed now): shared with an earlier feed of the
/// event that groups alike (e.g. every rule keyed by process tree), else appended. `None`:
/// the event lacks a group-by field.
#[inline]
fn feed_keys(
    rules: &RuleSet,
    p: &mut Plan,
    group_by: &[Field],
    tree_keys: bool,
    creates: bool,
    ev: &Event,
    pol: &Policy,
) -> Option<(u32, u32, bool)> {
    let shared = p
        .keyed
        .iter()
        .filter_map(|&i| p.feeds.get(i as usize))
        .find(|f| {
            f.creates == creates
                && f.tree_keys == tree_keys
                && step_group_by(rules, f) == Some(group_by)
        });
    if let Some(f) = shared {
        return Some((f.at, f.n, false));
    }
    let at = p.keys.len();
    if !group_keys(group_by, tree_keys, creates, ev, pol, p) {
        p.keys.truncate(at);
        return None;
    }
    Some((at as u32, (p.keys.len() - at) as u32, true))
}

/// The code of the value a feed counts as (has one, code); `None`: the event is not fed (it
/// lacks the field its step needs).
#[inline]
fn counted_value(
    corr: &Correlation,
    step: usize,
    ev: &Event,
    pol: &Policy,
    p: &mut Plan,
) -> Option<(bool, u64)> {
    let Some(f) = corr.field else {
        return Some((false, 0));
    };
    match (f, code::addr_of_dst(p.dst_h)) {
        // The destination's code already holds the parsed address.
        (Field::DstAddr, Some(addr)) => Some((true, addr)),
        // So does an unnamed destination's host (its address).
        (Field::DstHost, Some(addr)) if ev.net.as_ref().is_some_and(|n| n.dst_name.is_none()) => {
            Some((true, addr))
        }
        _ => match fields::get(f, ev, pol) {
            Some(v) => Some((
                true,
                code::val(&v, || p.memo.hash(f, ev, pol).unwrap_or_default()),
            )),
            // For temporal types the field only applies to the last step. A value_count event
            // without a value is in the window but counts no value (`NO_VALUE`): 0 distinct
            // values satisfy `lt`, `lte`, `neq`.
            None if corr.ty != CorrType::ValueCount && step + 1 == corr.steps.len() => None,
            None => Some((false, 0)),
        },
    }
}

/// Appends to `p.keys` the group keys of an event under `group_by` (false: it lacks a field).
/// With `tree_keys`, a `process.tree` field stands for each of the process's ancestors in
/// turn: a later step joins the tree of an earlier one when that tree's root is this process
/// or one of its ancestors; `creates` then adds the event's own key last.
#[inline]
pub(super) fn group_keys(
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
#[inline]
pub(super) fn step_group_by<'r>(rules: &'r RuleSet, f: &Feed) -> Option<&'r [Field]> {
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
pub(super) struct Plan {
    /// Event rules it matched.
    pub(super) matched: smallvec::SmallVec<[u32; 8]>,
    /// What it gives each correlation it feeds, in handling order.
    pub(super) feeds: smallvec::SmallVec<[Feed; 6]>,
    /// The feeds' group keys.
    pub(super) keys: smallvec::SmallVec<[GroupKey; 12]>,
    /// Feeds that computed their keys (the others share one of these): only these are
    /// searched for a match, so many correlations of few distinct groupings stay linear.
    pub(super) keyed: smallvec::SmallVec<[u32; 6]>,
    /// Whether a matched rule has consumers (the event then goes into the evidence ring).
    pub(super) fed: bool,
    /// Code of its destination (0: none, or it feeds no correlation).
    pub(super) dst_h: u64,
    /// Its field hashes.
    pub(super) memo: Memo,
}

impl Plan {
    #[inline]
    pub(super) fn keys_of(&self, f: &Feed) -> &[GroupKey] {
        let at = f.at as usize;
        self.keys.get(at..at + f.n as usize).unwrap_or_default()
    }
}

/// What an event gives one correlation at one step.
#[derive(Clone, Copy)]
pub(super) struct Feed {
    pub(super) c: u32,
    pub(super) step: u8,
    /// Position in [`Plan::matched`] of the rule this feed comes from.
    pub(super) from: u32,
    /// Whether it may open a group.
    pub(super) creates: bool,
    /// Whether a `process.tree` field gave one key per ancestor.
    pub(super) tree_keys: bool,
    /// Whether it has the counted value.
    pub(super) has_val: bool,
    /// Its keys: `Plan::keys[at..at + n]`.
    pub(super) at: u32,
    pub(super) n: u32,
    /// Code of the counted value (0: none).
    pub(super) val_h: u64,
    /// The fan-out budget of its identity, for a `budget: true` correlation.
    pub(super) budget: Option<u32>,
}
