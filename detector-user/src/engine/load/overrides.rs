//! `overrides:` — tuning a rule defined elsewhere (the shipped pack) without copying it.
//!
//! A loader stage between [`super::collect`] and compile: each override names a rule by
//! id and replaces some of its settings or appends to its condition and exceptions; the rule
//! then compiles as if it had been written that way, so every check of the rule language
//! applies to the result and a bad value is reported at its own position in the override's
//! file. What an override may change, and why the rest may not, is in `docs/rules.md`
//! ("Overrides").
//!
//! ```yaml
//! overrides:
//!   - rule: service-fan-out-burst
//!     severity: medium
//!     correlation: {condition: {gt: 100}, timespan: 30s}
//!   - rule: bb-outbound-connect
//!     append:
//!       exceptions:
//!         - {name: scrapers, fields: [net.dst_addr], comps: [cidr], values: [[10.9.0.0/16]]}
//! ```

use std::borrow::Cow;
use std::collections::HashMap;

use super::RawRule;
use crate::input::excerpt;
use crate::input::yaml::{Node, Pos, PosError, Value};

/// Keys of one override.
const OVERRIDE_KEYS: &[&str] = &[
    "rule",
    "enabled",
    "severity",
    "suppress",
    "group-by",
    "correlation",
    "append",
];

/// Keys of a rule that no override may change: what the rule is and says (write your own rule
/// for that), and an event rule's whole condition or exceptions (append to them instead).
const RULE_FIXED: &[&str] = &[
    "id",
    "title",
    "description",
    "attack",
    "alert",
    "condition",
    "exceptions",
];

/// Settings of a correlation an override may replace: its threshold and window. The other
/// keys define what the correlation is (its rules, grouping, counted field).
const CORR_OVERRIDABLE: &[&str] = &["condition", "timespan", "max_gap"];

/// Keys of a correlation that no override may change (for the message).
const CORR_FIXED: &[&str] = &[
    "type", "rules", "group-by", "field", "aliases", "budget", "generate",
];

/// What the overrides did, for `rules check`, `rules test` and the rest of the loader.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Rules an override changed (disabling included): id → where each override is, in file
    /// order.
    pub(crate) changed: HashMap<String, Vec<Pos>>,
    /// Disabled rules: id → where (the override's `enabled: false`, or the rule's own).
    pub(crate) disabled: HashMap<String, Pos>,
    /// Number of overrides read.
    pub(crate) count: usize,
}

/// One rule's pending changes, gathered over every override of it before the rule's node is
/// rebuilt once.
#[derive(Default)]
struct Patch<'a> {
    /// Replaced top-level keys: key → (key node, value).
    top: Vec<(&'a Node, &'a Node)>,
    /// Replaced `correlation` keys.
    corr: Vec<(&'a Node, &'a Node)>,
    /// Conditions ANDed with the rule's.
    conditions: Vec<&'a Node>,
    /// Exceptions appended to the rule's.
    exceptions: Vec<&'a Node>,
}

fn is_correlation(n: &Node) -> bool {
    n.as_map()
        .is_ok_and(|m| m.iter().any(|(k, _, _)| *k == "correlation"))
}

/// The value of a key of a mapping node.
fn get<'n>(n: &'n Node, key: &str) -> Option<&'n Node> {
    n.as_map()
        .ok()?
        .into_iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, v)| v)
}

/// Applies every override in `nodes` (the `overrides:` sections, in file order) to `raws`.
/// Problems go to `errs`, each at its position: an unknown rule id, a key that cannot be
/// overridden or does not apply to that kind of rule, a value of the wrong type, the same
/// setting replaced twice (in one file or two: which one should win would depend on the order
/// the files are given in), and disabling a rule that an enabled correlation needs.
pub(crate) fn apply(
    raws: &mut [RawRule<'_>],
    nodes: &[&Node],
    errs: &mut Vec<PosError>,
) -> Applied {
    let mut st = Overriding {
        by_id: raws
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect(),
        applied: Applied::default(),
        patches: HashMap::new(),
        claims: Claims::default(),
    };
    // Rules disabled by their own definition.
    for r in raws.iter() {
        if let Some(e) = get(&r.node, "enabled") {
            if e.value == Value::Bool(false) {
                st.applied.disabled.insert(r.id.clone(), e.pos.clone());
            }
        }
    }
    for &section in nodes {
        let items = match section.as_seq() {
            Ok(s) => s,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        for item in items {
            st.item(raws, item, errs);
        }
    }
    for (ri, p) in st.patches {
        let empty = p.top.is_empty()
            && p.corr.is_empty()
            && p.conditions.is_empty()
            && p.exceptions.is_empty();
        if empty {
            continue;
        }
        let node = rebuild(&raws[ri].node, &p);
        raws[ri].node = Cow::Owned(node);
    }
    check_references(raws, &st.applied, errs);
    st.applied
}

/// The overrides read so far.
struct Overriding<'n> {
    /// Rule id → index in `raws`.
    by_id: HashMap<String, usize>,
    applied: Applied,
    patches: HashMap<usize, Patch<'n>>,
    claims: Claims,
}

impl<'n> Overriding<'n> {
    /// Reads one override (an item of an `overrides:` section) into its rule's patch.
    fn item(&mut self, raws: &[RawRule<'_>], item: &'n Node, errs: &mut Vec<PosError>) {
        self.applied.count += 1;
        let Some((ri, id)) = target(item, &self.by_id, errs) else {
            return;
        };
        let mut o = Override {
            ri,
            id,
            corr: is_correlation(&raws[ri].node),
            patch: self.patches.entry(ri).or_default(),
            claims: &mut self.claims,
            disabled: &mut self.applied.disabled,
            errs,
        };
        let mut changed = false;
        for (key, kn, v) in item.as_map().unwrap_or_default() {
            changed |= o.key(key, kn, v);
        }
        if changed {
            self.applied
                .changed
                .entry(id.to_string())
                .or_default()
                .push(item.pos.clone());
        }
    }
}

/// The rule an override names, as (index in `raws`, id); problems with its keys and its
/// `rule` go to `errs` (an unknown key is reported with what an override takes; a rule's own
/// keys that cannot be overridden get their own message in [`Override::key`]).
fn target<'n>(
    item: &'n Node,
    by_id: &HashMap<String, usize>,
    errs: &mut Vec<PosError>,
) -> Option<(usize, &'n str)> {
    if let Ok(m) = item.as_map() {
        for (k, kn, _) in m {
            if !OVERRIDE_KEYS.contains(&k) && !RULE_FIXED.contains(&k) {
                errs.push(PosError::new(
                    &kn.pos,
                    format!(
                        "unknown field {} (expected one of: {})",
                        excerpt(k),
                        OVERRIDE_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    let known: Vec<&str> = OVERRIDE_KEYS.iter().chain(RULE_FIXED).copied().collect();
    // The first problem of the fields, `rule` and its value is reported.
    let rule = item
        .fields_collect(&known, &mut Vec::new())
        .and_then(|f| f.req("rule"));
    let (id_node, id) = match rule.and_then(|n| Ok((n, n.as_str()?))) {
        Ok(x) => x,
        Err(e) => {
            errs.push(e);
            return None;
        }
    };
    let Some(&ri) = by_id.get(id) else {
        errs.push(PosError::new(
            &id_node.pos,
            format!(
                "override of unknown rule {}: no rule file loaded defines it",
                excerpt(id)
            ),
        ));
        return None;
    };
    Some((ri, id))
}

/// Settings already replaced: (rule, setting) → where it was first replaced.
#[derive(Default)]
struct Claims(HashMap<(usize, String), Pos>);

impl Claims {
    /// Claims `setting` of rule `rule` (id `id`) for the override at `at`; false, reported,
    /// when another override replaced it already.
    fn claim(
        &mut self,
        rule: usize,
        id: &str,
        setting: String,
        at: &Pos,
        errs: &mut Vec<PosError>,
    ) -> bool {
        match self.0.get(&(rule, setting.clone())) {
            Some(first) => {
                errs.push(PosError::new(
                    at,
                    format!(
                        "`{setting}` of rule `{id}` is already overridden at {first}; a setting \
                         takes one override (which should win would depend on the order the \
                         files are loaded in): keep one"
                    ),
                ));
                false
            }
            None => {
                self.0.insert((rule, setting), at.clone());
                true
            }
        }
    }
}

/// One override being read into the patch of its rule.
struct Override<'a, 'n> {
    /// The rule: index in `raws`, id, and whether it is a correlation.
    ri: usize,
    id: &'a str,
    corr: bool,
    patch: &'a mut Patch<'n>,
    claims: &'a mut Claims,
    /// [`Applied::disabled`].
    disabled: &'a mut HashMap<String, Pos>,
    errs: &'a mut Vec<PosError>,
}

impl<'n> Override<'_, 'n> {
    /// One key of the override (`kn`: the key's node, `v`: its value); true when it changed
    /// the rule.
    fn key(&mut self, key: &str, kn: &'n Node, v: &'n Node) -> bool {
        let (ri, id) = (self.ri, self.id);
        match key {
            "rule" => false,
            "enabled" => self.enabled(kn, v),
            "severity" | "suppress" => {
                // Claimed already: the claim reported the conflict.
                let claimed = self.claims.claim(ri, id, key.into(), &kn.pos, self.errs);
                if claimed {
                    self.patch.top.push((kn, v));
                }
                claimed
            }
            "group-by" => self.group_by(kn, v),
            "correlation" => self.correlation(kn, v),
            "append" => self.append(kn, v),
            "condition" | "exceptions" => {
                self.errs.push(PosError::new(
                    &kn.pos,
                    format!(
                        "an override cannot replace `{key}` (the rule would be another \
                         rule): append to it (`append: {{{key}: …}}`), or disable the rule \
                         (`enabled: false`) and write your own"
                    ),
                ));
                false
            }
            k if RULE_FIXED.contains(&k) => {
                self.errs.push(PosError::new(
                    &kn.pos,
                    format!(
                        "`{k}` cannot be overridden (an override changes {}); disable the \
                         rule (`enabled: false`) and write your own",
                        OVERRIDE_KEYS[1..].join(", ")
                    ),
                ));
                false
            }
            // Unknown keys were reported by `fields_collect`.
            _ => false,
        }
    }

    /// `enabled: true|false`.
    fn enabled(&mut self, kn: &Node, v: &Node) -> bool {
        let on = match v.as_bool() {
            Ok(b) => b,
            Err(e) => {
                self.errs.push(e);
                return false;
            }
        };
        let id = self.id;
        if !self
            .claims
            .claim(self.ri, id, "enabled".into(), &kn.pos, self.errs)
        {
            return false;
        }
        if on {
            self.disabled.remove(id);
        } else {
            self.disabled.insert(id.to_string(), v.pos.clone());
        }
        true
    }

    /// `group-by`: an event rule's only (a correlation's grouping is what it correlates).
    fn group_by(&mut self, kn: &'n Node, v: &'n Node) -> bool {
        let id = self.id;
        if self.corr {
            self.errs.push(PosError::new(
                &kn.pos,
                format!(
                    "`{id}` is a correlation: its grouping (`correlation.group-by`) \
                     defines what it correlates and cannot be overridden; disable \
                     it (`enabled: false`) and write your own rule"
                ),
            ));
            return false;
        }
        if !self
            .claims
            .claim(self.ri, id, "group-by".into(), &kn.pos, self.errs)
        {
            return false;
        }
        self.patch.top.push((kn, v));
        true
    }

    /// `correlation: {…}`: its threshold and window ([`CORR_OVERRIDABLE`]).
    fn correlation(&mut self, kn: &Node, v: &'n Node) -> bool {
        let id = self.id;
        if !self.corr {
            self.errs.push(PosError::new(
                &kn.pos,
                format!("`{id}` is an event rule: it has no `correlation` to override"),
            ));
            return false;
        }
        let m = match v.as_map() {
            Ok(m) => m,
            Err(e) => {
                self.errs.push(e);
                return false;
            }
        };
        let mut changed = false;
        for (ck, ckn, cv) in m {
            if CORR_OVERRIDABLE.contains(&ck) {
                let setting = format!("correlation.{ck}");
                if self.claims.claim(self.ri, id, setting, &ckn.pos, self.errs) {
                    self.patch.corr.push((ckn, cv));
                    changed = true;
                }
            } else if CORR_FIXED.contains(&ck) {
                self.errs.push(PosError::new(
                    &ckn.pos,
                    format!(
                        "`correlation.{ck}` cannot be overridden: it defines what \
                         `{id}` correlates (only {} can); disable the rule \
                         (`enabled: false`) and write your own",
                        CORR_OVERRIDABLE.join(", ")
                    ),
                ));
            } else {
                self.errs.push(PosError::new(
                    &ckn.pos,
                    format!(
                        "unknown field {} (expected one of: {})",
                        excerpt(ck),
                        CORR_OVERRIDABLE.join(", ")
                    ),
                ));
            }
        }
        changed
    }

    /// `append: {condition, exceptions}`: an event rule's only (a correlation's belong on the
    /// event rules it references).
    fn append(&mut self, kn: &Node, v: &'n Node) -> bool {
        let af = match v.fields_collect(&["condition", "exceptions"], self.errs) {
            Ok(af) => af,
            Err(e) => {
                self.errs.push(e);
                return false;
            }
        };
        if self.corr {
            self.errs.push(PosError::new(
                &kn.pos,
                format!(
                    "`{}` is a correlation: conditions and exceptions belong on \
                     the event rules it references (override those), its \
                     threshold is `correlation.condition`",
                    self.id
                ),
            ));
            return false;
        }
        let mut changed = false;
        if let Some(c) = af.get("condition") {
            match c.as_map() {
                Ok(_) => {
                    self.patch.conditions.push(c);
                    changed = true;
                }
                Err(e) => self.errs.push(e),
            }
        }
        if let Some(x) = af.get("exceptions") {
            match x.as_seq() {
                Ok(s) => {
                    self.patch.exceptions.extend(s);
                    changed = true;
                }
                Err(e) => self.errs.push(e),
            }
        }
        changed
    }
}

fn key_node(name: &str, pos: &Pos) -> Node {
    Node {
        value: Value::Str(name.into()),
        pos: pos.clone(),
    }
}

/// Replaces the value of `key` in `entries` (or appends the entry).
fn set(entries: &mut Vec<(Node, Node)>, key: &Node, value: &Node) {
    let name = key.as_str().unwrap_or_default();
    match entries
        .iter_mut()
        .find(|(k, _)| k.as_str().is_ok_and(|s| s == name))
    {
        Some(e) => e.1 = value.clone(),
        None => entries.push((key.clone(), value.clone())),
    }
}

/// The rule's mapping with a patch applied. Appended conditions become one `all:` entry of
/// the rule's condition mapping (its own entries stay at the top, where the literal index
/// finds them); appended exceptions are added to its `exceptions`.
fn rebuild(rule: &Node, p: &Patch<'_>) -> Node {
    let Value::Map(entries) = &rule.value else {
        return rule.clone();
    };
    let mut entries = entries.clone();
    for (k, v) in &p.top {
        set(&mut entries, k, v);
    }
    if !p.corr.is_empty() {
        if let Some((_, c)) = entries
            .iter_mut()
            .find(|(k, _)| k.as_str().is_ok_and(|s| s == "correlation"))
        {
            if let Value::Map(ce) = &mut c.value {
                for (k, v) in &p.corr {
                    set(ce, k, v);
                }
            }
        }
    }
    if let Some(first) = p.conditions.first() {
        if let Some((_, c)) = entries
            .iter_mut()
            .find(|(k, _)| k.as_str().is_ok_and(|s| s == "condition"))
        {
            if let Value::Map(ce) = &mut c.value {
                let all = Node {
                    value: Value::Seq(p.conditions.iter().map(|&n| n.clone()).collect()),
                    pos: first.pos.clone(),
                };
                ce.push((key_node("all", &first.pos), all));
            }
        }
    }
    if let Some(first) = p.exceptions.first() {
        let extra = p.exceptions.iter().map(|&n| n.clone());
        match entries
            .iter_mut()
            .find(|(k, _)| k.as_str().is_ok_and(|s| s == "exceptions"))
        {
            Some((_, x)) => {
                if let Value::Seq(s) = &mut x.value {
                    s.extend(extra);
                }
            }
            None => entries.push((
                key_node("exceptions", &first.pos),
                Node {
                    value: Value::Seq(extra.collect()),
                    pos: first.pos.clone(),
                },
            )),
        }
    }
    Node {
        value: Value::Map(entries),
        pos: rule.pos.clone(),
    }
}

/// A disabled rule must not be one that an enabled correlation references: the correlation
/// would silently never fire.
fn check_references(raws: &[RawRule<'_>], applied: &Applied, errs: &mut Vec<PosError>) {
    if applied.disabled.is_empty() {
        return;
    }
    for r in raws {
        if applied.disabled.contains_key(&r.id) {
            continue;
        }
        let Some(rules) = get(&r.node, "correlation").and_then(|c| get(c, "rules")) else {
            continue;
        };
        for step in rules.as_seq_or_one() {
            let Ok(sid) = step.as_str() else { continue };
            if let Some(at) = applied.disabled.get(sid) {
                errs.push(PosError::new(
                    at,
                    format!(
                        "`{sid}` is disabled, but the enabled correlation `{}` ({}) references \
                         it and would never fire: disable that correlation too",
                        r.id, r.node.pos
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::fields::Policy;
    use crate::engine::rules::{Body, RuleSet};
    use crate::engine::testing::{run_all, Status};
    use crate::engine::{Engine, EngineOptions, IdMode};
    use crate::event::Event;
    use crate::input::yaml::PosError;

    const PACK: &str = "lists:
  quiet: [/usr/bin/quiet]
rules:
  - id: conn
    title: conn
    severity: info
    alert: false
    condition: {kind: connect, net.direction: outbound}
  - id: read
    title: read
    severity: info
    alert: false
    condition: {kind: [cred_open, cred_read]}
  - id: fanout
    title: Fan-out
    severity: critical
    suppress: 10m
    correlation:
      type: temporal_ordered
      rules: [read, conn]
      group-by: [process.tree]
      field: net.dst_addr
      timespan: 1s
      condition: {gte: 3}
  - id: io
    title: io_uring
    severity: high
    group-by: [process.identity]
    condition: {kind: cred_open, file.via: io_uring}
    exceptions:
      - name: quiet
        fields: [process.exe]
        comps: [in]
        values: [[['@quiet']]]
tests:
  - rule: io
    processes:
      p: {pid: 9, tgid: 9, ppid: 1, start: 1, uid: 0, gid: 0, comm: x, exe: /usr/bin/borg, cgroup_id: 1, identity: borg}
    cases:
      - name: borg reads through io_uring
        expect: 1
        events:
          - {ts: 1s, kind: cred_open, process: p, file: {watched: /k, category: ssh_key, dev: 1, ino: 2, via: io_uring}}
";

    fn load(user: &str) -> Result<RuleSet, Vec<PosError>> {
        RuleSet::load(&[
            ("pack.yaml".into(), PACK.into()),
            ("user.yaml".into(), user.into()),
        ])
    }

    fn errors(user: &str) -> Vec<String> {
        match load(user) {
            Ok(_) => panic!("expected errors for:\n{user}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn corr(s: &RuleSet, id: &str) -> (u64, Vec<(crate::engine::cond::CmpOp, i64)>, Option<u64>) {
        let r = &s.rules[s.find(id).unwrap()];
        match &r.body {
            Body::Correlation(c) => (c.timespan, c.condition.clone(), c.max_gap),
            Body::Event { .. } => panic!("{id} is an event rule"),
        }
    }

    #[test]
    fn replaced_settings_compile_into_the_rule() {
        let s = load(
            "overrides:
  - rule: fanout
    severity: medium
    suppress: 1h
    correlation: {condition: {gte: 5}, timespan: 2s, max_gap: 300ms}
  - rule: io
    group-by: [process.exe]
",
        )
        .unwrap();
        let f = &s.rules[s.find("fanout").unwrap()];
        assert_eq!(f.severity, crate::engine::alert::Severity::Medium);
        assert_eq!(f.suppress, 3_600_000_000_000);
        let (ts, cond, gap) = corr(&s, "fanout");
        assert_eq!(ts, 2_000_000_000);
        assert_eq!(cond, vec![(crate::engine::cond::CmpOp::Gte, 5)]);
        assert_eq!(gap, Some(300_000_000));
        let io = &s.rules[s.find("io").unwrap()];
        assert_eq!(io.group_by, vec![crate::engine::fields::Field::Exe]);
        // What is not overridden stays as defined.
        assert_eq!(io.severity, crate::engine::alert::Severity::High);
        assert_eq!(s.overrides, 2);
    }

    #[test]
    fn disabled_rules_are_left_out_and_their_tests_skipped() {
        let s = load("overrides:\n  - rule: io\n    enabled: false\n").unwrap();
        assert!(s.find("io").is_none());
        assert_eq!(s.disabled.len(), 1);
        assert_eq!(s.disabled[0].0, "io");
        assert_eq!(s.disabled[0].1.to_string(), "user.yaml:3:14");
        // Correlation steps still point at their rules after the removal.
        let Body::Correlation(c) = &s.rules[s.find("fanout").unwrap()].body else {
            panic!()
        };
        let ids: Vec<&str> = c.steps.iter().map(|&i| s.rules[i].id.as_str()).collect();
        assert_eq!(ids, ["read", "conn"]);
        let mut e = Engine::new(s, Policy::default(), EngineOptions::default());
        let r = run_all(&mut e);
        assert!(
            matches!(&r[0].status, Status::Skipped(w) if w.contains("disabled at user.yaml:3:14")),
            "{r:?}"
        );
        // A rule disabled where it is defined can be enabled by an override.
        let pack = PACK.replace(
            "    title: io_uring\n",
            "    title: io_uring\n    enabled: false\n",
        );
        let s = RuleSet::load(&[("pack.yaml".into(), pack.clone())]).unwrap();
        assert!(s.find("io").is_none());
        let s = RuleSet::load(&[
            ("pack.yaml".into(), pack),
            (
                "user.yaml".into(),
                "overrides:\n  - rule: io\n    enabled: true\n".into(),
            ),
        ])
        .unwrap();
        assert!(s.find("io").is_some());
    }

    /// The overridden rules behave as overridden: a raised threshold needs more hosts, an
    /// appended exception and condition keep events out.
    #[test]
    fn overridden_rules_behave_as_overridden() {
        let ev = |j: serde_json::Value| -> Event { serde_json::from_value(j).unwrap() };
        let p = |tgid: u32, exe: &str| {
            serde_json::json!({"pid": tgid, "tgid": tgid, "ppid": 50, "start": 1, "uid": 0, "gid": 0,
                "comm": "x", "exe": exe, "cgroup_id": 1, "identity": "app", "ancestors": [50, 1]})
        };
        let read = |ts: u64, exe: &str, via: &str| {
            ev(
                serde_json::json!({"ts": ts, "kind": "cred_open", "process": p(7, exe),
                "file": {"watched": "/k", "category": "ssh_key", "dev": 1, "ino": 2, "via": via}}),
            )
        };
        let conn = |ts: u64, host: &str| {
            ev(
                serde_json::json!({"ts": ts, "kind": "connect", "process": p(8, "/usr/bin/ssh"),
                "net": {"protocol": "tcp", "family": 4, "direction": "outbound", "src_addr": "0.0.0.0",
                        "src_port": 0, "dst_addr": host, "dst_port": 22, "outcome": "in_progress", "conn": ts}}),
            )
        };
        let alerts = |s: RuleSet, evs: &[Event]| -> Vec<String> {
            let mut e = Engine::new(
                s,
                Policy::default(),
                EngineOptions {
                    ids: IdMode::Derived(1),
                    ..Default::default()
                },
            );
            let mut out = Vec::new();
            for x in evs {
                e.process(x, &mut out);
            }
            e.finish(&mut out);
            out.into_iter().map(|a| a.rule.id).collect()
        };
        let ms = 1_000_000;
        let mut fan = vec![read(1000 * ms, "/usr/bin/cat", "syscall")];
        fan.extend((1..=4).map(|i| conn((1000 + 100 * i) * ms, &format!("10.0.0.{i}"))));
        assert_eq!(alerts(load("").unwrap(), &fan), ["fanout"]);
        let raised = "overrides:\n  - rule: fanout\n    correlation: {condition: {gte: 5}}\n";
        assert!(alerts(load(raised).unwrap(), &fan).is_empty());
        fan.push(conn(1500 * ms, "10.0.0.5"));
        assert_eq!(alerts(load(raised).unwrap(), &fan), ["fanout"]);
        let off = "overrides:\n  - rule: fanout\n    enabled: false\n";
        assert!(alerts(load(off).unwrap(), &fan).is_empty());

        let io = |exe: &str| vec![read(1000 * ms, exe, "io_uring")];
        assert_eq!(alerts(load("").unwrap(), &io("/usr/bin/borg")), ["io"]);
        assert!(alerts(load("").unwrap(), &io("/usr/bin/quiet")).is_empty());
        let tuned = "overrides:
  - rule: io
    append:
      exceptions:
        - name: backups
          fields: [process.exe]
          values: [[/usr/bin/borg]]
      condition: {not: {process.exe: /usr/bin/restic}}
";
        // The appended exception and condition hold, and so does the shipped exception.
        for exe in ["/usr/bin/borg", "/usr/bin/restic", "/usr/bin/quiet"] {
            assert!(alerts(load(tuned).unwrap(), &io(exe)).is_empty(), "{exe}");
        }
        assert_eq!(alerts(load(tuned).unwrap(), &io("/usr/bin/cp")), ["io"]);
        // Appending to a building block tunes every correlation built on it.
        let bb = "overrides:
  - rule: conn
    append:
      exceptions: [{fields: [net.dst_addr], comps: [cidr], values: [[10.0.0.4/32]]}]
";
        // Hosts 1, 2 and 4: the excepted one leaves two.
        let three = [
            fan[0].clone(),
            fan[1].clone(),
            fan[2].clone(),
            fan[4].clone(),
        ];
        assert_eq!(alerts(load("").unwrap(), &three), ["fanout"]);
        assert!(alerts(load(bb).unwrap(), &three).is_empty());
        assert_eq!(alerts(load(bb).unwrap(), &fan), ["fanout"]);
    }

    #[test]
    fn changed_rules_report_their_tests_as_changed() {
        let s = load(
            "overrides:
  - rule: io
    append:
      exceptions: [{fields: [process.exe], values: [[/usr/bin/borg]]}]
",
        )
        .unwrap();
        let mut e = Engine::new(s, Policy::default(), EngineOptions::default());
        let r = run_all(&mut e);
        assert!(
            matches!(&r[0].status, Status::Changed(w) if w.contains("expected 1 alert(s) of `io`, got 0, as the override at user.yaml:2:5 makes it")),
            "{r:?}"
        );
        // A test beside the override is the user's own: it must pass.
        let s = load(
            "overrides:
  - rule: io
    append:
      exceptions: [{fields: [process.exe], values: [[/usr/bin/borg]]}]
tests:
  - rule: io
    processes:
      p: {pid: 9, tgid: 9, ppid: 1, start: 1, uid: 0, gid: 0, comm: x, exe: /usr/bin/borg, cgroup_id: 1, identity: borg}
    cases:
      - name: wrongly expects borg
        expect: 1
        events:
          - {ts: 1s, kind: cred_open, process: p, file: {watched: /k, category: ssh_key, dev: 1, ino: 2, via: io_uring}}
",
        )
        .unwrap();
        let mut e = Engine::new(s, Policy::default(), EngineOptions::default());
        let r = run_all(&mut e);
        assert!(matches!(&r[1].status, Status::Fail(_)), "{r:?}");
    }

    #[test]
    fn problems_are_positioned() {
        let cases: &[(&str, &str)] = &[
            (
                "overrides:\n  - rule: nope\n    enabled: false\n",
                "user.yaml:2:11: override of unknown rule `nope`",
            ),
            (
                "overrides:\n  - rule: fanout\n    title: Mine\n",
                "user.yaml:3:5: `title` cannot be overridden",
            ),
            (
                "overrides:\n  - rule: io\n    condition: {kind: exec}\n",
                "user.yaml:3:5: an override cannot replace `condition`",
            ),
            (
                "overrides:\n  - rule: io\n    colour: red\n",
                "user.yaml:3:5: unknown field `colour` (expected one of: rule, enabled, severity, suppress, group-by, correlation, append)",
            ),
            (
                "overrides:\n  - rule: fanout\n    correlation: {group-by: [process.identity]}\n",
                "user.yaml:3:19: `correlation.group-by` cannot be overridden",
            ),
            (
                "overrides:\n  - rule: fanout\n    correlation: {rules: [read]}\n",
                "user.yaml:3:19: `correlation.rules` cannot be overridden",
            ),
            (
                "overrides:\n  - rule: fanout\n    group-by: [process.identity]\n",
                "user.yaml:3:5: `fanout` is a correlation: its grouping",
            ),
            (
                "overrides:\n  - rule: io\n    correlation: {timespan: 1s}\n",
                "user.yaml:3:5: `io` is an event rule: it has no `correlation`",
            ),
            (
                "overrides:\n  - rule: fanout\n    append: {exceptions: []}\n",
                "user.yaml:3:5: `fanout` is a correlation: conditions and exceptions",
            ),
            (
                "overrides:\n  - rule: io\n    enabled: maybe\n",
                "user.yaml:3:14: expected a boolean, found string",
            ),
            (
                "overrides:\n  - rule: io\n    severity: urgent\n",
                "user.yaml:3:15: severity must be",
            ),
            (
                "overrides:\n  - rule: fanout\n    correlation: {condition: {gte: many}}\n",
                "user.yaml:3:36: expected an integer, found string",
            ),
            (
                "overrides:\n  - rule: fanout\n    correlation: {condition: {between: 3}}\n",
                "user.yaml:3:31: unknown condition `between`",
            ),
            (
                "overrides:\n  - rule: fanout\n    correlation: {timespan: 0s}\n",
                "user.yaml:3:29: timespan must be positive",
            ),
            (
                "overrides:\n  - rule: io\n    append: {condition: {process.colour: red}}\n",
                "user.yaml:3:26: unknown field `process.colour`",
            ),
            (
                "overrides:\n  - rule: io\n    append: {condition: [a]}\n",
                "user.yaml:3:25: expected a mapping, found sequence",
            ),
            (
                "overrides:\n  - rule: io\n    append:\n      exceptions: [{fields: [process.exe], values: [[a, b]]}]\n",
                "user.yaml:4:53: exception tuple needs 1 values",
            ),
            (
                "overrides:\n  - rule: read\n    enabled: false\n",
                "user.yaml:3:14: `read` is disabled, but the enabled correlation `fanout` (pack.yaml:14:5)",
            ),
            (
                "overrides:\n  - rule: io\n    suppress: 1h\n  - rule: io\n    suppress: 2h\n",
                "user.yaml:5:5: `suppress` of rule `io` is already overridden at user.yaml:3:5",
            ),
            (
                "overrides: {rule: io}\n",
                "user.yaml:1:12: expected a sequence, found mapping",
            ),
        ];
        let mut wrong = Vec::new();
        for (src, want) in cases {
            let errs = errors(src);
            if !errs.iter().any(|e| e.starts_with(want)) {
                wrong.push(format!("want `{want}` for\n{src}got {errs:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Disabling the correlation too makes disabling its building block fine.
        assert!(load("overrides:\n  - rule: read\n    enabled: false\n  - rule: fanout\n    enabled: false\n").is_ok());
    }

    /// The same setting overridden in two files is an error at the later one, naming the
    /// first; appends from several files add up.
    #[test]
    fn conflicts_across_files() {
        let over = |s: &str| ("a.yaml".to_string(), s.to_string());
        let errs = RuleSet::load(&[
            ("pack.yaml".into(), PACK.into()),
            over("overrides:\n  - rule: fanout\n    correlation: {condition: {gte: 4}}\n"),
            (
                "b.yaml".into(),
                "overrides:\n  - rule: fanout\n    correlation: {condition: {gte: 6}}\n".into(),
            ),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "b.yaml:3:19: `correlation.condition` of rule `fanout` is already overridden at \
             a.yaml:3:19; a setting takes one override (which should win would depend on the \
             order the files are loaded in): keep one"
        );
        let s = RuleSet::load(&[
            ("pack.yaml".into(), PACK.into()),
            over("overrides:\n  - rule: io\n    append: {exceptions: [{fields: [process.exe], values: [[/a]]}]}\n"),
            (
                "b.yaml".into(),
                "overrides:\n  - rule: io\n    append: {exceptions: [{fields: [process.exe], values: [[/b]]}]}\n".into(),
            ),
        ]);
        assert!(s.is_ok());
    }

    /// An override is explicit; a rule defined twice is still a duplicate.
    #[test]
    fn duplicates_stay_errors() {
        let errs = RuleSet::load(&[
            ("pack.yaml".into(), PACK.into()),
            (
                "copy.yaml".into(),
                PACK.replace("lists:\n  quiet: [/usr/bin/quiet]\n", ""),
            ),
        ])
        .unwrap_err();
        let dups: Vec<String> = errs
            .iter()
            .map(ToString::to_string)
            .filter(|e| e.contains("duplicate rule id"))
            .collect();
        assert_eq!(dups.len(), 4, "{errs:?}");
        assert!(
            dups[0].starts_with("copy.yaml:2:5: duplicate rule id `conn` (first defined at pack.yaml:4:5); to change a rule defined elsewhere, use `overrides:`"),
            "{dups:?}"
        );
    }

    /// The shipped pack takes overrides of every kind, as docs/rules.md shows them.
    #[test]
    fn the_embedded_pack_takes_the_documented_overrides() {
        let doc = include_str!("../../../../docs/rules.md");
        let at = doc.find("## Overrides").unwrap();
        let block = doc[at..].split("```yaml\n").nth(1).unwrap();
        let example = block.split("```").next().unwrap();
        let mut sources = crate::engine::load::embedded_sources();
        sources.push(("tuning.yaml".into(), example.into()));
        let s = RuleSet::load(&sources).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.find("credential-access-via-io-uring").is_none());
        assert_eq!(corr(&s, "machine-speed-credential-reuse").0, 2_000_000_000);
        assert_eq!(s.overrides, 4);
    }
}
