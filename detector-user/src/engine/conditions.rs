//! Conditions of correlations over a window: which entries count, whether the window
//! satisfies the condition (or the identity's fan-out budget), and what a firing reports.

use super::*;

/// The entries of `lo..=hi` a decision counts (for `temporal_ordered`: the chain from
/// `from`), optionally without the fresh ones.
#[inline]
pub(super) fn counted<'g>(
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
#[inline]
pub(super) fn satisfied(
    c: &Correlation,
    g: &Group,
    lo: usize,
    hi: usize,
    skip_fresh: bool,
    budget: Option<u32>,
    scratch: &mut HashSet<u64, FastBuild>,
) -> Option<usize> {
    let cap = count_cap(c);
    let w = Span {
        g,
        lo,
        hi,
        skip_fresh,
    };
    let (n, from) = match c.ty {
        CorrType::EventCount if !skip_fresh => ((hi + 1 - lo) as i64, lo),
        CorrType::EventCount => (w.entries().count() as i64, lo),
        CorrType::ValueCount => (distinct_values(c, w, budget, cap, scratch), lo),
        CorrType::Temporal if c.field.is_some() => (temporal_values(c, w, cap)?, lo),
        CorrType::Temporal => (steps_seen(w), lo),
        CorrType::TemporalOrdered => ordered_chain(c, w, cap)?,
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

/// The window a decision counts: entries `lo..=hi` of `g`, without the fresh ones when
/// `skip_fresh`.
#[derive(Clone, Copy)]
struct Span<'g> {
    g: &'g Group,
    lo: usize,
    hi: usize,
    skip_fresh: bool,
}

impl<'g> Span<'g> {
    #[inline]
    fn entries(self) -> impl Iterator<Item = &'g Entry> {
        let Span {
            g,
            lo,
            hi,
            skip_fresh,
        } = self;
        (lo..=hi)
            .filter_map(move |i| g.entries.get(i))
            .filter(move |e| !(skip_fresh && e.fresh()))
    }
}

/// Where counting may stop: once every (gt/gte) threshold is exceeded the answer cannot
/// change, and a busy group must not cost a full scan per event.
#[inline]
fn count_cap(c: &Correlation) -> i64 {
    if !c.budget && c.monotone {
        c.condition
            .iter()
            .map(|(_, v)| v.saturating_add(1))
            .max()
            .unwrap_or(i64::MAX)
    } else {
        i64::MAX
    }
}

/// `value_count`: the window's distinct values (up to `cap`), from what the group keeps of
/// its head window when the window is that.
#[inline]
fn distinct_values(
    c: &Correlation,
    w: Span<'_>,
    budget: Option<u32>,
    cap: i64,
    scratch: &mut HashSet<u64, FastBuild>,
) -> i64 {
    let g = w.g;
    let head = !w.skip_fresh && w.lo == g.win as usize && w.hi + 1 == g.entries.len();
    // A lower bound that proves the condition (see `Group::lb`).
    if head && g.lb != 0 && g.lb != STALE && need(c, budget).is_some_and(|k| i64::from(g.lb) >= k) {
        return i64::from(g.lb);
    }
    if head && g.lb == 0 {
        // The head window: its distinct values are kept up to date, or it is small.
        return match g.distinct.as_ref() {
            Some(d) => d.len() as i64,
            None => {
                let mut seen = [0u64; SCAN_DISTINCT + 1];
                let mut n = 0;
                for e in w.entries() {
                    if e.val != NO_VALUE && !seen[..n].contains(&e.val) && n < seen.len() {
                        seen[n] = e.val;
                        n += 1;
                    }
                }
                n as i64
            }
        };
    }
    scratch.clear();
    for e in w.entries().filter(|e| e.val != NO_VALUE) {
        scratch.insert(e.val);
        if scratch.len() as i64 >= cap {
            break;
        }
    }
    scratch.len() as i64
}

/// `temporal` with `field`: every rule but the last matched in the window, in any order, and
/// the condition counts distinct values of `field` among the last rule's matches (a key read
/// by ssh after its connect still counts the host it connected to). `None`: a rule is missing.
#[inline]
fn temporal_values(c: &Correlation, w: Span<'_>, cap: i64) -> Option<i64> {
    let last = (c.steps.len() - 1) as u8;
    let mut seen = 0u64;
    let mut vals: smallvec::SmallVec<[u64; 8]> = smallvec::SmallVec::new();
    for e in w.entries() {
        if e.step() != last {
            seen |= 1u64 << (e.step().min(63));
        } else if (vals.len() as i64) < cap && !vals.contains(&e.val) {
            vals.push(e.val);
        }
    }
    if (seen.count_ones() as usize) < usize::from(last).min(64) {
        return None;
    }
    Some(vals.len() as i64)
}

/// `temporal`: how many of its rules matched in the window.
#[inline]
fn steps_seen(w: Span<'_>) -> i64 {
    let mut seen = 0u64;
    for e in w.entries() {
        seen |= 1u64 << (e.step().min(63));
    }
    i64::from(seen.count_ones())
}

/// `temporal_ordered`: the earliest chain — the first step-0 entry, then the first step-1
/// after it, … (it leaves the longest tail for the last step) — as (the last step's matches,
/// or their distinct values with `field`, up to `cap`; where the chain starts). `None`: no
/// chain.
#[inline]
fn ordered_chain(c: &Correlation, w: Span<'_>, cap: i64) -> Option<(i64, usize)> {
    let last = (c.steps.len() - 1) as u8;
    let mut from = w.lo;
    let mut want = 0u8;
    let mut n = 0i64;
    let mut vals: smallvec::SmallVec<[u64; 8]> = smallvec::SmallVec::new();
    for i in w.lo..=w.hi {
        let Some(e) = w.g.entries.get(i) else { break };
        if w.skip_fresh && e.fresh() {
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
    Some((n, from))
}

/// The fan-out budget that replaces a `budget` correlation's condition for the event's
/// identity, if it has one.
#[inline]
pub(super) fn budget_of(c: &Correlation, ev: &Event, pol: &Policy) -> Option<u32> {
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
#[inline]
pub(super) fn need(c: &Correlation, budget: Option<u32>) -> Option<i64> {
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
#[inline]
pub(super) fn scan(
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
#[inline]
pub(super) fn group_root(c: &Correlation, vals: &[Val<'_>], tree: Option<u32>) -> Option<u32> {
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
#[inline]
pub(super) fn group_strings(
    c: &Correlation,
    vals: &[Val<'_>],
    root: Option<u32>,
) -> Vec<(Field, String)> {
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
#[inline]
pub(super) fn fire_of(
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
