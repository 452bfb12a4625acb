//! Per-event conditions: compiled once (regexes, globs, CIDRs) from the rule YAML, evaluated
//! per event without allocation in the common cases.
//!
//! ```yaml
//! condition:
//!   kind: connect                       # scalar: equality
//!   net.dst_port: [22, 2222]            # sequence: membership
//!   process.exe: {glob: ["/usr/bin/*", "@ssh_clients"]}   # "@name" expands a named list
//!   any: [{net.dst_addr: {cidr: 10.0.0.0/8}}, {not: {net.novel: false}}]
//! ```
//! A mapping ANDs its entries; `all`, `any`, `not` combine. Operators: `eq`, `neq`, `in`,
//! `glob`, `prefix`, `suffix`, `contains`, `cidr`, `regex`, `gt`, `gte`, `lt`, `lte`,
//! `exists`, `eq_field`, `neq_field`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use regex::{Regex, RegexBuilder};

#[cfg(test)]
use super::fields::Policy;
use super::fields::{self, Field, FieldType, Val};
#[cfg(test)]
use crate::event::Event;
use crate::input::yaml::{Node, Pos, PosError, Value};
use crate::input::{excerpt, human_bytes};

/// Values one operator may test (after `@list` expansion).
pub(crate) const MAX_VALUES: usize = 100_000;
/// List items expanded over a whole rule set (each `@name` counts its list's length): a
/// 100 k-item list referenced by a thousand rules would otherwise be copied a thousand times.
pub(crate) const MAX_EXPANDED: usize = 1_000_000;
/// Pattern bytes in one `glob` test (globset compiles them all into one automaton).
pub(crate) const MAX_GLOB_BYTES: usize = 256 << 10;
/// Compiled size of one regex (`regex`'s own limit, lowered from 10 MiB: a rule set holds
/// many).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Nesting of groups and repetitions in one regex.
pub(crate) const REGEX_NEST_LIMIT: u32 = 64;

/// Named lists: name → items (as written), with the expansion budget of one rule set.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    map: HashMap<String, Vec<Node>>,
    /// Where each list is defined (its name), for the unused-list warning.
    defined: Vec<(String, Pos)>,
    /// Names looked up so far.
    used: std::cell::RefCell<std::collections::HashSet<String>>,
    expanded: std::cell::Cell<usize>,
}

impl Lists {
    /// Adds a list defined at `at`; false when the name was taken.
    pub(crate) fn insert(&mut self, name: String, at: &Pos, items: Vec<Node>) -> bool {
        self.defined.push((name.clone(), at.clone()));
        self.map.insert(name, items).is_none()
    }

    /// A list by name (marked used).
    pub(crate) fn get(&self, name: &str) -> Option<&Vec<Node>> {
        let l = self.map.get(name);
        if l.is_some() && !self.used.borrow().contains(name) {
            self.used.borrow_mut().insert(name.to_string());
        }
        l
    }

    /// Lists no lookup has used so far, with where they are defined.
    pub(crate) fn unused(&self) -> impl Iterator<Item = (&str, &Pos)> + '_ {
        let used = self.used.borrow();
        let out: Vec<(&str, &Pos)> = self
            .defined
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(n, p)| (n.as_str(), p))
            .collect();
        out.into_iter()
    }

    /// Counts `n` more expanded items, refused past [`MAX_EXPANDED`] (at `at`).
    fn charge(&self, n: usize, at: &Node) -> Result<(), PosError> {
        let total = self.expanded.get().saturating_add(n);
        if total > MAX_EXPANDED {
            return Err(PosError::new(
                &at.pos,
                format!(
                    "lists expanded too often: more than {MAX_EXPANDED} items over the rule set"
                ),
            ));
        }
        self.expanded.set(total);
        Ok(())
    }
}

/// A membership set: a short list is scanned (faster than hashing for the handful of values
/// rules usually name), a long one hashed.
#[derive(Debug)]
pub enum Set<T: std::hash::Hash + Eq> {
    /// Up to 8 items.
    Small(Vec<T>),
    /// More.
    Large(HashSet<T>),
}

impl<T: std::hash::Hash + Eq + Clone> Set<T> {
    /// Builds from items.
    pub(crate) fn new(items: Vec<T>) -> Self {
        if items.len() <= 8 {
            Set::Small(items)
        } else {
            Set::Large(items.into_iter().collect())
        }
    }

    /// Membership.
    pub(crate) fn contains<Q>(&self, q: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        match self {
            Set::Small(v) => v.iter().any(|x| x.borrow() == q),
            Set::Large(h) => h.contains(q),
        }
    }

    /// The items.
    pub(crate) fn items(&self) -> Vec<T> {
        match self {
            Set::Small(v) => v.clone(),
            Set::Large(h) => h.iter().cloned().collect(),
        }
    }
}

/// A compiled condition.
#[derive(Debug)]
pub enum Cond {
    /// Always true (empty mapping).
    True,
    /// All must hold.
    All(Vec<Cond>),
    /// At least one must hold.
    Any(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// A test on one field.
    Test(Field, Op),
}

/// The networks of a `cidr` test, by family: an address is only compared with networks of
/// its own family, without going through `IpNet`'s dispatch for each (most connects test two
/// lists of two networks).
#[derive(Debug, Default)]
pub struct Nets {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl Nets {
    fn push(&mut self, n: IpNet) {
        match n {
            IpNet::V4(n) => self.v4.push(n),
            IpNet::V6(n) => self.v6.push(n),
        }
    }

    /// The networks, IPv4 first (for the Sigma export).
    pub(crate) fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4
            .iter()
            .map(|&n| IpNet::V4(n))
            .chain(self.v6.iter().map(|&n| IpNet::V6(n)))
    }

    /// Whether any network holds `ip`.
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(a)),
        }
    }
}

/// A compiled operator on a field value.
#[derive(Debug)]
pub enum Op {
    /// String equality with any of the set (`eq`, `in`, scalar, sequence).
    StrIn(Set<String>),
    /// Integer membership.
    IntIn(Set<i64>),
    /// Boolean equality.
    BoolEq(bool),
    /// Glob set, and the patterns as written (the literal index reads their prefixes).
    Glob(GlobSet, Vec<String>),
    /// Prefixes.
    Prefix(Vec<String>),
    /// Suffixes.
    Suffix(Vec<String>),
    /// Substrings.
    Contains(Vec<String>),
    /// Networks.
    Cidr(Nets),
    /// Regular expression (unanchored, as `regex::Regex::is_match`).
    Regex(Regex),
    /// Integer comparison.
    Cmp(CmpOp, i64),
    /// Presence.
    Exists(bool),
    /// Equal to another field of the same event.
    EqField(Field),
    /// Different from another field of the same event (true when both are present and differ).
    NeqField(Field),
}

/// Numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// >
    Gt,
    /// >=
    Gte,
    /// <
    Lt,
    /// <=
    Lte,
    /// ==
    Eq,
    /// !=
    Neq,
}

impl CmpOp {
    /// Parses `gt`…`neq`.
    pub(crate) fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "gt" => CmpOp::Gt,
            "gte" => CmpOp::Gte,
            "lt" => CmpOp::Lt,
            "lte" => CmpOp::Lte,
            "eq" => CmpOp::Eq,
            "neq" => CmpOp::Neq,
            _ => return None,
        })
    }

    /// `a <op> b`.
    pub(crate) fn eval(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Neq => a != b,
        }
    }
}

/// Resolves a field path node.
pub(crate) fn field(n: &Node, path: &str) -> Result<Field, PosError> {
    Field::parse(path)
        .ok_or_else(|| PosError::new(&n.pos, format!("unknown field {}", excerpt(path))))
}

/// Items of a sequence-or-scalar with `@list` references expanded.
fn items<'a>(n: &'a Node, lists: &'a Lists) -> Result<Vec<&'a Node>, PosError> {
    let mut out = Vec::new();
    for it in n.as_seq_or_one() {
        if let Value::Str(s) = &it.value {
            if let Some(name) = s.strip_prefix('@') {
                let l = lists.get(name).ok_or_else(|| {
                    PosError::new(&it.pos, format!("unknown list {}", excerpt(name)))
                })?;
                lists.charge(l.len(), it)?;
                out.extend(l.iter());
            } else {
                out.push(it);
            }
        } else {
            out.push(it);
        }
        if out.len() > MAX_VALUES {
            return Err(PosError::new(
                &it.pos,
                format!("too many values: more than {MAX_VALUES} in one test"),
            ));
        }
    }
    Ok(out)
}

fn strings(n: &Node, lists: &Lists) -> Result<Vec<String>, PosError> {
    items(n, lists)?
        .into_iter()
        .map(|i| i.as_scalar_string())
        .collect()
}

fn membership(f: Field, n: &Node, lists: &Lists) -> Result<Op, PosError> {
    let its = items(n, lists)?;
    match f.ty() {
        FieldType::Int => its
            .iter()
            .map(|i| i.as_i64())
            .collect::<Result<_, _>>()
            .map(|v: Vec<i64>| Op::IntIn(Set::new(v)))
            .map_err(|e| {
                PosError::new(
                    &e.pos,
                    format!("`{}` is an integer field: {}", f.path(), e.msg),
                )
            }),
        FieldType::Bool => {
            if its.len() != 1 {
                return Err(PosError::new(
                    &n.pos,
                    format!("`{}` takes one boolean", f.path()),
                ));
            }
            Ok(Op::BoolEq(its[0].as_bool().map_err(|e| {
                PosError::new(
                    &e.pos,
                    format!("`{}` is a boolean field: {}", f.path(), e.msg),
                )
            })?))
        }
        FieldType::Str | FieldType::StrList => Ok(Op::StrIn(Set::new(
            its.iter()
                .map(|i| i.as_scalar_string())
                .collect::<Result<Vec<_>, _>>()?,
        ))),
    }
}

fn string_op(f: Field, key: &Node, what: &str) -> Result<(), PosError> {
    match f.ty() {
        FieldType::Str | FieldType::StrList => Ok(()),
        _ => Err(PosError::new(
            &key.pos,
            format!("`{what}` needs a string field; `{}` is not", f.path()),
        )),
    }
}

fn compile_op(f: Field, key: &Node, op: &str, v: &Node, lists: &Lists) -> Result<Cond, PosError> {
    let t = |o| Ok(Cond::Test(f, o));
    match op {
        "eq" | "in" => t(membership(f, v, lists)?),
        "neq" => Ok(Cond::Not(Box::new(Cond::Test(f, membership(f, v, lists)?)))),
        "glob" => {
            string_op(f, key, op)?;
            let mut b = GlobSetBuilder::new();
            let mut patterns = Vec::new();
            let mut bytes = 0usize;
            for it in items(v, lists)? {
                let s = it.as_scalar_string()?;
                bytes += s.len();
                if bytes > MAX_GLOB_BYTES {
                    return Err(PosError::new(&it.pos, format!("glob patterns too large: more than {} in one test", human_bytes(MAX_GLOB_BYTES as u64))));
                }
                // globset's message repeats the pattern; quote it once, shortened.
                let g = Glob::new(&s).map_err(|e| PosError::new(&it.pos, format!("bad glob {}: {}", excerpt(&s), glob_reason(&e))))?;
                b.add(g);
                patterns.push(s);
            }
            t(Op::Glob(b.build().map_err(|e| PosError::new(&v.pos, format!("bad glob set: {}", glob_reason(&e))))?, patterns))
        }
        "prefix" => string_op(f, key, op).and_then(|_| t(Op::Prefix(strings(v, lists)?))),
        "suffix" => string_op(f, key, op).and_then(|_| t(Op::Suffix(strings(v, lists)?))),
        "contains" => string_op(f, key, op).and_then(|_| t(Op::Contains(strings(v, lists)?))),
        "cidr" => {
            string_op(f, key, op)?;
            let mut nets = Nets::default();
            for it in items(v, lists)? {
                let s = it.as_scalar_string()?;
                let net = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| PosError::new(&it.pos, format!("bad CIDR {}", excerpt(&s))))?;
                nets.push(net);
            }
            t(Op::Cidr(nets))
        }
        "regex" => {
            string_op(f, key, op)?;
            let s = v.as_str()?;
            t(Op::Regex(regex(s).map_err(|m| PosError::new(&v.pos, m))?))
        }
        "gt" | "gte" | "lt" | "lte" => {
            if f.ty() != FieldType::Int {
                return Err(PosError::new(&key.pos, format!("`{op}` needs an integer field; `{}` is not", f.path())));
            }
            let c = CmpOp::parse(op).ok_or_else(|| PosError::new(&key.pos, "bad comparison"))?;
            t(Op::Cmp(c, v.as_i64()?))
        }
        "exists" => t(Op::Exists(v.as_bool()?)),
        "eq_field" | "neq_field" => {
            let other = field(v, v.as_str()?)?;
            let compatible = |a: FieldType| match a {
                FieldType::StrList => FieldType::Str,
                x => x,
            };
            if compatible(other.ty()) != compatible(f.ty()) {
                return Err(PosError::new(&v.pos, format!("`{}` and `{}` have different types", f.path(), other.path())));
            }
            t(if op == "eq_field" { Op::EqField(other) } else { Op::NeqField(other) })
        }
        _ => Err(PosError::new(
            &key.pos,
            format!("unknown operator {} (expected eq, neq, in, glob, prefix, suffix, contains, cidr, regex, gt, gte, lt, lte, exists, eq_field, neq_field)", excerpt(op)),
        )),
    }
}

/// Compiles a rule's regex within [`REGEX_SIZE_LIMIT`] and [`REGEX_NEST_LIMIT`]; the error
/// quotes the pattern by an excerpt.
pub(crate) fn regex(s: &str) -> Result<Regex, String> {
    RegexBuilder::new(s)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| {
            let why = match &e {
                regex::Error::CompiledTooBig(n) => {
                    format!(
                        "compiles to more than {} (the limit)",
                        human_bytes(*n as u64)
                    )
                }
                // regex's message draws the pattern over several lines; keep its last, the
                // one saying what is wrong, so every problem stays on one line.
                e => {
                    let msg = e.to_string();
                    msg.lines()
                        .last()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                        .to_string()
                }
            };
            format!("bad regex {}: {why}", excerpt(s))
        })
}

/// What is wrong with a glob, without the pattern globset repeats in its message.
fn glob_reason(e: &globset::Error) -> String {
    match e.kind() {
        globset::ErrorKind::Regex(m) => {
            let m = m
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            crate::input::excerpt(m).trim_matches('`').to_string()
        }
        k => k.to_string(),
    }
}

/// Compiles a condition node; on failure returns the first problem (see [`compile_collect`]).
pub(crate) fn compile(n: &Node, lists: &Lists) -> Result<Cond, PosError> {
    let mut errs = Vec::new();
    match compile_collect(n, lists, &mut errs) {
        Some(c) if errs.is_empty() => Ok(c),
        _ => Err(errs
            .into_iter()
            .next()
            .unwrap_or_else(|| PosError::new(&n.pos, "invalid condition"))),
    }
}

/// Compiles a condition node, recording every problem in `errs` (each entry of a mapping is
/// compiled even after an earlier one failed). `None` when anything failed.
pub(crate) fn compile_collect(n: &Node, lists: &Lists, errs: &mut Vec<PosError>) -> Option<Cond> {
    let before = errs.len();
    let entries = match n.as_map() {
        Ok(m) => m,
        Err(e) => {
            errs.push(e);
            return None;
        }
    };
    let mut all = Vec::new();
    for (k, kn, v) in entries {
        match compile_entry(k, kn, v, lists, errs) {
            Ok(mut c) => all.append(&mut c),
            Err(e) => errs.push(e),
        }
    }
    if errs.len() > before {
        return None;
    }
    Some(match all.len() {
        0 => Cond::True,
        1 => all.pop().unwrap_or(Cond::True),
        _ => Cond::All(all),
    })
}

fn compile_entry(
    k: &str,
    kn: &Node,
    v: &Node,
    lists: &Lists,
    errs: &mut Vec<PosError>,
) -> Result<Vec<Cond>, PosError> {
    let mut all = Vec::new();
    match k {
        "all" | "any" => {
            let mut subs = Vec::new();
            let mut ok = true;
            for s in v.as_seq()? {
                match compile_collect(s, lists, errs) {
                    Some(c) => subs.push(c),
                    None => ok = false,
                }
            }
            // A failed sub-condition is already recorded in `errs`.
            if ok {
                all.push(if k == "all" {
                    Cond::All(subs)
                } else {
                    Cond::Any(subs)
                });
            }
        }
        "not" => {
            if let Some(c) = compile_collect(v, lists, errs) {
                all.push(Cond::Not(Box::new(c)));
            }
        }
        path => {
            let f = field(kn, path)?;
            match &v.value {
                Value::Map(_) => {
                    let ops = v.as_map()?;
                    if ops.is_empty() {
                        return Err(PosError::new(&v.pos, "empty operator mapping"));
                    }
                    for (op, okn, ov) in ops {
                        match compile_op(f, okn, op, ov, lists) {
                            Ok(c) => all.push(c),
                            Err(e) => errs.push(e),
                        }
                    }
                }
                Value::Null => return Err(PosError::new(&v.pos, format!("no value for `{path}`"))),
                _ => all.push(Cond::Test(f, membership(f, v, lists)?)),
            }
        }
    }
    Ok(all)
}

/// One field test on an event (a missing field fails it).
#[inline(never)]
fn test(f: Field, op: &Op, s: &fields::Subject<'_>) -> bool {
    let v = fields::get_at(f, s);
    if let Op::Exists(want) = op {
        return v.is_some() == *want;
    }
    let Some(v) = v else { return false };
    match op {
        Op::StrIn(set) => str_test(&v, |s| set.contains(s)),
        Op::IntIn(set) => matches!(v, Val::Int(i) if set.contains(&i)),
        Op::BoolEq(b) => v == Val::Bool(*b),
        Op::Glob(g, _) => str_test(&v, |s| g.is_match(s)),
        Op::Prefix(p) => str_test(&v, |s| p.iter().any(|x| s.starts_with(x.as_str()))),
        Op::Suffix(p) => str_test(&v, |s| p.iter().any(|x| s.ends_with(x.as_str()))),
        Op::Contains(p) => str_test(&v, |s| p.iter().any(|x| s.contains(x.as_str()))),
        Op::Cidr(nets) => str_test(&v, |s| {
            fields::parse_ip(s).is_some_and(|ip| nets.contains(&ip))
        }),
        Op::Regex(r) => str_test(&v, |s| r.is_match(s)),
        Op::Cmp(c, b) => matches!(v, Val::Int(a) if c.eval(a, *b)),
        Op::Exists(_) => true,
        Op::EqField(o) | Op::NeqField(o) => {
            let Some(w) = fields::get(*o, s.ev, s.pol) else {
                return false;
            };
            let eq = v.render() == w.render();
            eq == matches!(op, Op::EqField(_))
        }
    }
}

fn str_test(v: &Val<'_>, pred: impl Fn(&str) -> bool) -> bool {
    match v {
        Val::Str(s) => pred(s),
        Val::List(l) => l.iter().any(|s| pred(s)),
        Val::Int(i) => pred(&i.to_string()),
        Val::Bool(b) => pred(if *b { "true" } else { "false" }),
    }
}

impl Cond {
    /// Evaluates on one event (tests; the engine parses the event's shared parts once).
    #[cfg(test)]
    pub(crate) fn eval(&self, ev: &Event, pol: &Policy) -> bool {
        self.eval_at(&fields::Subject::new(ev, pol))
    }

    /// Evaluates on one event whose shared parts are parsed already. A test on a missing field
    /// is false (so `not` of it is true).
    pub(crate) fn eval_at(&self, s: &fields::Subject<'_>) -> bool {
        // The tree walk and the common tests stay in this small frame; other tests are in
        // `test`, whose frame (values, regexes, globs) every level would otherwise set up.
        match self {
            Cond::True => true,
            Cond::All(c) => c.iter().all(|c| c.eval_at(s)),
            Cond::Any(c) => c.iter().any(|c| c.eval_at(s)),
            Cond::Not(c) => !c.eval_at(s),
            Cond::Test(Field::DstAddr, Op::Cidr(nets)) => {
                s.dst_ip.is_some_and(|ip| nets.contains(&ip))
            }
            Cond::Test(f, Op::StrIn(set)) if fields::is_enum(*f) => {
                fields::enum_name(*f, s.ev).is_some_and(|v| set.contains(v))
            }
            Cond::Test(f, op) => test(*f, op, s),
        }
    }

    /// Removes the top-level `kind` test that [`Cond::kinds`] reports: once rules are indexed
    /// by kind, only events of those kinds reach the condition, so the test is always true.
    pub(crate) fn without_index_kind(self) -> Cond {
        match self {
            Cond::Test(Field::Kind, Op::StrIn(_)) => Cond::True,
            Cond::All(mut c) => {
                if let Some(i) = c.iter().position(|x| x.kinds().is_some()) {
                    let inner = c.remove(i).without_index_kind();
                    if !matches!(inner, Cond::True) {
                        c.insert(i, inner);
                    }
                }
                match c.len() {
                    0 => Cond::True,
                    1 => c.pop().unwrap_or(Cond::True),
                    _ => Cond::All(c),
                }
            }
            other => other,
        }
    }

    /// Kinds this condition can match, when it constrains `kind` at the top (used to index
    /// rules by kind); `None` means any kind.
    pub(crate) fn kinds(&self) -> Option<Vec<String>> {
        match self {
            Cond::Test(Field::Kind, Op::StrIn(set)) => Some(set.items()),
            Cond::All(c) => c.iter().find_map(Cond::kinds),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;
    use crate::input::yaml;

    fn ev() -> Event {
        serde_json::from_value(serde_json::json!({
            "ts": 5_000_000_000u64, "kind": "connect",
            "process": {"pid": 10, "tgid": 10, "ppid": 2, "start": 1, "uid": 1000, "gid": 1000,
                        "user": "alice", "comm": "ssh", "exe": "/usr/bin/ssh",
                        "argv": ["ssh", "-i", "k", "host"], "cgroup_id": 1, "identity": "exe:/usr/bin/ssh@alice"},
            "net": {"protocol": "tcp", "family": 4, "direction": "outbound", "src_addr": "0.0.0.0",
                    "src_port": 0, "dst_addr": "10.1.2.3", "dst_port": 22, "outcome": "in_progress", "sock": 7}
        }))
        .unwrap()
    }

    fn check(src: &str) -> bool {
        let mut lists = Lists::default();
        let l = &yaml::parse("l", "[/usr/bin/ssh, /usr/bin/scp]").unwrap()[0];
        lists.insert(
            "ssh_clients".to_string(),
            &l.pos,
            l.as_seq().unwrap().to_vec(),
        );
        let n = &yaml::parse("t.yaml", src).unwrap()[0];
        compile(n, &lists).unwrap().eval(&ev(), &Policy::default())
    }

    fn err(src: &str) -> PosError {
        let n = &yaml::parse("t.yaml", src).unwrap()[0];
        compile(n, &Lists::default()).unwrap_err()
    }

    #[test]
    fn every_operator() {
        assert!(check("{kind: connect}"));
        assert!(!check("{kind: exec}"));
        assert!(check("{net.dst_port: [21, 22]}"));
        assert!(check("{net.dst_port: {eq: 22}}"));
        assert!(check("{net.dst_port: {neq: 23}}"));
        assert!(!check("{net.dst_port: {neq: 22}}"));
        assert!(check("{process.exe: {in: ['@ssh_clients']}}"));
        assert!(check("{process.exe: {glob: '/usr/*/ssh'}}"));
        assert!(!check("{process.exe: {glob: '/usr/sbin/*'}}"));
        assert!(check("{process.exe: {prefix: /usr/}}"));
        assert!(check("{process.exe: {suffix: [/scp, /ssh]}}"));
        assert!(check("{process.exe: {contains: bin}}"));
        assert!(check("{process.argv: {contains: '-i'}}"));
        assert!(check("{process.argv: host}"));
        assert!(check("{net.dst_addr: {cidr: 10.0.0.0/8}}"));
        assert!(!check("{net.dst_addr: {cidr: [192.168.0.0/16, 10.1.2.4]}}"));
        assert!(check("{net.dst_addr: {regex: '^10\\.1\\.'}}"));
        assert!(check("{net.dst_port: {gt: 21, lt: 23}}"));
        assert!(check("{net.dst_port: {gte: 22, lte: 22}}"));
        assert!(!check("{net.dst_port: {gt: 22}}"));
        assert!(!check("{net.dst_port: {lt: 22}}"));
        assert!(check("{file.watched: {exists: false}}"));
        assert!(check("{net.conn: {exists: true}}"));
        assert!(check("{process.pid: {eq_field: process.tgid}}"));
        assert!(!check("{process.pid: {neq_field: process.tgid}}"));
        assert!(
            !check("{process.pid: {neq_field: file.target_pid}}"),
            "missing other field"
        );
        assert!(check(
            "{net.outcome: in_progress, net.protocol: tcp, net.direction: outbound}"
        ));
    }

    #[test]
    fn combinators_and_missing_fields() {
        assert!(check("{any: [{kind: exec}, {kind: connect}]}"));
        assert!(!check("{all: [{kind: exec}, {kind: connect}]}"));
        assert!(check("{not: {kind: exec}}"));
        assert!(!check("{file.category: ssh_key}"), "missing field is false");
        assert!(check("{not: {file.category: ssh_key}}"));
        assert!(check("{}"));
    }

    #[test]
    fn errors_are_positioned() {
        let e = err("kind: connect\nnet.dst_prt: 22\n");
        assert_eq!((e.pos.line, e.pos.col), (2, 1));
        assert!(e.msg.contains("unknown field `net.dst_prt`"));
        let e = err("process.exe: {regex: '(['}\n");
        assert!(e.msg.starts_with("bad regex"), "{e}");
        assert_eq!((e.pos.line, e.pos.col), (1, 22));
        assert!(err("net.dst_addr: {cidr: 10.0.0.0/33}")
            .msg
            .contains("bad CIDR"));
        assert!(err("process.exe: {glob: 'a[b'}").msg.contains("bad glob"));
        assert!(err("process.exe: {in: ['@nope']}")
            .msg
            .contains("unknown list `nope`"));
        assert!(err("net.dst_port: {eq: ssh}").msg.contains("integer field"));
        assert!(err("net.dst_port: {regex: x}")
            .msg
            .contains("needs a string field"));
        assert!(err("process.exe: {matches: x}")
            .msg
            .contains("unknown operator"));
    }

    #[test]
    fn kinds_index() {
        let n = &yaml::parse("t", "{kind: [cred_open, cred_read], file.via: io_uring}").unwrap()[0];
        let mut k = compile(n, &Lists::default()).unwrap().kinds().unwrap();
        k.sort();
        assert_eq!(k, vec!["cred_open", "cred_read"]);
    }
}
