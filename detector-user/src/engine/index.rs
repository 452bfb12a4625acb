//! Literal index of event rules: with a thousand rules, an event must not evaluate every
//! condition of its kind.
//!
//! For each event kind, every event rule is filed under at most one *probe*: a test at the top
//! level of its condition (a conjunct, so the rule cannot match when the test fails) that
//! compares a plain event field with literals — equality/membership (`net.dst_port: 22`,
//! `file.category: [ssh_key, cloud]`), a prefix list, or globs whose literal prefixes
//! (`/opt/svc1/*` → `/opt/svc1/`) every match must start with. Per event, each probe reads its
//! field once and looks the value up; the rules found, plus the rules without a usable test,
//! are the candidates, in rule order. Candidates still evaluate their whole condition, so the
//! index only ever skips rules whose condition is certainly false for the event.
//!
//! Which test files a rule: the one whose probe has the most distinct literals over the
//! kind's rules (a field that separates rules well: ports or executables rather than
//! `net.direction: outbound`).

use std::collections::HashMap;

/// Literal lookups run for every event: foldhash (randomly seeded) rather than SipHash.
type LitHash = foldhash::fast::RandomState;

use super::cond::{Cond, Op};
use super::fields::{self, Field, FieldType, Policy, Val};
use crate::event::Event;

/// How a probe compares the field with its literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mode {
    /// The whole value equals a literal.
    Eq,
    /// The value's first `n` bytes equal a literal.
    Prefix(usize),
}

/// A string literal and the rules filed under it.
type Filed = (Box<[u8]>, Vec<u32>);

/// One field lookup per event: literal → rules filed under it.
#[derive(Debug)]
struct Probe {
    field: Field,
    mode: Mode,
    strs: HashMap<Box<[u8]>, Vec<u32>, LitHash>,
    /// `strs` again when it holds only a few literals (`net.direction: outbound`): comparing
    /// a handful of short strings is cheaper than hashing the value, on every event.
    few: Option<Vec<Filed>>,
    ints: HashMap<i64, Vec<u32>, LitHash>,
    /// Every rule filed here, for a value of an unexpected type (kept conservative).
    all: Vec<u32>,
}

/// Literal sets up to this size are searched by comparison rather than hashing.
const FEW: usize = 4;

impl Probe {
    /// Rules filed under the string literal `key`.
    fn str_rules(&self, key: &[u8]) -> Option<&Vec<u32>> {
        match &self.few {
            Some(few) => few.iter().find(|(k, _)| **k == *key).map(|(_, v)| v),
            None => self.strs.get(key),
        }
    }
}

/// Probes of one kind. Probes and `always` hold positions in `order`, so candidates come out
/// in the order unindexed evaluation visits rules (kind's rules, then rules for any kind),
/// which is the order alerts are produced in.
#[derive(Debug, Default)]
struct KindIndex {
    /// Rule index at each position.
    order: Vec<u32>,
    /// Positions of rules without a usable literal test: always candidates.
    always: Vec<u32>,
    probes: Vec<Probe>,
}

/// Event rules indexed by kind and literal (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct LiteralIndex {
    kinds: Vec<KindIndex>,
}

/// A literal a test requires, and how it is compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Lit {
    Str(Box<[u8]>),
    Int(i64),
}

/// A usable test of a rule: field, whether its literals are prefixes, the literals.
type LitTest = (Field, bool, Vec<Lit>);

/// Fields the index may probe: read straight from the event (derived fields cost a lookup or
/// an allocation, which would defeat the purpose) and never lists.
fn indexable(f: Field) -> bool {
    use Field::*;
    !matches!(
        f,
        Kind | Ts
            | Tree
            | Dst
            | Service
            | PeerAllowed
            | Novel
            | AgeDays
            | HomeUser
            | Owned
            | Argv
            | ExecArgv
    ) && matches!(f.ty(), FieldType::Str | FieldType::Int)
}

/// The literal part of a glob before its first special character: every match starts with it.
fn glob_literal_prefix(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// The usable literal tests among the conjuncts of `c`: (field, mode class, literals).
fn literal_tests(c: &Cond, out: &mut Vec<LitTest>) {
    match c {
        Cond::All(cs) => cs.iter().for_each(|c| literal_tests(c, out)),
        Cond::Test(f, op) if indexable(*f) => {
            let strs = |v: Vec<String>| -> Vec<Lit> {
                v.into_iter()
                    .map(|s| Lit::Str(s.into_bytes().into_boxed_slice()))
                    .collect()
            };
            match op {
                Op::StrIn(set) if f.ty() == FieldType::Str => {
                    out.push((*f, false, strs(set.items())));
                }
                Op::IntIn(set) if f.ty() == FieldType::Int => {
                    out.push((*f, false, set.items().into_iter().map(Lit::Int).collect()));
                }
                Op::Prefix(p) if f.ty() == FieldType::Str && p.iter().all(|x| !x.is_empty()) => {
                    out.push((*f, true, strs(p.clone())));
                }
                Op::Glob(_, patterns) if f.ty() == FieldType::Str => {
                    let pre: Vec<String> = patterns
                        .iter()
                        .map(|p| glob_literal_prefix(p).to_string())
                        .collect();
                    if !pre.is_empty() && pre.iter().all(|x| !x.is_empty()) {
                        out.push((*f, true, strs(pre)));
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn lit_len(l: &Lit) -> usize {
    match l {
        Lit::Str(s) => s.len(),
        Lit::Int(_) => 0,
    }
}

impl LiteralIndex {
    /// Builds the index over the rules' event conditions (`conds[i]`: rule `i`'s, none for a
    /// correlation), event rules per kind as in `RuleSet::by_kind`, the last entry holding
    /// rules for any kind. It takes conditions rather than rules so that the rule model,
    /// which holds an index, and the index do not import each other.
    pub(crate) fn build(conds: &[Option<&Cond>], by_kind: &[Vec<usize>]) -> LiteralIndex {
        let none = Vec::new();
        let (any, per_kind) = by_kind.split_last().unwrap_or((&none, &[]));
        let kinds = per_kind
            .iter()
            .map(|ids| {
                let mut ids = ids.clone();
                ids.extend(any);
                Self::build_kind(conds, &ids)
            })
            .collect();
        LiteralIndex { kinds }
    }

    fn build_kind(conds: &[Option<&Cond>], ids: &[usize]) -> KindIndex {
        let tests: Vec<(usize, Vec<LitTest>)> = ids
            .iter()
            .map(|&i| {
                let mut t = Vec::new();
                if let Some(Some(cond)) = conds.get(i) {
                    literal_tests(cond, &mut t);
                }
                (i, t)
            })
            .collect();
        // Distinct literals per (field, prefix?) over the kind: how well a field separates rules.
        let mut distinct: HashMap<(Field, bool), std::collections::HashSet<Lit>> = HashMap::new();
        for (_, ts) in &tests {
            for (f, p, lits) in ts {
                distinct
                    .entry((*f, *p))
                    .or_default()
                    .extend(lits.iter().cloned());
            }
        }
        let mut ix = KindIndex {
            order: ids.iter().map(|&i| i as u32).collect(),
            ..KindIndex::default()
        };
        for (i, (_, ts)) in tests.into_iter().enumerate() {
            let best = ts.into_iter().max_by_key(|(f, p, lits)| {
                let d = distinct.get(&(*f, *p)).map_or(0, |s| s.len());
                // More distinct literals over the kind first, then fewer in this rule, then
                // exact over prefix.
                (d, std::cmp::Reverse(lits.len()), !*p)
            });
            let Some((field, prefix, lits)) = best else {
                ix.always.push(i as u32);
                continue;
            };
            for lit in lits {
                let mode = if prefix {
                    Mode::Prefix(lit_len(&lit))
                } else {
                    Mode::Eq
                };
                let pos = match ix
                    .probes
                    .iter()
                    .position(|p| p.field == field && p.mode == mode)
                {
                    Some(pos) => pos,
                    None => {
                        ix.probes.push(Probe {
                            field,
                            mode,
                            strs: HashMap::default(),
                            few: None,
                            ints: HashMap::default(),
                            all: Vec::new(),
                        });
                        ix.probes.len() - 1
                    }
                };
                let probe = &mut ix.probes[pos];
                let list = match lit {
                    Lit::Str(s) => probe.strs.entry(s).or_default(),
                    Lit::Int(n) => probe.ints.entry(n).or_default(),
                };
                if list.last() != Some(&(i as u32)) {
                    list.push(i as u32);
                }
                if probe.all.last() != Some(&(i as u32)) {
                    probe.all.push(i as u32);
                }
            }
        }
        for p in &mut ix.probes {
            p.few = (p.strs.len() <= FEW)
                .then(|| p.strs.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        ix
    }

    /// Event rules that may match `ev`, in evaluation order (as `RuleSet::candidates`),
    /// written to `out` (cleared first). Every rule whose condition holds for `ev` is among
    /// them.
    pub(crate) fn candidates(&self, ev: &Event, pol: &Policy, out: &mut Vec<u32>) {
        out.clear();
        let Some(ix) = self.kinds.get(ev.kind as usize) else {
            return;
        };
        out.extend_from_slice(&ix.always);
        let mut from_probes = false;
        for p in &ix.probes {
            // Enum fields (`net.direction`) are read as their name, without building a value.
            if fields::is_enum(p.field) {
                let found = fields::enum_name(p.field, ev).and_then(|v| match p.mode {
                    Mode::Eq => p.str_rules(v.as_bytes()),
                    Mode::Prefix(n) => v.as_bytes().get(..n).and_then(|h| p.str_rules(h)),
                });
                if let Some(rules) = found {
                    out.extend_from_slice(rules);
                    from_probes = true;
                }
                continue;
            }
            // A missing field fails the rule's test, so its rules cannot match.
            let Some(v) = fields::get(p.field, ev, pol) else {
                continue;
            };
            let found = match (&v, p.mode) {
                (Val::Str(s), Mode::Eq) => p.str_rules(s.as_bytes()),
                (Val::Str(s), Mode::Prefix(n)) => {
                    s.as_bytes().get(..n).and_then(|head| p.str_rules(head))
                }
                (Val::Int(n), Mode::Eq) => p.ints.get(n),
                (Val::Int(_), Mode::Prefix(_)) => None,
                // Not a type an indexed field yields; stay conservative.
                _ => Some(&p.all),
            };
            if let Some(rules) = found {
                out.extend_from_slice(rules);
                from_probes = true;
            }
        }
        if from_probes {
            out.sort_unstable();
            out.dedup();
        }
        for p in out.iter_mut() {
            *p = ix.order[*p as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rules::{Body, RuleSet};
    use crate::event::*;
    use proptest::prelude::*;

    fn connect(port: u16, exe: &str, dst: &str, dir: Direction) -> Event {
        Event {
            ts: 1,
            kind: Kind::Connect,
            process: Some(Process {
                tgid: 5,
                exe: exe.into(),
                identity: Some("id".into()),
                ..Default::default()
            }),
            exec: None,
            fork: None,
            exit: None,
            net: Some(NetInfo {
                protocol: Protocol::Tcp,
                family: 4,
                direction: dir,
                src_addr: "0.0.0.0".into(),
                src_port: 0,
                dst_addr: dst.into(),
                dst_port: port,
                outcome: Outcome::InProgress,
                error: None,
                conn: 1,
                dst_name: None,
                off_host: None,
                service: None,
            }),
            file: None,
            loss: None,
        }
    }

    /// Rule matches by evaluating every candidate of the kind (no literal index).
    fn unindexed(set: &RuleSet, ev: &Event, pol: &Policy) -> Vec<u32> {
        set.candidates(ev.kind)
            .filter(|&i| match &set.rules[i].body {
                Body::Event { cond, .. } => cond.eval(ev, pol),
                Body::Correlation(_) => false,
            })
            .map(|i| i as u32)
            .collect()
    }

    /// Rule matches through the index.
    fn indexed(set: &RuleSet, ev: &Event, pol: &Policy) -> Vec<u32> {
        let mut c = Vec::new();
        set.index.candidates(ev, pol, &mut c);
        c.into_iter()
            .filter(|&i| match &set.rules[i as usize].body {
                Body::Event { cond, .. } => cond.eval(ev, pol),
                Body::Correlation(_) => false,
            })
            .collect()
    }

    #[test]
    fn glob_prefixes() {
        assert_eq!(glob_literal_prefix("/opt/svc1/*"), "/opt/svc1/");
        assert_eq!(glob_literal_prefix("/usr/{bin,sbin}/x"), "/usr/");
        assert_eq!(glob_literal_prefix("*.key"), "");
        assert_eq!(glob_literal_prefix("a\\*b"), "a");
        assert_eq!(glob_literal_prefix("plain"), "plain");
    }

    #[test]
    fn probes_narrow_candidates_but_keep_matches() {
        let src = "rules:
  - {id: a, title: a, severity: low, condition: {kind: connect, net.dst_port: 22}}
  - {id: b, title: b, severity: low, condition: {kind: connect, net.dst_port: [443, 80]}}
  - {id: c, title: c, severity: low, condition: {kind: connect, process.exe: {glob: '/opt/x/*'}}}
  - {id: d, title: d, severity: low, condition: {kind: connect, not: {net.dst_port: 22}}}
  - {id: e, title: e, severity: low, condition: {any: [{net.dst_port: 22}, {process.exe: /bin/sh}]}}
";
        let set = RuleSet::load(&[("t".into(), src.into())]).unwrap();
        let pol = Policy::default();
        let ev = connect(22, "/opt/x/bin", "10.0.0.1", Direction::Outbound);
        let mut c = Vec::new();
        set.index.candidates(&ev, &pol, &mut c);
        // b is skipped (port 22 is not 443/80); d and e have no usable literal, and e (any
        // kind) comes after the connect rules, as without the index.
        assert_eq!(c, vec![0, 2, 3, 4]);
        assert_eq!(indexed(&set, &ev, &pol), vec![0, 2, 4]);
        assert_eq!(indexed(&set, &ev, &pol), unindexed(&set, &ev, &pol));
    }

    fn rule_src(i: usize, r: &(u8, u8, u8, bool)) -> String {
        let (port_op, exe_op, addr_op, neg) = *r;
        let mut cond = vec!["kind: connect".to_string()];
        match port_op % 4 {
            0 => cond.push(format!("net.dst_port: {}", 20 + port_op % 5)),
            1 => cond.push(format!("net.dst_port: [{}, {}]", 20 + port_op % 5, 21)),
            2 => cond.push(format!("net.dst_port: {{gte: {}}}", 20 + port_op % 5)),
            _ => {}
        }
        match exe_op % 5 {
            0 => cond.push(format!("process.exe: /bin/p{}", exe_op % 3)),
            1 => cond.push(format!("process.exe: {{glob: '/bin/p{}*'}}", exe_op % 3)),
            2 => cond.push(format!(
                "process.exe: {{prefix: ['/bin/p{}', /usr]}}",
                exe_op % 3
            )),
            3 => cond.push("process.exe: {glob: '*p1'}".into()),
            _ => {}
        }
        match addr_op % 3 {
            0 => cond.push(format!("net.dst_addr: {{cidr: 10.{}.0.0/16}}", addr_op % 2)),
            1 => cond.push("net.direction: outbound".into()),
            _ => {}
        }
        let body = if neg {
            format!("{{not: {{{}}}}}", cond[1..].join(", "))
        } else {
            format!("{{{}}}", cond.join(", "))
        };
        format!("  - {{id: r{i}, title: t, severity: low, condition: {body}}}\n")
    }

    proptest! {
        /// Indexed and unindexed evaluation find the same rules for any rule set and event.
        #[test]
        fn indexed_equals_unindexed(
            rules in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>()), 1..30),
            events in proptest::collection::vec((18u16..26, 0u8..4, 0u8..3, any::<bool>()), 1..20),
        ) {
            let mut src = String::from("rules:\n");
            for (i, r) in rules.iter().enumerate() {
                src.push_str(&rule_src(i, r));
            }
            let set = RuleSet::load(&[("t".into(), src)]).unwrap();
            let pol = Policy::default();
            for (port, exe, addr, out) in events {
                let exe = match exe { 3 => "/usr/bin/p1".to_string(), n => format!("/bin/p{n}x") };
                let dir = if out { Direction::Outbound } else { Direction::Inbound };
                let ev = connect(port, &exe, &format!("10.{addr}.0.1"), dir);
                prop_assert_eq!(indexed(&set, &ev, &pol), unindexed(&set, &ev, &pol));
            }
        }
    }
}
